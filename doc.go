// Package reuse lets servers share a local address and port between sockets
// and processes, or refuse to share it, with the same meaning on every OS and
// an error wrapping [errors.ErrUnsupported] where the OS cannot deliver.
//
// Every worker process of a server runs this, and they all serve port 8080;
// on Linux the kernel spreads the connections across them, and a new
// process can join the port before the old one leaves:
//
//	ln, err := reuse.Listen("tcp", ":8080")
//	if err != nil {
//		log.Fatal(err)
//	}
//	log.Fatal(http.Serve(ln, handler))
//
// A server that must not share its port, even with a socket that asks to:
//
//	cfg := reuse.Config{Mode: reuse.Exclusive}
//	ln, err := cfg.Listen(ctx, "tcp", ":443")
//
// # Sharing
//
// Two sockets may bind the same IP address and port only when the OS is told
// so, and each OS means something different by it. A [Config] names what is
// wanted, a [Mode]:
//
//   - [Share] (the zero value): sockets of the same user may bind the same
//     address and port. Where the OS balances, connections and datagrams are
//     spread across them, so several processes, or one accept loop per
//     core, serve one port.
//   - [Exclusive]: no other socket may bind the address and port, where the
//     OS can enforce it; a server restarted on its port still binds while
//     its old connections sit in TIME_WAIT.
//
// [Listen], [ListenPacket] and [Dial] mirror the functions of package net;
// [Config.Control] fits the Control field of a [net.ListenConfig] of the
// caller's own, [Config.DialerControl] that of a [net.Dialer]. Every option
// is set before bind (but see "Port 0" for Share with port 0 on Linux), on
// every socket, and the caller's own Control runs after them.
//
// The repository's README says which of these rules the tests measure on
// which OS, and with what figures.
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
// From the OS's documentation and sources. SO_REUSEPORT lets sockets bind
// one address and port but does not balance, except on DragonFly (3.6+).
// macOS and iOS give unicast traffic to the last socket bound; NetBSD and
// OpenBSD to one socket. FreeBSD 12+ balances with SO_REUSEPORT_LB (at most
// 256 sockets a group, listening and bound datagram sockets only), which
// Share uses for listeners and datagram sockets. FreeBSD and OpenBSD refuse
// another user unless privileged. Under Exclusive, a BSD socket cannot stop
// another that sets SO_REUSEADDR from binding a more specific address on
// the same port: only the new socket's flag is checked.
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
// [errors.ErrUnsupported], to open a group that the OS would not balance.
// From the OSes' documentation and sources:
//
//   - Linux, Android (3.9+): SO_REUSEPORT balances by a hash of the 4-tuple.
//   - FreeBSD (12+): SO_REUSEPORT_LB balances by a hash of the 4-tuple; it
//     groups only listening and bound datagram sockets, at most 256, so
//     Share sets plain SO_REUSEPORT on dialers (sys/netinet/in_pcb.c).
//   - DragonFly: SO_REUSEPORT balances by a hash of the 4-tuple.
//   - AIX (7.2.5+): SO_REUSEPORT balances by a hash.
//   - macOS, iOS: SO_REUSEPORT shares without balancing; the last socket
//     bound gets the traffic.
//   - NetBSD, OpenBSD: SO_REUSEPORT shares without balancing; one socket of
//     the group gets the traffic.
//   - Windows: SO_REUSEADDR shares without balancing; which socket gets the
//     traffic is undefined.
//   - Solaris, illumos: Share is not supported.
//   - js, wasip1, plan9: no socket options.
//
// Where the option that Share sets is missing (Linux before 3.9, FreeBSD
// before 12), [BalancingHere] finds it so and reports that the OS does not
// share.
//
// # Dialing from a shared port
//
// Several connections may leave from one local address and port to different
// remote addresses. A second connection between the same local and remote
// address and port would repeat the connection's 5-tuple, and connect
// refuses it: Linux with EADDRNOTAVAIL (whatever the options), the BSDs and
// Windows with EADDRINUSE. The earlier connection may still be open, or
// closed and in TIME_WAIT, which on Linux lasts 60 s on the side that closed
// first. Dial's error then says so, wraps the OS's errno, and also matches
// EADDRINUSE with [errors.Is] on every OS. Connected UDP sockets on Linux
// may repeat a 4-tuple: the second connect succeeds.
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
// [net.ListenMulticastUDP] with the options of a Mode (column "multicast"
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
// Unlike [net.ListenMulticastUDP], IP_MULTICAST_LOOP is left on, so that what
// one receiver sends to the group reaches the others on the host.
// Other OSes are described from their documentation. Solaris and illumos
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
// tries; [errors.Is] matches each. The zero Config tries once, as net does.
// On Windows an address held exclusively refuses with WSAEACCES, which is
// not retried.
//
// # Security
//
// What a neighbour on the same machine can do to a port the package holds,
// on Linux, and what the package does about it. "Refused" means the bind
// fails with EADDRINUSE.
//
//   - Another user joins a Share TCP group or UDP socket: refused, since
//     SO_REUSEPORT admits one effective UID.
//   - Another user binds a Share UDP port with SO_REUSEADDR: refused, since
//     Share datagram sockets clear SO_REUSEADDR. (A plain socket with
//     SO_REUSEADDR is taken over: the other user receives its datagrams.)
//   - The same user binds 127.0.0.1:P under an Exclusive 0.0.0.0:P: refused;
//     Exclusive clears SO_REUSEPORT (and, on UDP, SO_REUSEADDR).
//   - The same user binds 127.0.0.1:P under a Share 0.0.0.0:P: allowed, and
//     it takes that address's connections; nothing can prevent it.
//   - The same user joins a Share group: allowed; that is what Share means.
//   - Another user binds a Share multicast receiver's port with
//     SO_REUSEADDR and takes its unicast datagrams: allowed, since the
//     receivers of a group need SO_REUSEADDR. Use Exclusive.
//
// The OS cannot keep a process of the same user out of a Share group, nor
// stop it from binding a specific address on a Share wildcard's port: a
// server that must not share with its own user's other processes uses
// Exclusive, or runs as a user of its own.
//
// On Windows, Share sets SO_REUSEADDR, which lets any socket, of any user
// and without privilege, bind the port over it (from Microsoft's
// documentation): the package cannot prevent that. Exclusive sets
// SO_EXCLUSIVEADDRUSE, and a socket with SO_REUSEADDR binding its address
// is refused with WSAEACCES, a plain one with WSAEADDRINUSE. From their
// documentation: FreeBSD and OpenBSD refuse another user unless
// privileged; on the BSDs and macOS, Exclusive cannot stop a socket with
// SO_REUSEADDR from binding a more specific address on its port.
//
// # Steering
//
// A UDP group spreads datagrams by a hash of their addresses, which breaks a
// flow whose client address or port changes: QUIC connection migration and
// NAT rebinding send its packets to a member that does not know it. On
// Linux (4.5+), [Steer] makes the kernel pick the member from the
// datagram's own payload instead, without privilege: a [Steering] names the
// payload byte that holds the member's index, and datagrams without it go
// by the hash. It attaches a classic BPF program (SO_ATTACH_REUSEPORT_CBPF)
// to the group, through any member, in any process of the group's user;
// [Unsteer] (5.3+) removes it. Elsewhere both fail with an error wrapping
// [errors.ErrUnsupported]. With [Config.Steering] set, ListenPacket and
// ListenPacketGroup return sockets already steered, and where the OS
// cannot steer they fail before any socket is opened.
//
// For QUIC, [QUICSteering] sends a short-header packet to the member named
// by its destination connection ID, and a long-header packet (a handshake,
// which does not migrate) by the hash; [QUICConnectionIDs] makes IDs that
// name the member: its index, a generation, then random bytes (48 bits in
// the default 8 bytes). A 5-line adapter makes it quic-go's
// ConnectionIDGenerator (see the repository's examples/quic, where 100 of
// 100 quic-go connections survive migrating to a new client port on a
// steered group of 4, and about a quarter on a hashed one).
//
// A member's index is its place in the order the members joined. A member
// that joins takes the next index; when a member closes, the kernel moves
// the last member into its index, so the datagrams named for the closed
// member reach that one, and those named for the last index (the moved
// member's flows) go by the hash: close members from the last one joined.
// All of this is run by the tests, with members in one process and in
// several; the program's cost is in the README (bench/steer.sh).
// A steered QUIC server restarts without breaking a connection with a
// [Handover] whose Steering is set (see the next section).
//
// # Restarts without losing a connection
//
// On Linux, closing a listener that shares its port resets every connection
// still in its accept queue, unless net.ipv4.tcp_migrate_req is 1 (5.14+,
// per network namespace), and closing a datagram socket drops what it has
// not read. A [Handover] avoids both without privilege: every process of a
// server makes one, opens its sockets with [Listen] or [ListenGroup] (MPTCP
// listeners, Go's default since 1.24, included) and calls
// [Handover.TakeOver]. The first process returns at once; a later one,
// started beside the old one (no parent/child relation needed), meets it at
// an abstract Unix socket named after the user, the address and
// [Handover.Slot] (each checks that the other runs as the same user), and
// attaches to the port's group a classic BPF program
// (SO_ATTACH_REUSEPORT_CBPF) that gives every new connection to the new
// sockets. The old process serves what its queues hold until they stay
// empty for [Handover.Quiet], then [Handover.Replaced] tells it to shut down;
// once it has let go (closed, or exited), the new process restores the
// kernel's hash and TakeOver returns. A crash of either side leaves the
// port served, and no program pointing at a member that left. A group of
// worker processes gives each worker a Slot: a new worker takes over from
// the one in its slot only, while the others go on sharing the load. The
// new process finds where the old sockets sit in the group (the kernel
// moves members when one leaves) with probes: a connection or an empty
// datagram, steered to one slot. UDP sockets
// ([ListenPacket], [ListenPacketGroup]) are handed over the same way: new
// datagrams go to the new sockets by a hash of their source, so that a flow
// stays on one socket, and the old ones read what they hold.
//
// The tests replace one listener, a group in one process, worker processes
// and UDP sockets under continuous load, with tcp_migrate_req 0 and 1, MPTCP
// and plain TCP, without a lost connection or datagram (figures in the
// repository's README and RESTARTS.md). What remains: a
// handshake the old listener answered before the takeover whose final ACK
// arrives later than Quiet (lost and retransmitted) is reset when
// tcp_migrate_req is 0; where every socket of the new process is MPTCP, the
// program is attached through a plain-TCP member that joins the group for
// the handover and drops the few SYNs the kernel's hash gives it before the
// program is in place or after it is removed, which the clients send again
// a second later; while the old sockets close, new connections go to one
// new socket of each kind that cannot move (for a group of k replaced by k,
// one), whose queue must hold them for that long. Elsewhere TakeOver fails
// with an error wrapping [errors.ErrUnsupported].
//
// A QUIC server's connections live in its members, not in the kernel: they
// must stay on the old process until it ends them. A Handover with
// [Handover.Steering] set (to [QUICSteering]) keeps the group steered by
// connection ID through the restart: the new process's members issue IDs
// of the next generation ([Handover.Generation], in
// [QUICConnectionIDs].Generation), and until the old members are gone a
// program attached by the new process sends each short-header packet to
// the member, old or new, that its ID's member and generation name, and
// every handshake to a new member, by its source port. Replaced then tells
// the old process that no new handshake reaches it; it stops accepting,
// serves its live connections until they end (or a deadline of its own),
// and closes its sockets from the last member down, after each of which
// the new process attaches the program again (within milliseconds, during
// which the moved member's packets go by the hash and QUIC sends them
// again); in the end the group is steered by QUICSteering alone. The UDP
// probes never reach quic-go (the old sockets filter them out; quic-go
// v0.61 also drops an empty datagram). The tests run it over IPv4 and IPv6
// and kill the new process midway (the old one steers its members again);
// examples/quic restarts 4 quic-go transports under 100 live connections
// that echo and migrate during the handover: 100 of 100 kept, and 100 of
// 100 new ones on the new generation.
package reuse

// BUG(reuse): On js/wasm, wasip1 and plan9 there are no socket options: every
// call fails with an error wrapping errors.ErrUnsupported.
