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
// The package sets exactly these options, by Mode and kind of socket: a
// listener of Listen, a datagram socket of ListenPacket, a dialer of Dial
// with a fixed local port, a multicast receiver of ListenMulticastUDP. "=0"
// clears an option, so that Go's defaults cannot share what should not be
// shared; "unsupported" fails with an error wrapping [errors.ErrUnsupported].
// A test reads this list and compares every row with the code, for every OS.
//
// linux android aix darwin ios dragonfly netbsd openbsd:
//
//	Share      listener   SO_REUSEADDR=1 SO_REUSEPORT=1
//	           dialer     SO_REUSEADDR=1 SO_REUSEPORT=1
//	           datagram   SO_REUSEADDR=0 SO_REUSEPORT=1
//	           multicast  SO_REUSEADDR=1 SO_REUSEPORT=1
//	Exclusive  listener   SO_REUSEADDR=1 SO_REUSEPORT=0
//	           dialer     SO_REUSEADDR=0 SO_REUSEPORT=0
//	           datagram   SO_REUSEADDR=0 SO_REUSEPORT=0
//	           multicast  SO_REUSEADDR=0 SO_REUSEPORT=0
//
// freebsd:
//
//	Share      listener   SO_REUSEADDR=1 SO_REUSEPORT_LB=1
//	           dialer     SO_REUSEADDR=1 SO_REUSEPORT=1
//	           datagram   SO_REUSEADDR=0 SO_REUSEPORT_LB=1
//	           multicast  SO_REUSEADDR=1 SO_REUSEPORT=1
//	Exclusive  listener   SO_REUSEADDR=1 SO_REUSEPORT=0 SO_REUSEPORT_LB=0
//	           dialer     SO_REUSEADDR=0 SO_REUSEPORT=0 SO_REUSEPORT_LB=0
//	           datagram   SO_REUSEADDR=0 SO_REUSEPORT=0 SO_REUSEPORT_LB=0
//	           multicast  SO_REUSEADDR=0 SO_REUSEPORT=0 SO_REUSEPORT_LB=0
//
// windows:
//
//	Share      listener   SO_REUSEADDR=1
//	           dialer     SO_REUSEADDR=1
//	           datagram   SO_REUSEADDR=1
//	           multicast  SO_REUSEADDR=1
//	Exclusive  listener   SO_EXCLUSIVEADDRUSE=1
//	           dialer     SO_EXCLUSIVEADDRUSE=1
//	           datagram   SO_EXCLUSIVEADDRUSE=1
//	           multicast  SO_EXCLUSIVEADDRUSE=1
//
// solaris illumos:
//
//	Share      listener   unsupported
//	           dialer     unsupported
//	           datagram   unsupported
//	           multicast  SO_REUSEADDR=1
//	Exclusive  listener   SO_REUSEADDR=1 SO_EXCLBIND=1
//	           dialer     SO_REUSEADDR=0 SO_EXCLBIND=1
//	           datagram   SO_REUSEADDR=0 SO_EXCLBIND=1
//	           multicast  SO_REUSEADDR=0 SO_EXCLBIND=1
//
// js wasip1 plan9: every row unsupported (no socket options).
//
// Every option is set before bind, except under Share with port 0 on
// Linux and Android (see "Port 0"). Dial with no fixed local port (laddr ""
// or port 0) sets nothing, since the kernel's ephemeral port is never to be
// shared. [Config.Control] treats tcp as a listener,
// [Config.DialerControl] as a dialer. The Linux rows are also checked by
// the tests against the options read back from real sockets.
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
// With SO_REUSEPORT set before bind, Linux may give a socket bound to port 0
// a port that another SO_REUSEPORT socket of the same user already holds
// (measured on UDP), so that it silently joins that socket's group. Port 0
// is any address whose port net reads as 0: "", "host:", "host:0". Under
// Share, on Linux and Android, Listen and ListenPacket bind port 0 with
// nothing shared, which gets a port nobody holds, and set the sharing
// options right after bind: later sockets join as usual. Elsewhere, where
// this is not measured, and where the ListenConfig has a Control of the
// caller's (promised every option before it runs), they first bind port 0
// without sharing, close that socket and bind the shared one on its port;
// a bind refused between the two is retried on a new port. Groups,
// Fallback entries and multicast receivers with port 0 are handled alike.
// [Config.Control] runs before bind and cannot do this: use it with a fixed
// port.
//
// # Groups and balancing
//
// [Config.ListenGroup] and [Config.ListenPacketGroup] open n sockets on one
// address and port in one call, all or none, so that a server can run one
// accept or read loop per core. Port 0 is resolved once, to a port that no
// other socket holds. Sharing is only worth it where the OS spreads the work;
// [BalancingHere] says whether it does, probed once on this kernel, and
// [Config.RequireBalancing] refuses, with an error wrapping
// [errors.ErrUnsupported], to open a group that the OS would not balance:
//
//	OS                       shares with       balances  picks a member by
//	linux, android (3.9+)    SO_REUSEPORT      yes       hash of the 4-tuple
//	freebsd (12+)            SO_REUSEPORT_LB   yes       hash of the 4-tuple
//	dragonfly                SO_REUSEPORT      yes       hash of the 4-tuple
//	aix                      SO_REUSEPORT      yes       hash of the 4-tuple (7.2.5+)
//	darwin, ios              SO_REUSEPORT      no        the last socket bound
//	netbsd, openbsd          SO_REUSEPORT      no        one socket of the group
//	windows                  SO_REUSEADDR      no        undefined: one socket
//	solaris, illumos         (Share unsupported)
//	js, wasip1, plan9        (no socket options)
//
// On Linux the tests measure it: 4,000 connections, and 4,000 datagrams,
// each from its own source port, spread over a group of 4 with every member
// within 20% of the mean; every datagram of one connected source reaches the
// same member; closing one member leaves the others taking all the traffic.
// The other rows are from the OSes' documentation and sources, not run by the
// tests. FreeBSD's row is from its sources (sys/netinet/in_pcb.c):
// SO_REUSEPORT_LB groups only listening and bound datagram sockets, at most
// 256 of them, so Share sets it on those and plain SO_REUSEPORT on dialers;
// the package is only compile-checked for FreeBSD. Where the option that
// Share sets is missing (Linux before 3.9, FreeBSD before 12), the probe
// finds it so and [BalancingHere] reports that the OS does not share.
//
// # Dialing from a shared port
//
// Several connections may leave from one local address and port to
// different remote addresses. A second connection between the same local
// and remote address and port would repeat the connection's 5-tuple, and
// connect refuses it: Linux with EADDRNOTAVAIL (measured on 6.18, whatever
// the options), the BSDs and Windows with EADDRINUSE. The earlier
// connection may still be open, or closed and in TIME_WAIT, which on Linux
// lasts 60 s on the side that closed first. Dial's error then says so,
// wraps the OS's errno, and also matches EADDRINUSE with [errors.Is] on
// every OS. Connected UDP sockets on Linux may repeat a 4-tuple: the second
// connect succeeds.
//
// A fixed local port also meets TIME_WAIT at bind: under Share (with
// SO_REUSEADDR) a dialer binds a local port that a closed connection holds
// in TIME_WAIT, but an Exclusive dialer, which clears SO_REUSEADDR, is
// refused with EADDRINUSE until TIME_WAIT ends. To dial from a fixed port
// with a net.Dialer of one's own, set its Control to [Config.DialerControl];
// with no fixed port, set no Control at all.
//
// # Errors
//
// Errors of Listen, ListenPacket, Dial and the group and multicast
// functions are *net.OpError values naming the operation, network and
// address. A refused bind names the Mode and the options the socket
// carried; a setsockopt failure wraps an *os.SyscallError and names the
// option; a mode the OS cannot deliver, and unix and ip networks, where
// there is no port, wrap [errors.ErrUnsupported]. Messages of the package's
// own start with "reuse: ", once. A nil context.Context is an error, not a
// panic, in every function that takes one. Control and DialerControl
// return the bare error, which net wraps in its own *net.OpError.
//
// # Multicast
//
// [Config.ListenMulticastUDP] and [ListenMulticastUDP] mirror
// net.ListenMulticastUDP with the options of a Mode (column "multicast"
// above). Under Share, every socket and process that joins a group on a port
// receives its own copy of each datagram to the group, and a unicast
// datagram to the port still reaches one of them; under Exclusive, no other
// socket can bind the port. The socket is bound to the wildcard address of
// the group's port, as in package net (which binds the wildcard before any
// Control runs), so an Exclusive receiver holds the port on every address.
//
// Unlike unicast datagram sockets, multicast receivers carry SO_REUSEADDR
// under Share on Linux too: it is what lets applications of different users
// receive one group. It also lets a process of any user bind the port and
// take unicast datagrams sent to it.
//
// On Linux, a socket bound to the wildcard receives by default the
// datagrams of every group that any socket of the host joined on its port;
// the package clears IP_MULTICAST_ALL and IPV6_MULTICAST_ALL (Linux 4.20+;
// older kernels deliver them), so that a receiver gets only its own groups.
// Unlike net.ListenMulticastUDP, IP_MULTICAST_LOOP is left on, so that what
// one receiver sends to the group reaches the others on the host.
// The Linux behaviour is checked by the tests in a private network
// namespace; the other OSes follow their documentation. Solaris and illumos
// share a multicast port with SO_REUSEADDR alone, as Go's net does there.
//
// # Busy ports
//
// A restarted server may find its port still held, for a moment, by the
// process it replaces. [Config.Retry] makes Listen and ListenPacket try a
// bind refused with EADDRINUSE again, after waits that double from
// [RetryPolicy.Initial] up to [RetryPolicy.Max], each drawn at random from
// its upper half so that servers restarted together do not retry in step,
// until the attempts are spent or the context is done. [Config.Fallback]
// names other addresses tried in order after the first; the first that
// binds wins. When none binds, the error lists every address, how often it
// was tried and why it failed, then the context's error if it ended the
// tries; errors.Is matches each. The zero Config tries once, as net does.
// On Windows an address held exclusively refuses with WSAEACCES, which is
// not retried.
//
// # Security
//
// What a neighbour on the same machine can do to a port the package holds,
// and what the package does about it. "Refused" means the bind fails with
// EADDRINUSE; every Linux row is run by the tests, as root with a second
// process as uid 65534, and the wildcard rows in a private network namespace:
//
//	Attempt                                                   Linux     What the package does
//	another user joins a Share TCP group                      refused   nothing needed: SO_REUSEPORT admits one effective UID
//	another user joins a Share UDP socket                     refused   nothing needed: as above
//	another user binds the UDP port with SO_REUSEADDR         refused   Share datagram sockets clear SO_REUSEADDR
//	                                                                    (a plain socket with SO_REUSEADDR is taken over:
//	                                                                    uid 65534 received the datagrams sent to it)
//	same user binds 127.0.0.1:P under an Exclusive 0.0.0.0:P  refused   Exclusive clears SO_REUSEPORT (and, on UDP, SO_REUSEADDR)
//	same user binds 127.0.0.1:P under a Share 0.0.0.0:P       allowed   none possible: it takes that address's connections
//	same user joins a Share group                             allowed   none possible: that is what Share means
//	another user binds a Share multicast receiver's port      allowed   none under Share: receivers of a group need SO_REUSEADDR,
//	with SO_REUSEADDR, and takes its unicast datagrams                  so the port is open to all; use Exclusive
//
// The OS cannot keep a process of the same user out of a Share group, nor
// stop it from binding a specific address on a Share wildcard's port: a
// server that must not share with its own user's other processes uses
// Exclusive, or runs as a user of its own.
//
// On Windows, Share sets SO_REUSEADDR, which lets any socket, of any user
// and without privilege (from Microsoft's documentation; the tests show it
// for a socket of the same user), bind the port over it: the package cannot
// prevent that. Exclusive sets SO_EXCLUSIVEADDRUSE, and a socket with SO_REUSEADDR
// binding its address is refused with WSAEACCES, a plain one with
// WSAEADDRINUSE; the tests run this under Wine, as one user, since Wine
// cannot run a process as another. From their documentation: FreeBSD and
// OpenBSD refuse another user unless privileged; on the BSDs and macOS,
// Exclusive cannot stop a socket with SO_REUSEADDR from binding a more
// specific address on its port.
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
