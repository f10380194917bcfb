package reuse

import (
	"context"
	"errors"
	"net"
	"os"
	"strings"
	"sync"
	"testing"

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
	g, err := newSockGroup(socks)
	if err != nil {
		t.Fatal(err)
	}
	st, err := inspect(g)
	if err != nil {
		t.Fatal(err)
	}
	return st, lns
}

// TestSteerAttachFails checks that a program the kernel refuses gives an
// error naming the option and wrapping the errno.
func TestSteerAttachFails(t *testing.T) {
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
// kernel's hash spreads connections over the members again (all 200 on one
// of the 2+steerTries listeners has probability below 7^-199).
func TestSteerGroupChanged(t *testing.T) {
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
	old := []uint64{st.socks[0].ino} // pretend the first member is the old one
	sg, err := st.steer(old, os.Getpid(), nil)
	if sg != nil || err == nil || !strings.Contains(err.Error(), "changed during each of") {
		t.Errorf("steer with a member joining after each attach: %v, %v; want an error saying the group changed", sg, err)
	}
	all := append(lns, joined...)
	defer func() {
		for _, ln := range joined {
			ln.Close()
		}
	}()
	got := make([]int, len(all))
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i, ln := range all {
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
				c.Close()
			}
		}()
	}
	for i := 0; i < 200; i++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
	}
	for {
		mu.Lock()
		n := 0
		for _, v := range got {
			n += v
		}
		mu.Unlock()
		if n == 200 {
			break
		}
	}
	for _, ln := range all {
		ln.Close()
	}
	wg.Wait()
	for _, v := range got {
		if v == 200 {
			t.Errorf("after the rollback, one listener took all connections (%v): a program was left", got)
		}
	}
}
