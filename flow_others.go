//go:build !linux

package reuse

import (
	"errors"
	"fmt"
	"net"
	"runtime"
)

// canListenFlows refuses: no other OS is known here to give a connected UDP
// socket on a shared port its remote's datagrams ahead of the port's other
// sockets. (FreeBSD's and the other BSDs' sources look a datagram up by its
// four addresses first, then by the local address, but whether a
// SO_REUSEPORT_LB group gives way to a connected member is not documented,
// and is not tested here.)
func canListenFlows() error {
	return fmt.Errorf("UDP flows need Linux, not %s: %w", runtime.GOOS, errors.ErrUnsupported)
}

// flowState records Close only: ListenFlows fails here, and no flow comes.
type flowState struct{ closed bool }

func newFlowListener(*net.UDPConn) (*FlowListener, error) { return nil, canListenFlows() }

func (l *FlowListener) accept() (net.Conn, error) {
	if l.closed {
		return nil, net.ErrClosed
	}
	return nil, canListenFlows()
}

func (l *FlowListener) close() error {
	l.closed = true
	return canListenFlows()
}
