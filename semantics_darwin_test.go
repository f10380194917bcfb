package reuse_test

import (
	"context"
	"errors"
	"net"
	"testing"

	"github.com/sockreuse/reuse"
)

// The claims of the package's documentation about macOS, from Apple's
// sources (bsd/netinet/in_pcb.c): SO_REUSEPORT lets sockets of a user bind
// one address and port, but the kernel does not balance: unicast traffic
// goes to the socket bound last. CI runs these on a real macOS.

// TestDarwinShareLastBoundGetsConnections opens two Share listeners on one
// port and checks that every connection goes to the one bound last.
func TestDarwinShareLastBoundGetsConnections(t *testing.T) {
	first, err := reuse.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	last, err := reuse.Listen("tcp4", first.Addr().String())
	if err != nil {
		first.Close()
		t.Fatalf("a second Share listener on %v: %v", first.Addr(), err)
	}
	const n = 50
	got := acceptCounts(t, []net.Listener{first, last}, n)
	t.Logf("first/last bound accepted %d/%d of %d connections", got[0], got[1], n)
	if got[1] != n {
		t.Errorf("the listener bound last accepted %d of %d connections, want all (macOS does not balance)", got[1], n)
	}
}

// TestDarwinShareLastBoundGetsDatagrams does the same with datagram
// sockets, each datagram from a new source port.
func TestDarwinShareLastBoundGetsDatagrams(t *testing.T) {
	first, err := reuse.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	last, err := reuse.ListenPacket("udp4", first.LocalAddr().String())
	if err != nil {
		first.Close()
		t.Fatalf("a second Share socket on %v: %v", first.LocalAddr(), err)
	}
	const n = 50
	got := receiveCounts(t, []net.PacketConn{first, last}, n)
	t.Logf("first/last bound received %d/%d of %d datagrams", got[0], got[1], n)
	if got[1] != n {
		t.Errorf("the socket bound last received %d of %d datagrams, want all (macOS does not balance)", got[1], n)
	}
}

// TestDarwinNoBalancing checks that the package says so: BalancingHere
// reports sharing without balancing, and RequireBalancing refuses a group.
func TestDarwinNoBalancing(t *testing.T) {
	b := reuse.BalancingHere()
	if want := (reuse.Balancing{Shares: true, Balances: false, Option: "SO_REUSEPORT", By: "the last socket bound"}); b != want {
		t.Errorf("BalancingHere() = %+v, want %+v", b, want)
	}
	c := reuse.Config{RequireBalancing: true}
	lns, err := c.ListenGroup(context.Background(), "tcp4", "127.0.0.1:0", 2)
	for _, ln := range lns {
		ln.Close()
	}
	if !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("ListenGroup with RequireBalancing on macOS: %d listeners, %v; want an error wrapping errors.ErrUnsupported", len(lns), err)
	}
}
