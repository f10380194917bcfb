package reuse

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
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
// listeners already open and returns a *[net.OpError] whose message names the member that failed,
// counted from 1 ("member 3 of 4").
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
	// The package's own errors start with the prefix already: say it once.
	return fmt.Sprintf("%smember %d of %d: %s", errPrefix, e.member, e.n, strings.TrimPrefix(e.err.Error(), errPrefix))
}

func (e *groupMemberError) Unwrap() error { return e.err }

// listenGroup opens n sockets, the first on address (with Retry and
// Fallback) and the others on the first one's address (with Retry), and
// closes them all on an error.
func listenGroup[T socket](ctx context.Context, c *Config, network, address string, n int, kind sockKind) ([]T, error) {
	switch {
	case n < 1:
		return nil, opError("listen", network, address, fmt.Errorf("%sa group of %d sockets: want at least 1", errPrefix, n))
	case n > maxGroup:
		return nil, opError("listen", network, address, fmt.Errorf("%sa group of %d sockets: want at most %d", errPrefix, n, maxGroup))
	case n > 1 && c.Mode != Share:
		return nil, opError("listen", network, address, fmt.Errorf("%sa group of %d sockets needs Share, not %v", errPrefix, n, c.Mode))
	}
	p, ok, err := c.planListen(ctx, network, address, kind)
	if err != nil {
		return nil, memberError(network, address, 1, n, err)
	}
	var group []T
	addr := address
	for i := 0; i < n; i++ {
		err := ctx.Err()
		var s T
		switch {
		case err != nil:
		case !ok:
			// Let net reject the network with its usual error.
			s, err = open[T](&c.ListenConfig, ctx, network, addr)
		case i == 0:
			s, err = bindAny[T](ctx, &p, addr, c.Fallback)
		default:
			s, err = bindAny[T](ctx, &p, addr, nil)
		}
		if err != nil {
			for _, s := range group {
				s.Close()
			}
			return nil, memberError(network, address, i+1, n, err)
		}
		group = append(group, s)
		if i == 0 {
			addr = localAddr(s).String()
		}
	}
	if ok && c.Steering != nil {
		if err := steerNew(group[0], *c.Steering); err != nil {
			for _, s := range group {
				s.Close()
			}
			return nil, opError("listen", network, address, err)
		}
	}
	return group, nil
}

// memberError wraps err, an error of member (from 1) of a group of n, naming
// the member, and keeps it a *[net.OpError].
func memberError(network, address string, member, n int, err error) error {
	var oe *net.OpError
	if !errors.As(err, &oe) {
		return opError("listen", network, address, &groupMemberError{member, n, err})
	}
	e := *oe
	e.Err = &groupMemberError{member, n, oe.Err}
	return &e
}
