package reuse_test

import (
	"context"
	"errors"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sockreuse/reuse"
)

const (
	stressCycles  = 10000
	stressWorkers = 8
)

// stress runs call stressCycles times, spread over stressWorkers goroutines,
// and reports the first few errors.
func stress(t *testing.T, call func(i int) error) {
	t.Helper()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	for w := 0; w < stressWorkers; w++ {
		w := w
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < stressCycles; i += stressWorkers {
				if err := call(i); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if i == 5 {
			t.Errorf("... and %d more", len(errs)-5)
			break
		}
		t.Error(err)
	}
}

// settle waits, at most 10s, until the descriptors and goroutines are back
// to fds and goroutines: closed sockets leave the poller, and the timers of
// retries end, a little after the calls return.
func settle(t *testing.T, fds, goroutines int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		nowFDs, nowG := openFDs(t), runtime.NumGoroutine()
		if nowFDs <= fds && nowG <= goroutines {
			t.Logf("descriptors %d before, %d after; goroutines %d before, %d after", fds, nowFDs, goroutines, nowG)
			return
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			t.Fatalf("descriptors %d before, %d after; goroutines %d before, %d after:\n%s", fds, nowFDs, goroutines, nowG, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// startPoller opens and closes a socket, so that the poller's own
// descriptors, which stay open for the life of the process, are counted in
// the counts before.
func startPoller(t *testing.T) {
	t.Helper()
	ln, err := reuse.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln.Close()
}

func TestStressListenClose(t *testing.T) {
	startPoller(t)
	fds, goroutines := openFDs(t), runtime.NumGoroutine()
	share, excl := &reuse.Config{}, &reuse.Config{Mode: reuse.Exclusive}
	ctx := context.Background()
	start := time.Now()
	stress(t, func(i int) error {
		c := share
		if i%2 == 1 {
			c = excl
		}
		if i%4 < 2 {
			ln, err := c.Listen(ctx, "tcp4", "127.0.0.1:0")
			if err != nil {
				return err
			}
			return ln.Close()
		}
		pc, err := c.ListenPacket(ctx, "udp6", "[::1]:0")
		if err != nil {
			return err
		}
		return pc.Close()
	})
	t.Logf("%d listen/close cycles in %v", stressCycles, time.Since(start).Round(time.Millisecond))
	settle(t, fds, goroutines)
}

func TestStressFailingCalls(t *testing.T) {
	ctx := context.Background()
	excl := &reuse.Config{Mode: reuse.Exclusive}
	addr, udpAddr := holdExclusive(t)
	retry := &reuse.Config{Retry: reuse.RetryPolicy{Attempts: 2, Initial: time.Microsecond}, Fallback: []string{"127.0.0.1:65536"}}
	bad := &reuse.Config{Mode: reuse.Mode(7)}

	// Each call must fail with the error named beside it.
	calls := []struct {
		want error
		call func() (interface{ Close() error }, error)
	}{
		{syscall.EADDRINUSE, func() (interface{ Close() error }, error) { return excl.Listen(ctx, "tcp4", addr) }},
		{syscall.EADDRINUSE, func() (interface{ Close() error }, error) { return reuse.Listen("tcp4", addr) }},
		{syscall.EADDRINUSE, func() (interface{ Close() error }, error) { return reuse.ListenPacket("udp4", udpAddr) }},
		{syscall.EADDRINUSE, func() (interface{ Close() error }, error) { return retry.Listen(ctx, "tcp4", addr) }},
		{syscall.EADDRINUSE, func() (interface{ Close() error }, error) { return excl.Dial(ctx, "tcp4", addr, addr) }},
		{errors.ErrUnsupported, func() (interface{ Close() error }, error) { return reuse.Listen("unix", "/nonexistent/socket") }},
		{errors.ErrUnsupported, func() (interface{ Close() error }, error) { return reuse.Dial("ip4:icmp", "", "127.0.0.1") }},
		{nil, func() (interface{ Close() error }, error) { return bad.Listen(ctx, "tcp4", "127.0.0.1:0") }},
		{nil, func() (interface{ Close() error }, error) { return reuse.Listen("tcp4", "127.0.0.1:65536") }},
		{nil, func() (interface{ Close() error }, error) { return reuse.Dial("tcp4", "127.0.0.1:x", addr) }},
	}
	fds, goroutines := openFDs(t), runtime.NumGoroutine()
	start := time.Now()
	stress(t, func(i int) error {
		k := i % len(calls)
		c, err := calls[k].call()
		if err == nil {
			c.Close()
			return errors.New("call " + strconv.Itoa(k) + " succeeded")
		}
		if calls[k].want != nil && !errors.Is(err, calls[k].want) {
			return err
		}
		return nil
	})
	t.Logf("%d failing calls in %v", stressCycles, time.Since(start).Round(time.Millisecond))
	settle(t, fds, goroutines)
}
