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

// TestGroupNoPort checks that unix networks are refused as in Listen, and
// that an error found before any socket opens is the whole call's: it
// names no member.
func TestGroupNoPort(t *testing.T) {
	lns, err := reuse.ListenGroup("unix", "/nonexistent/sock", 2)
	if len(lns) != 0 || !errors.Is(err, errors.ErrUnsupported) || !strings.Contains(err.Error(), "port sharing does not apply to unix") || strings.Contains(err.Error(), "member") {
		t.Errorf("ListenGroup(unix) = %d listeners, %v; want none and an error wrapping errors.ErrUnsupported, naming no member", len(lns), err)
	}
}

// TestGroupWrongKind checks that a datagram network given to a function
// for listeners, or the reverse, names the function to call instead.
func TestGroupWrongKind(t *testing.T) {
	ctx := context.Background()
	var c reuse.Config
	for _, tc := range []struct {
		name string
		call func() error
		want string
	}{
		{"Listen(udp)", func() error { _, err := c.Listen(ctx, "udp", "127.0.0.1:0"); return err }, "udp is a datagram network: use ListenPacket or ListenPacketGroup"},
		{"ListenGroup(udp4)", func() error { _, err := c.ListenGroup(ctx, "udp4", "127.0.0.1:0", 4); return err }, "udp4 is a datagram network: use ListenPacket or ListenPacketGroup"},
		{"ListenPacket(tcp)", func() error { _, err := c.ListenPacket(ctx, "tcp", "127.0.0.1:0"); return err }, "tcp is a stream network: use Listen or ListenGroup"},
		{"ListenPacketGroup(tcp6)", func() error { _, err := c.ListenPacketGroup(ctx, "tcp6", "[::1]:0", 4); return err }, "tcp6 is a stream network: use Listen or ListenGroup"},
	} {
		err := tc.call()
		var oe *net.OpError
		if !errors.As(err, &oe) || oe.Op != "listen" || !strings.Contains(err.Error(), "reuse: "+tc.want) || strings.Contains(err.Error(), "member") || errors.Is(err, errors.ErrUnsupported) {
			t.Errorf("%s: %v, want a *net.OpError saying %q, naming no member, not wrapping errors.ErrUnsupported", tc.name, err, tc.want)
		}
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
