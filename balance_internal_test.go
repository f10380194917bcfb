package reuse

import (
	"context"
	"errors"
	"net"
	"runtime"
	"strings"
	"testing"
)

// TestBalanceFor checks the decision for every GOOS that Go supports
// (go tool dist list), with the probe's answer both ways.
func TestBalanceFor(t *testing.T) {
	none := func(by string) Balancing { return Balancing{By: by} }
	noSockets := func(goos string) Balancing { return none("Share is not supported: no socket options on " + goos) }
	noSolaris := none("Share is not supported: no SO_REUSEPORT in golang.org/x/sys")
	for _, tt := range []struct {
		goos          string
		probed, unset Balancing // the answer where Share's options can be set, and where they cannot
	}{
		{"linux", Balancing{true, true, "SO_REUSEPORT", hash4}, none("SO_REUSEPORT cannot be set on this kernel")},
		{"android", Balancing{true, true, "SO_REUSEPORT", hash4}, none("SO_REUSEPORT cannot be set on this kernel")},
		{"freebsd", Balancing{true, true, "SO_REUSEPORT_LB", hash4}, none("SO_REUSEPORT_LB cannot be set on this kernel")},
		{"dragonfly", Balancing{true, true, "SO_REUSEPORT", hash4}, none("SO_REUSEPORT cannot be set on this kernel")},
		{"aix", Balancing{true, true, "SO_REUSEPORT", hash4 + " (AIX 7.2.5 and later)"}, none("SO_REUSEPORT cannot be set on this kernel")},
		{"darwin", Balancing{true, false, "SO_REUSEPORT", "the last socket bound"}, none("SO_REUSEPORT cannot be set on this kernel")},
		{"ios", Balancing{true, false, "SO_REUSEPORT", "the last socket bound"}, none("SO_REUSEPORT cannot be set on this kernel")},
		{"netbsd", Balancing{true, false, "SO_REUSEPORT", "one socket of the group"}, none("SO_REUSEPORT cannot be set on this kernel")},
		{"openbsd", Balancing{true, false, "SO_REUSEPORT", "one socket of the group"}, none("SO_REUSEPORT cannot be set on this kernel")},
		{"windows", Balancing{true, false, "SO_REUSEADDR", "undefined: one socket of the group"}, none("SO_REUSEADDR cannot be set on this kernel")},
		{"solaris", noSolaris, noSolaris},
		{"illumos", noSolaris, noSolaris},
		{"js", noSockets("js"), noSockets("js")},
		{"wasip1", noSockets("wasip1"), noSockets("wasip1")},
		{"plan9", noSockets("plan9"), noSockets("plan9")},
	} {
		if got := balanceFor(tt.goos, true); got != tt.probed {
			t.Errorf("balanceFor(%q, true) = %+v, want %+v", tt.goos, got, tt.probed)
		}
		if got := balanceFor(tt.goos, false); got != tt.unset {
			t.Errorf("balanceFor(%q, false) = %+v, want %+v", tt.goos, got, tt.unset)
		}
		for _, b := range []Balancing{tt.probed, tt.unset} {
			err := errNoBalancing(tt.goos, b)
			if b.Balances {
				continue
			}
			if !errors.Is(err, errors.ErrUnsupported) || !strings.HasPrefix(err.Error(), "RequireBalancing: ") || !strings.Contains(err.Error(), tt.goos) {
				t.Errorf("errNoBalancing(%q, %+v) = %v, want an error naming RequireBalancing and the OS and wrapping errors.ErrUnsupported", tt.goos, b, err)
			}
		}
	}
}

// TestRequireBalancingRefusedOnStub runs Listen, ListenPacket and the group
// functions with the answer BalancingHere gives on macOS, and checks that
// RequireBalancing refuses them before any socket is opened, while Share
// without it, and Exclusive with it, still work.
func TestRequireBalancingRefusedOnStub(t *testing.T) {
	if _, err := options(Share, streamListener); err != nil {
		t.Skipf("Share has no options on %s: %v", runtime.GOOS, err)
	}
	saved := balancingHere
	t.Cleanup(func() { balancingHere = saved })
	stub := balanceFor("darwin", true)
	balancingHere = func() Balancing { return stub }
	if b := BalancingHere(); b.Balances {
		t.Fatalf("stub BalancingHere() = %+v, want Balances false", b)
	}

	ctx := context.Background()
	require := &Config{RequireBalancing: true}
	refused := func(what string, err error) {
		t.Helper()
		var oe *net.OpError
		if !errors.As(err, &oe) || !errors.Is(err, errors.ErrUnsupported) || !strings.Contains(err.Error(), "RequireBalancing") {
			t.Errorf("%s with RequireBalancing on the darwin stub: err = %v, want a *net.OpError wrapping errors.ErrUnsupported", what, err)
		}
	}
	ln, err := require.Listen(ctx, "tcp", "127.0.0.1:0")
	if err == nil {
		ln.Close()
	}
	refused("Listen", err)
	pc, err := require.ListenPacket(ctx, "udp", "127.0.0.1:0")
	if err == nil {
		pc.Close()
	}
	refused("ListenPacket", err)
	lns, err := require.ListenGroup(ctx, "tcp", "127.0.0.1:0", 2)
	for _, ln := range lns {
		ln.Close()
	}
	refused("ListenGroup", err)
	pcs, err := require.ListenPacketGroup(ctx, "udp", "127.0.0.1:0", 2)
	for _, pc := range pcs {
		pc.Close()
	}
	refused("ListenPacketGroup", err)

	for _, c := range []*Config{{}, {Mode: Exclusive, RequireBalancing: true}} {
		ln, err := c.Listen(ctx, "tcp", "127.0.0.1:0")
		if err != nil {
			t.Errorf("Listen with Mode %v, RequireBalancing %v on the darwin stub: %v", c.Mode, c.RequireBalancing, err)
			continue
		}
		ln.Close()
	}
}
