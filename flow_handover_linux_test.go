package reuse_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sockreuse/reuse"
	"github.com/sockreuse/reuse/internal/sockettest"
)

func init() { sockettest.Register("flow-server", flowServerWorker) }

// flowServerWorker is one generation of a server of UDP flows on the address
// args[0] (and the Handover's Slot args[1], if given): it prints "addr A",
// and answers each datagram of a flow with "PID " and the datagram.
// Commands on stdin:
//
//	takeover  TakeOver with the FlowListener; prints "took over", then, once
//	          replaced, closes the listener and the Handover (its flows go
//	          on) and prints "replaced"
//	close     closes the listener, the flows and the Handover; prints
//	          "closed N" (N flows served) and exits
func flowServerWorker(args []string) error {
	l, err := reuse.ListenFlows("udp", args[0])
	if err != nil {
		return err
	}
	fmt.Println("addr", l.Addr())
	pid := fmt.Sprint(os.Getpid())
	var mu sync.Mutex
	conns := map[net.Conn]bool{}
	served := 0
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns[c] = true
			served++
			mu.Unlock()
			go func() {
				b := make([]byte, 256)
				for {
					n, err := c.Read(b)
					if err != nil {
						return
					}
					c.Write([]byte(pid + " " + string(b[:n])))
				}
			}()
		}
	}()
	ho := new(reuse.Handover)
	if len(args) > 1 {
		ho.Slot = args[1]
	}
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		switch sc.Text() {
		case "takeover":
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			err := ho.TakeOver(ctx, l)
			cancel()
			if err != nil {
				return err
			}
			fmt.Println("took over")
			go func() {
				// The flows are no part of the handover: let go of
				// the listener, and serve them on.
				<-ho.Replaced()
				l.Close()
				ho.Close()
				fmt.Println("replaced")
			}()
		case "close":
			l.Close()
			mu.Lock()
			for c := range conns {
				c.Close()
			}
			fmt.Println("closed", served)
			mu.Unlock()
			return ho.Close()
		}
	}
	return sc.Err()
}

// flowClient is a client of flowServerWorker: it sends numbered datagrams,
// one per answer, and records which process answered each.
type flowClient struct {
	c       *net.UDPConn
	mu      sync.Mutex
	answers map[string]int // pid: answers
	errs    []string
}

func dialFlow(t *testing.T, addr string) *flowClient {
	t.Helper()
	c, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &flowClient{c: c.(*net.UDPConn), answers: map[string]int{}}
}

// exchange sends one datagram and waits for its answer: it returns the pid
// that answered, or "" after recording the error.
func (fc *flowClient) exchange(seq int) string {
	msg := fmt.Sprintf("seq %d", seq)
	fc.c.Write([]byte(msg))
	b := make([]byte, 256)
	fc.c.SetReadDeadline(time.Now().Add(3 * time.Second))
	n, err := fc.c.Read(b)
	fc.mu.Lock()
	defer fc.mu.Unlock()
	if err != nil {
		fc.errs = append(fc.errs, fmt.Sprintf("no answer to %q: %v", msg, err))
		return ""
	}
	pid, rest, _ := strings.Cut(string(b[:n]), " ")
	if rest != msg {
		fc.errs = append(fc.errs, fmt.Sprintf("answer %q to %q", b[:n], msg))
		return ""
	}
	fc.answers[pid]++
	return pid
}

// TestFlowHandover restarts a server of UDP flows with a Handover while 20
// flows exchange datagrams: every answer of the old flows comes from the
// old process until it closes them, every new flow's from the new process,
// none is lost; once the old process closed its flows, an old client's
// next datagram starts a flow in the new process. IPv4 and IPv6.
func TestFlowHandover(t *testing.T) {
	requireSteering(t)
	for _, addr := range []string{"127.0.0.1:0", "[::1]:0"} {
		t.Run(addr, func(t *testing.T) {
			if strings.HasPrefix(addr, "[") {
				if ln, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6loopback}); err != nil {
					t.Skipf("no IPv6 loopback: %v", err)
				} else {
					ln.Close()
				}
			}
			old := sockettest.StartWorker(t, "flow-server", []string{addr})
			addr := strings.TrimPrefix(old.Expect("addr ", 10*time.Second), "addr ")
			old.Send("takeover")
			old.Expect("took over", 30*time.Second)
			oldPid := fmt.Sprint(old.Pid())

			const n = 20
			var olds []*flowClient
			for i := 0; i < n; i++ {
				fc := dialFlow(t, addr)
				if pid := fc.exchange(0); pid != oldPid {
					t.Fatalf("old flow %d: first answer from %q, want the old process %s: %v", i, pid, oldPid, fc.errs)
				}
				olds = append(olds, fc)
			}
			// The old flows exchange datagrams all through the restart.
			stop := make(chan struct{})
			var wg sync.WaitGroup
			for _, fc := range olds {
				wg.Add(1)
				go func(fc *flowClient) {
					defer wg.Done()
					for seq := 1; ; seq++ {
						select {
						case <-stop:
							return
						default:
						}
						fc.exchange(seq)
						time.Sleep(2 * time.Millisecond)
					}
				}(fc)
			}
			next := sockettest.StartWorker(t, "flow-server", []string{addr})
			next.Expect("addr ", 10*time.Second)
			next.Send("takeover")
			start := time.Now()
			next.Expect("took over", 30*time.Second)
			t.Logf("the new process took over in %v", time.Since(start).Round(time.Millisecond))
			old.Expect("replaced", 30*time.Second)
			nextPid := fmt.Sprint(next.Pid())
			var news []*flowClient
			for i := 0; i < n; i++ {
				fc := dialFlow(t, addr)
				for seq := 0; seq < 5; seq++ {
					fc.exchange(seq)
				}
				news = append(news, fc)
			}
			time.Sleep(100 * time.Millisecond) // the old flows go on
			close(stop)
			wg.Wait()
			old.Send("close")
			old.Expect("closed", 10*time.Second)
			// The old process ended its flows: an old client's next
			// datagram starts a flow in the new process.
			if pid := olds[0].exchange(1_000_000); pid != nextPid {
				t.Errorf("an old client after the old process closed its flows: answered by %q, want the new process %s", pid, nextPid)
			}
			next.Send("close")
			next.Expect("closed", 10*time.Second)
			for i, fc := range olds {
				total := fc.answers[oldPid]
				if i == 0 {
					total-- // its last one, above
				}
				if len(fc.errs) > 0 || len(fc.answers) != 1+boolInt(i == 0) || total < 2 {
					t.Errorf("old flow %d: answers by process %v (old %s, new %s), errors %q", i, fc.answers, oldPid, nextPid, fc.errs)
				}
			}
			for i, fc := range news {
				if len(fc.errs) > 0 || fc.answers[nextPid] != 5 {
					t.Errorf("new flow %d: answers by process %v (old %s, new %s), errors %q", i, fc.answers, oldPid, nextPid, fc.errs)
				}
			}
			t.Logf("%d old flows answered %d times by the old process through the restart; %d new flows all by the new one", n, sumAnswers(olds, oldPid), n)
		})
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func sumAnswers(fcs []*flowClient, pid string) int {
	total := 0
	for _, fc := range fcs {
		total += fc.answers[pid]
	}
	return total
}

// TestFlowHandoverSlot restarts one of two worker processes of UDP flows
// (Handover slots "0" and "1"): every flow keeps the process that served
// it, the other worker's included, and each new flow goes to the new
// process or the other worker, never to the old one.
func TestFlowHandoverSlot(t *testing.T) {
	requireSteering(t)
	w0 := sockettest.StartWorker(t, "flow-server", []string{"127.0.0.1:0", "0"})
	addr := w0.Expect("addr ", 10*time.Second)
	w1 := sockettest.StartWorker(t, "flow-server", []string{addr, "1"})
	w1.Expect("addr ", 10*time.Second)
	for _, w := range []*sockettest.Worker{w0, w1} {
		w.Send("takeover")
		w.Expect("took over", 30*time.Second)
	}
	// 40 flows: by the kernel's hash, both workers get some (none of 40 on
	// one has probability 2^-39).
	var flows []*flowClient
	first := map[*flowClient]string{}
	for i := 0; i < 40; i++ {
		fc := dialFlow(t, addr)
		first[fc] = fc.exchange(0)
		flows = append(flows, fc)
	}
	next := sockettest.StartWorker(t, "flow-server", []string{addr, "0"})
	next.Expect("addr ", 10*time.Second)
	next.Send("takeover")
	next.Expect("took over", 30*time.Second)
	w0.Expect("replaced", 30*time.Second)
	for _, fc := range flows {
		if pid := fc.exchange(1); pid != first[fc] {
			t.Errorf("a flow first answered by %s, after slot 0's restart by %q: %v", first[fc], pid, fc.errs)
		}
	}
	oldPid, servers := fmt.Sprint(w0.Pid()), map[string]int{}
	for i := 0; i < 40; i++ {
		servers[dialFlow(t, addr).exchange(0)]++
	}
	if servers[oldPid] != 0 || servers[""] != 0 || len(servers) != 2 {
		t.Errorf("40 new flows after slot 0's restart, by process: %v; want the new process %d and worker 1 %d, not the old %s", servers, next.Pid(), w1.Pid(), oldPid)
	}
	for _, w := range []*sockettest.Worker{w0, w1, next} {
		w.Send("close")
		w.Expect("closed", 10*time.Second)
	}
}
