package reuse_test

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/sockreuse/reuse/internal/sockettest"
)

// crashHandovers is how many handovers a crash injection runs (TCP: per
// tcp_migrate_req setting): REUSE_CRASH_HANDOVERS, or 6 (bench/crash.sh
// runs more).
func crashHandovers() int {
	if n, err := strconv.Atoi(os.Getenv("REUSE_CRASH_HANDOVERS")); err == nil {
		return n
	}
	return 6
}

// crashTally counts a crash injection's handovers and their failed and
// refused connections, by what was done to which process.
type crashTally struct {
	rounds, failed, refused map[string]int64
}

func (c crashTally) String() string {
	s := ""
	for _, k := range []string{"none", "old kill", "old stop", "new kill", "new stop", "new kill past go"} {
		if c.rounds[k] > 0 {
			s += fmt.Sprintf("\n\t%-16s %3d handovers: %d failed, %d refused", k, c.rounds[k], c.failed[k], c.refused[k])
		}
	}
	return s
}

// TestHandoverCrashInjection replaces a server again and again under
// continuous load, in a private network namespace for each
// tcp_migrate_req setting, and at a random moment of each handover (the
// successor's search, its steering, the old process's drain) kills, or
// stops for 50 to 550 ms, the old or the new process, or neither. A
// successor whose TakeOver fails does as the README's server does: it
// serves on, and tries again. It reports, by what was done to which
// process, the connections that failed (a killed process's accepted
// connections die with it, and with tcp_migrate_req=0 its accept queue)
// and those refused (a moment the port was unserved). Killing the new
// process after it said "go" kills the only server: it is reported apart.
// Test: none refused and none failed but where a process was killed.
func TestHandoverCrashInjection(t *testing.T) {
	requireSteering(t)
	eachMigrateReq(t, func(t *testing.T, migrate string) {
		os.Setenv("REUSE_TEST_SAY_GO", "1") // this process is the namespace's own (eachMigrateReq)
		const quiet = 20 * time.Millisecond
		s := shape{1, false}
		gen, addr := startGeneration(t, s, "127.0.0.1:0", quiet, "readme")
		gen.Send("takeover")
		gen.Expect("took over", 10*time.Second)
		tally := crashTally{map[string]int64{}, map[string]int64{}, map[string]int64{}}
		live, stop := liveLoad(t, addr)
		counts := func() *loadCounts { return live }
		for i := 0; i < crashHandovers(); i++ {
			failed, refused := counts().reset.Load()+counts().other.Load(), counts().refused.Load()
			next, _ := startGeneration(t, s, addr, quiet, "readme")
			next.Send("takeover")
			what := injectCrash(quiet, gen, next)
			if what == "new kill" {
				saidGo := false
				for _, l := range next.Rest(10 * time.Second) {
					saidGo = saidGo || l == "saying go"
				}
				for start := time.Now(); saidGo && !gen.Exited() && time.Since(start) < 3*time.Second; {
					time.Sleep(10 * time.Millisecond)
				}
				if saidGo && gen.Exited() {
					// Past the point of no return the old process goes:
					// the only server was killed. Start one afresh.
					what = "new kill past go"
					_ = gen.Wait()
					gen, _ = startGeneration(t, s, addr, quiet, "readme")
					gen.Send("takeover")
					gen.Expect("took over", 10*time.Second)
				}
			} else {
				if what == "old kill" {
					_ = gen.Wait()
				}
				takeOverRetrying(t, next)
				if what != "old kill" {
					gen.Expect("closed ", 15*time.Second)
					_ = gen.Wait()
				}
				gen = next
			}
			time.Sleep(50 * time.Millisecond) // connects begun in this handover end in it
			tally.rounds[what]++
			tally.failed[what] += counts().reset.Load() + counts().other.Load() - failed
			tally.refused[what] += counts().refused.Load() - refused
		}
		c := stop()
		t.Logf("tcp_migrate_req=%s, %d handovers under load: %v%v", migrate, crashHandovers(), c, tally)
		for what, n := range tally.refused {
			if n != 0 && what != "new kill past go" {
				t.Errorf("%s: the port was unserved (%d connections refused)", what, n)
			}
		}
		for what, n := range tally.failed {
			if n != 0 && what != "old kill" && what != "new kill" && what != "new kill past go" {
				t.Errorf("%s: %d connections failed where no process was killed", what, n)
			}
		}
		gen.Send("close")
		gen.Expect("closed ", 10*time.Second)
	})
}

// injectCrash does, at a random moment of a handover from old to next
// (within 4 quiet periods of its start), what a crash injection does to
// one handover: it kills (SIGKILL) or stops for 50 to 550 ms (SIGSTOP, then
// SIGCONT) the old or the new process, or does nothing. It returns what it
// did: "none", or the victim and the action ("old kill", "new stop").
func injectCrash(quiet time.Duration, old, next *sockettest.Worker) string {
	time.Sleep(time.Duration(rand.Int63n(int64(4 * quiet))))
	victim := []string{"old", "new", "none"}[rand.Intn(3)]
	action := []string{"kill", "stop"}[rand.Intn(2)]
	w := old
	if victim == "new" {
		w = next
	}
	switch {
	case victim == "none":
		return "none"
	case action == "kill":
		_ = syscall.Kill(w.Pid(), syscall.SIGKILL)
	default:
		_ = syscall.Kill(w.Pid(), syscall.SIGSTOP)
		time.Sleep(50*time.Millisecond + time.Duration(rand.Int63n(int64(500*time.Millisecond))))
		_ = syscall.Kill(w.Pid(), syscall.SIGCONT)
	}
	return victim + " " + action
}

// takeOverRetrying waits until w took over, sending "takeover" again each
// time its TakeOver failed, as the README's server tries again.
func takeOverRetrying(t *testing.T, w *sockettest.Worker) {
	t.Helper()
	for try := 0; try < 5; try++ {
		if p, _ := w.ExpectOneOf(30*time.Second, "took over", "takeover failed: "); p == "took over" {
			return
		}
		w.Send("takeover")
	}
	t.Fatal("5 TakeOvers failed in a row")
}

// TestUDPHandoverCrashInjection is TestHandoverCrashInjection for a UDP
// server of one socket, under a stream of numbered datagrams from 200
// source ports: it reports, by what was done to which process, the
// datagrams sent in each handover that no process read (a killed process
// takes what it read and what its socket held with it), and the sends
// refused (a moment the port was unserved). Test: none refused, and none
// lost where no process was killed, but those that the kernel counted
// dropped on the sockets in that handover (a full buffer, the probe).
//
// A worker reports what it read every 20 ms: each handover ends once the
// serving process reported datagrams sent after it, so that what a crash
// takes with it was sent in the handover of the crash.
func TestUDPHandoverCrashInjection(t *testing.T) {
	requireSteering(t)
	if !sockettest.RunInNetNS(t) {
		return
	}
	os.Setenv("REUSE_TEST_SAY_GO", "1") // this process is the namespace's own
	os.Setenv("REUSE_TEST_PRINT_SEQS", "1")
	const quiet = 20 * time.Millisecond
	start := func(addr string) (*sockettest.Worker, string) {
		w := sockettest.StartWorker(t, "udp-handover", []string{addr, "", quiet.String()})
		addr = w.Expect("addr ", 10*time.Second)
		w.Send("takeover")
		return w, addr
	}
	gen, addr := start("127.0.0.1:0")
	gen.Expect("took over", 10*time.Second)
	const sources = 200
	stream := startCountedStream(t, addr, sources, time.Minute+time.Duration(crashHandovers())*time.Second)
	r := &udpReports{t: t, addr: addr, seen: map[int]int{}, counted: map[int]int{}}
	type round struct {
		what       string
		first, end int
	}
	var rounds []round
	refused := map[string]int64{}
	drops := map[string]int{} // counted by the kernel on the sockets, in each handover
	end := 0
	for i := 0; i < crashHandovers(); i++ {
		first, refusedBefore := end, stream.refused.Load()
		next, _ := start(addr)
		what := injectCrash(quiet, gen, next)
		dropped := 0 // counted by the kernel in this handover
		switch what {
		case "new kill":
			saidGo := false
			for _, l := range next.Rest(10 * time.Second) {
				saidGo = saidGo || l == "saying go"
				r.add(l)
			}
			if !saidGo {
				break
			}
			// Told to go before its successor died, the old process
			// reports what it read and ends; if not, it serves on.
			if d, ended := r.read(gen, -1, 3*time.Second); ended {
				what = "new kill past go"
				dropped += d
				r.wait(gen)
				gen, _ = start(addr)
				gen.Expect("took over", 10*time.Second)
			}
		case "old kill":
			for _, l := range gen.Rest(10 * time.Second) {
				r.add(l)
			}
			next.Expect("took over", 15*time.Second)
			gen = next
		default:
			next.Expect("took over", 15*time.Second)
			if d, ended := r.read(gen, -1, 15*time.Second); ended {
				dropped += d
			} else {
				t.Fatalf("%s: the replaced worker did not end in 15 s", what)
			}
			r.wait(gen)
			gen = next
		}
		// Datagrams sent in this handover arrive in it, and a refusal (an
		// ICMP error, which its source socket reports at its next send)
		// counts in it: every source sends twice more.
		time.Sleep(50 * time.Millisecond)
		for target, start := stream.sent.Load()+2*sources, time.Now(); stream.sent.Load() < target && time.Since(start) < 5*time.Second; {
			time.Sleep(time.Millisecond)
		}
		end = int(stream.sent.Load())
		// The serving process, now alone, reads in the order sent: once it
		// reported one sent later (by one datagram per source), it
		// reported every one of this handover that it read.
		if _, ended := r.read(gen, end+sources, 10*time.Second); ended || !r.reached(end+sources) {
			t.Fatalf("%s: the serving worker reported no datagram sent after the handover in 10 s", what)
		}
		dropped += r.liveDrops(gen)
		rounds = append(rounds, round{what, first, end})
		drops[what] += dropped
		refused[what] += stream.refused.Load() - refusedBefore
	}
	sent := stream.stop()
	gen.Send("close")
	if _, ended := r.read(gen, -1, 15*time.Second); !ended {
		t.Fatal("the last worker did not end in 15 s")
	}
	r.wait(gen)
	lost, count := map[string]int{}, map[string]int{}
	for _, rd := range rounds {
		count[rd.what]++
		for seq := rd.first; seq < rd.end; seq++ {
			if r.seen[seq] == 0 {
				lost[rd.what]++
			}
		}
	}
	report := ""
	for _, k := range []string{"none", "old kill", "old stop", "new kill", "new stop", "new kill past go"} {
		if count[k] > 0 {
			report += fmt.Sprintf("\n\t%-16s %3d handovers: %d datagrams lost (the kernel counted %d dropped), %d sends refused", k, count[k], lost[k], drops[k], refused[k])
		}
	}
	t.Logf("UDP, %d handovers under %d datagrams:%s", len(rounds), sent, report)
	for k := range count {
		if refused[k] != 0 && k != "new kill past go" {
			t.Errorf("%s: the port was unserved (%d sends refused)", k, refused[k])
		}
		if lost[k] > drops[k] && k != "old kill" && k != "new kill" && k != "new kill past go" {
			t.Errorf("%s: %d datagrams lost where no process was killed; the kernel counted %d dropped", k, lost[k], drops[k])
		}
	}
}

// udpReports collects what the UDP workers of a crash injection on addr
// report: the datagrams they read (seen), and the drops that the kernel
// counted on their sockets, by process.
type udpReports struct {
	t       *testing.T
	addr    string
	seen    map[int]int
	max     int         // the highest number seen
	counted map[int]int // pid: the drops of its socket counted so far
}

// read reads the reports of worker w into r until it reported a datagram
// numbered upTo or more (never, if upTo is negative), or its last report
// ("seqs-end D": ended, with D the drops of its socket not counted yet), or
// timeout passed.
func (r *udpReports) read(w *sockettest.Worker, upTo int, timeout time.Duration) (drops int, ended bool) {
	r.t.Helper()
	deadline := time.Now().Add(timeout)
	for upTo < 0 || r.max < upTo {
		line, ok := w.Next(time.Until(deadline))
		if !ok {
			return 0, false
		}
		if d, ok := strings.CutPrefix(line, "seqs-end "); ok {
			n, err := strconv.Atoi(d)
			if err != nil {
				r.t.Fatal(err)
			}
			n -= r.counted[w.Pid()]
			delete(r.counted, w.Pid())
			return n, true
		}
		r.add(line)
	}
	return 0, false
}

// add adds the numbers of a worker's line "seqs N,N,..." to r.
func (r *udpReports) add(line string) {
	r.t.Helper()
	rest, ok := strings.CutPrefix(line, "seqs ")
	if !ok {
		return
	}
	for _, f := range strings.Split(rest, ",") {
		seq, err := strconv.Atoi(f)
		if err != nil {
			r.t.Fatal(err)
		}
		r.seen[seq]++
		r.max = max(r.max, seq)
	}
}

// reached reports whether a datagram numbered seq or more was seen.
func (r *udpReports) reached(seq int) bool { return r.max >= seq }

// wait waits for worker w, which reported its end, to exit.
func (r *udpReports) wait(w *sockettest.Worker) {
	r.t.Helper()
	if err := w.Wait(); err != nil {
		r.t.Fatal(err)
	}
}

// liveDrops returns the drops that the kernel counted on the socket of
// worker w, the only one on r.addr, since they were last counted.
func (r *udpReports) liveDrops(w *sockettest.Worker) int {
	r.t.Helper()
	n, err := socketDrops(w.Pid(), r.addr)
	if err != nil {
		r.t.Fatal(err)
	}
	d := n - r.counted[w.Pid()]
	r.counted[w.Pid()] = n
	return d
}

// socketDrops returns the drops that the kernel counted on the UDP socket
// that process pid has on addr (an IPv4 address): the last column of
// /proc/net/udp.
func socketDrops(pid int, addr string) (int, error) {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return 0, err
	}
	a4 := ap.Addr().As4()
	local := fmt.Sprintf("%08X:%04X", binary.NativeEndian.Uint32(a4[:]), ap.Port())
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return 0, err
	}
	inodes := map[string]bool{}
	for _, fd := range fds {
		target, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name()))
		if ino, ok := strings.CutPrefix(target, "socket:["); ok {
			inodes[strings.TrimSuffix(ino, "]")] = true
		}
	}
	// A read of /proc/net/udp may skip entries while sockets come and go
	// (the kernel resumes its listing by position): read again.
	for try := 0; try < 20; try++ {
		data, err := os.ReadFile("/proc/net/udp")
		if err != nil {
			return 0, err
		}
		for _, line := range strings.Split(string(data), "\n") {
			// sl local_address rem_address st ... uid timeout inode ref pointer drops
			f := strings.Fields(line)
			if len(f) >= 13 && f[1] == local && inodes[f[9]] {
				return strconv.Atoi(f[len(f)-1])
			}
		}
	}
	return 0, fmt.Errorf("process %d has no UDP socket on %s in /proc/net/udp", pid, addr)
}

// countedStream sends numbered datagrams, counting those sent and the
// sends refused (ICMP port unreachable: nobody served the port).
type countedStream struct {
	sent, refused atomic.Int64
	stop          func() int
}

// startCountedStream sends numbered datagrams to addr from sources
// sockets, round robin, about 20,000 a second, until stop or the test's
// end, for limit at most.
func startCountedStream(t *testing.T, addr string, sources int, limit time.Duration) *countedStream {
	t.Helper()
	conns := udpSources(t, addr, sources)
	s := new(countedStream)
	done, ended := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(ended)
		for end := time.Now().Add(limit); time.Now().Before(end); {
			for _, c := range conns {
				select {
				case <-done:
					return
				default:
				}
				n := s.sent.Load()
				if _, err := fmt.Fprintf(c, "%d", n); err != nil {
					if errors.Is(err, syscall.ECONNREFUSED) {
						s.refused.Add(1)
					}
					_, _ = fmt.Fprintf(c, "%d", n) // the datagram itself, once more
				}
				s.sent.Add(1)
				if n%20 == 0 {
					time.Sleep(time.Millisecond)
				}
			}
		}
	}()
	var once sync.Once
	s.stop = func() int {
		once.Do(func() {
			close(done)
			<-ended
			for _, c := range conns {
				c.Close()
			}
		})
		return int(s.sent.Load())
	}
	t.Cleanup(func() { s.stop() })
	return s
}
