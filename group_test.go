package reuse_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"

	"github.com/sockreuse/reuse"
)

// TestGroupBadArguments checks that a group of fewer than one socket, or of
// several under Exclusive, is refused with an error naming the problem
// before any socket is opened.
func TestGroupBadArguments(t *testing.T) {
	ctx := context.Background()
	for _, tt := range []struct {
		mode reuse.Mode
		n    int
		want string
	}{
		{reuse.Share, 0, "a group of 0 sockets: want at least 1"},
		{reuse.Share, -3, "a group of -3 sockets: want at least 1"},
		{reuse.Exclusive, 2, "a group of 2 sockets needs Share, not Exclusive"},
	} {
		c := &reuse.Config{Mode: tt.mode}
		lns, err := c.ListenGroup(ctx, "tcp", "127.0.0.1:0", tt.n)
		checkGroupArgError(t, "ListenGroup", tt.mode, tt.n, len(lns), err, tt.want)
		pcs, err := c.ListenPacketGroup(ctx, "udp", "127.0.0.1:0", tt.n)
		checkGroupArgError(t, "ListenPacketGroup", tt.mode, tt.n, len(pcs), err, tt.want)
	}
}

func checkGroupArgError(t *testing.T, fn string, mode reuse.Mode, n, got int, err error, want string) {
	t.Helper()
	var oe *net.OpError
	if got != 0 || !errors.As(err, &oe) || oe.Op != "listen" || !strings.Contains(err.Error(), "reuse: "+want) {
		t.Errorf("%s(n=%d) under %v: %d sockets, err = %v; want none and a *net.OpError saying %q", fn, n, mode, got, err, want)
	}
}

// TestGroupNoPort checks that unix networks are refused as in Listen.
func TestGroupNoPort(t *testing.T) {
	lns, err := reuse.ListenGroup("unix", "/nonexistent/sock", 2)
	if len(lns) != 0 || !errors.Is(err, errors.ErrUnsupported) || !strings.Contains(err.Error(), "member 1 of 2") {
		t.Errorf("ListenGroup(unix) = %d listeners, %v; want none and an error for member 1 wrapping errors.ErrUnsupported", len(lns), err)
	}
}

// TestRequireBalancingFollowsReport checks, on whatever OS runs the test,
// that RequireBalancing admits Listen exactly where BalancingHere says the
// OS balances, and otherwise refuses it with errors.ErrUnsupported.
func TestRequireBalancingFollowsReport(t *testing.T) {
	b := reuse.BalancingHere()
	t.Logf("BalancingHere() = %+v", b)
	if b != reuse.BalancingHere() {
		t.Fatalf("BalancingHere changed between calls")
	}
	if b.Balances && !b.Shares || b.By == "" || b.Shares != (b.Option != "") {
		t.Errorf("BalancingHere() = %+v: inconsistent", b)
	}
	c := &reuse.Config{RequireBalancing: true}
	ln, err := c.Listen(context.Background(), "tcp", "127.0.0.1:0")
	switch {
	case b.Balances && err != nil:
		t.Errorf("Listen with RequireBalancing where the OS balances: %v", err)
	case !b.Balances && !errors.Is(err, errors.ErrUnsupported):
		t.Errorf("Listen with RequireBalancing where the OS does not balance: err = %v, want errors.ErrUnsupported", err)
	}
	if err == nil {
		ln.Close()
	}
}
