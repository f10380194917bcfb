package reuse

import (
	"net"
	"time"

	"golang.org/x/sys/unix"
)

// handoverState is a process's side of the handovers of one Handover: the
// sockets given to TakeOver as the kernel sees them (handover_group_linux.go),
// the meeting place (rendezvous_linux.go), and what each side of a handover
// needs (handover_successor_linux.go, handover_predecessor_linux.go).
type handoverState struct {
	g     *sockGroup
	socks []sockInfo
	sa    unix.Sockaddr // the local address, for the helper and members
	v6    bool          // IPV6_V6ONLY of the sockets
	dev   string        // SO_BINDTODEVICE of the sockets
	rv    *net.UnixListener
	base  string // the prefix of the abstract names
	slot  string
	quiet time.Duration
	// The successor's probes: filtered, a filter on the datagram sockets;
	// userMSS, the listeners' TCP_MAXSEG before them.
	filtered bool
	userMSS  []int
	// noSockDiag: a sock_diag dump failed, members reads /proc.
	noSockDiag bool
	steering   *Steering // Handover.Steering
	gen        int       // the generation of the sockets' connection IDs
	// follow, if set, follows the old members' leaves after a handover
	// under a Steering, until they are gone or stop is closed.
	follow func(stop <-chan struct{})
}

func (st *handoverState) generation() int { return st.gen }
