package reuse_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/sockreuse/reuse"
	"github.com/sockreuse/reuse/internal/sockettest"
	"golang.org/x/sys/unix"
)

func init() { sockettest.Register("handover", handoverWorker) }

// plainConfig shares the port with plain TCP listeners: a handover cannot
// steer an MPTCP one.
func plainConfig() *reuse.Config {
	c := new(reuse.Config)
	c.ListenConfig.SetMultipathTCP(false)
	return c
}

// handoverWorker listens on args[0] (port 0: any), prints "addr A", and
// serves each connection in its accept loop: it writes "ok\n" and waits for
// the client to close first. It obeys commands on stdin:
//
//	takeover  TakeOver the port; prints "steered"
//	release   Release it; prints "released"
//	drain     WaitDrained, then close; prints "closed N" (N connections served)
//	close     close at once; prints "closed N"
func handoverWorker(args []string) error {
	ln, err := plainConfig().Listen(context.Background(), "tcp", args[0])
	if err != nil {
		return err
	}
	fmt.Println("addr", ln.Addr())
	var served atomic.Int64
	loopDone := make(chan error, 1)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					err = nil
				}
				loopDone <- err
				return
			}
			_ = c.SetDeadline(time.Now().Add(5 * time.Second))
			if _, err := io.WriteString(c, "ok\n"); err == nil {
				_, _ = io.Copy(io.Discard, c)
				served.Add(1)
			}
			c.Close()
		}
	}()
	var takeover *reuse.Takeover
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		switch sc.Text() {
		case "takeover":
			if takeover, err = reuse.TakeOver(ln); err != nil {
				return err
			}
			fmt.Println("steered")
		case "release":
			if err := takeover.Release(); err != nil {
				return err
			}
			fmt.Println("released")
		case "drain", "close":
			if sc.Text() == "drain" {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				err := reuse.WaitDrained(ctx, ln, 20*time.Millisecond)
				cancel()
				if err != nil {
					return err
				}
			}
			if err := ln.Close(); err != nil {
				return err
			}
			if err := <-loopDone; err != nil {
				return err
			}
			fmt.Println("closed", served.Load())
		default:
			return fmt.Errorf("unknown command %q", sc.Text())
		}
	}
	return sc.Err()
}

// loadCounts is what the clients of restartUnderLoad saw.
type loadCounts struct {
	attempted, served, refused, reset, other atomic.Int64
}

func (c *loadCounts) String() string {
	return fmt.Sprintf("attempted %d, served %d, lost %d (refused %d, reset %d, other %d)",
		c.attempted.Load(), c.served.Load(), c.attempted.Load()-c.served.Load(), c.refused.Load(), c.reset.Load(), c.other.Load())
}

// Bounds of a load run: it stops after the handovers, or at either bound.
const (
	loadClients  = 2
	loadMaxConns = 300000 // clients close with RST (no TIME_WAIT), so ports are reused
	loadMaxTime  = 40 * time.Second
	handovers    = 20
)

// restartUnderLoad sets net.ipv4.tcp_migrate_req to migrate in this private
// namespace, then replaces the serving worker process 20 times while
// clients open connections as fast as they can. With handover, the new
// worker takes the port over and the old one drains before it closes;
// without, the old one closes as soon as the new one listens.
func restartUnderLoad(t *testing.T, migrate, handover bool) *loadCounts {
	writeSysctl(t, "net/ipv4/tcp_migrate_req", map[bool]string{false: "0", true: "1"}[migrate])
	writeSysctl(t, "net/ipv4/ip_local_port_range", "1024 65535")
	if got, err := reuse.MigratesQueue(); err != nil || got != migrate {
		t.Fatalf("MigratesQueue() = %v, %v; want %v", got, err, migrate)
	}
	old := sockettest.StartWorker(t, "handover", []string{"127.0.0.1:0"})
	addr := old.Expect("addr ", 10*time.Second)

	counts := new(loadCounts)
	stop := make(chan struct{})
	deadline := time.Now().Add(loadMaxTime)
	var wg sync.WaitGroup
	for i := 0; i < loadClients; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if counts.attempted.Add(1) > loadMaxConns || time.Now().After(deadline) {
					counts.attempted.Add(-1)
					return
				}
				connectOnce(addr, counts)
			}
		}()
	}
	for i := 0; i < handovers; i++ {
		next := sockettest.StartWorker(t, "handover", []string{addr})
		next.Expect("addr ", 10*time.Second)
		if handover {
			next.Send("takeover")
			next.Expect("steered", 10*time.Second)
			old.Send("drain")
		} else {
			old.Send("close")
		}
		old.Expect("closed ", 15*time.Second)
		if err := old.Wait(); err != nil {
			t.Fatal(err)
		}
		if handover {
			next.Send("release")
			next.Expect("released", 10*time.Second)
		}
		old = next
	}
	close(stop)
	wg.Wait()
	old.Send("close")
	old.Expect("closed ", 15*time.Second)
	if err := old.Wait(); err != nil {
		t.Fatal(err)
	}
	if counts.attempted.Load() >= loadMaxConns || time.Now().After(deadline) {
		t.Fatalf("the load ran out of its bounds before the %d handovers ended: %v", handovers, counts)
	}
	return counts
}

// connectOnce opens one connection to addr, reads the server's "ok" and
// closes first, and counts the outcome.
func connectOnce(addr string, counts *loadCounts) {
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		if errors.Is(err, syscall.ECONNREFUSED) {
			counts.refused.Add(1)
		} else {
			counts.other.Add(1)
		}
		return
	}
	defer c.Close()
	// Close with a reset: no TIME_WAIT, so the load never runs out of ports.
	_ = c.(*net.TCPConn).SetLinger(0)
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	switch {
	case err == nil && line == "ok\n":
		counts.served.Add(1)
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, io.EOF):
		counts.reset.Add(1)
	default:
		counts.other.Add(1)
	}
}

func writeSysctl(t *testing.T, name, value string) {
	t.Helper()
	if err := os.WriteFile("/proc/sys/"+name, []byte(value), 0); err != nil {
		t.Skipf("cannot set %s in the private namespace (before Linux 5.14 tcp_migrate_req does not exist): %v", strings.ReplaceAll(name, "/", "."), err)
	}
}

func TestHandoverUnderLoadMigrating(t *testing.T) {
	// Each load runs in a namespace of its own: the three overlap.
	t.Parallel()
	if !sockettest.RunInNetNS(t) {
		return
	}
	counts := restartUnderLoad(t, true, true)
	t.Logf("tcp_migrate_req=1, handover: %v", counts)
	if lost := counts.attempted.Load() - counts.served.Load(); lost != 0 {
		t.Errorf("%d handovers lost %d connections: %v", handovers, lost, counts)
	}
}

func TestHandoverUnderLoadNotMigrating(t *testing.T) {
	// Each load runs in a namespace of its own: the three overlap.
	t.Parallel()
	if !sockettest.RunInNetNS(t) {
		return
	}
	counts := restartUnderLoad(t, false, true)
	t.Logf("tcp_migrate_req=0, handover: %v", counts)
	if lost := counts.attempted.Load() - counts.served.Load(); lost != 0 {
		t.Errorf("%d handovers lost %d connections: %v", handovers, lost, counts)
	}
}

// TestNaiveCloseUnderLoadResets shows the problem: without a handover and
// without migration, the old listener's queue is reset when it closes.
func TestNaiveCloseUnderLoadResets(t *testing.T) {
	// Each load runs in a namespace of its own: the three overlap.
	t.Parallel()
	if !sockettest.RunInNetNS(t) {
		return
	}
	counts := restartUnderLoad(t, false, false)
	t.Logf("tcp_migrate_req=0, naive close: %v", counts)
	if counts.reset.Load() == 0 {
		t.Errorf("%d naive restarts reset no connection: %v", handovers, counts)
	}
}

// TestTakeOverSteersAndReleases checks that after TakeOver every connection
// reaches the new listener, and that after Release the hash spreads them
// again. 200 connections: under the hash, all landing on one of two
// listeners has probability 2^-199.
func TestTakeOverSteersAndReleases(t *testing.T) {
	cfg := plainConfig()
	oldLn, err := cfg.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer oldLn.Close()
	newLn, err := cfg.Listen(context.Background(), "tcp", oldLn.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer newLn.Close()
	tk, err := reuse.TakeOver(newLn)
	if e := sockettest.Emulator(); e != "" && err != nil {
		// It neither translates SO_ATTACH_REUSEPORT_CBPF (ENOPROTOOPT) nor
		// /proc/net/tcp, which a big-endian guest reads in the host's order.
		t.Skipf("%s cannot run a takeover: %v", e, err)
	}
	if err != nil {
		t.Fatal(err)
	}
	if got, want := countAccepted(t, oldLn, newLn, 200), [2]int{0, 200}; got != want {
		t.Errorf("after TakeOver, (old, new) accepted %v, want %v", got, want)
	}
	if err := tk.Release(); err != nil {
		t.Fatal(err)
	}
	if got := countAccepted(t, oldLn, newLn, 200); got[0] == 0 || got[1] == 0 {
		t.Errorf("after Release, (old, new) accepted %v, want both some", got)
	}
}

// countAccepted dials n connections to a's address and counts how many
// each of a and b accepted.
func countAccepted(t *testing.T, a, b net.Listener, n int) [2]int {
	t.Helper()
	var got [2]int
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i, ln := range []net.Listener{a, b} {
		i, ln := i, ln
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				c, err := ln.(*net.TCPListener).AcceptTCP()
				if err != nil {
					return
				}
				mu.Lock()
				got[i]++
				mu.Unlock()
				c.Close()
			}
		}()
	}
	for i := 0; i < n; i++ {
		c, err := net.Dial("tcp", a.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
	}
	for {
		mu.Lock()
		total := got[0] + got[1]
		mu.Unlock()
		if total == n {
			break
		}
		time.Sleep(time.Millisecond)
	}
	// Stop the accept loops without closing: a deadline in the past.
	for _, ln := range []net.Listener{a, b} {
		_ = ln.(*net.TCPListener).SetDeadline(time.Now())
	}
	wg.Wait()
	for _, ln := range []net.Listener{a, b} {
		_ = ln.(*net.TCPListener).SetDeadline(time.Time{})
	}
	return got
}

func TestTakeOverErrors(t *testing.T) {
	alone, err := plainConfig().Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer alone.Close()
	fds := sockettest.OpenFDs(t) // after the first socket, which opens the poller
	if _, err := reuse.TakeOver(alone); err == nil || !strings.Contains(err.Error(), "exactly one other listener") {
		t.Errorf("TakeOver of a listener alone on its port: %v, want an error naming the one other listener it needs", err)
	}
	t.Run("MPTCP", func(t *testing.T) {
		var mptcp reuse.Config
		mptcp.ListenConfig.SetMultipathTCP(true)
		m, err := mptcp.Listen(context.Background(), "tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		if !isMPTCP(t, m) {
			t.Skipf("the kernel gave a plain TCP listener: MPTCP is off here (net.mptcp.enabled)")
		}
		if _, err := reuse.TakeOver(m); !errors.Is(err, errors.ErrUnsupported) || !strings.Contains(err.Error(), "MPTCP") {
			t.Errorf("TakeOver of an MPTCP listener: %v, want an error naming MPTCP and wrapping errors.ErrUnsupported", err)
		}
	})
	unixLn, err := net.Listen("unix", t.TempDir()+"/sock")
	if err != nil {
		t.Fatal(err)
	}
	defer unixLn.Close()
	if _, err := reuse.TakeOver(unixLn); err == nil || !strings.Contains(err.Error(), "*net.UnixListener") {
		t.Errorf("TakeOver of a unix listener: %v, want an error naming its type", err)
	}
	if err := reuse.WaitDrained(context.Background(), alone, 0); err == nil || !strings.Contains(err.Error(), "quiet period") {
		t.Errorf("WaitDrained with no quiet period: %v, want an error naming it", err)
	}
	unixLn.Close()
	if got := sockettest.OpenFDs(t); got != fds {
		t.Errorf("open descriptors: %d after the errors, %d before", got, fds)
	}
}

func TestMigratesQueue(t *testing.T) {
	if !sockettest.RunInNetNS(t) {
		return
	}
	for _, v := range []string{"1", "0"} {
		writeSysctl(t, "net/ipv4/tcp_migrate_req", v)
		got, err := reuse.MigratesQueue()
		if err != nil || got != (v == "1") {
			t.Errorf("with tcp_migrate_req=%s, MigratesQueue() = %v, %v; want %v", v, got, err, v == "1")
		}
	}
}

func isMPTCP(t *testing.T, ln net.Listener) bool {
	rc, err := ln.(*net.TCPListener).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var proto int
	var serr error
	if err := rc.Control(func(fd uintptr) { proto, serr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_PROTOCOL) }); err != nil {
		t.Fatal(err)
	}
	if serr != nil {
		t.Fatal(serr)
	}
	return proto == unix.IPPROTO_MPTCP
}
