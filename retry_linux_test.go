package reuse_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sockreuse/reuse"
)

// The retry tests run on Linux, where every refused bind below is EADDRINUSE;
// Windows refuses some of them with WSAEACCES instead, which is not retried.

// holdTCP listens on a fresh loopback port with plain net, which carries no
// SO_REUSEPORT, so that every reuse socket is refused on its port.
func holdTCP(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// closeAfter closes c after d, as an old process that lets go of a port.
func closeAfter(t *testing.T, c interface{ Close() error }, d time.Duration) {
	t.Helper()
	done := make(chan struct{})
	timer := time.AfterFunc(d, func() { c.Close(); close(done) })
	t.Cleanup(func() {
		if timer.Stop() {
			return
		}
		<-done
	})
}

func TestRetryWaitsForBusyPort(t *testing.T) {
	for _, mode := range []reuse.Mode{reuse.Share, reuse.Exclusive} {
		mode := mode
		t.Run(mode.String()+"/tcp", func(t *testing.T) {
			held := holdTCP(t)
			addr := held.Addr().String()

			// Without Retry the bind fails at once, as before.
			plain := reuse.Config{Mode: mode}
			if ln, err := plain.Listen(context.Background(), "tcp4", addr); err == nil {
				ln.Close()
				t.Fatalf("Listen(%s) on a held port succeeded without Retry", addr)
			} else if !errors.Is(err, syscall.EADDRINUSE) || strings.Contains(err.Error(), "tries") {
				t.Fatalf("Listen(%s) without Retry: %v, want a single EADDRINUSE", addr, err)
			}

			// With Retry it binds once the holder lets go. 200 attempts of
			// at most 20ms each last at least 2s: far beyond the 100ms.
			closeAfter(t, held, 100*time.Millisecond)
			c := reuse.Config{Mode: mode, Retry: reuse.RetryPolicy{Attempts: 200, Initial: 5 * time.Millisecond, Max: 20 * time.Millisecond}}
			start := time.Now()
			ln, err := c.Listen(context.Background(), "tcp4", addr)
			if err != nil {
				t.Fatalf("Listen(%s) with Retry: %v", addr, err)
			}
			defer ln.Close()
			if got := ln.Addr().String(); got != addr {
				t.Errorf("Listen bound %s, want %s", got, addr)
			}
			t.Logf("bound %s after %v", addr, time.Since(start).Round(time.Millisecond))
		})
	}
	t.Run("Share/udp", func(t *testing.T) {
		held, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer held.Close()
		addr := held.LocalAddr().String()
		if pc, err := reuse.ListenPacket("udp4", addr); err == nil {
			pc.Close()
			t.Fatalf("ListenPacket(%s) on a held port succeeded without Retry", addr)
		}
		closeAfter(t, held, 100*time.Millisecond)
		c := reuse.Config{Retry: reuse.RetryPolicy{Attempts: 200, Initial: 5 * time.Millisecond, Max: 20 * time.Millisecond}}
		pc, err := c.ListenPacket(context.Background(), "udp4", addr)
		if err != nil {
			t.Fatalf("ListenPacket(%s) with Retry: %v", addr, err)
		}
		pc.Close()
	})
}

func TestRetryStopsAtAttempts(t *testing.T) {
	addr := holdTCP(t).Addr().String()
	c := reuse.Config{Mode: reuse.Exclusive, Retry: reuse.RetryPolicy{Attempts: 3, Initial: time.Millisecond, Max: 2 * time.Millisecond}}
	ln, err := c.Listen(context.Background(), "tcp4", addr)
	if err == nil {
		ln.Close()
		t.Fatalf("Listen(%s) on a port held throughout succeeded", addr)
	}
	if !errors.Is(err, syscall.EADDRINUSE) {
		t.Errorf("error %v does not match EADDRINUSE", err)
	}
	if want := addr + " (3 tries): "; !strings.Contains(err.Error(), want) {
		t.Errorf("error %q does not contain %q", err, want)
	}
}

func TestRetryStopsWhenContextDone(t *testing.T) {
	addr := holdTCP(t).Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	timer := time.AfterFunc(100*time.Millisecond, cancel)
	defer timer.Stop()
	// Left alone, these attempts would wait at least 1000 × 50ms = 50s.
	c := reuse.Config{Retry: reuse.RetryPolicy{Attempts: 1000, Initial: 50 * time.Millisecond, Max: 100 * time.Millisecond}}
	start := time.Now()
	ln, err := c.Listen(ctx, "tcp4", addr)
	elapsed := time.Since(start)
	if err == nil {
		ln.Close()
		t.Fatalf("Listen(%s) on a port held throughout succeeded", addr)
	}
	if !errors.Is(err, context.Canceled) || !errors.Is(err, syscall.EADDRINUSE) {
		t.Errorf("error %v: want it to match both context.Canceled and EADDRINUSE", err)
	}
	var oe *net.OpError
	if !errors.As(err, &oe) || oe.Op != "listen" || oe.Net != "tcp4" || oe.Addr == nil || oe.Addr.String() != addr {
		t.Errorf("error %#v: want a *net.OpError listen tcp4 %s", err, addr)
	}
	// One wait (at most 100ms) past the cancellation, plus a loaded machine.
	if elapsed > 5*time.Second {
		t.Errorf("Listen returned %v after the start, long after the context was cancelled at 100ms", elapsed)
	}
	t.Logf("gave up after %v: %v", elapsed.Round(time.Millisecond), err)
}

func TestFallback(t *testing.T) {
	busy1 := holdTCP(t).Addr().String()
	busy2 := holdTCP(t).Addr().String()

	t.Run("first that binds wins", func(t *testing.T) {
		free := holdTCP(t)
		freeAddr := free.Addr().String()
		free.Close()
		c := reuse.Config{Mode: reuse.Exclusive, Fallback: []string{busy2, freeAddr, "127.0.0.1:0"}}
		ln, err := c.Listen(context.Background(), "tcp4", busy1)
		if err != nil {
			t.Fatalf("Listen(%s, fallbacks %v): %v", busy1, c.Fallback, err)
		}
		defer ln.Close()
		if got := ln.Addr().String(); got != freeAddr {
			t.Errorf("bound %s, want the first free fallback %s", got, freeAddr)
		}
	})

	t.Run("every address in the error", func(t *testing.T) {
		bad := "127.0.0.1:99999"
		c := reuse.Config{Fallback: []string{bad, busy2}, Retry: reuse.RetryPolicy{Attempts: 2, Initial: time.Millisecond}}
		ln, err := c.Listen(context.Background(), "tcp4", busy1)
		if err == nil {
			ln.Close()
			t.Fatal("Listen succeeded with every address busy or invalid")
		}
		if !errors.Is(err, syscall.EADDRINUSE) {
			t.Errorf("error %v does not match EADDRINUSE", err)
		}
		for _, want := range []string{
			busy1 + " (2 tries): Share (SO_REUSEADDR=1 SO_REUSEPORT=1): bind: address already in use",
			bad + " (1 try): ",
			"invalid port",
			busy2 + " (2 tries): ",
		} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not contain %q", err, want)
			}
		}
	})
}
