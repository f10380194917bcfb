package reuse_test

import (
	"context"
	"errors"
	"net"
	"testing"

	"github.com/sockreuse/reuse"
	"golang.org/x/sys/windows"
)

// skipIfNoUDP skips the test where Go's UDP sockets cannot open: under Wine
// 8.0 the SIO_UDP_CONNRESET ioctl that net issues on every UDP socket fails
// with WSAEOPNOTSUPP (winapi error #10045).
func skipIfNoUDP(t *testing.T) {
	t.Helper()
	c, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		if errors.Is(err, windows.WSAEOPNOTSUPP) {
			t.Skipf("Go's UDP sockets do not open here (Wine 8.0 lacks SIO_UDP_CONNRESET): %v", err)
		}
		t.Fatal(err)
	}
	c.Close()
}

// TestMulticastWindows checks that two receivers share a multicast port
// under Share, and that Exclusive refuses a second one.
func TestMulticastWindows(t *testing.T) {
	skipIfNoUDP(t)
	group := &net.UDPAddr{IP: net.IPv4(239, 1, 2, 3), Port: 5004}
	lo, err := loopbackInterface()
	if err != nil {
		t.Skipf("no loopback interface with an IPv4 address to join a group on: %v", err)
	}
	first, err := reuse.ListenMulticastUDP("udp4", lo, group)
	if err != nil {
		t.Fatal(err)
	}
	second, err := reuse.ListenMulticastUDP("udp4", lo, group)
	if err != nil {
		t.Errorf("a second receiver under Share: %v", err)
	} else {
		second.Close()
	}
	first.Close()

	excl := reuse.Config{Mode: reuse.Exclusive}
	first, err = excl.ListenMulticastUDP(context.Background(), "udp4", lo, group)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	for _, c := range []reuse.Config{{Mode: reuse.Exclusive}, {Mode: reuse.Share}} {
		conn, err := c.ListenMulticastUDP(context.Background(), "udp4", lo, group)
		if err == nil {
			conn.Close()
			t.Errorf("a second receiver (%v) joined beside an Exclusive one", c.Mode)
			continue
		}
		if !errors.Is(err, windows.WSAEADDRINUSE) && !errors.Is(err, windows.WSAEACCES) {
			t.Errorf("a second receiver (%v): %v, want WSAEADDRINUSE or WSAEACCES", c.Mode, err)
		}
	}
}

// loopbackInterface returns the loopback interface, which has 127.0.0.1.
func loopbackInterface() (*net.Interface, error) {
	ifis, err := net.Interfaces()
	if err != nil {
		return nil, err
	}
	for i := range ifis {
		if ifis[i].Flags&net.FlagLoopback != 0 {
			return &ifis[i], nil
		}
	}
	return nil, errors.New("none found")
}
