package reuse_test

import (
	"context"
	"errors"
	"net"
	"runtime"
	"strings"
	"testing"

	"github.com/sockreuse/reuse"
)

// TestSteerUnsupported checks that where the OS cannot steer, Steer and
// Unsteer fail with an error wrapping errors.ErrUnsupported that names the
// OS, before touching the socket: nil will do.
func TestSteerUnsupported(t *testing.T) {
	if runtime.GOOS == "linux" {
		t.Skip("Linux steers: TestSteerBadInput covers a nil socket there")
	}
	for name, err := range map[string]error{
		"Steer":   reuse.Steer(nil, reuse.QUICSteering()),
		"Unsteer": reuse.Unsteer(nil),
	} {
		var oe *net.OpError
		if !errors.Is(err, errors.ErrUnsupported) || !errors.As(err, &oe) || !strings.Contains(err.Error(), runtime.GOOS) {
			t.Errorf("%s: %v, want a *net.OpError wrapping errors.ErrUnsupported and naming %s", name, err, runtime.GOOS)
		}
	}
}

// TestQUICConnectionIDs checks the layout of the IDs and that the bytes
// after the member and generation look random: among 4,096 IDs, none
// repeats, and each of their 48 bits is set in 40% to 60% of them. A bit
// set with probability 1/2 has a count with standard deviation 32 around
// 2,048; 10% of 4,096 is 12.8 standard deviations, which 48 bits of a
// correct generator exceed with probability below 1e-30.
func TestQUICConnectionIDs(t *testing.T) {
	const n = 4096
	g := reuse.QUICConnectionIDs{Member: 7, Generation: 200}
	seen := map[string]bool{}
	ones := make([]int, 6*8)
	for i := 0; i < n; i++ {
		id, err := g.Generate()
		if err != nil {
			t.Fatal(err)
		}
		if len(id) != g.ConnectionIDLen() || id[0] != 7 || id[1] != 200 {
			t.Fatalf("ID %x: want %d bytes starting 07 c8", id, g.ConnectionIDLen())
		}
		if seen[string(id)] {
			t.Fatalf("ID %x repeated after %d IDs", id, i)
		}
		seen[string(id)] = true
		for bit := range ones {
			if id[2+bit/8]&(1<<(bit%8)) != 0 {
				ones[bit]++
			}
		}
	}
	for bit, c := range ones {
		if c < n*4/10 || c > n*6/10 {
			t.Errorf("random bit %d set in %d of %d IDs, want 40%% to 60%%", bit, c, n)
		}
	}
}

// TestQUICConnectionIDsBadInput checks that every out-of-range field gets
// an error naming it.
func TestQUICConnectionIDsBadInput(t *testing.T) {
	for _, tc := range []struct {
		g    reuse.QUICConnectionIDs
		want string
	}{
		{reuse.QUICConnectionIDs{Member: -1}, "for member -1: want 0 to 255"},
		{reuse.QUICConnectionIDs{Member: 256}, "for member 256: want 0 to 255"},
		{reuse.QUICConnectionIDs{Generation: -1}, "of generation -1: want 0 to 255"},
		{reuse.QUICConnectionIDs{Generation: 256}, "of generation 256: want 0 to 255"},
		{reuse.QUICConnectionIDs{Len: 7}, "of 7 bytes: want 8 to 20"},
		{reuse.QUICConnectionIDs{Len: 21}, "of 21 bytes: want 8 to 20"},
		{reuse.QUICConnectionIDs{Len: -1}, "of -1 bytes: want 8 to 20"},
	} {
		id, err := tc.g.Generate()
		if err == nil || id != nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "reuse: ") {
			t.Errorf("%+v.Generate() = %x, %v; want nil and an error starting \"reuse: \" containing %q", tc.g, id, err, tc.want)
		}
	}
	for _, n := range []int{8, 20} {
		if id, err := (reuse.QUICConnectionIDs{Member: 255, Generation: 255, Len: n}).Generate(); err != nil || len(id) != n {
			t.Errorf("Len %d: %x, %v; want %d bytes", n, id, err, n)
		}
	}
}

// TestQUICConnectionIDLen checks that ConnectionIDLen agrees with
// Generate: the length of the IDs it makes, and 0 where Len is out of range
// and it makes none.
func TestQUICConnectionIDLen(t *testing.T) {
	for _, tc := range []struct{ len, want int }{
		{0, 8}, {8, 8}, {13, 13}, {20, 20},
		{-1, 0}, {7, 0}, {21, 0}, {1 << 20, 0},
	} {
		g := reuse.QUICConnectionIDs{Member: 1, Len: tc.len}
		if got := g.ConnectionIDLen(); got != tc.want {
			t.Errorf("Len %d: ConnectionIDLen() = %d, want %d", tc.len, got, tc.want)
		}
		id, err := g.Generate()
		switch {
		case tc.want == 0 && err == nil:
			t.Errorf("Len %d: Generate made %x, want an error", tc.len, id)
		case tc.want != 0 && (err != nil || len(id) != tc.want):
			t.Errorf("Len %d: Generate() = %x, %v; want %d bytes", tc.len, id, err, tc.want)
		}
	}
}

// TestConfigSteeringUnsupported checks that where the OS cannot steer, a
// Config with Steering fails before it opens a socket.
func TestConfigSteeringUnsupported(t *testing.T) {
	if runtime.GOOS == "linux" {
		t.Skip("Linux steers: TestConfigSteering covers it there")
	}
	s := reuse.QUICSteering()
	cfg := reuse.Config{Steering: &s}
	_, err := cfg.ListenPacketGroup(context.Background(), "udp", "127.0.0.1:0", 2)
	var oe *net.OpError
	if !errors.Is(err, errors.ErrUnsupported) || !errors.As(err, &oe) {
		t.Errorf("ListenPacketGroup with Steering: %v, want a *net.OpError wrapping errors.ErrUnsupported", err)
	}
}
