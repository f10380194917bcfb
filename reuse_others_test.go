//go:build js || wasip1 || plan9

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

// wantNoSockets checks the error of a call that needs a socket option on an
// OS without BSD sockets: a *net.OpError that wraps errors.ErrUnsupported
// and names the package and the OS.
func wantNoSockets(t *testing.T, what string, err error) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s succeeded on %s, want errors.ErrUnsupported", what, runtime.GOOS)
	}
	if !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("%s: %v, want it to wrap errors.ErrUnsupported", what, err)
	}
	var opErr *net.OpError
	if !errors.As(err, &opErr) {
		t.Errorf("%s: error %v (%T) is no *net.OpError", what, err, err)
	}
	if msg := err.Error(); !strings.Contains(msg, "reuse: "+runtime.GOOS+" ") {
		t.Errorf("%s: error %q does not say that %s has no socket options", what, msg, runtime.GOOS)
	}
}

func TestNoSocketsListen(t *testing.T) {
	ctx := context.Background()
	for _, mode := range []reuse.Mode{reuse.Share, reuse.Exclusive} {
		c := reuse.Config{Mode: mode}
		ln, err := c.Listen(ctx, "tcp", "127.0.0.1:0")
		if err == nil {
			ln.Close()
		}
		wantNoSockets(t, mode.String()+" Listen", err)
		pc, err := c.ListenPacket(ctx, "udp", "127.0.0.1:0")
		if err == nil {
			pc.Close()
		}
		wantNoSockets(t, mode.String()+" ListenPacket", err)
	}
	ln, err := reuse.Listen("tcp", "127.0.0.1:0")
	if err == nil {
		ln.Close()
	}
	wantNoSockets(t, "Listen", err)
}

// Dial from a fixed local port needs an option; dial from any port sets none
// and is plain net's dial, whatever net does here.
func TestNoSocketsDial(t *testing.T) {
	ctx := context.Background()
	for _, mode := range []reuse.Mode{reuse.Share, reuse.Exclusive} {
		c := reuse.Config{Mode: mode}
		conn, err := c.Dial(ctx, "tcp", "127.0.0.1:40000", "127.0.0.1:40001")
		if err == nil {
			conn.Close()
		}
		wantNoSockets(t, mode.String()+" Dial from a fixed port", err)
	}
	_, errPlain := net.Dial("tcp", "127.0.0.1:40001")
	conn, err := reuse.Dial("tcp", "", "127.0.0.1:40001")
	if err == nil {
		conn.Close()
	}
	if (err == nil) != (errPlain == nil) || errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("Dial from any port: %v; net.Dial: %v; want the same outcome", err, errPlain)
	}
}

// Networks without ports are refused before the OS is asked, here too.
func TestNoSocketsUnixNetwork(t *testing.T) {
	_, err := reuse.Listen("unix", "/tmp/reuse.sock")
	if !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("Listen(unix): %v, want errors.ErrUnsupported", err)
	}
}
