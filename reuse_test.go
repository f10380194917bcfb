package reuse_test

import (
	"context"
	"errors"
	"net"
	"runtime"
	"strings"
	"syscall"
	"testing"

	"github.com/sockreuse/reuse"
)

// requireSockets skips the test where the OS has no sockets to share.
func requireSockets(t testing.TB) {
	t.Helper()
	ln, err := reuse.Listen("tcp4", "127.0.0.1:0")
	if errors.Is(err, errors.ErrUnsupported) {
		t.Skipf("%s has no socket options: %v", runtime.GOOS, err)
	}
	if err != nil {
		t.Fatalf("Listen on loopback: %v", err)
	}
	ln.Close()
}

func TestModeString(t *testing.T) {
	for m, want := range map[reuse.Mode]string{reuse.Share: "Share", reuse.Exclusive: "Exclusive", 7: "Mode(7)"} {
		if got := m.String(); got != want {
			t.Errorf("Mode(%d).String() = %q, want %q", int(m), got, want)
		}
	}
}

// TestNoPortNetworks checks that unix and ip networks are refused with an
// error wrapping errors.ErrUnsupported, on every OS.
func TestNoPortNetworks(t *testing.T) {
	ctx := context.Background()
	var c reuse.Config
	for _, network := range []string{"unix", "unixgram", "unixpacket", "ip", "ip4", "ip6", "ip4:icmp", "ip6:58"} {
		calls := map[string]func() error{
			"Listen": func() error {
				_, err := c.Listen(ctx, network, "/tmp/x")
				return err
			},
			"ListenPacket": func() error {
				_, err := c.ListenPacket(ctx, network, "/tmp/x")
				return err
			},
			"Dial": func() error {
				_, err := c.Dial(ctx, network, "", "/tmp/x")
				return err
			},
		}
		for name, call := range calls {
			err := call()
			if !errors.Is(err, errors.ErrUnsupported) {
				t.Errorf("%s(%q): %v, want an error wrapping errors.ErrUnsupported", name, network, err)
				continue
			}
			var oe *net.OpError
			if !errors.As(err, &oe) || oe.Net != network {
				t.Errorf("%s(%q): %#v, want a *net.OpError with Net %q", name, network, err, network)
			}
			if msg := err.Error(); !strings.Contains(msg, "port sharing does not apply to "+network) || !strings.Contains(msg, "reuse: ") {
				t.Errorf("%s(%q): message %q does not say that port sharing does not apply", name, network, msg)
			}
		}
	}
}

func TestUnknownMode(t *testing.T) {
	c := reuse.Config{Mode: 7}
	_, err := c.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err == nil || !strings.Contains(err.Error(), "unknown Mode(7)") {
		t.Fatalf("Listen with Mode(7): %v, want an error naming Mode(7)", err)
	}
	var oe *net.OpError
	if !errors.As(err, &oe) || oe.Op != "listen" {
		t.Errorf("Listen with Mode(7): %#v, want a *net.OpError", err)
	}
}

// TestNetRejects checks that networks and addresses that net rejects get
// a *net.OpError naming what was wrong: net's own, or, for a network of
// the other kind, the package's, naming the function to use.
func TestNetRejects(t *testing.T) {
	requireSockets(t)
	ctx := context.Background()
	var c reuse.Config
	cases := []struct {
		name, network, address, inMsg string
		call                          func(network, address string) error
	}{
		{"unknown network", "tcp9", "127.0.0.1:0", "tcp9", func(n, a string) error { _, err := c.Listen(ctx, n, a); return err }},
		{"packet network on Listen", "udp", "127.0.0.1:0", "use ListenPacket", func(n, a string) error { _, err := c.Listen(ctx, n, a); return err }},
		{"stream network on ListenPacket", "tcp", "127.0.0.1:0", "use Listen", func(n, a string) error { _, err := c.ListenPacket(ctx, n, a); return err }},
		{"port out of range", "tcp", "127.0.0.1:99999", "99999", func(n, a string) error { _, err := c.Listen(ctx, n, a); return err }},
		{"no port", "udp", "127.0.0.1", "127.0.0.1", func(n, a string) error { _, err := c.ListenPacket(ctx, n, a); return err }},
		{"bad local address", "tcp", "127.0.0.1:http-alt-nonexistent", "http-alt-nonexistent", func(n, a string) error { _, err := c.Dial(ctx, n, a, "127.0.0.1:1"); return err }},
	}
	for _, tc := range cases {
		err := tc.call(tc.network, tc.address)
		var oe *net.OpError
		if !errors.As(err, &oe) {
			t.Errorf("%s: %v, want a *net.OpError", tc.name, err)
			continue
		}
		if !strings.Contains(err.Error(), tc.inMsg) {
			t.Errorf("%s: %q does not name %q", tc.name, err, tc.inMsg)
		}
		if errors.Is(err, errors.ErrUnsupported) {
			t.Errorf("%s: %v wraps errors.ErrUnsupported; it is bad input, not a missing feature", tc.name, err)
		}
	}
}

// TestCallerControl checks that the caller's own Control runs after the
// package's and that its error comes back to the caller.
func TestCallerControl(t *testing.T) {
	requireSockets(t)
	ctx := context.Background()
	errMine := errors.New("caller's control refused")
	fail := func(network, address string, rc syscall.RawConn) error { return errMine }
	var c reuse.Config
	c.ListenConfig.Control = fail
	c.Dialer.Control = fail
	if _, err := c.Listen(ctx, "tcp4", "127.0.0.1:0"); !errors.Is(err, errMine) {
		t.Errorf("Listen: %v, want the caller's Control error", err)
	}
	if _, err := c.ListenPacket(ctx, "udp4", "127.0.0.1:0"); !errors.Is(err, errMine) && !udpMissing(err) {
		t.Errorf("ListenPacket: %v, want the caller's Control error", err)
	}
	ln, err := reuse.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if _, err := c.Dial(ctx, "tcp4", "127.0.0.1:0", ln.Addr().String()); !errors.Is(err, errMine) {
		t.Errorf("Dial with Dialer.Control: %v, want the caller's Control error", err)
	}
	c.Dialer.Control = nil
	c.Dialer.ControlContext = func(ctx context.Context, network, address string, rc syscall.RawConn) error { return errMine }
	if _, err := c.Dial(ctx, "tcp4", "", ln.Addr().String()); !errors.Is(err, errMine) {
		t.Errorf("Dial with Dialer.ControlContext: %v, want the caller's Control error", err)
	}
}

// udpMissing reports whether err is Wine's refusal of every Go UDP socket
// (winapi error #10045, WSAEOPNOTSUPP, for Go's SIO_UDP_CONNRESET ioctl).
func udpMissing(err error) bool {
	return runtime.GOOS == "windows" && err != nil && strings.Contains(err.Error(), "wsaioctl")
}

// TestDialFromSharedPort checks that several connections leave from one
// local port to different remotes, and that one more to the same remote is
// refused with an error that says the address pair is in use.
func TestDialFromSharedPort(t *testing.T) {
	requireSockets(t)
	var remotes []net.Listener
	for i := 0; i < 2; i++ {
		ln, err := reuse.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		remotes = append(remotes, ln)
	}
	probe, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	laddr := probe.Addr().String()
	probe.Close()

	for _, r := range remotes {
		c, err := reuse.Dial("tcp4", laddr, r.Addr().String())
		if err != nil {
			t.Fatalf("Dial from %s to %v: %v", laddr, r.Addr(), err)
		}
		defer c.Close()
		if got := c.LocalAddr().String(); got != laddr {
			t.Errorf("connection to %v leaves from %s, want %s", r.Addr(), got, laddr)
		}
	}
	_, err = reuse.Dial("tcp4", laddr, remotes[0].Addr().String())
	if err == nil {
		t.Fatalf("a second connection from %s to %v succeeded; the 5-tuple would repeat", laddr, remotes[0].Addr())
	}
	var oe *net.OpError
	if !errors.As(err, &oe) || oe.Op != "dial" {
		t.Errorf("second Dial: %#v, want a *net.OpError from dial", err)
	}
	if msg := err.Error(); !strings.Contains(msg, "local and remote address pair is already in use") {
		t.Errorf("second Dial: %q does not say that the address pair is in use", msg)
	}
	checkAddrInUse(t, err)
}

// TestDialEphemeral checks that Dial with no local address behaves like
// net.Dial.
func TestDialEphemeral(t *testing.T) {
	requireSockets(t)
	ln, err := reuse.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	for i := 0; i < 2; i++ {
		c, err := reuse.Dial("tcp4", "", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
	}
}
