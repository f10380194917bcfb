package bench_test

import (
	"errors"
	"fmt"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sockreuse/reuse"
)

// BenchmarkSteering measures what steering costs: datagrams per second
// through a group of 4 UDP sockets on 127.0.0.1, one reading goroutine per
// socket, spread by the kernel's hash (by=hash) or steered by a classic BPF
// program, by a payload byte (by=byte) or by QUIC connection ID (by=quic).
// The load is the same for all three: QUIC short-header packets of 64 bytes
// whose connection IDs name the 4 members in turn, sent by 2 goroutines,
// each writing round-robin on 8 connected sockets (16 source ports), with
// at most 256 datagrams in flight so that no receive buffer overflows (a
// sender blocks on a channel meanwhile). One
// op is one datagram sent and read: compare with
// `benchstat -col /by` (bench/steer.sh).
func BenchmarkSteering(b *testing.B) {
	if runtime.GOOS != "linux" {
		b.Skipf("steering needs Linux, not %s", runtime.GOOS)
	}
	for _, by := range []struct {
		name  string
		steer *reuse.Steering
	}{
		{"hash", nil},
		{"byte", &reuse.Steering{Offset: 1}},
		{"quic", ptr(reuse.QUICSteering())},
	} {
		b.Run("by="+by.name, func(b *testing.B) { benchGroup(b, by.steer) })
	}
}

func ptr[T any](v T) *T { return &v }

const (
	steerMembers = 4
	steerSenders = 2
	steerSockets = 8 // per sender
	inFlight     = 256
)

func benchGroup(b *testing.B, s *reuse.Steering) {
	pcs, err := reuse.ListenPacketGroup("udp4", "127.0.0.1:0", steerMembers)
	if err != nil {
		b.Fatal(err)
	}
	if s != nil {
		if err := reuse.Steer(pcs[0], *s); err != nil {
			if errors.Is(err, errors.ErrUnsupported) {
				b.Skipf("this kernel cannot steer: %v", err)
			}
			b.Fatal(err)
		}
	}
	// Each datagram in flight holds a token of window: a sender blocks,
	// rather than spins, while the readers catch up.
	window := make(chan struct{}, inFlight)
	var received atomic.Int64
	var readers sync.WaitGroup
	for _, pc := range pcs {
		pc := pc
		if err := pc.(*net.UDPConn).SetReadBuffer(1 << 20); err != nil {
			b.Fatal(err)
		}
		readers.Add(1)
		go func() {
			defer readers.Done()
			buf := make([]byte, 1500)
			for {
				if _, _, err := pc.ReadFrom(buf); err != nil {
					return
				}
				received.Add(1)
				<-window
			}
		}()
	}
	defer func() {
		for _, pc := range pcs {
			pc.Close()
		}
		readers.Wait()
	}()

	// The packets: a short header, then an 8-byte connection ID of member
	// i%4, then a protected payload.
	var packets [steerMembers][]byte
	for m := range packets {
		id, err := reuse.QUICConnectionIDs{Member: m}.Generate()
		if err != nil {
			b.Fatal(err)
		}
		packets[m] = append(append([]byte{0x40}, id...), make([]byte, 64-1-len(id))...)
	}
	var clients [steerSenders][steerSockets]net.Conn
	for i := range clients {
		for j := range clients[i] {
			c, err := net.Dial("udp4", pcs[0].LocalAddr().String())
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			clients[i][j] = c
		}
	}

	errs := make(chan error, steerSenders)
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < steerSenders; i++ {
		i := i
		go func() {
			n := b.N / steerSenders
			if i == 0 {
				n += b.N % steerSenders
			}
			for k := 0; k < n; k++ {
				select {
				case window <- struct{}{}:
				default:
					// Too many in flight: wait, a bounded time.
					select {
					case window <- struct{}{}:
					case <-time.After(time.Second):
						errs <- fmt.Errorf("no datagram read for a second: %d in flight lost", len(window))
						return
					}
				}
				if _, err := clients[i][k%steerSockets].Write(packets[k%steerMembers]); err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for i := 0; i < steerSenders; i++ {
		if err := <-errs; err != nil {
			b.Fatal(err)
		}
	}
	for wait := time.Now(); received.Load() < int64(b.N); time.Sleep(10 * time.Microsecond) {
		if time.Since(wait) > time.Second {
			b.Fatalf("received %d of %d datagrams", received.Load(), b.N)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "datagrams/s")
}
