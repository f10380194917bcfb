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
// core, say). Where the OS balances (see BalancingHere), it spreads new
// connections across them; set c.RequireBalancing to refuse an OS that does
// not. With n > 1 it needs Mode Share.
//
// Port 0 is resolved once: the first listener gets a port that no other
// socket holds, as in Listen, and the others bind that port. A host name is
// resolved once too: the others bind the first listener's address. Retry
// and Fallback apply to the first listener; the others join its address or
// fail, so that a group never spans two addresses.
//
// It opens all n or none: on an error, it closes the listeners already open
// and returns a *net.OpError whose message names the member that failed,
// counted from 1 ("member 3 of 4").
func (c *Config) ListenGroup(ctx context.Context, network, address string, n int) ([]net.Listener, error) {
	rest := c.membersConfig()
	return listenGroup(ctx, c, network, address, n, c.Listen, rest.Listen, func(ln net.Listener) net.Addr { return ln.Addr() })
}

// ListenPacketGroup opens n datagram sockets on one local address and port,
// like n calls of c.ListenPacket, so that a server can run one read loop per
// socket (per core, say). Where the OS balances (see BalancingHere), it
// spreads datagrams across them by their source and destination. Port 0,
// host names and errors are handled as in ListenGroup.
func (c *Config) ListenPacketGroup(ctx context.Context, network, address string, n int) ([]net.PacketConn, error) {
	rest := c.membersConfig()
	return listenGroup(ctx, c, network, address, n, c.ListenPacket, rest.ListenPacket, func(pc net.PacketConn) net.Addr { return pc.LocalAddr() })
}

// ListenGroup opens n listeners on one local address and port under Share,
// like (*Config).ListenGroup with the zero Config.
func ListenGroup(network, address string, n int) ([]net.Listener, error) {
	var c Config
	return c.ListenGroup(context.Background(), network, address, n)
}

// ListenPacketGroup opens n datagram sockets on one local address and port
// under Share, like (*Config).ListenPacketGroup with the zero Config.
func ListenPacketGroup(network, address string, n int) ([]net.PacketConn, error) {
	var c Config
	return c.ListenPacketGroup(context.Background(), network, address, n)
}

// errGroupMember says which member of a group failed to open.
type errGroupMember struct {
	member, n int // member counts from 1
	err       error
}

func (e *errGroupMember) Error() string {
	// The package's own errors start with the prefix already: say it once.
	return fmt.Sprintf("%smember %d of %d: %s", errPrefix, e.member, e.n, strings.TrimPrefix(e.err.Error(), errPrefix))
}

func (e *errGroupMember) Unwrap() error { return e.err }

// listenGroup opens n sockets with listen, the first on address and the
// others on the first one's address, and closes them all on an error.
func listenGroup[T interface{ Close() error }](ctx context.Context, c *Config, network, address string, n int,
	listenFirst, listenRest func(context.Context, string, string) (T, error), localAddr func(T) net.Addr) ([]T, error) {
	switch {
	case n < 1:
		return nil, opError("listen", network, address, fmt.Errorf("%sa group of %d sockets: want at least 1", errPrefix, n))
	case n > 1 && c.Mode != Share:
		return nil, opError("listen", network, address, fmt.Errorf("%sa group of %d sockets needs Share, not %v", errPrefix, n, c.Mode))
	}
	group := make([]T, 0, n)
	addr := address
	for i := 0; i < n; i++ {
		err := ctx.Err()
		var s T
		switch {
		case err != nil:
		case i == 0:
			s, err = listenFirst(ctx, network, addr)
		default:
			s, err = listenRest(ctx, network, addr)
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
	return group, nil
}

// memberError wraps err, an error of member (from 1) of a group of n, naming
// the member, and keeps it a *net.OpError.
func memberError(network, address string, member, n int, err error) error {
	var oe *net.OpError
	if !errors.As(err, &oe) {
		return opError("listen", network, address, &errGroupMember{member, n, err})
	}
	e := *oe
	e.Err = &errGroupMember{member, n, oe.Err}
	return &e
}

// membersConfig is c for the members after the first, which join the
// address the first bound and must never fall back to another.
func (c *Config) membersConfig() *Config {
	rest := *c
	rest.Fallback = nil
	return &rest
}
