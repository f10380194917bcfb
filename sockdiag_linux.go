package reuse

import (
	"net/netip"
	"os"

	"golang.org/x/sys/unix"

	"github.com/sockreuse/reuse/internal/sockdiag"
)

// From include/net/tcp_states.h.
const (
	tcpListen = int(sockdiag.Listen) // TCP_LISTEN: a listener's state
	tcpClose  = int(sockdiag.Close)  // TCP_CLOSE: an unconnected UDP socket's state
)

// diagSockets returns the inodes of this user's sockets of protocol proto
// (IPPROTO_TCP or IPPROTO_UDP) in state, bound to the IPv4 or IPv6 address
// addr and port and to the interface ifindex (0: none) and connected to
// nobody, in the order of the kernel's hash
// chain, from one NETLINK_SOCK_DIAG dump (sockdiag.Dump). The dump filters
// by port in the kernel and, by the kernel's source (udp_dump,
// inet_diag_dump_icsk), reads each hash chain under its lock: all of a
// group (one chain) is read at once while its matches fit the dump's first
// buffer, some 4 KB, which holds 29 answers of 124 bytes (an IPv4 socket's,
// measured). /proc/net lists a table a page at a time, resuming by
// position, so that a socket that leaves meanwhile shifts another one past
// the cut (seen: TestHandoverSteering).
func diagSockets(proto, state int, addr []byte, port, ifindex int) ([]uint64, error) {
	family := uint8(unix.AF_INET)
	if len(addr) == 16 {
		family = unix.AF_INET6
	}
	local, _ := netip.AddrFromSlice(addr)
	uid := os.Geteuid()
	var inos []uint64
	q := sockdiag.Query{Family: family, Proto: proto, States: 1 << state, Port: port}
	err := sockdiag.Dump(q, func(s sockdiag.Socket) {
		// A socket bound to another interface is in no group with
		// these (a FlowListener's flow socket before its connect).
		if s.UID == uid && s.Local.Addr() == local && !s.Remote.IsValid() && s.Ifindex == ifindex {
			inos = append(inos, s.Inode)
		}
	})
	return inos, err
}

// abstractNames returns the abstract Unix socket names of the network
// namespace that start with prefix and belong to a socket of this user
// (sockdiag.DumpUnix): any user may bind any abstract name, but the owner
// the kernel reports (the socket's creator) tells this user's sockets from
// a stranger's. Names are returned without the leading NUL, as many times
// as sockets hold them: the one bound to it, and the connections a listener
// accepted, which carry its name (TestDumpUnix).
func abstractNames(prefix string) ([]string, error) {
	uid := os.Geteuid()
	var names []string
	err := sockdiag.DumpUnix(prefix, func(s sockdiag.UnixSocket) {
		if s.UID == uid {
			names = append(names, s.Name)
		}
	})
	return names, err
}
