package reuse_test

import (
	"context"
	"errors"
	"net"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/windows"

	"github.com/sockreuse/reuse"
)

// The hijack catalogue on Windows, where it applies: any user may bind a
// port held with SO_REUSEADDR (Share), and SO_EXCLUSIVEADDRUSE (Exclusive)
// is what refuses it. Wine cannot run a process as another user, so the
// attacker is a socket of this process; under Wine, sockets are bound but
// not listening where the contrast must succeed, since Wine applies Linux's
// rules to listening sockets.

// handleConn is the syscall.RawConn of a socket made with
// golang.org/x/sys/windows, so that Config.Control can set its options.
type handleConn windows.Handle

func (h handleConn) Control(f func(fd uintptr)) error  { f(uintptr(h)); return nil }
func (h handleConn) Read(func(fd uintptr) bool) error  { return errors.ErrUnsupported }
func (h handleConn) Write(func(fd uintptr) bool) error { return errors.ErrUnsupported }

// boundTCP4 returns a TCP socket that control prepared, bound to
// 127.0.0.1:port and not listening, and the port it got.
func boundTCP4(t *testing.T, port int, control func(syscall.RawConn) error) (int, error) {
	t.Helper()
	h, err := windows.Socket(windows.AF_INET, windows.SOCK_STREAM, windows.IPPROTO_TCP)
	if err != nil {
		t.Fatalf("socket: %v", err)
	}
	t.Cleanup(func() { windows.Closesocket(h) })
	if err := control(handleConn(h)); err != nil {
		t.Fatalf("setting options: %v", err)
	}
	if err := windows.Bind(h, &windows.SockaddrInet4{Port: port, Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		return 0, err
	}
	sa, err := windows.Getsockname(h)
	if err != nil {
		t.Fatalf("getsockname: %v", err)
	}
	return sa.(*windows.SockaddrInet4).Port, nil
}

// withReuseAddr sets SO_REUSEADDR, as a hijacker would.
func withReuseAddr(rc syscall.RawConn) error {
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = windows.SetsockoptInt(windows.Handle(fd), windows.SOL_SOCKET, windows.SO_REUSEADDR, 1)
	}); err != nil {
		return err
	}
	return serr
}

func modeControl(m reuse.Mode) func(syscall.RawConn) error {
	c := reuse.Config{Mode: m}
	return func(rc syscall.RawConn) error { return c.Control("tcp4", "127.0.0.1:0", rc) }
}

// TestHijackReuseAddrOverExclusive: a socket with SO_REUSEADDR cannot bind
// the address of an Exclusive socket (WSAEACCES). Contrast: it can bind the
// address of a Share socket, which is the hijack Windows allows.
func TestHijackReuseAddrOverExclusive(t *testing.T) {
	port, err := boundTCP4(t, 0, modeControl(reuse.Exclusive))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := boundTCP4(t, port, withReuseAddr); !errors.Is(err, windows.WSAEACCES) {
		t.Errorf("SO_REUSEADDR socket binding Exclusive 127.0.0.1:%d: %v, want WSAEACCES", port, err)
	} else {
		t.Logf("SO_REUSEADDR socket binding Exclusive 127.0.0.1:%d: %v", port, err)
	}

	port, err = boundTCP4(t, 0, modeControl(reuse.Share))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := boundTCP4(t, port, withReuseAddr); err != nil {
		t.Errorf("contrast: SO_REUSEADDR socket binding Share 127.0.0.1:%d: %v, want it bound", port, err)
	}
}

// TestHijackOverExclusiveListener: no socket binds the address of an
// Exclusive listener, with SO_REUSEADDR or without.
func TestHijackOverExclusiveListener(t *testing.T) {
	c := reuse.Config{Mode: reuse.Exclusive}
	ln, err := c.Listen(context.Background(), "tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	for _, tt := range []struct {
		name    string
		control func(syscall.RawConn) error
		want    error
	}{
		{"SO_REUSEADDR", withReuseAddr, windows.WSAEACCES},
		{"plain", func(syscall.RawConn) error { return nil }, windows.WSAEADDRINUSE},
	} {
		if _, err := boundTCP4(t, port, tt.control); !errors.Is(err, tt.want) {
			t.Errorf("%s socket binding 127.0.0.1:%s under an Exclusive listener: %v, want %v", tt.name, strconv.Itoa(port), err, tt.want)
		} else {
			t.Logf("%s socket binding 127.0.0.1:%d under an Exclusive listener: %v", tt.name, port, err)
		}
	}
}

// TestRetryNotOnAccessDenied: a bind refused with WSAEACCES, because another
// socket holds the address exclusively, is not retried; one refused with
// WSAEADDRINUSE is.
func TestRetryNotOnAccessDenied(t *testing.T) {
	port, err := boundTCP4(t, 0, modeControl(reuse.Exclusive))
	if err != nil {
		t.Fatal(err)
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	for _, tt := range []struct {
		mode  reuse.Mode
		want  error
		tries string
	}{
		{reuse.Share, windows.WSAEACCES, "(1 try)"},
		{reuse.Exclusive, windows.WSAEADDRINUSE, "(3 tries)"},
	} {
		c := reuse.Config{Mode: tt.mode, Retry: reuse.RetryPolicy{Attempts: 3, Initial: time.Millisecond}}
		ln, err := c.Listen(context.Background(), "tcp4", addr)
		if err == nil {
			ln.Close()
			t.Fatalf("%v Listen(%s) succeeded on an exclusively held address", tt.mode, addr)
		}
		if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.tries) {
			t.Errorf("%v Listen(%s): %v, want %v after %s", tt.mode, addr, err, tt.want, tt.tries)
		}
	}
}
