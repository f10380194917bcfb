package reuse

import (
	"context"
	"fmt"
	"net"
)

// ListenGroup opens n listeners on one local address and port, like n calls
// of c.Listen, so that a server can run one accept loop per socket (per
// core, say). Where the OS balances (see [BalancingHere]), it spreads new
// connections across them; set c.RequireBalancing to refuse an OS that does
// not. With n > 1 it needs Mode Share.
//
// Port 0 is resolved once: the first listener gets a port that no other
// socket holds, as in Listen, and the others bind that port. A host name is
// resolved once too: the others bind the first listener's address. Retry
// and Fallback apply to the first listener; the others join its address or
// fail, so that a group never spans two addresses.
//
// n is at most 1024. It opens all n or none: on an error, it closes the
// listeners already open and returns a *[net.OpError] whose message names
// the member that failed, counted from 1 ("member 3 of 4"); an error found
// before any socket is opened, such as a bad network or Config, names none.
func (c *Config) ListenGroup(ctx context.Context, network, address string, n int) ([]net.Listener, error) {
	return listenGroup[net.Listener](ctx, c, network, address, n, streamListener)
}

// ListenPacketGroup opens n datagram sockets on one local address and port,
// like n calls of c.ListenPacket, so that a server can run one read loop per
// socket (per core, say). Where the OS balances (see [BalancingHere]), it
// spreads datagrams across them by their source and destination. Port 0,
// host names and errors are handled as in ListenGroup.
func (c *Config) ListenPacketGroup(ctx context.Context, network, address string, n int) ([]net.PacketConn, error) {
	return listenGroup[net.PacketConn](ctx, c, network, address, n, datagram)
}

// ListenGroup opens n listeners on one local address and port under Share,
// like (*Config).ListenGroup with the zero Config.
func ListenGroup(network, address string, n int) ([]net.Listener, error) {
	return zeroConfig.ListenGroup(context.Background(), network, address, n)
}

// ListenPacketGroup opens n datagram sockets on one local address and port
// under Share, like (*Config).ListenPacketGroup with the zero Config.
func ListenPacketGroup(network, address string, n int) ([]net.PacketConn, error) {
	return zeroConfig.ListenPacketGroup(context.Background(), network, address, n)
}

// maxGroup is the most sockets a group may have: far more than the cores
// of any machine, and a bound that hostile input cannot turn into an
// exhaustion of memory or descriptors.
const maxGroup = 1024

// groupMemberError says which member of a group failed to open.
type groupMemberError struct {
	member, n int // member counts from 1
	err       error
}

func (e *groupMemberError) Error() string {
	return fmt.Sprintf("member %d of %d: %v", e.member, e.n, e.err)
}

func (e *groupMemberError) Unwrap() error { return e.err }

// listenGroup opens n sockets, the first on address (with Retry and
// Fallback) and the others on the first one's address (with Retry), and
// closes them all on an error.
func listenGroup[T socket](ctx context.Context, c *Config, network, address string, n int, kind sockKind) ([]T, error) {
	group, err := openGroup[T](ctx, c, network, address, n, kind)
	if err != nil {
		return nil, edgeError("listen", network, address, err)
	}
	return group, nil
}

func openGroup[T socket](ctx context.Context, c *Config, network, address string, n int, kind sockKind) ([]T, error) {
	switch {
	case n < 1:
		return nil, fmt.Errorf("a group of %d sockets: want at least 1", n)
	case n > maxGroup:
		return nil, fmt.Errorf("a group of %d sockets: want at most %d", n, maxGroup)
	case n > 1 && c.Mode != Share:
		return nil, fmt.Errorf("a group of %d sockets needs Share, not %v", n, c.Mode)
	}
	// An error of the plan is the whole call's, found before any socket.
	p, err := c.planListen(ctx, network, kind)
	if err != nil {
		return nil, err
	}
	var group []T
	closeAll := func() {
		for _, s := range group {
			s.Close()
		}
	}
	addr := address
	for i := 0; i < n; i++ {
		err := ctx.Err()
		var s T
		switch {
		case err != nil:
		case i == 0:
			s, err = bindAny[T](ctx, &p, addr, c.Fallback)
		default:
			s, err = bindAny[T](ctx, &p, addr, nil)
		}
		if err != nil {
			closeAll()
			return nil, memberError(i+1, n, err)
		}
		group = append(group, s)
		if i == 0 {
			addr = localAddr(s).String()
		}
	}
	if c.Steering != nil {
		if err := steerNew(group[0], *c.Steering); err != nil {
			closeAll()
			return nil, err
		}
	}
	return group, nil
}

// memberError wraps err, an error of member (from 1) of a group of n, naming
// the member; an error of net's stays a *[net.OpError] with net's addresses.
func memberError(member, n int, err error) error {
	if oe, ok := err.(*net.OpError); ok {
		e := *oe
		e.Err = &groupMemberError{member, n, oe.Err}
		return &e
	}
	return &groupMemberError{member, n, err}
}
