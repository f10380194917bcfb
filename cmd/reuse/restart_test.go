package main

import (
	"fmt"
	"io"
	"os"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

// restartBlock is the counts that restart printed for one shape.
type restartBlock struct {
	title  string
	counts map[string]int
	probes int // UDP: the drops that were the handovers' probes
}

// restartBlocks reads the counts that restart prints, shape by shape.
func restartBlocks(t *testing.T, out string) []restartBlock {
	t.Helper()
	var blocks []restartBlock
	count := regexp.MustCompile(`^  (attempted|served|refused|reset|other|sent|read|lost|dropped)\s+(-?\d+)(?:.* (\d+) probes)?`)
	for _, line := range strings.Split(out, "\n") {
		if m := count.FindStringSubmatch(line); m != nil && len(blocks) > 0 {
			blocks[len(blocks)-1].counts[m[1]], _ = strconv.Atoi(m[2])
			if m[3] != "" {
				blocks[len(blocks)-1].probes, _ = strconv.Atoi(m[3])
			}
		} else if strings.Contains(line, "restarts") {
			blocks = append(blocks, restartBlock{title: line, counts: map[string]int{}})
		}
	}
	for _, b := range blocks {
		want := 5
		if strings.Contains(b.title, "UDP") {
			want = 4
		}
		if len(b.counts) != want {
			t.Fatalf("restart printed %d of the %d counts for %q:\n%s", len(b.counts), want, b.title, out)
		}
	}
	return blocks
}

// TestRestart runs the restart demonstration for its three shapes (one
// socket, a group of 3 in one process, 3 worker processes), TCP (MPTCP and
// plain listeners) and UDP: every connection attempted is counted once, and
// with the handover none is lost (what the package's handover tests assert
// under longer loads); the naive restarts are printed beside them.
func TestRestart(t *testing.T) {
	requireSelfExec(t)
	if runtime.GOOS != "linux" {
		t.Skipf("the handover (reuse.Handover) is Linux's; on %s it fails with errors.ErrUnsupported", runtime.GOOS)
	}
	progressOut = io.Discard // a slow run (-race, uid 65534) prints none
	t.Cleanup(func() { progressOut = os.Stderr })
	for _, mptcp := range []string{"true", "false"} {
		// UDP sockets are the same either way: their shapes run once.
		udp := mptcp
		args := []string{"-handovers", "3", "-listeners", "1,3", "-workers", "3", "-mptcp=" + mptcp, "-udp=" + udp}
		var out strings.Builder
		if err := runRestart(args, &out); err != nil {
			t.Fatalf("restart %v: %v\n%s", args, err, out.String())
		}
		t.Logf("restart %v:\n%s", args, out.String())
		if !strings.Contains(out.String(), "net.ipv4.tcp_migrate_req") {
			t.Errorf("restart %v does not say what net.ipv4.tcp_migrate_req is", args)
		}
		blocks := restartBlocks(t, out.String())
		_, summary, ok := strings.Cut(out.String(), "Lost in all, per shape:")
		if !ok {
			t.Fatalf("restart %v printed no summary:\n%s", args, out.String())
		}
		want := 6 // 3 shapes, handover and naive
		if udp == "true" {
			want *= 2 // TCP and UDP
		}
		if len(blocks) != want {
			t.Fatalf("restart %v printed %d shapes, want %d:\n%s", args, len(blocks), want, out.String())
		}
		for _, b := range blocks {
			c := b.counts
			naive := strings.Contains(b.title, "naively")
			lost, total := c["attempted"]-c["served"], c["attempted"]
			if strings.Contains(b.title, "UDP") {
				lost, total = c["lost"], c["sent"]
			}
			if want := fmt.Sprintf("%d of %d", lost, total); !strings.Contains(summary, want) {
				t.Errorf("%s: the summary does not say %q:\n%s", b.title, want, summary)
			}
			if strings.Contains(b.title, "UDP") {
				// A datagram that the handover lost is not counted
				// dropped: the kernel counts only full buffers (and
				// the probes, which the old sockets drop on purpose).
				if c["sent"] == 0 || c["sent"]-c["read"] != c["lost"] {
					t.Errorf("%s: counts do not add up: %v", b.title, c)
				}
				if overflow := c["dropped"] - b.probes; !naive && c["lost"] > overflow {
					t.Errorf("%s: the handover lost %d datagrams of %d beyond the %d full buffers dropped: %v", b.title, c["lost"], c["sent"], overflow, c)
				}
				continue
			}
			if c["attempted"] == 0 || c["served"]+c["refused"]+c["reset"]+c["other"] != c["attempted"] {
				t.Errorf("%s: counts do not add up: %v", b.title, c)
			}
			if !naive && c["served"] != c["attempted"] {
				t.Errorf("%s: the handover lost %d of %d connections: %v", b.title, c["attempted"]-c["served"], c["attempted"], c)
			}
		}
	}
}
