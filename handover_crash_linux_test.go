package reuse_test

import (
	"errors"
	"fmt"
	"math/rand"
	"net"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/sockreuse/reuse/internal/sockettest"
)

// crashHandovers is how many handovers TestHandoverCrashInjection runs per
// tcp_migrate_req setting: REUSE_CRASH_HANDOVERS, or 6 (bench/crash.sh
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
			time.Sleep(time.Duration(rand.Int63n(int64(4 * quiet))))
			victim := []string{"old", "new", "none"}[rand.Intn(3)]
			action := []string{"kill", "stop"}[rand.Intn(2)]
			w := gen
			if victim == "new" {
				w = next
			}
			what := victim + " " + action
			switch {
			case victim == "none":
				what = "none"
			case action == "kill":
				_ = syscall.Kill(w.Pid(), syscall.SIGKILL)
			default:
				_ = syscall.Kill(w.Pid(), syscall.SIGSTOP)
				time.Sleep(50*time.Millisecond + time.Duration(rand.Int63n(int64(500*time.Millisecond))))
				_ = syscall.Kill(w.Pid(), syscall.SIGCONT)
			}
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
// lost where no process was killed.
//
// It runs only from bench/crash.sh (REUSE_CRASH_HANDOVERS set): in the
// normal suite, 1 run in about 30 counted datagrams lost where nothing was
// killed, and one run under go1.21.0 hung for 10 minutes; until the cause
// is found (issue 19 stays open for it), it must not decide CI.
func TestUDPHandoverCrashInjection(t *testing.T) {
	if os.Getenv("REUSE_CRASH_HANDOVERS") == "" {
		t.Skip("run by bench/crash.sh (REUSE_CRASH_HANDOVERS): its loss count is not yet reliable, see its doc")
	}
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
	stream := startCountedStream(t, addr, sources)
	seen := make(map[int]int)
	type round struct {
		what       string
		first, end int
	}
	var rounds []round
	refused := map[string]int64{}
	drops := map[string]int{} // counted by the kernel on the sockets of the processes that ended
	for i := 0; i < crashHandovers(); i++ {
		first, refusedBefore := int(stream.sent.Load()), stream.refused.Load()
		next, _ := start(addr)
		time.Sleep(time.Duration(rand.Int63n(int64(4 * quiet))))
		victim := []string{"old", "new", "none"}[rand.Intn(3)]
		action := []string{"kill", "stop"}[rand.Intn(2)]
		w := gen
		if victim == "new" {
			w = next
		}
		what := victim + " " + action
		switch {
		case victim == "none":
			what = "none"
		case action == "kill":
			_ = syscall.Kill(w.Pid(), syscall.SIGKILL)
		default:
			_ = syscall.Kill(w.Pid(), syscall.SIGSTOP)
			time.Sleep(50*time.Millisecond + time.Duration(rand.Int63n(int64(500*time.Millisecond))))
			_ = syscall.Kill(w.Pid(), syscall.SIGCONT)
		}
		switch what {
		case "new kill":
			saidGo := false
			for _, l := range next.Rest(10 * time.Second) {
				saidGo = saidGo || l == "saying go"
				addSeqs(t, l, seen)
			}
			for start := time.Now(); saidGo && !gen.Exited() && time.Since(start) < 3*time.Second; {
				time.Sleep(10 * time.Millisecond)
			}
			if saidGo && gen.Exited() {
				what = "new kill past go"
				drops[what] += readSeqs(t, gen, seen)
				gen, _ = start(addr)
				gen.Expect("took over", 10*time.Second)
			}
		case "old kill":
			for _, l := range gen.Rest(10 * time.Second) {
				addSeqs(t, l, seen)
			}
			next.Expect("took over", 15*time.Second)
			gen = next
		default:
			next.Expect("took over", 15*time.Second)
			drops[what] += readSeqs(t, gen, seen)
			_ = gen.Wait()
			gen = next
		}
		// Datagrams sent in this handover arrive in it, and a refusal (an
		// ICMP error, which its source socket reports at its next send)
		// counts in it: every source sends twice more.
		time.Sleep(50 * time.Millisecond)
		for target, start := stream.sent.Load()+2*sources, time.Now(); stream.sent.Load() < target && time.Since(start) < 5*time.Second; {
			time.Sleep(time.Millisecond)
		}
		rounds = append(rounds, round{what, first, int(stream.sent.Load())})
		refused[what] += stream.refused.Load() - refusedBefore
	}
	sent := stream.stop()
	time.Sleep(50 * time.Millisecond)
	gen.Send("close")
	readSeqs(t, gen, seen)
	lost, count := map[string]int{}, map[string]int{}
	for _, r := range rounds {
		count[r.what]++
		for seq := r.first; seq < r.end; seq++ {
			if seen[seq] == 0 {
				lost[r.what]++
			}
		}
	}
	report := ""
	for _, k := range []string{"none", "old kill", "old stop", "new kill", "new stop", "new kill past go"} {
		if count[k] > 0 {
			report += fmt.Sprintf("\n\t%-16s %3d handovers: %d datagrams lost (the kernel counted %d dropped by full buffers), %d sends refused", k, count[k], lost[k], drops[k], refused[k])
		}
	}
	t.Logf("UDP, %d handovers under %d datagrams:%s", len(rounds), sent, report)
	for k := range count {
		if refused[k] != 0 && k != "new kill past go" {
			t.Errorf("%s: the port was unserved (%d sends refused)", k, refused[k])
		}
		// A process stopped, or a loaded machine, may overflow a receive
		// buffer, which the kernel counts (with the empty probe that each
		// replaced process drops).
		if lost[k] > drops[k] && k != "old kill" && k != "new kill" && k != "new kill past go" {
			t.Errorf("%s: %d datagrams lost where no process was killed, %d of them dropped by full buffers", k, lost[k], drops[k])
		}
	}
}

// countedStream sends numbered datagrams, counting those sent and the
// sends refused (ICMP port unreachable: nobody served the port).
type countedStream struct {
	sent, refused atomic.Int64
	stop          func() int
}

// startCountedStream sends numbered datagrams to addr from sources
// sockets, round robin, about 20,000 a second, until stop, for a minute at
// most.
func startCountedStream(t *testing.T, addr string, sources int) *countedStream {
	t.Helper()
	var conns []net.Conn
	for i := 0; i < sources; i++ {
		c, err := net.Dial("udp", addr)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	s := new(countedStream)
	done, ended := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(ended)
		for end := time.Now().Add(time.Minute); time.Now().Before(end); {
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
	s.stop = func() int {
		close(done)
		<-ended
		for _, c := range conns {
			c.Close()
		}
		return int(s.sent.Load())
	}
	return s
}

// addSeqs adds the numbers of a UDP worker's line "seqs N,N,..." to seen.
func addSeqs(t *testing.T, line string, seen map[int]int) {
	t.Helper()
	rest, ok := strings.CutPrefix(line, "seqs ")
	if !ok {
		return
	}
	for _, f := range strings.Split(rest, ",") {
		seq, err := strconv.Atoi(f)
		if err != nil {
			t.Fatal(err)
		}
		seen[seq]++
	}
}
