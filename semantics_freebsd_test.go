package reuse_test

import (
	"context"
	"errors"
	"net"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/sockreuse/reuse"
)

// The claims of the package's documentation about FreeBSD, from its sources
// (sys/netinet/in_pcb.c): Share sets SO_REUSEPORT_LB on listeners and
// datagram sockets, and the kernel spreads connections and datagrams across
// the group by a hash of the 4-tuple. CI runs these in a FreeBSD VM.

// sockoptOf reads the SOL_SOCKET option opt of the socket behind c.
func sockoptOf(t *testing.T, c syscall.Conn, opt int) int {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var v int
	var gerr error
	if err := rc.Control(func(fd uintptr) { v, gerr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, opt) }); err != nil {
		t.Fatal(err)
	}
	if gerr != nil {
		t.Fatalf("getsockopt(%d): %v", opt, gerr)
	}
	return v
}

// groupSize and perGroup: each of 400 connections (or datagrams) from its
// own source port lands on one of 4 members with probability 1/4 under a
// hash; a member with fewer than 40 (mean 100, sd 8.7: 6.9 sd below) has a
// probability below 1e-11, so a failure means the kernel does not balance.
const (
	groupSize = 4
	perGroup  = 400
	atLeast   = 40
)

// TestFreeBSDShareBalancesConnections opens a group of Share listeners and
// checks the option read back and the spread of connections.
func TestFreeBSDShareBalancesConnections(t *testing.T) {
	lns, err := reuse.ListenGroup("tcp4", "127.0.0.1:0", groupSize)
	if err != nil {
		t.Fatal(err)
	}
	for i, ln := range lns {
		c := ln.(*net.TCPListener)
		if got := sockoptOf(t, c, unix.SO_REUSEPORT_LB); got == 0 {
			t.Errorf("member %d: SO_REUSEPORT_LB is not set", i)
		}
		if got := sockoptOf(t, c, unix.SO_REUSEADDR); got == 0 {
			t.Errorf("member %d: SO_REUSEADDR is not set", i)
		}
	}
	got := acceptCounts(t, lns, perGroup)
	t.Logf("%d connections over %d listeners: %v", perGroup, groupSize, got)
	for i, n := range got {
		if n < atLeast {
			t.Errorf("listener %d accepted %d of %d connections, want at least %d: SO_REUSEPORT_LB does not balance", i, n, perGroup, atLeast)
		}
	}
}

// TestFreeBSDShareBalancesDatagrams does the same with datagram sockets,
// which carry SO_REUSEPORT_LB without SO_REUSEADDR.
func TestFreeBSDShareBalancesDatagrams(t *testing.T) {
	pcs, err := reuse.ListenPacketGroup("udp4", "127.0.0.1:0", groupSize)
	if err != nil {
		t.Fatal(err)
	}
	for i, pc := range pcs {
		c := pc.(*net.UDPConn)
		if got := sockoptOf(t, c, unix.SO_REUSEPORT_LB); got == 0 {
			t.Errorf("member %d: SO_REUSEPORT_LB is not set", i)
		}
		if got := sockoptOf(t, c, unix.SO_REUSEADDR); got != 0 {
			t.Errorf("member %d: SO_REUSEADDR is set on a Share datagram socket", i)
		}
	}
	got := receiveCounts(t, pcs, perGroup)
	t.Logf("%d datagrams over %d sockets: %v", perGroup, groupSize, got)
	for i, n := range got {
		if n < atLeast {
			t.Errorf("socket %d received %d of %d datagrams, want at least %d: SO_REUSEPORT_LB does not balance", i, n, perGroup, atLeast)
		}
	}
}

// TestFreeBSDBalancing checks what the package reports, and that
// RequireBalancing admits a group here.
func TestFreeBSDBalancing(t *testing.T) {
	b := reuse.BalancingHere()
	if want := (reuse.Balancing{Shares: true, Balances: true, Option: "SO_REUSEPORT_LB", By: "hash of the 4-tuple"}); b != want {
		t.Errorf("BalancingHere() = %+v, want %+v", b, want)
	}
	c := reuse.Config{RequireBalancing: true}
	lns, err := c.ListenGroup(context.Background(), "tcp4", "127.0.0.1:0", 2)
	if err != nil {
		t.Fatalf("ListenGroup with RequireBalancing on FreeBSD: %v", err)
	}
	for _, ln := range lns {
		ln.Close()
	}
}

// TestFreeBSDExclusiveRefusesShare checks that a Share socket cannot join
// a port that an Exclusive socket holds.
func TestFreeBSDExclusiveRefusesShare(t *testing.T) {
	excl := reuse.Config{Mode: reuse.Exclusive}
	ln, err := excl.Listen(context.Background(), "tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if got := sockoptOf(t, ln.(*net.TCPListener), unix.SO_REUSEPORT_LB); got != 0 {
		t.Errorf("Exclusive listener: SO_REUSEPORT_LB = %d, want 0", got)
	}
	second, err := reuse.Listen("tcp4", ln.Addr().String())
	if err == nil {
		second.Close()
		t.Fatalf("a Share listener joined the Exclusive listener's port %v", ln.Addr())
	}
	if !errors.Is(err, syscall.EADDRINUSE) {
		t.Errorf("Share listener on an Exclusive port: %v, want EADDRINUSE", err)
	}
}
