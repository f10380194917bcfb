// Package reuse lets servers share a local address and port between sockets
// and processes, or refuse to share it, with the same meaning on every OS and
// an error wrapping [errors.ErrUnsupported] where the OS cannot deliver.
//
// # Sharing
//
// Two sockets may bind the same IP address and port only when the OS is told
// so, and each OS means something different by it. A [Config] names what is
// wanted, a [Mode]:
//
//   - [Share]: sockets of the same user may bind the same address and port.
//     Where the OS balances, connections and datagrams are spread across
//     them, so several processes, or one accept loop per core, serve one
//     port; a new process can join the port before the old one leaves.
//   - [Exclusive]: no other socket may bind the address and port, where the
//     OS can enforce it; a server restarted on its port still binds while
//     its old connections sit in TIME_WAIT.
//
// [Listen], [ListenPacket] and [Dial] mirror the functions of package net;
// [Config.Control] fits the Control field of a net.ListenConfig or net.Dialer
// of the caller's own. Every option is set before bind, on every socket,
// and the caller's own Control runs after them.
//
// # Options set, per OS
//
// The package sets exactly these options before bind ("-" clears one, so
// that Go's defaults cannot share what should not be shared; "none" sets
// nothing; "unsupported" fails with an error wrapping [errors.ErrUnsupported]):
//
//	OS              Mode       stream listener                 stream dialer                   datagram
//	linux,android   Share      SO_REUSEADDR+SO_REUSEPORT       SO_REUSEADDR+SO_REUSEPORT       -SO_REUSEADDR+SO_REUSEPORT
//	linux,android   Exclusive  SO_REUSEADDR-SO_REUSEPORT       -SO_REUSEADDR-SO_REUSEPORT      -SO_REUSEADDR-SO_REUSEPORT
//	freebsd         Share      SO_REUSEADDR+SO_REUSEPORT_LB    SO_REUSEADDR+SO_REUSEPORT       -SO_REUSEADDR+SO_REUSEPORT_LB
//	freebsd         Exclusive  SO_REUSEADDR-SO_REUSEPORT-SO_REUSEPORT_LB  -SO_REUSEADDR-SO_REUSEPORT-SO_REUSEPORT_LB  -SO_REUSEADDR-SO_REUSEPORT-SO_REUSEPORT_LB
//	darwin,ios,dragonfly,netbsd,openbsd,aix  Share      SO_REUSEADDR+SO_REUSEPORT  SO_REUSEADDR+SO_REUSEPORT  -SO_REUSEADDR+SO_REUSEPORT
//	darwin,ios,dragonfly,netbsd,openbsd,aix  Exclusive  SO_REUSEADDR-SO_REUSEPORT  -SO_REUSEADDR-SO_REUSEPORT  -SO_REUSEADDR-SO_REUSEPORT
//	windows         Share      SO_REUSEADDR                    SO_REUSEADDR                    SO_REUSEADDR
//	windows         Exclusive  SO_EXCLUSIVEADDRUSE             SO_EXCLUSIVEADDRUSE             SO_EXCLUSIVEADDRUSE
//	solaris,illumos Share      unsupported                     unsupported                     unsupported
//	solaris,illumos Exclusive  SO_REUSEADDR+SO_EXCLBIND        -SO_REUSEADDR+SO_EXCLBIND       -SO_REUSEADDR+SO_EXCLBIND
//	js,wasip1,plan9 (both)     unsupported                     unsupported                     unsupported
//
// A stream dialer is a socket of [Config.Dial] with a fixed local port; with
// none (laddr "" or port 0) Dial sets nothing, since the kernel's ephemeral
// port is never to be shared. [Config.Control] treats tcp as a listener.
// The Linux and Windows rows are checked by the tests against the options
// read back from real sockets.
//
// # Linux and Android
//
// SO_REUSEPORT (Linux 3.9+) makes a group of sockets on one address and port.
// Every member needs it before bind, the same effective UID, family and
// IPV6_V6ONLY; one socket without it closes the port to the others, and a
// process of another user is refused (EADDRINUSE), which stops a port from
// being hijacked by another user. The kernel spreads connections and
// datagrams across the group by a hash of the 4-tuple, so one client address
// and port always reaches the same member. A socket bound to a specific
// address takes that address's traffic from a wildcard group on the same
// port: "specific beats wildcard".
//
// Datagram sockets never carry SO_REUSEADDR under Share: on UDP it lets a
// process of any user bind the same port and take the traffic.
//
// Closing one member of a TCP group resets the connections still waiting in
// its accept queue, unless the sysctl net.ipv4.tcp_migrate_req is 1 (5.14+,
// per network namespace).
//
// Since Go 1.24, Linux listeners are MPTCP sockets where the kernel allows
// it; MPTCP and plain TCP listeners join one group. When a Control fails on
// an MPTCP socket, Go retries with plain TCP and calls Control again; the
// package's Control can be called any number of times on one socket.
//
// # FreeBSD, DragonFly, macOS, iOS, NetBSD, OpenBSD
//
// From the OS's documentation and sources; not run by the tests. SO_REUSEPORT
// lets sockets bind one address and port but does not balance, except on
// DragonFly (3.6+). macOS and iOS give unicast traffic to the last socket
// bound; NetBSD and OpenBSD to one socket. FreeBSD 12+ balances with
// SO_REUSEPORT_LB (at most 256 sockets a group, listening and bound datagram
// sockets only), which Share uses for listeners and datagram sockets.
// FreeBSD and OpenBSD refuse another user unless privileged. Under
// Exclusive, a BSD socket cannot stop another that sets SO_REUSEADDR from
// binding a more specific address on the same port: only the new socket's
// flag is checked.
//
// # Windows
//
// Share sets SO_REUSEADDR, which on Windows lets any socket, of any user and
// with no privilege, bind the port over an existing one; which socket then
// receives the traffic is undefined, and nothing is balanced. Exclusive sets
// SO_EXCLUSIVEADDRUSE, which forbids every other bind of the address, on the
// wildcard or a specific address: use it for any server that must not be
// hijacked.
//
// # Solaris and illumos
//
// Exclusive sets SO_EXCLBIND. Share fails with an error wrapping
// [errors.ErrUnsupported]: illumos has no SO_REUSEPORT, and golang.org/x/sys
// lacks the value of Solaris 11.4's.
//
// # AIX
//
// From IBM's documentation: SO_REUSEPORT shares the port, and balances
// since AIX 7.2.5.
//
// # Port 0
//
// With SO_REUSEPORT set, Linux may give a datagram socket bound to port 0 a
// port that another SO_REUSEPORT socket of the same user already holds, so
// that it silently joins that socket's group. Under Share, Listen and
// ListenPacket first bind port 0 without sharing, which gets a port nobody
// holds, close that socket and bind the shared one on its port. Between the
// two binds, one system call apart, another socket may still take the port;
// a bind refused then is retried on a new port.
//
// # Dialing from a shared port
//
// Several connections may leave from one local address and port to
// different remote addresses. A second connection between the same local
// and remote address and port would repeat the connection's 5-tuple;
// connect refuses it with EADDRINUSE, and Dial's error says so and still
// matches the errno with [errors.Is].
//
// # Errors
//
// Errors of Listen, ListenPacket and Dial are *net.OpError values naming the
// operation, network and address. A setsockopt failure wraps an
// *os.SyscallError and names the option; a mode the OS cannot deliver, and
// unix and ip networks, where there is no port, wrap [errors.ErrUnsupported].
// Messages of the package's own start with "reuse: ".
//
// # Restarts without losing a connection
//
// A new server process can join the port of the old one, which then leaves.
// On Linux, closing a listener that shares its port resets every connection
// still in its accept queue, unless net.ipv4.tcp_migrate_req is 1 (5.14+,
// per network namespace; [MigratesQueue] reads it). The handover avoids it
// without privilege: the new process calls [Listen] (with
// net.ListenConfig.SetMultipathTCP(false)) and [TakeOver], which attaches
// to the port's group a classic BPF program (SO_ATTACH_REUSEPORT_CBPF)
// that gives every new connection to the newest listener; the old process
// keeps accepting until [WaitDrained] sees its queue stay empty, then
// closes (http.Server.Shutdown); the new process calls [Takeover.Release].
// It needs exactly two listeners on the port, plain TCP, not MPTCP (the
// kernel refuses the program on MPTCP sockets with EOPNOTSUPP).
//
// Measured on Linux 6.18 under continuous load, 20 successive handovers
// between worker processes: zero connections lost with tcp_migrate_req=0
// and with 1, where closing the old listener at once, with 0, reset
// connections in every run. What remains: a handshake the old listener
// answered before the takeover whose final ACK arrives after it closed
// (lost and retransmitted, later than WaitDrained's quiet period) is reset
// when tcp_migrate_req is 0. The handover works on Linux only; elsewhere
// TakeOver and WaitDrained fail with an error wrapping [errors.ErrUnsupported].
//
// BUG(reuse): On js/wasm, wasip1 and plan9 there are no socket options: every
// call fails with an error wrapping [errors.ErrUnsupported].
package reuse
