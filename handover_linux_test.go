package reuse_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"strconv"
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

func init() {
	sockettest.Register("handover", handoverWorker)
	sockettest.Register("udp-handover", udpHandoverWorker)
}

// handoverWorker is one generation of a server. Its arguments: the address
// (port 0: any), the number of listeners k, "mptcp" or "tcp", the quiet
// period, then "stay" to keep serving once replaced until told "close",
// "slot=NAME" for the Handover's Slot, "readme" to do as the README's
// server does when TakeOver fails: print "takeover failed: ERR" and serve
// on (beside the old process), ready for another "takeover", and "defer"
// to accept a connection only once its first bytes came (TCP_DEFER_ACCEPT:
// until then its handshake stays in flight).
// It listens, prints "addr A" and "proto P", and serves each connection:
// it writes "ok\n" and waits for the client to close first. Commands on
// stdin:
//
//	takeover  TakeOver, in the background; prints "took over", then, once
//	          replaced, "replaced", and (unless stay) closes, prints
//	          "closed N" (N connections served) and exits
//	cancel    cancels the context of the TakeOver under way
//	close     close at once; prints "closed N"
//	stop      stop accepting, close once a connection waits in an accept
//	          queue (which the close resets, or migrates where
//	          tcp_migrate_req=1); prints "closed N"
//	count     prints "served N"
func handoverWorker(args []string) error {
	if os.Getenv("REUSE_TEST_PRIVATE_TMP") != "" {
		// A /tmp of this process's mount namespace (TestHandoverOwnMountNamespace).
		if err := unix.Mount("", "/", "", unix.MS_PRIVATE|unix.MS_REC, ""); err != nil {
			return err
		}
		if err := unix.Mount("tmpfs", "/tmp", "tmpfs", 0, ""); err != nil {
			return err
		}
	}
	k, err := strconv.Atoi(args[1])
	if err != nil {
		return err
	}
	quiet, err := time.ParseDuration(args[3])
	if err != nil {
		return err
	}
	stay, slot, readme, deferAccept := false, "", false, false
	for _, a := range args[4:] {
		if a == "stay" {
			stay = true
		} else if a == "readme" {
			readme = true
		} else if a == "defer" {
			deferAccept = true
		} else if name, ok := strings.CutPrefix(a, "slot="); ok {
			slot = name
		}
	}
	var cfg reuse.Config
	cfg.ListenConfig.SetMultipathTCP(args[2] == "mptcp")
	if deferAccept {
		cfg.ListenConfig.Control = func(_, _ string, rc syscall.RawConn) error {
			var serr error
			if err := rc.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_DEFER_ACCEPT, 1) }); err != nil {
				return err
			}
			return serr
		}
	}
	lns, err := cfg.ListenGroup(context.Background(), "tcp", args[0], k)
	if err != nil {
		return err
	}
	fmt.Println("addr", lns[0].Addr())
	fmt.Println("proto", protoName(lns[0]))
	var served atomic.Int64
	var loops sync.WaitGroup
	for _, ln := range lns {
		ln := ln
		loops.Add(1)
		go func() {
			defer loops.Done()
			for {
				c, err := ln.Accept()
				if err != nil {
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
	}
	closeAll := func() {
		for _, ln := range lns {
			ln.Close()
		}
		loops.Wait()
		fmt.Println("closed", served.Load())
	}
	ho := &reuse.Handover{Slot: slot, Quiet: quiet}
	took := make(chan error, 1)
	cancelTakeOver := func() {}
	cmds := stdinLines()
	for {
		select {
		case cmd, ok := <-cmds:
			if !ok {
				return ho.Close()
			}
			switch cmd {
			case "takeover":
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				cancelTakeOver = cancel
				socks := make([]any, len(lns))
				for i, ln := range lns {
					socks[i] = ln
				}
				go func(ho *reuse.Handover) { took <- ho.TakeOver(ctx, socks...) }(ho)
			case "cancel":
				cancelTakeOver()
			case "close":
				closeAll()
				return ho.Close()
			case "stop":
				for _, ln := range lns {
					_ = ln.(*net.TCPListener).SetDeadline(time.Now())
				}
				loops.Wait()
				if err := waitAcceptQueue(lns); err != nil {
					return err
				}
				closeAll()
				return ho.Close()
			case "count":
				fmt.Println("served", served.Load())
			case "exited?":
				select {
				case <-ho.OldExited():
					fmt.Println("exited true")
				default:
					fmt.Println("exited false")
				}
			default:
				return fmt.Errorf("unknown command %q", cmd)
			}
		case err := <-took:
			cancelTakeOver()
			switch {
			case err == nil:
				fmt.Println("took over")
				go func(ho *reuse.Handover) {
					<-ho.OldExited()
					fmt.Println("old exited")
				}(ho)
			case readme:
				fmt.Println("takeover failed:", err)
				ho = &reuse.Handover{Slot: slot, Quiet: quiet}
			default:
				return err
			}
		case <-ho.Replaced():
			fmt.Println("replaced")
			if !stay {
				closeAll()
				return ho.Close()
			}
			// Only "close", "letgo" then "exit", or "count" are expected
			// from now on.
			for cmd := range cmds {
				switch cmd {
				case "count":
					fmt.Println("served", served.Load())
					continue
				case "letgo": // and live on
					closeAll()
					ho.Close()
					fmt.Println("let go")
					continue
				case "exit":
					return nil
				}
				closeAll()
				return ho.Close()
			}
			return ho.Close()
		}
	}
}

// waitAcceptQueue waits, 10 s at most, until a connection waits in the
// accept queue of one of lns (TCP_INFO's tcpi_unacked, on a listener).
func waitAcceptQueue(lns []net.Listener) error {
	for start := time.Now(); time.Since(start) < 10*time.Second; time.Sleep(50 * time.Microsecond) {
		for _, ln := range lns {
			rc, err := ln.(*net.TCPListener).SyscallConn()
			if err != nil {
				return err
			}
			var info *unix.TCPInfo
			var ierr error
			if err := rc.Control(func(fd uintptr) { info, ierr = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO) }); err != nil || ierr != nil {
				return errors.Join(err, ierr)
			}
			if info.Unacked > 0 {
				return nil
			}
		}
	}
	return errors.New("no connection waited in an accept queue in 10 s")
}

func protoName(ln net.Listener) string {
	rc, err := ln.(*net.TCPListener).SyscallConn()
	if err != nil {
		return err.Error()
	}
	proto := 0
	_ = rc.Control(func(fd uintptr) { proto, _ = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_PROTOCOL) })
	if proto == unix.IPPROTO_MPTCP {
		return "mptcp"
	}
	return "tcp"
}

// loadCounts is what the clients of a load saw.
type loadCounts struct {
	attempted, served, refused, reset, other atomic.Int64
}

func (c *loadCounts) lost() int64 { return c.attempted.Load() - c.served.Load() }

func (c *loadCounts) String() string {
	return fmt.Sprintf("attempted %d, served %d, lost %d (refused %d, reset %d, other %d)",
		c.attempted.Load(), c.served.Load(), c.lost(), c.refused.Load(), c.reset.Load(), c.other.Load())
}

// Bounds of a load: it stops when told, or at either bound.
const (
	loadClients  = 2
	loadMaxConns = 300000 // clients close with RST (no TIME_WAIT), so ports are reused
	loadMaxTime  = 40 * time.Second
)

// replacements is how many times the load tests replace a server: 20, or 5
// under the race detector, which looks for races, not losses, and makes
// each replacement many times slower (CI runs the suite without it too).
var replacements = map[bool]int{false: 20, true: 5}[raceEnabled]

// load opens connections to addr from loadClients goroutines as fast as
// they can until stop is called, which returns the counts.
func load(t *testing.T, addr string) (stop func() *loadCounts) {
	_, stop = liveLoad(t, addr)
	return stop
}

// liveLoad is load, with the counts as they go.
func liveLoad(t *testing.T, addr string) (counts *loadCounts, stop func() *loadCounts) {
	counts = new(loadCounts)
	done := make(chan struct{})
	deadline := time.Now().Add(loadMaxTime)
	var wg sync.WaitGroup
	for i := 0; i < loadClients; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-done:
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
	return counts, func() *loadCounts {
		close(done)
		wg.Wait()
		if counts.attempted.Load() >= loadMaxConns || time.Now().After(deadline) {
			t.Fatalf("the load ran out of its bounds: %v", counts)
		}
		return counts
	}
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

// shape is what one generation of the server listens with.
type shape struct {
	k     int  // listeners in the process
	mptcp bool // Go's default since 1.24: ListenConfig.SetMultipathTCP(true)
}

func (s shape) String() string {
	proto := "tcp"
	if s.mptcp {
		proto = "mptcp"
	}
	return fmt.Sprintf("%d %s", s.k, proto)
}

func (s shape) args(addr string, quiet time.Duration, extra ...string) []string {
	proto := "tcp"
	if s.mptcp {
		proto = "mptcp"
	}
	return append([]string{addr, strconv.Itoa(s.k), proto, quiet.String()}, extra...)
}

// startGeneration starts a generation and returns it with its address.
func startGeneration(t *testing.T, s shape, addr string, quiet time.Duration, extra ...string) (*sockettest.Worker, string) {
	t.Helper()
	w := sockettest.StartWorker(t, "handover", s.args(addr, quiet, extra...))
	addr = w.Expect("addr ", 10*time.Second)
	if proto := w.Expect("proto ", 10*time.Second); s.mptcp && proto != "mptcp" {
		t.Skipf("the kernel gave a plain TCP listener where MPTCP was asked: MPTCP is off here (net.mptcp.enabled)")
	}
	return w, addr
}

// restartUnderLoad replaces a server of shape s 20 times while clients
// connect as fast as they can. With handover, each generation takes over
// with reuse.Handover and the old one closes once replaced; without, the
// old one stops accepting soon after the new one listens, and closes.
func restartUnderLoad(t *testing.T, s shape, handover bool) *loadCounts {
	quiet := 20 * time.Millisecond
	if q, err := time.ParseDuration(os.Getenv("Q")); err == nil {
		quiet = q
	}
	old, addr := startGeneration(t, s, "127.0.0.1:0", quiet)
	if handover {
		old.Send("takeover")
		old.Expect("took over", 10*time.Second)
	}
	stop := load(t, addr)
	for i := 0; i < replacements; i++ {
		next, _ := startGeneration(t, s, addr, quiet)
		if handover {
			next.Send("takeover")
			old.Expect("replaced", 15*time.Second)
			next.Expect("took over", 15*time.Second)
		} else {
			// The old generation stops accepting and closes; so that
			// each close finds a connection queued, as a naive close
			// under load does sooner or later, it closes once one is.
			time.Sleep(5 * time.Millisecond) // both generations serve
			old.Send("stop")
		}
		old.Expect("closed ", 15*time.Second)
		if err := old.Wait(); err != nil {
			t.Fatal(err)
		}
		old = next
	}
	counts := stop()
	old.Send("close")
	old.Expect("closed ", 15*time.Second)
	if err := old.Wait(); err != nil {
		t.Fatal(err)
	}
	return counts
}

// eachMigrateReq runs f, in parallel, for net.ipv4.tcp_migrate_req 0 and
// 1, each in a private network namespace of its own (whose ephemeral ports
// the load may use up to 1024-65535).
func eachMigrateReq(t *testing.T, f func(t *testing.T, migrate string)) {
	for _, migrate := range []string{"0", "1"} {
		migrate := migrate
		t.Run("tcp_migrate_req="+migrate, func(t *testing.T) {
			t.Parallel()
			if !sockettest.RunInNetNS(t) {
				return
			}
			writeSysctl(t, "net/ipv4/tcp_migrate_req", migrate)
			writeSysctl(t, "net/ipv4/ip_local_port_range", "1024 65535")
			f(t, migrate)
		})
	}
}

// TestHandoverUnderLoad replaces a server 20 times under continuous load,
// for each shape (one listener, a group of 3) and protocol (plain TCP,
// MPTCP), with net.ipv4.tcp_migrate_req 0 and 1, and loses no connection;
// the naive replacement beside it, with tcp_migrate_req 0, loses some.
func TestHandoverUnderLoad(t *testing.T) {
	requireSteering(t) // the handover steers the group: qemu-user lacks the option
	eachMigrateReq(t, func(t *testing.T, migrate string) {
		for _, s := range []shape{{1, false}, {1, true}, {3, false}, {3, true}} {
			t.Run(s.String(), func(t *testing.T) {
				counts := restartUnderLoad(t, s, true)
				t.Logf("%d handovers of %v: %v", replacements, s, counts)
				if counts.lost() != 0 || counts.served.Load() == 0 {
					t.Errorf("%d handovers of %v lost %d connections: %v", replacements, s, counts.lost(), counts)
				}
			})
		}
		t.Run("naive", func(t *testing.T) {
			s := shape{1, false}
			counts := restartUnderLoad(t, s, false)
			t.Logf("%d naive restarts of %v: %v", replacements, s, counts)
			if migrate == "0" && counts.reset.Load() == 0 {
				t.Errorf("%d naive restarts with tcp_migrate_req=0 reset no connection: %v", replacements, counts)
			}
		})
	})
}

// countAccepted dials n connections to addr and counts how many each
// listener of lns accepted.
func countAccepted(t *testing.T, addr string, lns []net.Listener, n int) []int {
	t.Helper()
	got := make([]int, len(lns))
	var total atomic.Int64
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i, ln := range lns {
		i, ln := i, ln
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				mu.Lock()
				got[i]++
				mu.Unlock()
				total.Add(1)
				c.Close()
			}
		}()
	}
	for i := 0; i < n; i++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
	}
	for start := time.Now(); total.Load() < int64(n); time.Sleep(time.Millisecond) {
		if time.Since(start) > 10*time.Second {
			t.Fatalf("%d of %d connections accepted", total.Load(), n)
		}
	}
	// Stop the accept loops without closing: a deadline in the past.
	for _, ln := range lns {
		_ = ln.(*net.TCPListener).SetDeadline(time.Now())
	}
	wg.Wait()
	for _, ln := range lns {
		_ = ln.(*net.TCPListener).SetDeadline(time.Time{})
	}
	return got
}

func listenGroup(t *testing.T, addr string, k int, mptcp bool) []net.Listener {
	t.Helper()
	var cfg reuse.Config
	cfg.ListenConfig.SetMultipathTCP(mptcp)
	lns, err := cfg.ListenGroup(context.Background(), "tcp", addr, k)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, ln := range lns {
			ln.Close()
		}
	})
	if mptcp && protoName(lns[0]) != "mptcp" {
		t.Skipf("the kernel gave a plain TCP listener where MPTCP was asked: MPTCP is off here (net.mptcp.enabled)")
	}
	return lns
}

func anys[T any](s []T) []any {
	a := make([]any, len(s))
	for i, v := range s {
		a[i] = v
	}
	return a
}

// TestTakeOverSteers checks, in one process, IPv4 and IPv6, that once a new
// group of k listeners took over, the old group receives no connection (200 of 200 go
// to the new one), and that after the old one let go the kernel's hash
// spreads connections over the whole new group again (each of k listeners
// gets some of 300: all missing one has probability below k(1-1/k)^300).
func TestTakeOverSteers(t *testing.T) {
	requireSteering(t) // the handover steers the group: qemu-user lacks the option
	for _, c := range []struct {
		s    shape
		addr string
	}{
		{shape{1, false}, "127.0.0.1:0"}, {shape{1, true}, "127.0.0.1:0"},
		{shape{3, false}, "127.0.0.1:0"}, {shape{3, true}, "127.0.0.1:0"},
		{shape{3, false}, "[::1]:0"}, {shape{3, true}, "[::1]:0"},
	} {
		s := c.s
		t.Run(s.String()+" "+c.addr, func(t *testing.T) {
			if c.addr[0] == '[' {
				if ln, err := net.Listen("tcp6", "[::1]:0"); err != nil {
					t.Skipf("no IPv6 loopback here: %v", err)
				} else {
					ln.Close()
				}
			}
			oldLns := listenGroup(t, c.addr, s.k, s.mptcp)
			addr := oldLns[0].Addr().String()
			oldHo := reuse.Handover{Quiet: 10 * time.Millisecond}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			if err := oldHo.TakeOver(ctx, anys(oldLns)...); err != nil {
				t.Fatal(err)
			}
			// The old group serves, as a server does while it is taken over.
			oldAccepted := acceptAndHold(t, oldLns)
			newLns := listenGroup(t, addr, s.k, s.mptcp)
			var newHo reuse.Handover
			took := make(chan error, 1)
			go func() { took <- newHo.TakeOver(ctx, anys(newLns)...) }()
			select {
			case <-oldHo.Replaced():
			case err := <-took:
				t.Fatalf("TakeOver returned %v before the old group was replaced", err)
			}
			before := oldAccepted()
			got := countAccepted(t, addr, newLns, 200)
			if n := oldAccepted() - before; n != 0 || sum(got) != 200 {
				t.Errorf("once taken over, the old and new groups accepted %d and %d of 200, want 0 and 200 (%v)", n, sum(got), got)
			}
			for _, ln := range oldLns {
				ln.Close()
			}
			if err := oldHo.Close(); err != nil {
				t.Fatal(err)
			}
			if err := <-took; err != nil {
				t.Fatal(err)
			}
			got = countAccepted(t, addr, newLns, 300)
			for i, n := range got {
				if n == 0 {
					t.Errorf("after the handover, listener %d of %d accepted none of 300 (%v): still steered?", i+1, s.k, got)
				}
			}
			if err := newHo.Close(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// acceptAndHold accepts connections on lns until they close, holding them
// open until the test ends, and returns a function that counts them.
func acceptAndHold(t *testing.T, lns []net.Listener) func() int {
	var n atomic.Int64
	var mu sync.Mutex
	var held []net.Conn
	for _, ln := range lns {
		ln := ln
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				n.Add(1)
				mu.Lock()
				held = append(held, c)
				mu.Unlock()
			}
		}()
	}
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range held {
			c.Close()
		}
	})
	return func() int { return int(n.Load()) }
}

// dropsOf sums udpDrops over pcs.
func dropsOf(t *testing.T, pcs []net.PacketConn) int {
	t.Helper()
	n := 0
	for _, pc := range pcs {
		d, err := udpDrops(pc)
		if err != nil {
			t.Fatal(err)
		}
		n += d
	}
	return n
}

func sum(s []int) int {
	n := 0
	for _, v := range s {
		n += v
	}
	return n
}

// served asks a generation how many connections it served, once the count
// has settled: a connection counts once its client closed, which the
// server may see after the client returned.
func served(t *testing.T, w *sockettest.Worker) int {
	t.Helper()
	last := -1
	for {
		w.Send("count")
		n, err := strconv.Atoi(w.Expect("served ", 10*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		if n == last {
			return n
		}
		last = n
		time.Sleep(20 * time.Millisecond)
	}
}

// dialServed opens n connections to addr one after the other and fails the
// test unless each was served.
func dialServed(t *testing.T, addr string, n int) {
	t.Helper()
	counts := new(loadCounts)
	for i := 0; i < n; i++ {
		counts.attempted.Add(1)
		connectOnce(addr, counts)
	}
	if counts.lost() != 0 {
		t.Fatalf("%d connections: %v", n, counts)
	}
}

// waitSteered waits until connections to addr no longer reach old.
func waitSteered(t *testing.T, old *sockettest.Worker, addr string) {
	t.Helper()
	for start := time.Now(); time.Since(start) < 15*time.Second; {
		before := served(t, old)
		dialServed(t, addr, 30)
		if served(t, old) == before {
			return
		}
	}
	t.Fatal("the old generation still receives connections 15 s after the new one began to take over")
}

// checkHashed fails the test unless connections to addr are spread by the
// kernel's hash over a and a newcomer that joins without a handover: a
// program left behind would give all of them to one slot. Of 200
// connections, all reaching one of two listeners has probability 2^-199.
func checkHashed(t *testing.T, s shape, a *sockettest.Worker, addr string) {
	t.Helper()
	q, _ := startGeneration(t, s, addr, time.Second)
	before := served(t, a)
	dialServed(t, addr, 200)
	got := served(t, a) - before
	if got == 0 || got == 200 {
		t.Errorf("of 200 connections, the generation serving took %d, a newcomer %d: a steering program was left on the group", got, 200-got)
	}
	q.Send("close")
	q.Expect("closed ", 10*time.Second)
}

// midHandover starts a generation of shape s that takes over an address,
// and a new one that takes it over in turn, and returns once new
// connections reach the new one while the old one, which stays a minute,
// still drains.
func midHandover(t *testing.T, s shape) (old, next *sockettest.Worker, addr string) {
	t.Helper()
	t.Setenv("REUSE_TEST_HOLD_DRAIN", "1")
	old, addr = startGeneration(t, s, "127.0.0.1:0", time.Minute, "stay")
	old.Send("takeover")
	old.Expect("took over", 10*time.Second)
	next, _ = startGeneration(t, s, addr, 10*time.Millisecond)
	next.Send("takeover")
	waitSteered(t, old, addr)
	return old, next, addr
}

// TestHandoverNewDies kills the new process in the middle of its takeover:
// the old one, still draining, serves every connection again, and no
// program is left on the group.
func TestHandoverNewDies(t *testing.T) {
	requireSteering(t) // the handover steers the group: qemu-user lacks the option
	for _, s := range []shape{{1, false}, {1, true}} {
		t.Run(s.String(), func(t *testing.T) {
			old, next, addr := midHandover(t, s)
			if err := syscall.Kill(next.Pid(), syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			_ = next.Wait()
			before := served(t, old)
			dialServed(t, addr, 100)
			if got := served(t, old) - before; got != 100 {
				t.Errorf("after the new process died, the old one served %d of 100 connections", got)
			}
			checkHashed(t, s, old, addr)
			old.Send("close")
			old.Expect("closed ", 10*time.Second)
		})
	}
}

// TestHandoverOldDies kills the old process while it drains: the new one's
// TakeOver returns, it serves everything, and no program is left.
func TestHandoverOldDies(t *testing.T) {
	requireSteering(t) // the handover steers the group: qemu-user lacks the option
	for _, s := range []shape{{1, false}, {1, true}} {
		t.Run(s.String(), func(t *testing.T) {
			old, next, addr := midHandover(t, s)
			if err := syscall.Kill(old.Pid(), syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			_ = old.Wait()
			next.Expect("took over", 10*time.Second)
			dialServed(t, addr, 50)
			checkHashed(t, s, next, addr)
			next.Send("close")
			next.Expect("closed ", 10*time.Second)
		})
	}
}

// TestHandoverRace starts two new processes that take over at once, under
// load: one takes over from the old one, then the other from it, and no
// connection is lost.
func TestHandoverRace(t *testing.T) {
	requireSteering(t) // the handover steers the group: qemu-user lacks the option
	s := shape{1, true}
	const quiet = 20 * time.Millisecond
	old, addr := startGeneration(t, s, "127.0.0.1:0", quiet)
	old.Send("takeover")
	old.Expect("took over", 10*time.Second)
	stop := load(t, addr)
	a, _ := startGeneration(t, s, addr, quiet)
	b, _ := startGeneration(t, s, addr, quiet)
	a.Send("takeover")
	b.Send("takeover")
	old.Expect("closed ", 15*time.Second)
	a.Expect("took over", 15*time.Second)
	b.Expect("took over", 15*time.Second)
	// The second TakeOver to return took over from the first, which let go.
	_ = old.Wait()
	counts := stop()
	t.Logf("two racing successors: %v", counts)
	if counts.lost() != 0 || counts.served.Load() == 0 {
		t.Errorf("two racing successors lost %d connections: %v", counts.lost(), counts)
	}
	dialServed(t, addr, 50)
	_ = a.Wait()
	_ = b.Wait()
}

// TestTakeOverErrors gives TakeOver bad sockets and misuses a Handover:
// each gets a *net.OpError naming what was wrong, and nothing leaks.
func TestTakeOverErrors(t *testing.T) {
	requireSteering(t) // the handover steers the group: qemu-user lacks the option
	var nilHo *reuse.Handover
	if err := nilHo.TakeOver(context.Background()); err == nil {
		t.Error("TakeOver on a nil *Handover: no error")
	}
	if nilHo.Replaced() != nil || nilHo.Close() != nil {
		t.Error("a nil *Handover: Replaced or Close did something")
	}
	var zero reuse.Handover
	if err := zero.Close(); err != nil {
		t.Errorf("Close of a zero Handover: %v", err)
	}
	select {
	case <-zero.Replaced():
		t.Error("a Handover that never took over was replaced")
	default:
	}

	ln, err := reuse.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	other, err := reuse.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	pc, err := reuse.ListenPacket("udp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	excl := reuse.Config{Mode: reuse.Exclusive}
	exLn, err := excl.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer exLn.Close()
	unixLn, err := net.Listen("unix", t.TempDir()+"/sock")
	if err != nil {
		t.Fatal(err)
	}
	defer unixLn.Close()
	closed, err := reuse.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed.Close()

	fds := sockettest.OpenFDs(t)
	goroutines := runtime.NumGoroutine()
	for _, tc := range []struct {
		name  string
		socks []any
		want  string
	}{
		{"none", nil, "at least one socket"},
		{"nil listener", []any{(*net.TCPListener)(nil)}, "nil *net.TCPListener"},
		{"nil", []any{nil}, "is a <nil>"},
		{"unix listener", []any{unixLn}, "*net.UnixListener"},
		{"two addresses", []any{ln, other}, "a handover takes the sockets of one address"},
		{"tcp and udp", []any{ln, pc}, "a handover takes the sockets of one address"},
		{"Exclusive", []any{exLn}, "does not share its port"},
		{"closed", []any{closed}, "closed"},
	} {
		var ho reuse.Handover
		err := ho.TakeOver(context.Background(), tc.socks...)
		var oe *net.OpError
		if !errors.As(err, &oe) || oe.Op != "takeover" || !strings.Contains(err.Error(), tc.want) ||
			!strings.HasPrefix(oe.Err.Error(), "reuse: ") || strings.Count(err.Error(), "reuse: ") != 1 {
			t.Errorf("%s: TakeOver: %v, want a *net.OpError of Op takeover naming %q, its Err after one \"reuse: \"", tc.name, err, tc.want)
		}
		if err := ho.Close(); err != nil {
			t.Errorf("%s: Close after a failed TakeOver: %v", tc.name, err)
		}
	}
	// A nil context is an error, as everywhere in the package, not net's
	// panic; the Handover then takes over as if it had not been called.
	var nilCtx context.Context
	var withNil reuse.Handover
	err = withNil.TakeOver(nilCtx, ln)
	if want := "takeover: reuse: nil context.Context"; err == nil || err.Error() != want {
		t.Errorf("TakeOver with a nil context: %v, want %q", err, want)
	}
	if err := withNil.TakeOver(context.Background(), ln); err != nil {
		t.Errorf("TakeOver after one with a nil context: %v", err)
	}
	if err := withNil.Close(); err != nil {
		t.Fatal(err)
	}
	var twice reuse.Handover
	if err := twice.TakeOver(context.Background(), ln); err != nil {
		t.Fatal(err)
	}
	if err := twice.TakeOver(context.Background(), ln); err == nil || !strings.Contains(err.Error(), "already taken over") {
		t.Errorf("a second TakeOver on one Handover: %v, want an error saying it already took over", err)
	}
	if err := twice.Close(); err != nil {
		t.Fatal(err)
	}
	if got := sockettest.OpenFDs(t); got != fds {
		t.Errorf("open descriptors: %d after the errors, %d before", got, fds)
	}
	for start := time.Now(); runtime.NumGoroutine() > goroutines && time.Since(start) < 5*time.Second; {
		time.Sleep(time.Millisecond)
	}
	if got := runtime.NumGoroutine(); got > goroutines {
		t.Errorf("goroutines: %d after the errors, %d before", got, goroutines)
	}
}

// udpStream sends numbered datagrams to addr from sources sockets of their
// own (each its own source port), round robin, until stop is called, which
// returns how many were sent.
func udpStream(t *testing.T, addr string, sources int) (stop func() int) {
	t.Helper()
	conns := udpSources(t, addr, sources)
	done := make(chan struct{})
	sent := make(chan int)
	go func() {
		n := 0
		defer func() { sent <- n }()
		for {
			for _, c := range conns {
				select {
				case <-done:
					return
				default:
				}
				if _, err := fmt.Fprintf(c, "%d", n); err != nil {
					t.Error(err)
					return
				}
				n++
				if n%20 == 0 {
					// About 20,000 a second: one socket's reader keeps up.
					time.Sleep(time.Millisecond)
				}
			}
		}
	}()
	return func() int {
		close(done)
		n := <-sent
		for _, c := range conns {
			c.Close()
		}
		return n
	}
}

// udpReceiver reads numbered datagrams from each socket of pcs into seen
// until the sockets close.
type udpReceiver struct {
	mu   sync.Mutex
	seen map[int]int
	wg   sync.WaitGroup
}

func (r *udpReceiver) read(pcs []net.PacketConn) {
	for _, pc := range pcs {
		pc := pc
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			buf := make([]byte, 64)
			for {
				n, _, err := pc.ReadFrom(buf)
				if err != nil {
					return
				}
				seq, err := strconv.Atoi(string(buf[:n]))
				if err != nil {
					continue
				}
				r.mu.Lock()
				r.seen[seq]++
				r.mu.Unlock()
			}
		}()
	}
}

// waitQueued waits, 10 s at most, until a datagram waits unread on one of
// pcs.
func waitQueued(t *testing.T, pcs []net.PacketConn) {
	t.Helper()
	for start := time.Now(); time.Since(start) < 10*time.Second; time.Sleep(50 * time.Microsecond) {
		for _, pc := range pcs {
			rc, err := pc.(*net.UDPConn).SyscallConn()
			if err != nil {
				t.Fatal(err)
			}
			var n int
			var ierr error
			if err := rc.Control(func(fd uintptr) { n, ierr = unix.IoctlGetInt(int(fd), unix.SIOCINQ) }); err != nil || ierr != nil {
				t.Fatal(err, ierr)
			}
			if n > 0 {
				return
			}
		}
	}
	t.Fatal("no datagram reached the old sockets in 10 s")
}

func listenPacketGroup(t *testing.T, addr string, k int) []net.PacketConn {
	t.Helper()
	pcs, err := reuse.ListenPacketGroup("udp", addr, k)
	if err != nil {
		t.Fatal(err)
	}
	for _, pc := range pcs {
		_ = pc.(*net.UDPConn).SetReadBuffer(udpBuffer)
	}
	t.Cleanup(func() {
		for _, pc := range pcs {
			pc.Close()
		}
	})
	return pcs
}

// TestTakeOverUDP replaces a group of 4 UDP sockets 20 times, in one
// process, under a continuous stream of numbered datagrams from 1,000 source
// ports: every datagram is read exactly once. The naive replacement beside
// it (the old sockets stop being read and close once the new ones are bound)
// loses what the old queues hold at each close: UDP, unlike TCP with
// tcp_migrate_req, moves no queued datagram to another member.
func TestTakeOverUDP(t *testing.T) {
	requireSteering(t) // the handover steers the group: qemu-user lacks the option
	for _, naive := range []bool{false, true} {
		name := map[bool]string{false: "handover", true: "naive"}[naive]
		t.Run(name, func(t *testing.T) {
			const k = 4
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			r := &udpReceiver{seen: map[int]int{}}
			drops := 0
			old := listenPacketGroup(t, "127.0.0.1:0", k)
			addr := old[0].LocalAddr().String()
			oldHo := &reuse.Handover{Quiet: 20 * time.Millisecond}
			if err := oldHo.TakeOver(ctx, anys(old)...); err != nil {
				t.Fatal(err)
			}
			r.read(old)
			stop := udpStream(t, addr, 1000)
			for i := 0; i < replacements; i++ {
				next := listenPacketGroup(t, addr, k)
				r.read(next)
				nextHo := &reuse.Handover{Quiet: 20 * time.Millisecond}
				took := make(chan error, 1)
				if naive {
					// The old process stops reading and closes, as
					// one that shuts down does; what its queues hold
					// then is lost. So that each close finds some,
					// it closes once a datagram waits.
					time.Sleep(5 * time.Millisecond) // both generations serve
					drops += dropsOf(t, old)
					for _, pc := range old {
						pc.SetReadDeadline(time.Now())
					}
					waitQueued(t, old)
				} else {
					go func() { took <- nextHo.TakeOver(ctx, anys(next)...) }()
					select {
					case <-oldHo.Replaced():
					case err := <-took:
						t.Fatalf("TakeOver returned %v before the old sockets were replaced", err)
					}
					drops += dropsOf(t, old)
				}
				for _, pc := range old {
					pc.Close()
				}
				if err := oldHo.Close(); err != nil {
					t.Fatal(err)
				}
				if !naive {
					if err := <-took; err != nil {
						t.Fatal(err)
					}
				}
				old, oldHo = next, nextHo
			}
			sent := stop()
			time.Sleep(50 * time.Millisecond) // the last datagrams in flight
			drops += dropsOf(t, old)
			for _, pc := range old {
				pc.Close()
			}
			oldHo.Close()
			r.wg.Wait()
			lost, dup := 0, 0
			for seq := 0; seq < sent; seq++ {
				switch r.seen[seq] {
				case 0:
					lost++
				case 1:
				default:
					dup++
				}
			}
			t.Logf("%s: %d replacements of %d UDP sockets: %d datagrams sent, %d lost, %d read twice; the kernel counted %d dropped", name, replacements, k, sent, lost, dup, drops)
			if dup != 0 || sent == 0 {
				t.Errorf("%d datagrams read twice of %d", dup, sent)
			}
			// A loaded machine may overflow a receive buffer, which the
			// kernel counts, beside the probes that each handover's old
			// sockets drop (one each); a datagram that a closing socket
			// takes with it is counted nowhere.
			if overflow := drops - replacements*k; !naive && lost > overflow {
				t.Errorf("%d replacements lost %d datagrams of %d, %d dropped by full buffers", replacements, lost, sent, overflow)
			}
			if naive && lost <= drops {
				t.Errorf("%d naive replacements lost no datagram of %d beyond the %d counted dropped", replacements, sent, drops)
			}
		})
	}
}

// TestWorkerSlotsUnderLoad runs 4 worker processes of one listener each,
// in slots of their own, under continuous load, and replaces them one at
// a time, 5 rounds, with tcp_migrate_req 0 and 1, plain TCP and MPTCP:
// no connection is lost, and the other workers keep serving meanwhile. The
// naive replacement beside it (the old worker closes as soon as the new
// one listens) is logged for contrast.
func TestWorkerSlotsUnderLoad(t *testing.T) {
	requireSteering(t) // the handover steers the group: qemu-user lacks the option
	eachMigrateReq(t, func(t *testing.T, migrate string) {
		for _, c := range []struct {
			s     shape
			naive bool
		}{{shape{1, false}, false}, {shape{1, true}, false}, {shape{1, false}, true}} {
			name := c.s.String()
			if c.naive {
				name += " naive"
			}
			t.Run(name, func(t *testing.T) {
				counts, shares := rollWorkers(t, c.s, 4, 5, c.naive)
				t.Logf("%d rounds over 4 workers (%s): %v; served by the last workers: %v", 5, name, counts, shares)
				// The naive figure is for contrast only: a few resets
				// a run (3 to 27 seen), too few to assert that some
				// always occur; TestHandoverUnderLoad asserts it.
				if !c.naive && (counts.lost() != 0 || counts.served.Load() == 0) {
					t.Errorf("rolling restarts lost %d connections: %v", counts.lost(), counts)
				}
			})
		}
	})
}

// rollWorkers starts n workers in slots 0..n-1 and replaces each in turn,
// rounds times, under load. It returns the load's counts and how many
// connections each of the last workers served.
func rollWorkers(t *testing.T, s shape, n, rounds int, naive bool) (*loadCounts, []int) {
	const quiet = 20 * time.Millisecond
	workers := make([]*sockettest.Worker, n)
	addr := "127.0.0.1:0"
	for i := range workers {
		workers[i], addr = startGeneration(t, s, addr, quiet, "slot="+strconv.Itoa(i))
		if !naive {
			workers[i].Send("takeover")
			workers[i].Expect("took over", 10*time.Second)
		}
	}
	stop := load(t, addr)
	for r := 0; r < rounds; r++ {
		for i, old := range workers {
			next, _ := startGeneration(t, s, addr, quiet, "slot="+strconv.Itoa(i))
			if naive {
				old.Send("close")
			} else {
				next.Send("takeover")
				next.Expect("took over", 15*time.Second)
				old.Expect("replaced", 15*time.Second)
			}
			old.Expect("closed ", 15*time.Second)
			if err := old.Wait(); err != nil {
				t.Fatal(err)
			}
			workers[i] = next
		}
	}
	counts := stop()
	shares := make([]int, n)
	for i, w := range workers {
		shares[i] = served(t, w)
		w.Send("close")
		w.Expect("closed ", 10*time.Second)
		if err := w.Wait(); err != nil {
			t.Fatal(err)
		}
	}
	return counts, shares
}

// TestWorkerSlotsCrash runs 4 worker processes in slots of their own under
// load: in slot 0 the new worker is killed in the middle of its takeover,
// in slot 1 the old one while it drains, and slots 2 and 3 are replaced at
// once. No connection is lost beyond those the killed processes held, and
// every slot serves afterwards: of 400 connections, each of the 4 workers
// gets some (one missing has probability below 4(3/4)^400).
func TestWorkerSlotsCrash(t *testing.T) {
	requireSteering(t) // the handover steers the group: qemu-user lacks the option
	s := shape{1, false}
	const quiet = 20 * time.Millisecond
	t.Setenv("REUSE_TEST_HOLD_DRAIN", "1")
	workers := make([]*sockettest.Worker, 4)
	addr := "127.0.0.1:0"
	for i := range workers {
		q, stay := quiet, ""
		if i < 2 {
			q, stay = time.Minute, "stay" // never done draining
		}
		workers[i], addr = startGeneration(t, s, addr, q, "slot="+strconv.Itoa(i), stay)
		workers[i].Send("takeover")
		workers[i].Expect("took over", 10*time.Second)
	}
	// Slot 0: the new worker dies; the old one serves on.
	doomed, _ := startGeneration(t, s, addr, quiet, "slot=0")
	doomed.Send("takeover")
	waitSteered(t, workers[0], addr)
	if err := syscall.Kill(doomed.Pid(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = doomed.Wait()
	// Slot 1: the old worker dies while it drains.
	next1, _ := startGeneration(t, s, addr, quiet, "slot=1")
	next1.Send("takeover")
	waitSteered(t, workers[1], addr)
	if err := syscall.Kill(workers[1].Pid(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = workers[1].Wait()
	next1.Expect("took over", 15*time.Second)
	workers[1] = next1
	// Slots 2 and 3 at once, under load.
	stop := load(t, addr)
	next2, _ := startGeneration(t, s, addr, quiet, "slot=2")
	next3, _ := startGeneration(t, s, addr, quiet, "slot=3")
	next2.Send("takeover")
	next3.Send("takeover")
	next2.Expect("took over", 15*time.Second)
	next3.Expect("took over", 15*time.Second)
	for _, old := range workers[2:] {
		old.Expect("closed ", 15*time.Second)
		if err := old.Wait(); err != nil {
			t.Fatal(err)
		}
	}
	workers[2], workers[3] = next2, next3
	counts := stop()
	t.Logf("two slots replaced at once: %v", counts)
	if counts.lost() != 0 || counts.served.Load() == 0 {
		t.Errorf("two slots replaced at once lost %d connections: %v", counts.lost(), counts)
	}
	before := make([]int, len(workers))
	for i, w := range workers {
		before[i] = served(t, w)
	}
	dialServed(t, addr, 400)
	for i, w := range workers {
		if got := served(t, w) - before[i]; got == 0 {
			t.Errorf("slot %d served none of 400 connections after the crashes", i)
		}
	}
	for _, w := range workers {
		w.Send("close")
		w.Expect("closed ", 10*time.Second)
	}
}

// udpHandoverWorker is one worker of a UDP service: args are the address
// (port 0: any), the slot and the quiet period. It prints "addr A" and reads
// numbered datagrams. Commands: "takeover" (prints "took over"), "close".
// Once replaced, or closed, it closes its socket and prints the numbers it
// read, on lines "seqs N,N,...", and a last line "seqs-end D", D the
// datagrams the kernel counted dropped on its socket.
func udpHandoverWorker(args []string) error {
	quiet, err := time.ParseDuration(args[2])
	if err != nil {
		return err
	}
	pc, err := reuse.ListenPacket("udp", args[0])
	if err != nil {
		return err
	}
	_ = pc.(*net.UDPConn).SetReadBuffer(udpBuffer)
	fmt.Println("addr", pc.LocalAddr())
	var mu sync.Mutex
	var seqs []int // read, not printed yet
	read := make(chan struct{})
	go func() {
		defer close(read)
		buf := make([]byte, 64)
		for {
			n, _, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			if seq, err := strconv.Atoi(string(buf[:n])); err == nil {
				mu.Lock()
				seqs = append(seqs, seq)
				mu.Unlock()
			}
		}
	}()
	// With REUSE_TEST_PRINT_SEQS (the crash tests, which read every line),
	// what was read is printed every 20 ms once the process took over, so
	// that a process killed loses only what it read since.
	var tookOver atomic.Bool
	printEarly := os.Getenv("REUSE_TEST_PRINT_SEQS") != ""
	printSeqs := func() {
		mu.Lock()
		seqs2 := seqs // printed outside the lock: the reader never waits on stdout
		seqs = nil
		mu.Unlock()
		for i := 0; i < len(seqs2); i += 1000 {
			var b strings.Builder
			for j, seq := range seqs2[i:min(i+1000, len(seqs2))] {
				if j > 0 {
					b.WriteByte(',')
				}
				b.WriteString(strconv.Itoa(seq))
			}
			fmt.Println("seqs", b.String())
		}
	}
	stopPrinting := make(chan struct{})
	printed := make(chan struct{})
	go func() {
		defer close(printed)
		for {
			select {
			case <-stopPrinting:
				return
			case <-time.After(20 * time.Millisecond):
				if printEarly && tookOver.Load() {
					printSeqs()
				}
			}
		}
	}()
	finish := func(ho *reuse.Handover) error {
		drops, err := udpDrops(pc)
		if err != nil {
			return err
		}
		pc.Close()
		<-read
		close(stopPrinting)
		<-printed
		printSeqs()
		fmt.Println("seqs-end", drops)
		return ho.Close()
	}
	ho := &reuse.Handover{Slot: args[1], Quiet: quiet}
	cmds := stdinLines()
	for {
		select {
		case cmd := <-cmds:
			switch cmd {
			case "takeover":
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				err := ho.TakeOver(ctx, pc)
				cancel()
				if err != nil {
					return err
				}
				fmt.Println("took over")
				tookOver.Store(true)
			default:
				return finish(ho)
			}
		case <-ho.Replaced():
			return finish(ho)
		}
	}
}

// readSeqs collects the numbers a UDP worker printed into seen, and returns
// the drops it counted.
func readSeqs(t *testing.T, w *sockettest.Worker, seen map[int]int) int {
	t.Helper()
	for {
		rest := w.Expect("seqs", 15*time.Second)
		if drops, ok := strings.CutPrefix(rest, "-end "); ok {
			n, err := strconv.Atoi(drops)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
		for _, f := range strings.Split(strings.TrimSpace(rest), ",") {
			seq, err := strconv.Atoi(f)
			if err != nil {
				t.Fatal(err)
			}
			seen[seq]++
		}
	}
}

// TestUDPWorkerSlots runs 4 worker processes of one UDP socket each, in
// slots of their own, under a continuous stream of numbered datagrams from
// 1,000 source ports, and replaces them one at a time, 5 rounds: every
// datagram is read exactly once, but for those the kernel counts dropped
// because a receive buffer overflowed (none on an idle machine). The naive replacement (the old worker
// closes as soon as the new one is bound) is logged beside it.
func TestUDPWorkerSlots(t *testing.T) {
	requireSteering(t) // the handover steers the group: qemu-user lacks the option
	for _, naive := range []bool{false, true} {
		const quiet = 20 * time.Millisecond
		workers := make([]*sockettest.Worker, 4)
		addr := "127.0.0.1:0"
		start := func(i int) *sockettest.Worker {
			w := sockettest.StartWorker(t, "udp-handover", []string{addr, strconv.Itoa(i), quiet.String()})
			addr = w.Expect("addr ", 10*time.Second)
			if !naive {
				w.Send("takeover")
			}
			return w
		}
		for i := range workers {
			workers[i] = start(i)
			if !naive {
				workers[i].Expect("took over", 10*time.Second)
			}
		}
		seen := map[int]int{}
		drops := 0
		stop := udpStream(t, addr, 1000)
		for r := 0; r < 5; r++ {
			for i, old := range workers {
				next := start(i)
				if naive {
					time.Sleep(5 * time.Millisecond) // let some datagrams reach the old socket
					old.Send("close")
				} else {
					next.Expect("took over", 15*time.Second)
				}
				drops += readSeqs(t, old, seen)
				if err := old.Wait(); err != nil {
					t.Fatal(err)
				}
				workers[i] = next
			}
		}
		sent := stop()
		time.Sleep(50 * time.Millisecond) // the last datagrams in flight
		for _, w := range workers {
			w.Send("close")
			drops += readSeqs(t, w, seen)
		}
		lost, dup := 0, 0
		for seq := 0; seq < sent; seq++ {
			switch seen[seq] {
			case 0:
				lost++
			case 1:
			default:
				dup++
			}
		}
		how := map[bool]string{false: "with Handover", true: "naively"}[naive]
		t.Logf("20 replacements of 4 UDP workers %s: %d datagrams sent, %d lost, %d read twice; the kernel counted %d dropped", how, sent, lost, dup, drops)
		// A loaded machine may overflow a receive buffer, which the
		// kernel counts, beside the probe that each replaced worker's
		// socket drops; a datagram that a closing socket takes with it is
		// counted nowhere.
		overflow := drops
		if !naive {
			overflow -= 20
		}
		if dup != 0 || sent == 0 || (!naive && lost > overflow) {
			t.Errorf("20 replacements of 4 UDP workers %s: %d of %d datagrams lost (%d dropped by full buffers), %d read twice", how, lost, sent, overflow, dup)
		}
	}
}

// udpBuffer is the receive buffer the UDP tests ask for (net.core.rmem_max
// caps it), so that a reader descheduled on a loaded machine loses less.
const udpBuffer = 4 << 20

// udpDrops returns how many datagrams the kernel dropped on pc (a full
// buffer, a socket filter).
func udpDrops(pc net.PacketConn) (int, error) {
	rc, err := pc.(*net.UDPConn).SyscallConn()
	if err != nil {
		return 0, err
	}
	var n uint64
	var derr error
	if err := rc.Control(func(fd uintptr) { n, derr = sockettest.UDPDrops(fd) }); err != nil {
		return 0, err
	}
	return int(n), derr
}

// TestHandoverOldExited checks the end of a restart: a first process's
// OldExited is closed at once; a successor's only once the old process
// exited, not when it let go of its sockets (when TakeOver returns).
func TestHandoverOldExited(t *testing.T) {
	requireSteering(t)
	for _, s := range []shape{{1, false}, {2, true}} {
		t.Run(s.String(), func(t *testing.T) {
			old, addr := startGeneration(t, s, "127.0.0.1:0", 20*time.Millisecond, "stay")
			old.Send("takeover")
			old.Expect("took over", 10*time.Second)
			old.Expect("old exited", 10*time.Second)
			next, _ := startGeneration(t, s, addr, 20*time.Millisecond)
			next.Send("takeover")
			old.Expect("replaced", 10*time.Second)
			old.Send("letgo")
			old.Expect("let go", 10*time.Second)
			next.Expect("took over", 10*time.Second)
			next.Send("exited?")
			if got := next.Expect("exited ", 10*time.Second); got != "false" {
				t.Errorf("OldExited was closed while the old process, which let go of its sockets, still ran")
			}
			old.Send("exit")
			if err := old.Wait(); err != nil {
				t.Fatal(err)
			}
			next.Expect("old exited", 10*time.Second)
			next.Send("close")
			next.Expect("closed ", 10*time.Second)
		})
	}
}

// udpSources returns n UDP sockets connected to addr, each a source port of
// its own, which the test closes.
func udpSources(t *testing.T, addr string, n int) []net.Conn {
	t.Helper()
	var conns []net.Conn
	for i := 0; i < n; i++ {
		c, err := net.Dial("udp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		conns = append(conns, c)
	}
	return conns
}

// stdinLines returns a worker's commands, one a line of its input, closed
// at its end.
func stdinLines() <-chan string {
	cmds := make(chan string)
	go func() {
		sc := bufio.NewScanner(os.Stdin)
		for sc.Scan() {
			cmds <- sc.Text()
		}
		close(cmds)
	}()
	return cmds
}

// TestHandoverLargeGroup hands over a group of 64 listeners in one
// process, and of 64 datagram sockets: the messages that name each socket
// fit (they were cut short at 512 bytes, about 50 sockets).
func TestHandoverLargeGroup(t *testing.T) {
	requireSteering(t)
	s := shape{64, false}
	old, addr := startGeneration(t, s, "127.0.0.1:0", 20*time.Millisecond)
	old.Send("takeover")
	old.Expect("took over", 10*time.Second)
	next, _ := startGeneration(t, s, addr, 20*time.Millisecond)
	next.Send("takeover")
	old.Expect("replaced", 10*time.Second)
	next.Expect("took over", 10*time.Second)
	dialServed(t, addr, 64)
	next.Send("close")
	next.Expect("closed ", 10*time.Second)

	ctx := context.Background()
	pcs, err := reuse.ListenPacketGroup("udp4", "127.0.0.1:0", 64)
	if err != nil {
		t.Fatal(err)
	}
	oldHo := new(reuse.Handover)
	if err := oldHo.TakeOver(ctx, anys(pcs)...); err != nil {
		t.Fatal(err)
	}
	nextPcs, err := reuse.ListenPacketGroup("udp4", pcs[0].LocalAddr().String(), 64)
	if err != nil {
		t.Fatal(err)
	}
	nextHo := new(reuse.Handover)
	took := make(chan error, 1)
	go func() { took <- nextHo.TakeOver(ctx, anys(nextPcs)...) }()
	<-oldHo.Replaced()
	for _, pc := range pcs {
		pc.Close()
	}
	oldHo.Close()
	if err := <-took; err != nil {
		t.Fatalf("taking over a group of 64 datagram sockets: %v", err)
	}
	for _, pc := range nextPcs {
		pc.Close()
	}
	nextHo.Close()
}

// TestHandoverWaitsForHandshakes holds a handshake in flight to the old
// listener when new connections are steered away (its client sends
// nothing yet, and the listener accepts only once data comes:
// TCP_DEFER_ACCEPT). With net.ipv4.tcp_migrate_req=0 the old process is
// replaced only once that handshake completed, and serves the connection,
// which would be reset had the old process gone at once; with 1, the old
// listeners go at once and the kernel hands the handshake to the new one.
// Plain TCP and MPTCP listeners.
func TestHandoverWaitsForHandshakes(t *testing.T) {
	requireSteering(t)
	if !sockettest.RunInNetNS(t) {
		return
	}
	for _, k := range []struct {
		migrate string
		s       shape
	}{{"0", shape{1, false}}, {"0", shape{1, true}}, {"1", shape{1, false}}, {"1", shape{1, true}}} {
		migrate, s := k.migrate, k.s
		t.Run("tcp_migrate_req="+migrate+"/"+s.String(), func(t *testing.T) {
			writeSysctl(t, "net/ipv4/tcp_migrate_req", migrate)
			old, addr := startGeneration(t, s, "127.0.0.1:0", 10*time.Second, "defer")
			old.Send("takeover")
			old.Expect("took over", 10*time.Second)
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			next, _ := startGeneration(t, s, addr, 10*time.Second, "defer")
			next.Send("takeover")
			handsOn := migrate == "1" // the kernel hands the handshake on
			if handsOn {
				old.Expect("replaced", 10*time.Second) // without waiting
			} else {
				time.Sleep(300 * time.Millisecond) // a handover that did not wait is over
			}
			if _, err := io.WriteString(c, "first bytes"); err != nil {
				t.Fatal(err)
			}
			_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
			if line, err := bufio.NewReader(c).ReadString('\n'); line != "ok\n" {
				t.Fatalf("the connection whose handshake was in flight to the old listener during the handover: %q, %v; want it served", line, err)
			}
			c.Close()
			if !handsOn {
				old.Expect("replaced", 10*time.Second)
			}
			next.Expect("took over", 10*time.Second)
			next.Send("close")
			next.Expect("closed ", 10*time.Second)
		})
	}
}
