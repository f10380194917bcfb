// Package sockdiag lists the sockets on a port, with their owners: the
// kernel's answer to "who holds this port", for the errors of the reuse
// package and for the reuse command's who; the members of a Handover's
// group; and the abstract Unix names where a Handover's processes meet. It
// is the one place that speaks NETLINK_SOCK_DIAG: on Linux it reads one
// dump per table, filtered by port in the kernel (inet) or by name here
// (Unix), and the processes from /proc/*/fd; elsewhere OnPort, DumpUnix
// and FindOwners return an error wrapping errors.ErrUnsupported.
package sockdiag

import (
	"net/netip"
	"strconv"
	"time"
)

// Socket is one socket on a port, as the kernel lists it.
type Socket struct {
	Proto  string         // "tcp" (MPTCP listeners included) or "udp"
	Local  netip.AddrPort // an IPv6 socket's address stays IPv6 (::ffff:a.b.c.d for a mapped one)
	Remote netip.AddrPort // the zero AddrPort unless connected
	V6Only bool           // an IPv6 socket that takes no IPv4 traffic
	State  State
	// Expires is the time left on the socket's timer: in TIME_WAIT, until
	// the kernel frees the port.
	Expires time.Duration
	UID     int    // the owner; -1 where the kernel owns it (TIME_WAIT)
	Inode   uint64 // 0 where the kernel owns it
	Ifindex int    // SO_BINDTODEVICE's interface, 0 if none
	// RecvQ and SendQ: for a listener, the connections waiting in its
	// accept queue and its backlog; for a UDP socket, the bytes queued to
	// be read and to be sent.
	RecvQ, SendQ uint32
	Drops        uint32 // datagrams the socket dropped (UDP; sk_drops)
}

// TimeWait reports whether s is a connection that the kernel keeps after
// its socket closed (inet_timewait_sock): in TIME_WAIT, or in FIN_WAIT2
// with no socket left (tcp_fin_timeout). Such a socket has no owner.
func (s Socket) TimeWait() bool {
	return s.State == TimeWait || s.State == FinWait2 && s.Inode == 0
}

// NoProcess says why no process can hold s, or "" if one may: a
// connection that waits in a listener's accept queue, or one that its
// process closed and the kernel finishes, has no socket of its own.
func (s Socket) NoProcess() string {
	switch {
	case s.Inode != 0:
		return ""
	case s.TimeWait():
		return "a closed connection, which the kernel keeps, has no process"
	case s.State == Established || s.State == SynRecv:
		return "a connection not yet accepted from a listener's queue"
	}
	return "a connection that its process closed and the kernel finishes"
}

// State is a TCP state, in the kernel's numbering (include/net/tcp_states.h).
// An unconnected UDP socket is Close, a connected one Established.
type State uint8

const (
	Established   State = 1
	SynSent       State = 2
	SynRecv       State = 3
	FinWait2      State = 5
	TimeWait      State = 6
	Close         State = 7
	Listen        State = 10
	NewSynRecv    State = 12
	BoundInactive State = 13 // a TCP socket bound and neither listening nor connected (Linux 6.3+)
)

var stateNames = [...]string{1: "ESTABLISHED", "SYN_SENT", "SYN_RECV", "FIN_WAIT1", "FIN_WAIT2", "TIME_WAIT", "CLOSE", "CLOSE_WAIT", "LAST_ACK", "LISTEN", "CLOSING", "NEW_SYN_RECV", "BOUND_INACTIVE"}

// String returns the kernel's name of s.
func (s State) String() string {
	if int(s) < len(stateNames) && stateNames[s] != "" {
		return stateNames[s]
	}
	return "state " + strconv.Itoa(int(s))
}

// Process is a process that holds a socket in its file descriptor table.
type Process struct {
	PID     int
	Command string // /proc/PID/comm
}

// Owners is what a look through /proc found for a set of sockets.
type Owners struct {
	// ByInode lists the processes holding each socket found, lowest pid first.
	ByInode map[uint64][]Process
	// Hidden counts the processes whose descriptors this process may not
	// read: another user's, without CAP_SYS_PTRACE.
	Hidden int
}

// Why says why FindOwners, which returned o and err to a process of user
// me, found no process holding s.
func (o Owners) Why(s Socket, me int, err error) string {
	switch {
	case s.NoProcess() != "":
		return s.NoProcess()
	case err != nil:
		return "cannot read /proc: " + err.Error()
	case s.UID != me && me != 0 && o.Hidden > 0:
		return "another user's process, which only root, with CAP_SYS_PTRACE, may look up"
	case o.Hidden > 0:
		return "in no process that this one may look at (" + strconv.Itoa(o.Hidden) + " hidden)"
	}
	return "in no process that can be seen here (another PID namespace?)"
}

// UnixSocket is a Unix socket bound to an abstract name, as the kernel
// lists it.
type UnixSocket struct {
	Name  string // the abstract name, without its leading NUL
	UID   int    // the owner: the user that made the socket
	Inode uint64
	State State // Listen, Close (bound, not listening) or Established (accepted or connected)
}
