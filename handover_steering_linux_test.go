package reuse_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sockreuse/reuse"
	"github.com/sockreuse/reuse/internal/sockettest"
)

func init() { sockettest.Register("quic-generation", quicGenerationWorker) }

// QUIC-like datagrams for the steering tests: the first byte says short
// (0x40) or long (0xc0) header, then the member and the generation, as
// QUICConnectionIDs writes them.
const (
	shortHeader = 0x40
	longHeader  = 0xc0
	generations = 64 // datagrams per (member, generation) in one check
)

// quicDatagrams returns count datagrams of the header kind first, naming
// member i%members and generation gen.
func quicDatagrams(first byte, members, gen, count int) [][]byte {
	var p [][]byte
	for i := 0; i < count; i++ {
		p = append(p, []byte{first, byte(i % members), byte(gen), 0, 0, 0, 0, 0, 0, 0, 0, 0})
	}
	return p
}

// checkMembers fails unless every one of payloads reached the member
// want(member byte) names, logging member→answer counts.
func checkMembers(t *testing.T, what, addr string, payloads [][]byte, want func(m, answer int) bool) {
	t.Helper()
	answers := askMembers(t, addr, payloads)
	got := map[string]int{}
	wrong := 0
	for i, p := range payloads {
		got[fmt.Sprintf("%d→%d", p[1], answers[i])]++
		if !want(int(p[1]), answers[i]) {
			wrong++
		}
	}
	t.Logf("%s: member byte→answering member: datagrams: %v", what, got)
	if wrong > 0 {
		t.Errorf("%s: %d of %d datagrams reached a wrong member: %v", what, wrong, len(payloads), got)
	}
}

// eventually retries check, a round of datagrams that must all reach their
// member, until one round passes: after a member closes, the handover
// attaches its program again within milliseconds.
func eventually(t *testing.T, what, addr string, payloads [][]byte, want func(m, answer int) bool) {
	t.Helper()
	for start := time.Now(); time.Since(start) < loadDeadline; {
		answers := askMembers(t, addr, payloads)
		ok := true
		for i, p := range payloads {
			ok = ok && want(int(p[1]), answers[i])
		}
		if ok {
			return
		}
	}
	checkMembers(t, what+" (after "+loadDeadline.String()+")", addr, payloads, want)
}

// TestHandoverSteering hands a QUIC-steered group of 4 members (old, which
// answer 0-3) over to a new group of 4 (new, which answer 4-7), IPv4 and
// IPv6, in one process: during the handover every short-header datagram of
// generation 0 reaches the old member it names, every one of generation 1
// the new member it names, and every long-header datagram, or one of an
// unknown generation, one of the new members, each of which gets some (all
// of 256 missing one of 4 has probability below 4(3/4)^256, 1e-31). The
// old members then close from the last one down, and the names stay right
// after each close; once they are gone the group is steered by
// QUICSteering alone, whatever the generation.
func TestHandoverSteering(t *testing.T) {
	requireSteering(t)
	for _, c := range []struct {
		name, network, addr string
		firstUp             bool // close the old members from the first one up
	}{
		{"udp4", "udp4", "127.0.0.1:0", false},
		{"udp6", "udp6", "[::1]:0", false},
		{"udp4 closed first up", "udp4", "127.0.0.1:0", true},
	} {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			const k = 4
			s := reuse.QUICSteering()
			old, err := reuse.ListenPacketGroup(c.network, c.addr, k)
			if err != nil {
				t.Fatal(err)
			}
			addr := old[0].LocalAddr().String()
			oldHo := &reuse.Handover{Steering: &s}
			if err := oldHo.TakeOver(ctx, anys(old)...); err != nil {
				t.Fatal(err)
			}
			defer oldHo.Close()
			if g := oldHo.Generation(); g != 0 {
				t.Errorf("the first process's Generation() = %d, want 0", g)
			}
			next, err := reuse.ListenPacketGroup(c.network, addr, k)
			if err != nil {
				t.Fatal(err)
			}
			echoGroup(t, append(append([]net.PacketConn(nil), old...), next...))
			checkMembers(t, "before the handover", addr, quicDatagrams(shortHeader, k, 0, k*generations),
				func(m, a int) bool { return a == m })

			nextHo := &reuse.Handover{Steering: &s}
			if err := nextHo.TakeOver(ctx, anys(next)...); err != nil {
				t.Fatal(err)
			}
			defer nextHo.Close()
			if g := nextHo.Generation(); g != 1 {
				t.Errorf("the successor's Generation() = %d, want 1", g)
			}
			select {
			case <-oldHo.Replaced():
			case <-time.After(10 * time.Second):
				t.Fatal("the old Handover was not replaced 10 s after its successor's TakeOver returned")
			}
			isOld := func(m, a int) bool { return a == m }
			isNew := func(m, a int) bool { return a == k+m }
			anyNew := func(_, a int) bool { return a >= k && a < 2*k }
			checkMembers(t, "generation 0", addr, quicDatagrams(shortHeader, k, 0, k*generations), isOld)
			checkMembers(t, "generation 1", addr, quicDatagrams(shortHeader, k, 1, k*generations), isNew)
			checkMembers(t, "generation 9", addr, quicDatagrams(shortHeader, k, 9, k*generations), anyNew)
			long := quicDatagrams(longHeader, k, 0, 256)
			answers := askMembers(t, addr, long)
			counts := make([]int, 2*k)
			for _, a := range answers {
				if a >= 0 {
					counts[a]++
				}
			}
			t.Logf("long headers, answers per member 0-7: %v", counts)
			for m := 0; m < 2*k; m++ {
				if (m < k) != (counts[m] == 0) {
					t.Errorf("long headers: %d of 256 reached member %d (0-3 old, 4-7 new): want none old, some each new", counts[m], m)
				}
			}

			open := []int{0, 1, 2, 3}
			for len(open) > 0 {
				i := len(open) - 1
				if c.firstUp {
					i = 0
				}
				m := open[i]
				open = append(open[:i], open[i+1:]...)
				old[m].Close()
				var stillOld [][]byte
				for _, p := range quicDatagrams(shortHeader, k, 0, k*generations) {
					if slices.Contains(open, int(p[1])) {
						stillOld = append(stillOld, p)
					}
				}
				if len(stillOld) > 0 {
					checkMembers(t, fmt.Sprintf("old %d closed, generation 0 of old %v", m, open), addr, stillOld, isOld)
				}
				eventually(t, fmt.Sprintf("old %d closed, generation 1", m), addr,
					quicDatagrams(shortHeader, k, 1, k*generations), isNew)
			}
			oldHo.Close()
			if !c.firstUp {
				// The Steering alone reads no generation.
				eventually(t, "after the handover, generation 9", addr, quicDatagrams(shortHeader, k, 9, k*generations), isNew)
			}
			checkMembers(t, "after the handover, generation 1", addr, quicDatagrams(shortHeader, k, 1, 1000), isNew)
		})
	}
}

// quicGenerationWorker serves a group of 4 on args[0] under a Handover with
// QUICSteering, each member answering 4 + its index, and takes over. It
// prints "addr ADDR" and "took over GEN", then serves until killed.
func quicGenerationWorker(args []string) error {
	pcs, err := reuse.ListenPacketGroup("udp4", args[0], 4)
	if err != nil {
		return err
	}
	for i, pc := range pcs {
		go echoMember(pc, 4+i)
	}
	s := reuse.QUICSteering()
	ho := &reuse.Handover{Steering: &s}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := ho.TakeOver(ctx, anys(pcs)...); err != nil {
		return err
	}
	fmt.Println("took over", ho.Generation())
	select {}
}

// TestHandoverSteeringNewDies kills the new process once it has taken a
// QUIC-steered group over, while the old members still serve: the old
// process puts QUICSteering back, so every datagram, of any generation,
// reaches the old member it names, none is left to a table that names the
// dead members, and long headers reach old members.
func TestHandoverSteeringNewDies(t *testing.T) {
	requireSteering(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const k = 4
	s := reuse.QUICSteering()
	old, err := reuse.ListenPacketGroup("udp4", "127.0.0.1:0", k)
	if err != nil {
		t.Fatal(err)
	}
	echoGroup(t, old)
	addr := old[0].LocalAddr().String()
	oldHo := &reuse.Handover{Steering: &s}
	if err := oldHo.TakeOver(ctx, anys(old)...); err != nil {
		t.Fatal(err)
	}
	defer oldHo.Close()
	next := sockettest.StartWorker(t, "quic-generation", []string{addr})
	if got := next.Expect("took over ", 30*time.Second); got != "1" {
		t.Fatalf("the new process said %q, want generation 1", got)
	}
	select {
	case <-oldHo.Replaced():
	case <-time.After(10 * time.Second):
		t.Fatal("not replaced 10 s after the new process took over")
	}
	isNew := func(m, a int) bool { return a == k+m }
	checkMembers(t, "taken over, generation 1", addr, quicDatagrams(shortHeader, k, 1, k*generations), isNew)
	if err := syscall.Kill(next.Pid(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = next.Wait()
	isOld := func(m, a int) bool { return a == m }
	eventually(t, "new process killed, generation 1", addr, quicDatagrams(shortHeader, k, 1, k*generations), isOld)
	for _, gen := range []int{0, 1, 9} {
		checkMembers(t, fmt.Sprintf("new process killed, generation %d", gen), addr, quicDatagrams(shortHeader, k, gen, k*generations), isOld)
	}
	answers := askMembers(t, addr, quicDatagrams(longHeader, k, 1, 256))
	for i, a := range answers {
		if a < 0 || a >= k {
			t.Fatalf("long header %d: answered by %d, want an old member 0-%d", i, a, k-1)
		}
	}
}

// TestHandoverSteeringBadInput checks that a Steering that cannot steer the
// sockets given is refused, before any handover, with an error that says
// why, and that Generation is -1 until a TakeOver succeeds.
func TestHandoverSteeringBadInput(t *testing.T) {
	ln, err := reuse.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	pc, err := reuse.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	quic := reuse.QUICSteering()
	for _, c := range []struct {
		name string
		ho   *reuse.Handover
		sock any
		want string
	}{
		{"listener", &reuse.Handover{Steering: &quic}, ln, "needs UDP sockets"},
		{"slot", &reuse.Handover{Steering: &quic, Slot: "w1"}, pc, `Slot "w1" with Steering`},
		{"offset", &reuse.Handover{Steering: &reuse.Steering{Offset: -1}}, pc, "steering offset -1"},
		// Checked for the sockets' family, as Steer checks it.
		{"offset past any IPv4 payload", &reuse.Handover{Steering: &reuse.Steering{Offset: 65507}}, pc, "steering offset 65507: want 0 to 65506"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if g := c.ho.Generation(); g != -1 {
				t.Errorf("Generation() before TakeOver = %d, want -1", g)
			}
			err := c.ho.TakeOver(context.Background(), c.sock)
			var op *net.OpError
			if !errors.As(err, &op) || op.Op != "takeover" {
				t.Fatalf("TakeOver = %v, want a *net.OpError with Op takeover", err)
			}
			if msg := err.Error(); !strings.Contains(msg, c.want) || strings.Count(msg, "reuse: ") != 1 {
				t.Errorf("TakeOver = %q, want it to say %q, after one \"reuse: \"", msg, c.want)
			}
			if g := c.ho.Generation(); g != -1 {
				t.Errorf("Generation() after a failed TakeOver = %d, want -1", g)
			}
			c.ho.Close()
		})
	}
}
