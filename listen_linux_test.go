package reuse

import (
	"context"
	"net"
	"net/netip"
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
	p, err := c.planListen(context.Background(), "udp4", datagram)
	if err != nil {
		t.Fatalf("plan: %v", err)
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

// FuzzIsZeroPort: isZeroPort agrees with net on which addresses have port
// 0, for addresses whose host needs no lookup.
func FuzzIsZeroPort(f *testing.F) {
	for _, a := range []string{"", ":", ":0", ":+", ": 0", ":-", "127.0.0.1:", "127.0.0.1:0", "[::1]:00", ":+0", ":-0", ":http", ":0x0", "1.2.3.4", ":65536", ":80", "[::]:"} {
		f.Add(a)
	}
	f.Fuzz(func(t *testing.T, address string) {
		if host, _, err := net.SplitHostPort(address); err == nil && host != "" {
			if _, err := netip.ParseAddr(host); err != nil {
				t.Skip("a host name: net would look it up")
			}
		}
		a, err := net.ResolveTCPAddr("tcp", address)
		if err != nil {
			return // net refuses it: Listen returns net's error
		}
		if got, want := isZeroPort(context.Background(), "tcp", address), a.Port == 0; got != want {
			t.Errorf("isZeroPort(%q) = %v; net resolves it to %v", address, got, a)
		}
	})
}
