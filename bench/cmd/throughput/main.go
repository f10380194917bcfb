// Command throughput measures what sharing a port buys on loopback: UDP
// datagrams received per second and TCP connections accepted per second by
// a group of k sockets opened with reuse on one address, under the same
// sender load for every k, and how evenly the kernel spreads connections
// across k listeners. It prints Markdown tables.
//
// Usage:
//
//	go run ./cmd/throughput [-mode all|udp|tcp|fair] [-k 1,2,4] [-duration 1s] [-rounds 3]
//
// Every load is bounded in time (-duration) and in count (-max, -conns), and
// talks only to 127.0.0.1.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sockreuse/reuse"
)

var (
	mode      = flag.String("mode", "all", "what to measure: all, udp, tcp or fair")
	kFlag     = flag.String("k", defaultK(), "group sizes for udp and tcp, comma-separated")
	fairK     = flag.String("fairk", "2,4", "group sizes for fair, comma-separated")
	duration  = flag.Duration("duration", time.Second, "length of one udp or tcp measurement")
	rounds    = flag.Int("rounds", 3, "measurements of each k, interleaved; the median is reported")
	senders   = flag.Int("senders", 2, "sending goroutines (udp) or dialing goroutines (tcp, fair), the same for every k")
	srcPorts  = flag.Int("srcports", 16, "udp: source sockets per sender, so that the kernel's 4-tuple hash has flows to spread")
	size      = flag.Int("size", 64, "udp: datagram payload in bytes")
	maxCount  = flag.Int64("max", 20_000_000, "upper bound on datagrams or connections of one measurement")
	conns     = flag.Int("conns", 10_000, "fair: connections to spread over k listeners")
	fairLimit = flag.Duration("fairtimeout", time.Minute, "fair: time limit of one run")
)

// defaultK is 1, 2, 4 and then powers of two up to the number of CPUs.
func defaultK() string {
	ks := []string{"1", "2", "4"}
	for k := 8; k <= runtime.NumCPU(); k *= 2 {
		ks = append(ks, strconv.Itoa(k))
	}
	return strings.Join(ks, ",")
}

func main() {
	flag.Parse()
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "throughput:", err)
		os.Exit(1)
	}
}

func run() error {
	ks, err := parseKs(*kFlag)
	if err != nil {
		return err
	}
	fks, err := parseKs(*fairK)
	if err != nil {
		return err
	}
	if *rounds < 1 || *senders < 1 || *srcPorts < 1 || *size < 1 || *maxCount < 1 || *conns < 1 {
		return errors.New("-rounds, -senders, -srcports, -size, -max and -conns must be positive")
	}
	fmt.Printf("GOMAXPROCS %d, NumCPU %d; %d sending goroutines for every k; median of %d rounds of %v each.\n\n",
		runtime.GOMAXPROCS(0), runtime.NumCPU(), *senders, *rounds, *duration)
	switch *mode {
	case "all", "udp", "tcp", "fair":
	default:
		return fmt.Errorf("unknown -mode %q: want all, udp, tcp or fair", *mode)
	}
	if *mode == "all" || *mode == "udp" {
		if err := table("UDP datagrams received per second", "datagrams/s", ks, measureUDP); err != nil {
			return err
		}
	}
	if *mode == "all" || *mode == "tcp" {
		if err := table("TCP connections accepted per second", "accepts/s", ks, measureTCP); err != nil {
			return err
		}
	}
	if *mode == "all" || *mode == "fair" {
		if err := fairness(fks); err != nil {
			return err
		}
	}
	return nil
}

func parseKs(s string) ([]int, error) {
	var ks []int
	for _, f := range strings.Split(s, ",") {
		k, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || k < 1 {
			return nil, fmt.Errorf("bad group size %q in %q: want positive integers", f, s)
		}
		ks = append(ks, k)
	}
	return ks, nil
}

// result is one measurement: what the group received, and what was sent.
type result struct {
	rate     float64 // received (udp) or accepted (tcp) per second
	sentRate float64 // sent (udp) or dialed (tcp) per second
}

// table runs measure for every k, rounds times, with the k interleaved so
// that a change of load on the machine falls on all of them, and prints
// the medians and their ratio to the first k.
func table(title, unit string, ks []int, measure func(k int) (result, error)) error {
	res := make([][]result, len(ks))
	for r := 0; r < *rounds; r++ {
		for i, k := range ks {
			m, err := measure(k)
			if err != nil {
				return fmt.Errorf("%s, k=%d: %w", title, k, err)
			}
			fmt.Fprintf(os.Stderr, "%s round %d k=%d: %.0f %s (sent %.0f/s)\n", title, r+1, k, m.rate, unit, m.sentRate)
			res[i] = append(res[i], m)
		}
	}
	fmt.Printf("### %s\n\n", title)
	fmt.Printf("| k | %s (median) | ratio to k=%d | min – max | sent/s (median) |\n|---:|---:|---:|---:|---:|\n", unit, ks[0])
	base := median(res[0], func(r result) float64 { return r.rate })
	for i, k := range ks {
		med := median(res[i], func(r result) float64 { return r.rate })
		lo, hi := math.Inf(1), math.Inf(-1)
		for _, m := range res[i] {
			lo, hi = math.Min(lo, m.rate), math.Max(hi, m.rate)
		}
		fmt.Printf("| %d | %.0f | %.2f | %.0f – %.0f | %.0f |\n", k, med, med/base, lo, hi,
			median(res[i], func(r result) float64 { return r.sentRate }))
	}
	fmt.Println()
	return nil
}

func median(rs []result, f func(result) float64) float64 {
	v := make([]float64, len(rs))
	for i, r := range rs {
		v[i] = f(r)
	}
	sort.Float64s(v)
	if n := len(v); n%2 == 0 {
		return (v[n/2-1] + v[n/2]) / 2
	}
	return v[len(v)/2]
}

// counter is a per-socket count on a cache line of its own.
type counter struct {
	n atomic.Int64
	_ [56]byte
}

// packetGroup opens k UDP sockets with reuse on one loopback address; the
// first picks the port.
func packetGroup(k int) ([]net.PacketConn, error) {
	var group []net.PacketConn
	addr := "127.0.0.1:0"
	for i := 0; i < k; i++ {
		pc, err := reuse.ListenPacket("udp4", addr)
		if err != nil {
			closeAll(group)
			return nil, err
		}
		group = append(group, pc)
		addr = group[0].LocalAddr().String()
	}
	return group, nil
}

// listenerGroup opens k TCP listeners with reuse on one loopback address.
func listenerGroup(k int) ([]net.Listener, error) {
	var group []net.Listener
	addr := "127.0.0.1:0"
	for i := 0; i < k; i++ {
		ln, err := reuse.Listen("tcp4", addr)
		if err != nil {
			closeAll(group)
			return nil, err
		}
		group = append(group, ln)
		addr = group[0].Addr().String()
	}
	return group, nil
}

func closeAll[T io.Closer](cs []T) {
	for _, c := range cs {
		c.Close()
	}
}

// measureUDP sends datagrams to a group of k sockets for one -duration from
// -senders goroutines, each writing round-robin on -srcports connected
// sockets, and counts what the group's readers (one goroutine per socket)
// receive in that time.
func measureUDP(k int) (result, error) {
	group, err := packetGroup(k)
	if err != nil {
		return result{}, err
	}
	defer closeAll(group)
	counts := make([]counter, k)
	var readers sync.WaitGroup
	for i, pc := range group {
		i, pc := i, pc
		readers.Add(1)
		go func() {
			defer readers.Done()
			buf := make([]byte, 2048)
			for {
				if _, _, err := pc.ReadFrom(buf); err != nil {
					return // closed
				}
				counts[i].n.Add(1)
			}
		}()
	}

	var srcs []net.Conn
	defer func() { closeAll(srcs) }()
	for i := 0; i < *senders**srcPorts; i++ {
		c, err := net.Dial("udp4", group[0].LocalAddr().String())
		if err != nil {
			return result{}, err
		}
		srcs = append(srcs, c)
	}
	var sent atomic.Int64
	var sendErr error
	var errOnce sync.Once
	perSender := *maxCount / int64(*senders)
	start := time.Now()
	deadline := start.Add(*duration)
	var wg sync.WaitGroup
	for s := 0; s < *senders; s++ {
		mine := srcs[s**srcPorts : (s+1)**srcPorts]
		wg.Add(1)
		go func() {
			defer wg.Done()
			payload := make([]byte, *size)
			var n int64
			defer func() { sent.Add(n) }()
			for n < perSender {
				if n%64 == 0 && time.Now().After(deadline) {
					return
				}
				if _, err := mine[n%int64(len(mine))].Write(payload); err != nil {
					errOnce.Do(func() { sendErr = err })
					return
				}
				n++
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	var received int64
	for i := range counts {
		received += counts[i].n.Load()
	}
	closeAll(group)
	readers.Wait()
	if sendErr != nil {
		return result{}, sendErr
	}
	return result{rate: float64(received) / elapsed.Seconds(), sentRate: float64(sent.Load()) / elapsed.Seconds()}, nil
}

// acceptAll runs one accepting goroutine per listener until the listener
// is closed. Each accepted connection is counted, and closed once the
// client has reset it: a server that closes first may leave state behind
// for a 4-tuple that a later client reuses. The returned wait waits for
// them all.
func acceptAll(group []net.Listener, counts []counter) (wait func()) {
	var wg sync.WaitGroup
	for i, ln := range group {
		i, ln := i, ln
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				c, err := ln.Accept()
				if err != nil {
					return // closed
				}
				counts[i].n.Add(1)
				wg.Add(1)
				go func() {
					defer wg.Done()
					c.SetReadDeadline(time.Now().Add(10 * time.Second))
					c.Read(make([]byte, 1))
					c.Close()
				}()
			}
		}()
	}
	return wg.Wait
}

// dialLoop dials addr from -senders goroutines until deadline or until
// limit connections were made, and resets each connection at once (linger
// 0), so that no TIME_WAIT uses up the ephemeral ports. It returns the
// number of connections made.
func dialLoop(addr string, deadline time.Time, limit int64) (int64, error) {
	var dialed atomic.Int64
	var dialErr error
	var errOnce sync.Once
	var wg sync.WaitGroup
	d := net.Dialer{Timeout: 5 * time.Second}
	for s := 0; s < *senders; s++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) {
				if dialed.Add(1) > limit {
					dialed.Add(-1)
					return
				}
				c, err := d.Dial("tcp4", addr)
				if err != nil {
					dialed.Add(-1)
					errOnce.Do(func() { dialErr = err })
					return
				}
				c.(*net.TCPConn).SetLinger(0)
				c.Close()
			}
		}()
	}
	wg.Wait()
	return dialed.Load(), dialErr
}

// measureTCP dials a group of k listeners for one -duration and counts the
// connections they accept in that time.
func measureTCP(k int) (result, error) {
	group, err := listenerGroup(k)
	if err != nil {
		return result{}, err
	}
	defer closeAll(group)
	counts := make([]counter, k)
	wait := acceptAll(group, counts)
	start := time.Now()
	dialed, err := dialLoop(group[0].Addr().String(), start.Add(*duration), *maxCount)
	elapsed := time.Since(start)
	var accepted int64
	for i := range counts {
		accepted += counts[i].n.Load()
	}
	closeAll(group)
	wait()
	if err != nil {
		return result{}, err
	}
	return result{rate: float64(accepted) / elapsed.Seconds(), sentRate: float64(dialed) / elapsed.Seconds()}, nil
}

// fairness makes -conns connections to each group of k listeners and
// prints how many each accepted, with the coefficient of variation
// (standard deviation over mean). If the kernel picked a listener
// uniformly at random per connection, the counts would be multinomial and
// the expected coefficient about sqrt((k-1)/n), printed beside it.
func fairness(ks []int) error {
	fmt.Printf("### Fairness: accepts per listener over %d connections\n\n", *conns)
	fmt.Println("| k | accepts per listener | coefficient of variation | uniform random would give |\n|---:|---|---:|---:|")
	for _, k := range ks {
		counts, err := fairRun(k)
		if err != nil {
			return fmt.Errorf("fairness, k=%d: %w", k, err)
		}
		var sum, sq float64
		strs := make([]string, k)
		for i, c := range counts {
			sum += float64(c)
			strs[i] = strconv.FormatInt(c, 10)
		}
		mean := sum / float64(k)
		for _, c := range counts {
			sq += (float64(c) - mean) * (float64(c) - mean)
		}
		cv := math.Sqrt(sq/float64(k)) / mean
		fmt.Printf("| %d | %s | %.4f | %.4f |\n", k, strings.Join(strs, ", "), cv, math.Sqrt(float64(k-1)/float64(*conns)))
	}
	fmt.Println()
	return nil
}

// fairRun makes exactly -conns connections to a group of k listeners and
// returns the accepts of each once all are in.
func fairRun(k int) ([]int64, error) {
	group, err := listenerGroup(k)
	if err != nil {
		return nil, err
	}
	defer closeAll(group)
	counts := make([]counter, k)
	wait := acceptAll(group, counts)
	deadline := time.Now().Add(*fairLimit)
	n := int64(*conns)
	dialed, err := dialLoop(group[0].Addr().String(), deadline, n)
	var total int64
	for err == nil && time.Now().Before(deadline) {
		total = 0
		for i := range counts {
			total += counts[i].n.Load()
		}
		if total >= n {
			break
		}
		time.Sleep(time.Millisecond)
	}
	closeAll(group)
	wait()
	if err != nil {
		return nil, err
	}
	if dialed != n || total != n {
		return nil, fmt.Errorf("dialed %d and accepted %d of %d connections within %v", dialed, total, n, *fairLimit)
	}
	res := make([]int64, k)
	for i := range counts {
		res[i] = counts[i].n.Load()
	}
	return res, nil
}
