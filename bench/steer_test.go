package bench_test

import (
	"cmp"
	"errors"
	"fmt"
	"net"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sockreuse/reuse"
)

// BenchmarkSteering measures what steering costs: datagrams per second
// through three groups of 4 UDP sockets on 127.0.0.1, one reading goroutine
// per socket: one spread by the kernel's hash (hash), one steered by a
// classic BPF program reading a payload byte (byte), one by QUIC connection
// ID (quic). The load is the same for all three: QUIC short-header packets
// of 64 bytes whose connection IDs name the 4 members in turn, sent by 2
// goroutines, each writing round-robin on 8 connected sockets (16 source
// ports), with at most 256 datagrams in flight so that no receive buffer
// overflows (a sender blocks on a channel meanwhile).
//
// The groups take turns, a chunk of datagrams each (1,000 delivered, 100
// selected), in a rotating order, so that a change of load on the machine
// falls on all three alike; each group's rate is that of its median chunk.
// One op is one datagram to each group.
//
// path=delivered is the whole path, readers included. path=selected has no
// readers and one sender: once the receive buffers are full, the kernel
// drops each datagram right after picking its member (the hash or the
// program), so the time per datagram is the send path and the pick alone,
// without the scheduling of readers, which on a loaded machine varies more
// than the steering costs. It reports each group's datagrams/s and the ratios byte/hash and
// quic/hash of datagrams/s (below 1: steering is slower); bench/steer.sh
// runs it several times and reports the medians.
func BenchmarkSteering(b *testing.B) {
	if runtime.GOOS != "linux" {
		b.Skipf("steering needs Linux, not %s", runtime.GOOS)
	}
	for _, path := range []struct {
		name    string
		readers bool
		chunk   int
	}{{"delivered", true, 1000}, {"selected", false, 100}} {
		b.Run("path="+path.name, func(b *testing.B) {
			groups := []*steerGroup{
				newSteerGroup(b, "hash", nil, path.readers),
				newSteerGroup(b, "byte", &reuse.Steering{Offset: 1}, path.readers),
				newSteerGroup(b, "quic", ptr(reuse.QUICSteering()), path.readers),
			}
			b.ResetTimer()
			for done, round := 0, 0; done < b.N; round++ {
				n := min(path.chunk, b.N-done)
				for i := range groups {
					g := groups[(round+i)%len(groups)]
					if err := g.send(n); err != nil {
						b.Fatalf("%s: %v", g.name, err)
					}
				}
				done += n
			}
			b.StopTimer()
			rate := map[string]float64{}
			for _, g := range groups {
				rate[g.name] = g.rate()
				b.ReportMetric(rate[g.name], g.name+"-datagrams/s")
			}
			b.ReportMetric(rate["byte"]/rate["hash"], "byte/hash")
			b.ReportMetric(rate["quic"]/rate["hash"], "quic/hash")
		})
	}
}

func ptr[T any](v T) *T { return &v }

const (
	steerMembers = 4
	steerSenders = 2
	steerSockets = 8 // per sender
	inFlight     = 256
)

// steerGroup is a group of steerMembers UDP sockets with a reader each, and
// the clients that send to it.
type steerGroup struct {
	name     string
	readers  bool          // false: nobody reads, the datagrams are dropped
	window   chan struct{} // a token for each datagram in flight
	received atomic.Int64
	clients  [steerSenders][steerSockets]net.Conn
	packets  [steerMembers][]byte
	chunks   []chunk
}

// chunk is one turn of a group: n datagrams in d.
type chunk struct {
	n int
	d time.Duration
}

// rate returns the datagrams per second of g's median chunk: a chunk during
// which the scheduler took the CPU away from the benchmark for a while (on a
// loaded machine, several milliseconds) does not weigh more than another.
func (g *steerGroup) rate() float64 {
	c := slices.Clone(g.chunks)
	slices.SortFunc(c, func(a, b chunk) int { return cmp.Compare(float64(a.d)/float64(a.n), float64(b.d)/float64(b.n)) })
	m := c[len(c)/2]
	return float64(m.n) / m.d.Seconds()
}

func newSteerGroup(b *testing.B, name string, s *reuse.Steering, readers bool) *steerGroup {
	g := &steerGroup{name: name, window: make(chan struct{}, inFlight), readers: readers}
	pcs, err := reuse.ListenPacketGroup("udp4", "127.0.0.1:0", steerMembers)
	if err != nil {
		b.Fatal(err)
	}
	var wg sync.WaitGroup
	b.Cleanup(func() {
		for _, pc := range pcs {
			pc.Close()
		}
		wg.Wait()
	})
	if s != nil {
		if err := reuse.Steer(pcs[0], *s); err != nil {
			if errors.Is(err, errors.ErrUnsupported) {
				b.Skipf("this kernel cannot steer: %v", err)
			}
			b.Fatal(err)
		}
	}
	for _, pc := range pcs {
		pc := pc
		if !readers {
			continue
		}
		if err := pc.(*net.UDPConn).SetReadBuffer(1 << 20); err != nil {
			b.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 1500)
			for {
				if _, _, err := pc.ReadFrom(buf); err != nil {
					return
				}
				g.received.Add(1)
				<-g.window
			}
		}()
	}
	// A short header, an 8-byte connection ID of member m, then a
	// protected payload.
	for m := range g.packets {
		id, err := reuse.QUICConnectionIDs{Member: m}.Generate()
		if err != nil {
			b.Fatal(err)
		}
		g.packets[m] = append(append([]byte{0x40}, id...), make([]byte, 64-1-len(id))...)
	}
	for i := range g.clients {
		for j := range g.clients[i] {
			c, err := net.Dial("udp4", pcs[0].LocalAddr().String())
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { c.Close() })
			g.clients[i][j] = c
		}
	}
	return g
}

// send sends n datagrams to g, waits until its readers, if any, have read
// them all, and records the time taken.
func (g *steerGroup) send(n int) error {
	start := time.Now()
	if !g.readers {
		for k := 0; k < n; k++ {
			if _, err := g.clients[0][k%steerSockets].Write(g.packets[k%steerMembers]); err != nil {
				return err
			}
		}
		g.chunks = append(g.chunks, chunk{n, time.Since(start)})
		return nil
	}
	want := g.received.Load() + int64(n)
	errs := make(chan error, steerSenders)
	for i := 0; i < steerSenders; i++ {
		i := i
		go func() {
			m := n / steerSenders
			if i == 0 {
				m += n % steerSenders
			}
			for k := 0; k < m; k++ {
				select {
				case g.window <- struct{}{}:
				default:
					// Too many in flight: wait, a bounded time.
					select {
					case g.window <- struct{}{}:
					case <-time.After(time.Second):
						errs <- fmt.Errorf("no datagram read for a second: %d in flight lost", len(g.window))
						return
					}
				}
				if _, err := g.clients[i][k%steerSockets].Write(g.packets[k%steerMembers]); err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	var err error
	for i := 0; i < steerSenders; i++ {
		if e := <-errs; e != nil && err == nil {
			err = e
		}
	}
	if err != nil {
		return err
	}
	for wait := time.Now(); g.received.Load() < want; time.Sleep(10 * time.Microsecond) {
		if time.Since(wait) > time.Second {
			return fmt.Errorf("read %d of %d datagrams", n-int(want-g.received.Load()), n)
		}
	}
	g.chunks = append(g.chunks, chunk{n, time.Since(start)})
	return nil
}
