package reuse

import (
	"context"
	"errors"
	"fmt"
	"net"
)

// FlowListener accepts UDP flows, as a [net.Listener] accepts TCP
// connections: a flow is the datagrams of one remote address and port, and
// Accept returns a [net.Conn] for each, whose Read returns that remote's
// datagrams only, one a call, and whose Write sends to it. It suits a
// protocol that keeps state per remote address (DTLS, SIP, tunnels, game
// servers, syslog), served by code written for connections.
//
// The listener's own socket is an unconnected member of the address's
// group, opened under Share like ListenPacket's. A datagram from a new
// remote reaches it through the group; the listener then opens a socket on
// the same local address (SO_REUSEPORT, as the group's members) connected
// to that remote, and from then on the kernel gives the flow's datagrams
// to that socket, ahead of the group. The datagrams that reached the group
// before, and any that the kernel gave another of the process's sockets
// meanwhile (a new flow's socket, between its bind and its connect, takes
// the address's datagrams), reach the flow's Conn first, in the order in
// which the kernel received them (SO_TIMESTAMPNS): none is lost or given
// to another flow, and Accept returns a flow once the group's queue was
// read to its end since. (Should one still turn up later, a race of the
// kernel's lookup with the connect, it reaches the Conn by its next Read.)
// The first ListenFlows of a system where no socket asked for arrival
// times may wait a few milliseconds, until the kernel stamps them.
//
// A flow's socket is bound to the interface its first datagram came in on
// (SO_BINDTOIFINDEX): on Linux 6.13+ a UDP socket leaves the address's
// group when it connects, and a socket that joins the address later would
// otherwise start a group of its own around the connected one, which a
// handover's program could then pick for other remotes' datagrams. Its
// datagrams that come in on another interface reach the listener, which,
// while open, gives them to the flow too.
//
// Each flow costs one file descriptor, as a TCP connection does: a process
// serves at most its RLIMIT_NOFILE, less what else it holds. When a new
// flow's socket cannot be opened for that reason (EMFILE, ENFILE), Accept
// returns the error, which names the limit and wraps the errno, and the
// flow's datagrams wait in the listener (up to 64) until a later Accept
// opens its socket: a server that, like net/http, sleeps and accepts again
// on a temporary error loses nothing while flows end and free descriptors.
//
// Closing a Conn ends its flow: the remote's next datagram starts a new
// one. Closing the listener stops new flows and leaves the accepted ones
// alone. UDP has no end of a flow: a server ends idle flows itself, with a
// read deadline on each Conn (SetReadDeadline before each Read, and Close
// when it expires), as it would end idle TCP connections.
//
// A FlowListener restarts without breaking a flow: give it to
// [Handover.TakeOver] in the new process. New flows then reach the new
// process only, and each of the old process's flows keeps reaching its
// connected socket there, until the old process closes it. The flows are
// no part of the handover: after Replaced, the old process closes its
// listener and calls the Handover's Close (TakeOver returns in the new
// process then), and serves its flows until they end; a flow's datagrams
// after the old process closed it start a flow in the new one. (The
// handover's probes, empty datagrams, may start a flow of one datagram in
// the new process, from a port of its own.)
//
// Linux only, where a connected UDP socket takes its remote's datagrams from
// the group's unconnected members (Linux 3.9+ with SO_REUSEPORT; since 6.13
// connected UDP sockets are found by a hash of the 4-tuple, so that their
// number does not slow the lookup of a datagram). Elsewhere ListenFlows
// returns an error wrapping [errors.ErrUnsupported].
type FlowListener struct {
	conn      *net.UDPConn // the unconnected member of the group
	flowState              // the flows, per OS
}

// ListenFlows returns a FlowListener on the local address of a network
// "udp", "udp4" or "udp6", with the zero Config.
func ListenFlows(network, address string) (*FlowListener, error) {
	var c Config
	return c.ListenFlows(context.Background(), network, address)
}

// ListenFlows returns a FlowListener on the local address of a network
// "udp", "udp4" or "udp6": its socket is opened as ListenPacket opens one,
// under c.Mode, which must be Share (the flows' sockets join its address).
// Errors are *[net.OpError] with Op "listen".
func (c *Config) ListenFlows(ctx context.Context, network, address string) (*FlowListener, error) {
	switch {
	case ctx == nil:
		return nil, edgeError("listen", network, address, errNilContext)
	case network != "udp" && network != "udp4" && network != "udp6":
		return nil, edgeError("listen", network, address, fmt.Errorf("flows need a UDP network (udp, udp4, udp6), not %q", network))
	case c.Mode != Share:
		return nil, edgeError("listen", network, address, fmt.Errorf("flows need Mode Share, not %v: each flow's socket joins the address", c.Mode))
	}
	if err := canListenFlows(); err != nil {
		return nil, edgeError("listen", network, address, err)
	}
	pc, err := c.ListenPacket(ctx, network, address)
	if err != nil {
		return nil, err
	}
	l, err := newFlowListener(pc.(*net.UDPConn))
	if err != nil {
		pc.Close()
		return nil, edgeError("listen", network, address, err)
	}
	return l, nil
}

// Accept waits for a new flow and returns its Conn, whose RemoteAddr is
// the flow's remote address. After Close, it returns an error wrapping
// [net.ErrClosed]. Errors are *[net.OpError] with Op "accept".
func (l *FlowListener) Accept() (net.Conn, error) {
	if l == nil || l.conn == nil {
		return nil, edgeError("accept", "udp", "", errNoFlowListener)
	}
	c, err := l.accept()
	if err != nil {
		return nil, edgeError("accept", "udp", l.conn.LocalAddr().String(), err)
	}
	return c, nil
}

// Addr returns the listener's local address (nil for a FlowListener not
// made by ListenFlows).
func (l *FlowListener) Addr() net.Addr {
	if l == nil || l.conn == nil {
		return nil
	}
	return l.conn.LocalAddr()
}

// errNoFlowListener is the error of a FlowListener not made by ListenFlows.
var errNoFlowListener = errors.New("a FlowListener not made by ListenFlows (nil or zero)")

// Close stops new flows: the listener's socket closes, and the flows not
// accepted yet with it. Accepted flows go on until their Conns are closed.
func (l *FlowListener) Close() error {
	if l == nil || l.conn == nil {
		return edgeError("close", "udp", "", errNoFlowListener)
	}
	if err := l.close(); err != nil {
		return edgeError("close", "udp", l.conn.LocalAddr().String(), err)
	}
	return nil
}
