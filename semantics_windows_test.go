package reuse_test

import (
	"context"
	"errors"
	"net"
	"testing"

	"github.com/sockreuse/reuse"
	"github.com/sockreuse/reuse/internal/sockettest"
)

// The claims of the package's documentation about sharing on Windows, from
// Microsoft's documentation ("Using SO_REUSEADDR and SO_EXCLUSIVEADDRUSE"):
// Share (SO_REUSEADDR) lets a second socket bind the port, and the OS does
// not balance: which socket gets the traffic is undefined. CI runs these on
// a real Windows; the refusals of Exclusive are in reuse_windows_test.go.

// TestWindowsShareTCP opens two Share listeners on one port: both listen,
// and every connection is accepted by one of them.
func TestWindowsShareTCP(t *testing.T) {
	if sockettest.IsWine() {
		t.Skip("Wine refuses a second listener on a port that Windows shares (it applies Linux's rules once a socket listens)")
	}
	first, err := reuse.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	second, err := reuse.Listen("tcp4", first.Addr().String())
	if err != nil {
		first.Close()
		t.Fatalf("a second Share listener on %v: %v", first.Addr(), err)
	}
	const n = 50
	got := acceptCounts(t, []net.Listener{first, second}, n)
	t.Logf("first/second accepted %d/%d of %d connections (Windows does not say which)", got[0], got[1], n)
}

// TestWindowsShareUDP opens two Share datagram sockets on one port: every
// datagram reaches one of them. Skipped only under Wine, whose UDP sockets
// Go cannot open.
func TestWindowsShareUDP(t *testing.T) {
	sockettest.RequireUDP(t)
	first, err := reuse.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	second, err := reuse.ListenPacket("udp4", first.LocalAddr().String())
	if err != nil {
		first.Close()
		t.Fatalf("a second Share socket on %v: %v", first.LocalAddr(), err)
	}
	const n = 50
	got := receiveCounts(t, []net.PacketConn{first, second}, n)
	t.Logf("first/second received %d/%d of %d datagrams (Windows does not say which)", got[0], got[1], n)
}

// TestWindowsNoBalancing checks that the package says Windows does not
// balance, and that RequireBalancing refuses a group.
func TestWindowsNoBalancing(t *testing.T) {
	b := reuse.BalancingHere()
	if want := (reuse.Balancing{Shares: true, Balances: false, Option: "SO_REUSEADDR", By: "undefined: one socket of the group"}); b != want {
		t.Errorf("BalancingHere() = %+v, want %+v", b, want)
	}
	c := reuse.Config{RequireBalancing: true}
	lns, err := c.ListenGroup(context.Background(), "tcp4", "127.0.0.1:0", 2)
	for _, ln := range lns {
		ln.Close()
	}
	if !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("ListenGroup with RequireBalancing on Windows: %d listeners, %v; want an error wrapping errors.ErrUnsupported", len(lns), err)
	}
}
