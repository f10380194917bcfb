package reuse_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sockreuse/reuse"
	"github.com/sockreuse/reuse/internal/sockettest"
)

func init() {
	sockettest.Register("established", establishedWorker)
}

// BenchmarkHandover measures the cost of one handover, from the new
// process's TakeOver to the old process gone (exited), as the group grows
// and with many unrelated connections on the host. The new process is this
// one (its allocations are allocs/op); the old one is a process of the test
// binary (the handover worker of handover_linux_test.go), started before the
// timer runs, so that every handover is a real one between two processes.
//
// Its parts, as benchstat reads them:
//
//   - conns: unrelated established TCP connections on loopback, held by two
//     helper processes (the server ends in one, the client ends in the
//     other: 10,000 descriptors each, within a hard RLIMIT_NOFILE of 20,000,
//     as on the machine this was written on; each helper skips the benchmark
//     where it runs out): every listing of the namespace's TCP sockets
//     (sock_diag's, or /proc/net/tcp) passes them. The benchmarks run in the
//     test's network namespace, whose other sockets they log.
//   - shape=process, k: the old process serves the address with k
//     listeners (no Slot) and the new one takes over with k: the group has
//     k members of each.
//   - shape=slot, k: k worker processes share the address, one listener
//     each, in Slots w0 to w(k-1); slot w0 is handed over from its process
//     to this one, while the k-1 others (listeners of this process, each
//     with a Handover of its own Slot, as workers that wait for their
//     successors) serve on. Before each handover another worker restarts
//     (closes; a new one joins), as in a rolling restart: the kernel moves
//     the last member of the group, the old w0, into the place that worker
//     left, so that the old worker sits anywhere in the kernel's array, not
//     where it joined.
//
// The listeners are MPTCP (Go's default for modules whose go line is 1.24
// or later, and so what most users get), and every Handover has the
// package's default Quiet. Run it with a count of handovers:
// go test -run '^$' -bench Handover -benchtime=3x (the time-based default
// runs some tens of handovers of each, with a process started before each
// one).
func BenchmarkHandover(b *testing.B) {
	if e := sockettest.Emulator(); e != "" {
		b.Skipf("%s translates neither SO_ATTACH_REUSEPORT_CBPF nor NETLINK_SOCK_DIAG, which reuse.Handover needs", e)
	}
	for _, conns := range []int{0, 10000} {
		b.Run("conns="+strconv.Itoa(conns), func(b *testing.B) {
			if conns > 0 {
				establish(b, conns)
			}
			if n, err := tcpSockets(); err == nil {
				b.Logf("%d TCP sockets in this network namespace", n)
			}
			for _, shape := range []string{"process", "slot"} {
				for _, k := range []int{1, 4, 16, 64} {
					b.Run(fmt.Sprintf("shape=%s/k=%d", shape, k), func(b *testing.B) { benchHandover(b, shape == "slot", k) })
				}
			}
		})
	}
}

// benchHandover runs b.N handovers of a group of k listeners (slots: of one
// slot of k).
func benchHandover(b *testing.B, slots bool, k int) {
	sockets, slot := k, ""
	if slots {
		sockets, slot = 1, "w0"
	}
	// The first holder is this process's: it makes the port, and leaves
	// before the first old process takes over, as each new one does after
	// its handover.
	holder := benchListen(b, "127.0.0.1:0", sockets, "")
	defer func() { holder.close() }()
	addr := holder.lns[0].Addr().String()
	var others []*benchServer // the workers of the other slots
	defer func() {
		for _, o := range others {
			o.close()
		}
	}()
	if slots {
		for i := 1; i < k; i++ {
			others = append(others, benchListen(b, addr, 1, "w"+strconv.Itoa(i)))
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		holder.close()
		old := sockettest.StartWorker(b, "handover", []string{addr, strconv.Itoa(sockets), "mptcp", "0s", "slot=" + slot})
		old.Expect("addr ", 10*time.Second)
		old.Send("takeover")
		old.Expect("took over", 30*time.Second)
		if len(others) > 0 {
			j := i % len(others)
			s := others[j].ho.Slot
			others[j].close()
			others[j] = benchListen(b, addr, 1, s)
		}
		holder = benchListen(b, addr, sockets, slot)
		b.StartTimer()
		if err := holder.takeOver(); errors.Is(err, errors.ErrUnsupported) {
			b.Skipf("this kernel cannot hand a group over: %v", err)
		} else if err != nil {
			b.Fatalf("handover %d: %v\nthe old process's errors:\n%s", i+1, err, old.Stderr())
		}
		rest := old.Rest(30 * time.Second)
		b.StopTimer()
		if !slices.Contains(rest, "replaced") {
			b.Fatalf("handover %d: the old process printed %q, want \"replaced\"\n%s", i+1, rest, old.Stderr())
		}
		b.StartTimer()
	}
}

// A benchServer is the listeners of one process (or one slot) and its
// Handover: it accepts every connection and reads it until the client
// closes, as the handover worker does.
type benchServer struct {
	lns   []net.Listener
	ho    *reuse.Handover
	conns sync.WaitGroup
}

// benchListen opens k MPTCP listeners on addr under Share and serves them,
// with a Handover of slot; a worker of another slot than the one handed
// over takes over at once (nobody serves its slot). It skips the benchmark
// where the kernel made plain TCP listeners.
func benchListen(b *testing.B, addr string, k int, slot string) *benchServer {
	b.Helper()
	var cfg reuse.Config
	cfg.ListenConfig.SetMultipathTCP(true)
	lns, err := cfg.ListenGroup(context.Background(), "tcp", addr, k)
	if err != nil {
		b.Fatal(err)
	}
	s := &benchServer{lns: lns, ho: &reuse.Handover{Slot: slot}}
	if protoName(lns[0]) != "mptcp" {
		s.close()
		b.Skipf("the kernel gave a plain TCP listener where MPTCP was asked: MPTCP is off here (net.mptcp.enabled)")
	}
	for _, ln := range lns {
		s.conns.Add(1)
		go func(ln net.Listener) {
			defer s.conns.Done()
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				s.conns.Add(1)
				go func() {
					defer s.conns.Done()
					_ = c.SetDeadline(time.Now().Add(5 * time.Second))
					_, _ = io.Copy(io.Discard, c)
					c.Close()
				}()
			}
		}(ln)
	}
	if slot != "" && slot != "w0" {
		if err := s.takeOver(); err != nil {
			b.Fatalf("slot %s: %v", slot, err)
		}
	}
	return s
}

// takeOver runs s's TakeOver, 30 s at most.
func (s *benchServer) takeOver() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return s.ho.TakeOver(ctx, anys(s.lns)...)
}

// close closes s's listeners and Handover, and waits for its connections.
func (s *benchServer) close() {
	for _, ln := range s.lns {
		ln.Close()
	}
	_ = s.ho.Close()
	s.conns.Wait()
}

// establish makes n established TCP connections on loopback, held by two
// helper processes until the benchmark ends.
func establish(b *testing.B, n int) {
	b.Helper()
	server := sockettest.StartWorker(b, "established", []string{"serve", "127.0.0.1:0", strconv.Itoa(n)})
	addr := server.Expect("addr ", 10*time.Second)
	client := sockettest.StartWorker(b, "established", []string{"dial", addr, strconv.Itoa(n)})
	for _, w := range []*sockettest.Worker{client, server} {
		if prefix, rest := w.ExpectOneOf(time.Minute, "holding", "cannot "); prefix == "cannot " {
			b.Skipf("cannot hold %d established connections on loopback (each helper needs an RLIMIT_NOFILE above %d): %s", n, n, rest)
		}
	}
	b.Cleanup(func() {
		for _, w := range []*sockettest.Worker{client, server} {
			if err := w.Wait(); err != nil {
				b.Error(err)
			}
		}
	})
}

// establishedWorker holds established TCP connections on loopback: with
// "serve ADDR N", it listens on ADDR, prints "addr A", and accepts N
// connections; with "dial ADDR N", it makes N connections to ADDR. Then it
// prints "holding" and holds them until its standard input closes. Where
// its descriptors run out (RLIMIT_NOFILE), it prints "cannot ..." and
// waits the same. Every connection closes with a reset (SO_LINGER 0), so
// that none is left in TIME_WAIT.
func establishedWorker(args []string) error {
	n, err := strconv.Atoi(args[2])
	if err != nil {
		return err
	}
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	hold := func(c net.Conn) {
		_ = c.(*net.TCPConn).SetLinger(0)
		conns = append(conns, c)
	}
	switch args[0] {
	case "serve":
		ln, err := net.Listen("tcp4", args[1])
		if err != nil {
			return err
		}
		defer ln.Close()
		go func() {
			// A dialer that gave up leaves the accepts waiting: the end of
			// the input ends them.
			_, _ = io.Copy(io.Discard, os.Stdin)
			ln.Close()
		}()
		fmt.Println("addr", ln.Addr())
		for len(conns) < n && err == nil {
			var c net.Conn
			if c, err = ln.Accept(); err == nil {
				hold(c)
			}
		}
	case "dial":
		for len(conns) < n && err == nil {
			var c net.Conn
			if c, err = net.Dial("tcp4", args[1]); err == nil {
				hold(c)
			}
		}
	default:
		return fmt.Errorf("unknown mode %q", args[0])
	}
	if err != nil {
		fmt.Printf("cannot %s connection %d of %d: %v\n", args[0], len(conns)+1, n, err)
	} else {
		fmt.Println("holding")
	}
	_, _ = io.Copy(io.Discard, os.Stdin)
	return nil
}

// tcpSockets counts the TCP sockets of this network namespace, as
// /proc/net/tcp and tcp6 list them.
func tcpSockets() (int, error) {
	n := 0
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, err := os.ReadFile(f)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return 0, err
		}
		n += strings.Count(string(b), "\n") - 1
	}
	return n, nil
}
