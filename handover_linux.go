package reuse

import (
	"errors"
	"net"
	"os"
	"sync"
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
	// at: where this process's sockets sit in the kernel's array of the
	// group, as far as it knows: where its predecessor's were, which its
	// sockets took as those left (see steer); nil where unknown.
	at  []int
	gen int // the generation of the sockets' connection IDs
	// follow, if set, follows the old members' leaves after a handover
	// under a Steering, until they are gone or stop is closed.
	follow func(stop <-chan struct{})
	// The old process (0 if none), and a channel closed once it let go of
	// its sockets.
	oldPid   int
	released chan struct{}
	once     sync.Once
}

// markReleased says that the old process let go of its sockets.
func (st *handoverState) markReleased() { st.once.Do(func() { close(st.released) }) }

func (st *handoverState) generation() int { return st.gen }

// waitOldExit waits until the old process let go of its sockets and
// exited, or until stop; it reports which. An old process that is this
// one (two Handovers in one process) is done once it let go.
func (st *handoverState) waitOldExit(stop <-chan struct{}) bool {
	select {
	case <-st.released:
	case <-stop:
		return false
	}
	if st.oldPid == 0 || st.oldPid == os.Getpid() {
		return true
	}
	return waitExit(st.oldPid, stop)
}

// waitExit waits until process pid exited, or until stop; it reports
// which. It watches a pidfd (Linux 5.3+), else signal 0's answer.
func waitExit(pid int, stop <-chan struct{}) bool {
	fd, err := unix.PidfdOpen(pid, 0)
	if testNoPidfd && err == nil {
		unix.Close(fd)
		fd, err = -1, unix.ENOSYS
	}
	switch {
	case errors.Is(err, unix.ESRCH):
		return true
	case err != nil:
		fd = -1
	default:
		defer unix.Close(fd)
	}
	for {
		if fd >= 0 {
			if n, _ := unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, 0); n > 0 {
				return true
			}
		} else if errors.Is(unix.Kill(pid, 0), unix.ESRCH) {
			return true
		}
		select {
		case <-stop:
			return false
		case <-time.After(exitPoll):
		}
	}
}

// testNoPidfd, if set, makes waitExit do as where the kernel has no pidfd.
var testNoPidfd bool

// exitPoll is how often waitExit looks.
const exitPoll = 5 * time.Millisecond
