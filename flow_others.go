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

func newFlowListener(*net.UDPConn) (*FlowListener, error) { return nil, canListenFlows() }

func (l *FlowListener) serve() {}

func (l *FlowListener) open(*flowConn) ([]flowDatagram, error) { return nil, canListenFlows() }

func drain(*net.UDPConn, *flowConn) ([]flowDatagram, error) { return nil, canListenFlows() }

func isFDLimit(error) bool { return false }
