package reuse

import (
	"context"
	"errors"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
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
func stateOf(t *testing.T, socks []any) *handoverState {
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
	sg, err := st.steer([]uint64{st.socks[0].ino}, ask)
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
