//go:build linux

// Package flows_test measures what a UDP flow costs, side by side in one run:
// reuse.ListenFlows (a connected socket per flow, the kernel demultiplexes),
// one unconnected socket read by one goroutine (no flows: the floor), and
// pion/transport's userspace UDP listener (one socket, demultiplexed in Go;
// what pion/dtls uses). For 10, 1,000 and 10,000 flows it reports the
// datagrams per second received (dgrams/s), those lost, and the memory of a
// flow: Go heap (heapB/flow) and kernel slab (kernelB/flow, where
// /proc/slabinfo is readable: root).
//
//	go test -run '^$' -bench . -benchtime 200000x -count 5 | tee cost.txt
//	benchstat -col /impl cost.txt
package flows_test

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/transport/v5/udp"
	"golang.org/x/sys/unix"

	"github.com/sockreuse/reuse"
)

// server is one way to serve flows; received counts their datagrams.
type server struct {
	addr     *net.UDPAddr
	received atomic.Int64
	flows    atomic.Int64
	tokens   chan struct{} // given back, one per datagram, while measuring
	close    func()
}

// got counts a datagram.
func (s *server) got() {
	s.received.Add(1)
	if s.tokens != nil {
		select {
		case s.tokens <- struct{}{}:
		default:
		}
	}
}

// serveConn counts c's datagrams until it fails.
func (s *server) serveConn(c net.Conn) {
	s.flows.Add(1)
	b := make([]byte, 1500)
	for {
		if _, err := c.Read(b); err != nil {
			c.Close()
			return
		}
		s.got()
	}
}

func serveListener(ln net.Listener, s *server) {
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go s.serveConn(c)
		}
	}()
}

var impls = []struct {
	name  string
	serve func(b *testing.B) *server
}{
	{"flows", func(b *testing.B) *server {
		l, err := reuse.ListenFlows("udp4", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		s := &server{addr: l.Addr().(*net.UDPAddr)}
		var conns sync.Map
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				conns.Store(c, nil)
				go s.serveConn(c)
			}
		}()
		s.close = func() {
			l.Close()
			conns.Range(func(c, _ any) bool { c.(net.Conn).Close(); return true })
		}
		return s
	}},
	{"socket", func(b *testing.B) *server {
		pc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			b.Fatal(err)
		}
		s := &server{addr: pc.LocalAddr().(*net.UDPAddr)}
		go func() {
			b := make([]byte, 1500)
			for {
				if _, _, err := pc.ReadFromUDPAddrPort(b); err != nil {
					return
				}
				s.got()
			}
		}()
		s.close = func() { pc.Close() }
		s.flows.Store(-1) // no flows: counted by the clients' priming
		return s
	}},
	{"pion", func(b *testing.B) *server {
		ln, err := (&udp.ListenConfig{Backlog: 1024}).Listen("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			b.Fatal(err)
		}
		s := &server{addr: ln.Addr().(*net.UDPAddr)}
		serveListener(ln, s)
		s.close = func() { ln.Close() }
		return s
	}},
}

func BenchmarkFlows(b *testing.B) {
	for _, n := range []int{10, 1000, 10000} {
		for _, im := range impls {
			b.Run(fmt.Sprintf("flows=%d/impl=%s", n, im.name), func(b *testing.B) {
				benchFlows(b, n, im.serve)
			})
		}
	}
}

// benchFlows sends from n source ports, each a flow, through raw sockets
// (one descriptor for all ports: a process's RLIMIT_NOFILE, hard 20,000
// here, would not hold 10,000 flows and 10,000 clients): it primes each
// flow with one datagram, then sends b.N datagrams round robin from 4
// goroutines, at most window of them in flight.
func benchFlows(b *testing.B, n int, serve func(*testing.B) *server) {
	raiseNOFILE(b, n+256)
	raw := make([]int, senders)
	for i := range raw {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_RAW)
		if err != nil {
			b.Skipf("the clients need a raw socket (root, CAP_NET_RAW): %v", err)
		}
		defer unix.Close(fd)
		raw[i] = fd
	}
	heap0, slab0 := memory()
	s := serve(b)
	defer s.close()
	to := &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}
	msg := make([]byte, 100)
	packets := make([][]byte, n)
	for i := range packets {
		packets[i] = udpPacket(firstPort+i, s.addr.Port, msg)
		if err := unix.Sendto(raw[0], packets[i], 0, to); err != nil {
			b.Fatal(err)
		}
		if i%256 == 255 {
			waitReceived(s, int64(i+1), time.Second) // keep the group's queue short
		}
	}
	if !waitReceived(s, int64(n), 10*time.Second) {
		b.Fatalf("%d of %d flows' first datagrams received", s.received.Load(), n)
	}
	heap1, slab1 := memory()
	s.received.Store(0)
	tokens := make(chan struct{}, window)
	for i := 0; i < window; i++ {
		tokens <- struct{}{}
	}
	s.tokens = tokens
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for g := 0; g < senders; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			stall := time.NewTimer(time.Hour)
			for i := g; i < b.N; i += senders {
				select {
				case <-tokens:
				default:
					stall.Reset(10 * time.Millisecond)
					select {
					case <-tokens:
					case <-stall.C: // a lost datagram's token
					}
				}
				unix.Sendto(raw[g], packets[i%n], 0, to)
			}
		}(g)
	}
	wg.Wait()
	waitReceived(s, int64(b.N), 200*time.Millisecond)
	elapsed := time.Since(start)
	b.StopTimer()
	got := s.received.Load()
	b.ReportMetric(float64(got)/elapsed.Seconds(), "dgrams/s")
	b.ReportMetric(float64(int64(b.N)-got)/float64(b.N)*100, "%lost")
	b.ReportMetric(float64(heap1-heap0)/float64(n), "heapB/flow")
	if slab0 >= 0 && slab1 >= 0 {
		b.ReportMetric(float64(slab1-slab0)/float64(n), "kernelB/flow")
	}
}

const (
	senders   = 4
	window    = 128   // datagrams in flight at most: under a receive buffer
	firstPort = 10000 // the flows' source ports, below the ephemeral range
)

// udpPacket returns an IPv4 datagram from 127.0.0.1:sport to
// 127.0.0.1:dport (the kernel fills in the IP checksum and id; a UDP
// checksum of 0 is none).
func udpPacket(sport, dport int, payload []byte) []byte {
	p := make([]byte, 28+len(payload))
	p[0], p[8], p[9] = 0x45, 64, unix.IPPROTO_UDP
	binary.BigEndian.PutUint16(p[2:], uint16(len(p)))
	copy(p[12:16], []byte{127, 0, 0, 1})
	copy(p[16:20], []byte{127, 0, 0, 1})
	binary.BigEndian.PutUint16(p[20:], uint16(sport))
	binary.BigEndian.PutUint16(p[22:], uint16(dport))
	binary.BigEndian.PutUint16(p[24:], uint16(8+len(payload)))
	copy(p[28:], payload)
	return p
}

// waitReceived waits until s received want datagrams, or until none came
// for idle; it reports whether s did.
func waitReceived(s *server, want int64, idle time.Duration) bool {
	last, since := s.received.Load(), time.Now()
	for {
		got := s.received.Load()
		if got >= want {
			return true
		}
		if got != last {
			last, since = got, time.Now()
		} else if time.Since(since) > idle {
			return false
		}
		time.Sleep(time.Millisecond)
	}
}

// memory returns the Go heap in use and the kernel's slab memory of UDP
// sockets, their files and inodes (/proc/slabinfo, -1 where unreadable).
func memory() (heap, slab int64) {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapInuse), slabBytes()
}

func slabBytes() int64 {
	f, err := os.Open("/proc/slabinfo")
	if err != nil {
		return -1
	}
	defer f.Close()
	var total int64
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		// name active_objs num_objs objsize ...
		if len(fs) < 4 {
			continue
		}
		switch fs[0] {
		case "UDP", "UDPv6", "sock_inode_cache", "filp", "dentry", "eventpoll_epi", "eventpoll_pwq":
			active, _ := strconv.ParseInt(fs[1], 10, 64)
			size, _ := strconv.ParseInt(fs[3], 10, 64)
			total += active * size
		}
	}
	return total
}

// raiseNOFILE raises RLIMIT_NOFILE to at least n, or skips.
func raiseNOFILE(b *testing.B, n int) {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		b.Fatal(err)
	}
	if lim.Cur >= uint64(n) {
		return
	}
	want := lim
	want.Cur = uint64(n)
	if want.Max < want.Cur {
		want.Max = want.Cur
	}
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &want); err != nil {
		b.Skipf("the flows need RLIMIT_NOFILE %d, have %d (hard %d): %v", n, lim.Cur, lim.Max, err)
	}
}
