package reuse

import (
	"context"
	"net"
	"testing"
	"time"
)

// TestReservationPath runs, on Linux, the port 0 handling of the OSes where
// sharing options cannot be set after bind: a reservation by an exclusive
// bind. 1,000 Share datagram sockets bound to port 0 and held get 1,000
// distinct ports, while with SO_REUSEPORT set before bind about 18 would
// collide (TestPortZeroNeverShared); and a second socket joins the first.
func TestReservationPath(t *testing.T) {
	const n = 1000
	var c Config
	p, ok, err := c.planListen(context.Background(), "udp4", "127.0.0.1:0", datagram)
	if err != nil || !ok {
		t.Fatalf("plan: %v %v", ok, err)
	}
	p.afterBind = false
	seen := map[int]bool{}
	for i := 0; i < n; i++ {
		pc, err := bind[net.PacketConn](context.Background(), &p, "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer pc.Close()
		port := localPort(pc.LocalAddr())
		if seen[port] {
			t.Fatalf("bind %d got port %d, which an earlier socket holds", i, port)
		}
		seen[port] = true
		if i == 0 {
			joined, err := bind[net.PacketConn](context.Background(), &p, pc.LocalAddr().String())
			if err != nil {
				t.Fatalf("a second socket joining %v: %v", pc.LocalAddr(), err)
			}
			joined.Close()
		}
	}
}

// TestRetryMaxCapsFirstWait: Max caps every wait, the first included.
func TestRetryMaxCapsFirstWait(t *testing.T) {
	for _, tt := range []struct {
		p    RetryPolicy
		want time.Duration
	}{
		{RetryPolicy{Initial: 2 * time.Second, Max: time.Millisecond}, time.Millisecond},
		{RetryPolicy{Max: time.Millisecond}, time.Millisecond},
		{RetryPolicy{Initial: 5 * time.Millisecond}, 5 * time.Millisecond},
		{RetryPolicy{}, defaultRetryInitial},
	} {
		if got := tt.p.initial(); got != tt.want {
			t.Errorf("%+v: first wait %v, want %v", tt.p, got, tt.want)
		}
	}
}
