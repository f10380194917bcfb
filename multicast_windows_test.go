package reuse_test

import (
	"context"
	"errors"
	"net"
	"strconv"
	"testing"

	"golang.org/x/sys/windows"

	"github.com/sockreuse/reuse"
	"github.com/sockreuse/reuse/internal/sockettest"
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

// rawReceiver opens a Winsock UDP socket with the options of mode for a
// datagram socket, which on Windows are those of a multicast receiver too
// (doc.go's table), binds it to the wildcard address and port, and joins
// group on 127.0.0.1.
func rawReceiver(t *testing.T, mode reuse.Mode, group net.IP, port int) (windows.Handle, error) {
	t.Helper()
	h, err := windows.Socket(windows.AF_INET, windows.SOCK_DGRAM, windows.IPPROTO_UDP)
	if err != nil {
		t.Fatalf("socket: %v", err)
	}
	cfg := reuse.Config{Mode: mode}
	if err := cfg.Control("udp4", "0.0.0.0:"+strconv.Itoa(port), handleConn(h)); err != nil {
		windows.Closesocket(h)
		t.Fatalf("%v options: %v", mode, err)
	}
	if err := windows.Bind(h, &windows.SockaddrInet4{Port: port}); err != nil {
		windows.Closesocket(h)
		return 0, err
	}
	mreq := &windows.IPMreq{}
	copy(mreq.Multiaddr[:], group.To4())
	copy(mreq.Interface[:], net.IPv4(127, 0, 0, 1).To4())
	if err := windows.SetsockoptIPMreq(h, windows.IPPROTO_IP, windows.IP_ADD_MEMBERSHIP, mreq); err != nil {
		windows.Closesocket(h)
		t.Fatalf("IP_ADD_MEMBERSHIP: %v", err)
	}
	if err := windows.SetsockoptInt(h, windows.SOL_SOCKET, windows.SO_RCVTIMEO, 2000); err != nil {
		windows.Closesocket(h)
		t.Fatalf("SO_RCVTIMEO: %v", err)
	}
	return h, nil
}

// TestMulticastWindowsWinsock checks, on Winsock sockets made without net
// (Go's UDP sockets do not open under Wine 8.0), what the multicast column
// of doc.go's table gives on Windows: under Share, two receivers bind the
// group's port and each gets its own copy of a datagram to the group; under
// Exclusive, a second receiver is refused.
func TestMulticastWindowsWinsock(t *testing.T) {
	if !sockettest.PrivateNetwork() {
		t.Skip("multicast receivers bind the wildcard address, which this test does only in a private network (SOCKETTEST_PRIVATE_NET, set by .ci/wine.sh)")
	}
	group := net.IPv4(239, 1, 2, 4)
	const port = 5005
	var receivers []windows.Handle
	for i := 0; i < 2; i++ {
		h, err := rawReceiver(t, reuse.Share, group, port)
		if err != nil {
			t.Fatalf("Share receiver %d: bind: %v", i+1, err)
		}
		defer windows.Closesocket(h)
		receivers = append(receivers, h)
	}
	sender, err := windows.Socket(windows.AF_INET, windows.SOCK_DGRAM, windows.IPPROTO_UDP)
	if err != nil {
		t.Fatal(err)
	}
	defer windows.Closesocket(sender)
	if err := windows.SetsockoptInet4Addr(sender, windows.IPPROTO_IP, windows.IP_MULTICAST_IF, [4]byte{127, 0, 0, 1}); err != nil {
		t.Fatalf("IP_MULTICAST_IF: %v", err)
	}
	to := &windows.SockaddrInet4{Port: port}
	copy(to.Addr[:], group.To4())
	if err := windows.Sendto(sender, []byte("to the group"), 0, to); err != nil {
		t.Fatalf("sendto %v:%d: %v", group, port, err)
	}
	for i, h := range receivers {
		buf := make([]byte, 64)
		n, _, err := windows.Recvfrom(h, buf, 0)
		if err != nil {
			t.Errorf("Share receiver %d got no copy of the datagram to the group: %v", i+1, err)
			continue
		}
		if got := string(buf[:n]); got != "to the group" {
			t.Errorf("Share receiver %d got %q", i+1, got)
		}
	}
	for _, h := range receivers {
		windows.Closesocket(h)
	}

	first, err := rawReceiver(t, reuse.Exclusive, group, port+1)
	if err != nil {
		t.Fatalf("Exclusive receiver: bind: %v", err)
	}
	defer windows.Closesocket(first)
	for _, mode := range []reuse.Mode{reuse.Exclusive, reuse.Share} {
		h, err := rawReceiver(t, mode, group, port+1)
		if err == nil {
			windows.Closesocket(h)
			t.Errorf("a second receiver (%v) bound beside an Exclusive one", mode)
			continue
		}
		if !errors.Is(err, windows.WSAEADDRINUSE) && !errors.Is(err, windows.WSAEACCES) {
			t.Errorf("a second receiver (%v): %v, want WSAEADDRINUSE or WSAEACCES", mode, err)
		}
	}
}
