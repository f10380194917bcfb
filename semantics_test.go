//go:build darwin || freebsd || windows

package reuse_test

// Helpers of the tests that pin what sharing a port gives on the OSes that
// CI runs natively beside Linux (.github/workflows/ci.yml): which socket of
// a group gets each connection and each datagram.

import (
	"errors"
	"net"
	"os"
	"sync"
	"testing"
	"time"
)

// acceptCounts dials the listeners' shared address n times, each time from
// a new source port, and returns how many connections each listener
// accepted. Every connection must be accepted by one of them.
func acceptCounts(t *testing.T, lns []net.Listener, n int) []int {
	t.Helper()
	counts := make([]int, len(lns))
	var mu sync.Mutex
	var wg sync.WaitGroup
	accepted := make(chan struct{}, n)
	for i, ln := range lns {
		wg.Add(1)
		go func(i int, ln net.Listener) {
			defer wg.Done()
			for {
				c, err := ln.Accept()
				if err != nil {
					return // closed by the cleanup below
				}
				c.Close()
				mu.Lock()
				counts[i]++
				mu.Unlock()
				accepted <- struct{}{}
			}
		}(i, ln)
	}
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
		wg.Wait()
	}()
	addr := lns[0].Addr().String()
	for i := 0; i < n; i++ {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatalf("connection %d of %d to %s: %v", i+1, n, addr, err)
		}
		c.Close()
	}
	timeout := time.After(10 * time.Second)
	for got := 0; got < n; got++ {
		select {
		case <-accepted:
		case <-timeout:
			t.Fatalf("%d of %d connections were accepted within 10s", got, n)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	return append([]int(nil), counts...)
}

// receiveCounts sends n datagrams to the sockets' shared address, each
// from a new socket (a new source port), and returns how many each socket
// received. Every datagram must reach one of them.
func receiveCounts(t *testing.T, pcs []net.PacketConn, n int) []int {
	t.Helper()
	counts := make([]int, len(pcs))
	var mu sync.Mutex
	var wg sync.WaitGroup
	received := make(chan struct{}, n)
	for i, pc := range pcs {
		wg.Add(1)
		go func(i int, pc net.PacketConn) {
			defer wg.Done()
			buf := make([]byte, 64)
			for {
				if _, _, err := pc.ReadFrom(buf); err != nil {
					if errors.Is(err, net.ErrClosed) || errors.Is(err, os.ErrDeadlineExceeded) {
						return
					}
					continue // an ICMP error from an earlier send, on some OSes
				}
				mu.Lock()
				counts[i]++
				mu.Unlock()
				received <- struct{}{}
			}
		}(i, pc)
	}
	defer func() {
		for _, pc := range pcs {
			pc.Close()
		}
		wg.Wait()
	}()
	addr := pcs[0].LocalAddr().String()
	for i := 0; i < n; i++ {
		c, err := net.Dial("udp", addr)
		if err != nil {
			t.Fatalf("datagram %d of %d to %s: %v", i+1, n, addr, err)
		}
		if _, err := c.Write([]byte("ping")); err != nil {
			t.Fatalf("datagram %d of %d to %s: %v", i+1, n, addr, err)
		}
		c.Close()
	}
	timeout := time.After(10 * time.Second)
	for got := 0; got < n; got++ {
		select {
		case <-received:
		case <-timeout:
			t.Fatalf("%d of %d datagrams arrived within 10s", got, n)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	return append([]int(nil), counts...)
}
