package reuse

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/sockreuse/reuse/internal/sockdiag"
	"github.com/sockreuse/reuse/internal/sockettest"
	"golang.org/x/sys/unix"
)

// steeringState returns the handover state of a fresh group of k plain TCP
// listeners, which the test closes.
func steeringState(t *testing.T, k int) (*handoverState, []net.Listener) {
	t.Helper()
	var cfg Config
	cfg.ListenConfig.SetMultipathTCP(false)
	lns, err := cfg.ListenGroup(context.Background(), "tcp", "127.0.0.1:0", k)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, ln := range lns {
			ln.Close()
		}
	})
	socks := make([]any, k)
	for i, ln := range lns {
		socks[i] = ln
	}
	return stateOf(t, socks), lns
}

// stateOf returns the handover state of the group of socks.
func stateOf(t testing.TB, socks []any) *handoverState {
	t.Helper()
	g, err := newSockGroup(socks)
	if err != nil {
		t.Fatal(err)
	}
	st, err := inspect(g)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// TestSteerAttachFails checks that a program the kernel refuses gives an
// error naming the option and wrapping the errno.
func TestSteerAttachFails(t *testing.T) {
	requireProgram(t)
	st, _ := steeringState(t, 1)
	sg := &steering{st: st, helper: -1}
	// A jump past the end: the kernel's checker refuses it.
	bad := []unix.SockFilter{{Code: unix.BPF_JMP | unix.BPF_JA, K: 5}}
	err := sg.attach(bad)
	if !errors.Is(err, unix.EINVAL) || !strings.Contains(err.Error(), "SO_ATTACH_REUSEPORT_CBPF") {
		t.Errorf("attaching a bad program: %v, want EINVAL naming SO_ATTACH_REUSEPORT_CBPF", err)
	}
}

// TestSteerGroupChanged makes a member join the group after every attach:
// steer gives up after steerTries, says so, and leaves no program: the
// kernel's hash spreads connections over the members again (of 200, none or
// all on the 2 of the 2+steerTries listeners has probability below
// (5/7)^200).
func TestSteerGroupChanged(t *testing.T) {
	requireProgram(t)
	st, lns := steeringState(t, 2)
	addr := lns[0].Addr().String()
	var joined []net.Listener
	testHookSteered = func() {
		ln, err := Listen("tcp", addr)
		if err != nil {
			t.Error(err)
			return
		}
		joined = append(joined, ln)
	}
	defer func() { testHookSteered = nil }()
	// The members serve, as servers do while they are taken over.
	var accepted atomic.Int64
	for _, ln := range lns {
		ln := ln
		go func() {
			var held []net.Conn
			defer func() {
				for _, c := range held {
					c.Close()
				}
			}()
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				accepted.Add(1)
				held = append(held, c)
			}
		}()
	}
	// The first member plays the old process, which answers the probes.
	oldSt := stateOf(t, []any{lns[0]})
	defer oldSt.unprobe()
	ask := func(string) (string, error) {
		mss, err := oldSt.markListeners()
		return msgReady + " " + strconv.Itoa(mss), err
	}
	sg, err := st.steer([]uint64{st.socks[0].ino}, nil, ask)
	if sg != nil || err == nil || !strings.Contains(err.Error(), "changed during each of") {
		t.Errorf("steer with a member joining after each attach: %v, %v; want an error saying the group changed", sg, err)
	}
	defer func() {
		for _, ln := range joined {
			ln.Close()
		}
	}()
	// Rolled back, the kernel's hash spreads connections over the two
	// serving members and the joined ones (which queue them unaccepted):
	// a program left behind would give all to one of the two.
	before := accepted.Load()
	for i := 0; i < 200; i++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
	}
	time.Sleep(100 * time.Millisecond)
	if got := accepted.Load() - before; got == 0 || got == 200 {
		t.Errorf("after the rollback, the two serving members accepted %d of 200 connections: a program was left", got)
	}
}

// TestAfterLeaves checks the kernel's rule as afterLeaves applies it: a
// member that leaves takes the last member into its place; closing the old
// members of a handover from the last one down puts new member m at m.
func TestAfterLeaves(t *testing.T) {
	for _, c := range []struct {
		name         string
		arr, members []uint64
		want         []uint64
	}{
		{"none left", []uint64{1, 2, 3}, []uint64{3, 1, 2}, []uint64{1, 2, 3}},
		{"last old closed", []uint64{10, 11, 20, 21}, []uint64{10, 20, 21}, []uint64{10, 21, 20}},
		{"all old, last down", []uint64{10, 11, 20, 21}, []uint64{20, 21}, []uint64{20, 21}},
		{"first closed", []uint64{10, 11, 12, 20}, []uint64{11, 12, 20}, []uint64{20, 11, 12}},
		{"one joined", []uint64{1, 2}, []uint64{1, 2, 3}, []uint64{1, 2, 3}},
	} {
		if diff := cmp.Diff(c.want, afterLeaves(c.arr, c.members)); diff != "" {
			t.Errorf("%s: afterLeaves(%v, %v) (-want +got):\n%s", c.name, c.arr, c.members, diff)
		}
	}
}

// requireProgram skips the test where the kernel, or qemu-user's
// translation of setsockopt, has no SO_ATTACH_REUSEPORT_CBPF.
func requireProgram(t *testing.T) {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEPORT, 1); err != nil {
		t.Fatal(err)
	}
	prog := []unix.SockFilter{{Code: unix.BPF_RET | unix.BPF_K, K: 0}}
	// An unbound socket with SO_REUSEPORT gets a group of its own.
	if err := attachProgram(fd, prog); errors.Is(err, errors.ErrUnsupported) {
		t.Skipf("this kernel or emulator lacks SO_ATTACH_REUSEPORT_CBPF: %v", err)
	} else if err != nil {
		t.Fatal(err)
	}
}

// TestPicksAround checks which indexes a handover spreads new connections
// over while the old members close (the Handover doc's last "cannot
// save"): those up to n-e that are not old, one where the old process had
// as many sockets as the new one.
func TestPicksAround(t *testing.T) {
	for _, c := range []struct {
		n     int
		oldAt []int
		want  []int
	}{
		{6, []int{0, 1, 2}, []int{3}},
		{2, []int{0}, []int{1}},
		{5, []int{0}, []int{1, 2, 3, 4}},
		{4, []int{1, 3}, []int{0, 2}},
		{3, []int{0, 1}, []int{2}}, // more old than new: past n-e
	} {
		if diff := cmp.Diff(c.want, picksAround(c.n, c.oldAt)); diff != "" {
			t.Errorf("picksAround(%d, %v) (-want +got):\n%s", c.n, c.oldAt, diff)
		}
	}
}

// TestMessageLength checks that a message longer than maxMessage, which
// the peer would read cut short, is refused with an error saying so.
func TestMessageLength(t *testing.T) {
	if err := checkLength(strings.Repeat("1", maxMessage)); err != nil {
		t.Errorf("a message of maxMessage bytes: %v", err)
	}
	err := checkLength(strings.Repeat("1", maxMessage+1))
	if err == nil || !strings.Contains(err.Error(), "too many sockets") {
		t.Errorf("a message of maxMessage+1 bytes: %v, want an error naming too many sockets", err)
	}
}

// TestLocateGuess restarts two worker slots in turn, twice, which leaves
// the kernel's array unlike the join order: after a, then b, the array is
// [a, b], the join order [b, a]. Each successor guesses first where the old
// process says its socket sits: where it joined, for a process that was the
// first in its slot, else where its own predecessor's was; and the probes
// find it there, where the join order would guess wrong for b. UDP sockets,
// plain TCP listeners, and MPTCP ones (steered through a helper that joins
// and leaves too).
func TestLocateGuess(t *testing.T) {
	requireProgram(t)
	for _, network := range []string{"udp4", "tcp4", "mptcp"} {
		t.Run(network, func(t *testing.T) {
			type located struct{ guess, found []int }
			var seen []located
			testHookLocated = func(guess, found []int) { seen = append(seen, located{guess, found}) }
			defer func() { testHookLocated = nil }()
			ctx := context.Background()
			addr := "127.0.0.1:0"
			start := func(slot string) (io.Closer, *Handover) {
				t.Helper()
				var sock io.Closer
				var err error
				if network == "udp4" {
					var pc net.PacketConn
					pc, err = ListenPacket(network, addr)
					if err == nil {
						sock, addr = pc, pc.LocalAddr().String()
					}
				} else {
					var cfg Config
					cfg.ListenConfig.SetMultipathTCP(network == "mptcp")
					var ln net.Listener
					ln, err = cfg.Listen(ctx, "tcp4", addr)
					if err == nil {
						sock, addr = ln, ln.Addr().String()
						go func() { // as servers do: the old one drains its queue
							for {
								c, err := ln.Accept()
								if err != nil {
									return
								}
								c.Close()
							}
						}()
					}
				}
				if err != nil {
					t.Fatal(err)
				}
				h := &Handover{Slot: slot, Quiet: 20 * time.Millisecond}
				if err := h.TakeOver(ctx, sock); errors.Is(err, errors.ErrUnsupported) {
					sock.Close()
					t.Skipf("the handover cannot steer here: %v", err)
				} else if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { h.Close(); sock.Close() })
				return sock, h
			}
			restart := func(slot string, oldSock io.Closer, old *Handover) (io.Closer, *Handover) {
				t.Helper()
				go func() {
					<-old.Replaced()
					oldSock.Close()
					old.Close()
				}()
				sock, h := start(slot)
				select {
				case <-h.OldExited():
				case <-time.After(10 * time.Second):
					t.Fatalf("slot %s: the old socket still open 10s after TakeOver", slot)
				}
				return sock, h
			}
			a1, ha1 := start("a")
			b1, hb1 := start("b")
			a2, ha2 := restart("a", a1, ha1)
			b2, hb2 := restart("b", b1, hb1)
			restart("a", a2, ha2)
			restart("b", b2, hb2)
			want := []located{
				{guess: []int{0}, found: []int{0}},    // a1 where it joined
				{guess: []int{1, 0}, found: []int{1}}, // b1 where it joined, not first in join order
				{guess: []int{0}, found: []int{0}},    // a2 where a1 was
				{guess: []int{1, 0}, found: []int{1}}, // b2 where b1 was, not where it joined
			}
			if diff := cmp.Diff(want, seen, cmp.AllowUnexported(located{})); diff != "" {
				t.Errorf("guesses and finds of the four handovers (-want +got):\n%s", diff)
			}
		})
	}
}

// TestParseSockets reads the old process's "sockets" message, with and
// without the indexes where it believes its sockets sit, and refuses one
// that does not add up.
func TestParseSockets(t *testing.T) {
	for _, tc := range []struct {
		msg  string
		want oldSockets // zero: an error
	}{
		{"sockets 12 0 250000000 7 8", oldSockets{pid: 12, quiet: 250 * time.Millisecond, inos: []uint64{7, 8}}},
		{"sockets 12 1 0 7 8 at 3 0", oldSockets{pid: 12, gen: 1, inos: []uint64{7, 8}, at: []int{3, 0}}},
		{"sockets 12 1 0 7 8 at 3", oldSockets{}},
		{"sockets 12 1 0 7 at", oldSockets{}},
		{"sockets 12 1 0 at 1", oldSockets{}},
		{"sockets 12 1 0 7 at -1", oldSockets{}},
		{"sockets 12 1 0 7 at " + strconv.Itoa(maxMembers), oldSockets{}},
		{"sockets 12 1 0 7 at x", oldSockets{}},
		{"sockets 12 1 -5 7", oldSockets{}},
		{"steered 12 1 0 7", oldSockets{}},
	} {
		got, err := parseSockets(tc.msg)
		if (err != nil) != (tc.want.pid == 0) {
			t.Errorf("parseSockets(%q) error %v", tc.msg, err)
		}
		if diff := cmp.Diff(tc.want, got, cmp.AllowUnexported(oldSockets{})); diff != "" {
			t.Errorf("parseSockets(%q) (-want +got):\n%s", tc.msg, diff)
		}
	}
}

// TestUnreferenced pins what unreferenced reads in /proc/net/tcp{,6}: a
// plain TCP listener's references are 1 while nothing reaches it, more
// while a handshake is in flight to it (the listener defers it until the
// client's first bytes) and while a connection waits in its queue, 1 again
// once that is accepted; an MPTCP listener is never unreferenced.
func TestUnreferenced(t *testing.T) {
	for _, tc := range []struct{ name, network, listen, dial string }{
		{"IPv4", "tcp4", "127.0.0.1:0", "127.0.0.1"},
		{"IPv6", "tcp6", "[::1]:0", "::1"},
		{"IPv4 to dual-stack", "tcp", "[::]:0", "127.0.0.1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var cfg Config
			cfg.ListenConfig.SetMultipathTCP(false)
			cfg.ListenConfig.Control = func(_, _ string, rc syscall.RawConn) error {
				return withFD(rc, func(fd uintptr) error {
					return unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_DEFER_ACCEPT, 5)
				})
			}
			ln, err := cfg.Listen(context.Background(), tc.network, tc.listen)
			if err != nil {
				t.Skipf("no %s loopback: %v", tc.name, err)
			}
			defer ln.Close()
			st := stateOf(t, []any{ln})
			check := func(when string, want bool) {
				t.Helper()
				if got, err := st.unreferenced(); got != want || err != nil {
					t.Errorf("%s: unreferenced() = %v, %v; want %v", when, got, err, want)
				}
			}
			check("at rest", true)
			port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
			c, err := net.Dial("tcp", net.JoinHostPort(tc.dial, port))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			check("a handshake in flight", false)
			if _, err := c.Write([]byte("x")); err != nil {
				t.Fatal(err)
			}
			a, err := ln.Accept()
			if err != nil {
				t.Fatal(err)
			}
			defer a.Close()
			check("its connection accepted", true)
			c2, err := net.Dial("tcp", net.JoinHostPort(tc.dial, port))
			if err != nil {
				t.Fatal(err)
			}
			defer c2.Close()
			if _, err := c2.Write([]byte("x")); err != nil {
				t.Fatal(err)
			}
			wait := 5 * time.Second
			if sockettest.Emulator() != "" {
				wait = time.Second
			}
			for deadline := time.Now().Add(wait); ; time.Sleep(time.Millisecond) {
				q, err := st.queued()
				if err != nil {
					t.Skipf("cannot read the listener's queue here (qemu-user?): %v", err)
				}
				if q == 1 {
					break
				}
				if time.Now().After(deadline) && sockettest.Emulator() != "" {
					t.Skipf("%s answers no TCP_INFO (its queue reads %d): the queue is not known", sockettest.Emulator(), q)
				}
				if time.Now().After(deadline) {
					t.Fatalf("the connection, its first bytes sent, not in the listener's queue in %v: TCP_INFO says %d queued", wait, q)
				}
			}
			check("a connection in the queue", false)
		})
	}
	t.Run("MPTCP", func(t *testing.T) {
		var cfg Config
		cfg.ListenConfig.SetMultipathTCP(true)
		ln, err := cfg.Listen(context.Background(), "tcp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		st := stateOf(t, []any{ln})
		if st.socks[0].proto != unix.IPPROTO_MPTCP {
			t.Skipf("this kernel has no MPTCP: the listener's protocol is %d", st.socks[0].proto)
		}
		if got, err := st.unreferenced(); got || err != nil {
			t.Errorf("an MPTCP listener at rest: unreferenced() = %v, %v; want false", got, err)
		}
	})
}

// TestWaitExit watches a process end, by its pidfd and as where the kernel
// has none (before Linux 5.3) by signal 0: a wait lasts while the process
// runs, ends once it exited, and ends at stop, saying which.
func TestWaitExit(t *testing.T) {
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Skipf("no sleep command to run: %v", err)
	}
	for _, pidfd := range []bool{true, false} {
		t.Run(map[bool]string{true: "pidfd", false: "signal 0"}[pidfd], func(t *testing.T) {
			testNoPidfd = !pidfd
			defer func() { testNoPidfd = false }()
			start := func() *exec.Cmd {
				cmd := exec.Command(sleep, "60")
				if err := cmd.Start(); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
				return cmd
			}
			wait := func(pid int, stop chan struct{}) chan bool {
				done := make(chan bool, 1)
				go func() { done <- waitExit(pid, stop) }()
				return done
			}
			cmd := start()
			done := wait(cmd.Process.Pid, nil)
			select {
			case <-done:
				t.Fatal("waitExit returned while the process ran")
			case <-time.After(50 * time.Millisecond):
			}
			cmd.Process.Kill()
			cmd.Wait() // reaped, as an unrelated process's parent does
			select {
			case exited := <-done:
				if !exited {
					t.Error("waitExit said stop, not exit")
				}
			case <-time.After(5 * time.Second):
				t.Fatal("waitExit still waits 5s after the process exited")
			}
			stop := make(chan struct{})
			done = wait(start().Process.Pid, stop)
			close(stop)
			select {
			case exited := <-done:
				if exited {
					t.Error("waitExit said exit, at stop, of a running process")
				}
			case <-time.After(5 * time.Second):
				t.Fatal("waitExit still waits 5s after stop")
			}
		})
	}
}

// BenchmarkInFlight compares what an old process pays to learn whether a
// handshake may still reach its listener: the sock_diag dump of the
// handshakes in flight (handshakes), one exact lookup of a connection
// (stillInFlight, for each handshake the dump found), and the listener's
// references (unreferenced), with and without 20,000 connections of the
// namespace in TIME_WAIT (made here, on loopback; the kernel keeps them a
// minute). Run: go test -run '^$' -bench BenchmarkInFlight .
func BenchmarkInFlight(b *testing.B) {
	var cfg Config
	cfg.ListenConfig.SetMultipathTCP(false)
	ln, err := cfg.Listen(context.Background(), "tcp4", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	st := stateOf(b, []any{ln})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	c, err := net.Dial("tcp4", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	local := netip.MustParseAddrPort(c.RemoteAddr().String())
	remote := netip.MustParseAddrPort(c.LocalAddr().String())
	c.Close()
	for _, timeWait := range []int{0, 20000} {
		for made := 0; made < timeWait; made++ {
			// Either end, closing first, waits (TIME_WAIT).
			c, err := net.Dial("tcp4", ln.Addr().String())
			if err != nil {
				b.Fatal(err)
			}
			c.Close()
		}
		for _, m := range []struct {
			name string
			f    func() error
		}{
			{"dump", func() error { _, err := st.handshakes(); return err }},
			{"lookup", func() error { _, _, err := sockdiag.Connection(local, remote); return err }},
			{"references", func() error { _, err := st.unreferenced(); return err }},
		} {
			b.Run(fmt.Sprintf("timewait=%d/%s", timeWait, m.name), func(b *testing.B) {
				for i := 0; i < b.N; i++ {
					if err := m.f(); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
