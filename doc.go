// Package reuse lets servers share a local address and port between sockets
// and processes, or refuse to share it, with one meaning on every OS and an
// error wrapping [errors.ErrUnsupported] where the OS cannot deliver.
//
// # Quick start
//
// Run this program twice: both processes serve port 8080, and on Linux the
// kernel spreads the connections across them.
//
//	package main
//
//	import (
//		"fmt"
//		"log"
//		"net/http"
//		"os"
//
//		"github.com/sockreuse/reuse"
//	)
//
//	func main() {
//		ln, err := reuse.Listen("tcp", "127.0.0.1:8080")
//		if err != nil {
//			log.Fatal(err)
//		}
//		log.Fatal(http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
//			fmt.Fprintf(w, "hello from process %d\n", os.Getpid())
//		})))
//	}
//
// # Two modes
//
// A [Config] names what is wanted, a [Mode]:
//
//   - [Share] (the zero value): sockets of the same user may bind the same
//     address and port. Where the OS balances, it spreads connections and
//     datagrams across them, so that several processes, or one accept loop
//     per core, serve one port. Nothing keeps out another process of the
//     same user: a server that must not share with one uses Exclusive.
//   - [Exclusive]: no other socket may bind the address and port, where the
//     OS can enforce it; a restarted server still binds while its old
//     connections sit in TIME_WAIT.
//
// [Listen], [ListenPacket] and [Dial] mirror package net, with the zero
// Config. [Config.Control] fits the Control field of a [net.ListenConfig]
// of the caller's own, [Config.DialerControl] that of a [net.Dialer]. The
// caller's own Control runs after the package's options. Errors are
// [*net.OpError] values that wrap the OS's error, so that [errors.Is]
// matches syscall.EADDRINUSE for a port in use and [errors.ErrUnsupported]
// for what the OS cannot do.
//
// # Beyond one socket
//
// Each feature is described where it is declared:
//
//   - Groups: [Config.ListenGroup] and [Config.ListenPacketGroup] open n
//     sockets on one port, all or none, for one loop per core.
//     [BalancingHere] says whether the OS spreads the work across them.
//   - Port 0: [Config.Listen] never hands back a port that another socket
//     shares; [Config.Control] cannot promise that.
//   - Busy ports: [RetryPolicy] and Config.Fallback, for a port still held
//     by the process being replaced.
//   - Dialing from a shared local port: [Config.Dial].
//   - Multicast: [Config.ListenMulticastUDP], every receiver its own copy.
//   - Steering (Linux): [Steering], [Steer], and for QUIC [QUICSteering]
//     with [QUICConnectionIDs], so that a connection survives its client's
//     move to a new address.
//   - Restarts that lose no connection or datagram (Linux): [Handover];
//     for a net/http server, the sub-package reusehttp stops it without
//     dropping a connection it accepted.
//   - UDP flows (Linux): [ListenFlows] gives one connected socket, a
//     net.Conn, per client address, whose flow a restart keeps.
//
// # Per OS
//
// The facts of each OS are here, once. The two tables are checked against
// the code for every GOOS by the tests; what Linux does is measured by them,
// what the other OSes do is from their documentation and sources.
//
// What Share gives, as [BalancingHere] reports it (a hash of the 4-tuple
// keeps each client address and port on one member):
//
//	GOOS             option           balances  a member is picked by
//	linux android    SO_REUSEPORT     yes       hash of the 4-tuple
//	freebsd          SO_REUSEPORT_LB  yes       hash of the 4-tuple
//	dragonfly        SO_REUSEPORT     yes       hash of the 4-tuple
//	aix              SO_REUSEPORT     yes       hash of the 4-tuple (AIX 7.2.5 and later)
//	darwin ios       SO_REUSEPORT     no        the last socket bound
//	netbsd openbsd   SO_REUSEPORT     no        one socket of the group
//	windows          SO_REUSEADDR     no        undefined: one socket of the group
//	solaris illumos  -                no        Share is not supported: no SO_REUSEPORT in golang.org/x/sys
//	js wasip1 plan9  -                no        Share is not supported: no socket options on GOOS
//
// The options set, by Mode and kind of socket: a listener of Listen, a
// datagram socket of ListenPacket, a dialer of Dial with a fixed local port
// (with none, Dial sets nothing), a multicast receiver. "=0" clears an
// option that Go's defaults would set; "unsupported" is an error wrapping
// [errors.ErrUnsupported]. [Config.Control] treats tcp as a listener.
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
// Linux and Android: the members of a group need SO_REUSEPORT (Linux 3.9+),
// the same effective UID, family and IPV6_V6ONLY: another user's bind is
// refused, and a socket without it closes the port to the others. A socket bound to a specific address
// takes that address's traffic from a wildcard group on its port. Closing a
// member of a TCP group resets the connections in its accept queue, unless
// net.ipv4.tcp_migrate_req is 1 (Linux 5.14+). Share datagram sockets clear
// SO_REUSEADDR, which would let any user take their traffic; multicast
// receivers need it, and with it another user can take their unicast
// datagrams: use Exclusive where that matters. In modules whose go line is
// 1.24 or later, listeners are MPTCP where the kernel allows it; they join
// one group with plain TCP listeners, and Control may run twice on one
// socket.
//
// FreeBSD 12+ balances only listening and bound datagram sockets, at most
// 256 a group, with SO_REUSEPORT_LB. FreeBSD and OpenBSD refuse another
// user unless privileged. On the BSDs and macOS, Exclusive cannot stop a
// socket with SO_REUSEADDR from binding a more specific address on its port.
//
// Windows: under Share, any socket that sets SO_REUSEADDR, of any user and
// with no privilege, can bind the port over an existing one. Exclusive's
// SO_EXCLUSIVEADDRUSE forbids every other bind of the address (WSAEACCES
// for a socket with SO_REUSEADDR, which [RetryPolicy] does not retry;
// WSAEADDRINUSE otherwise): use it for a server that must not be hijacked.
//
// Solaris and illumos cannot share a unicast port (illumos has no
// SO_REUSEPORT; golang.org/x/sys lacks Solaris 11.4's); a multicast port
// is shared with SO_REUSEADDR alone, as in package net.
package reuse
