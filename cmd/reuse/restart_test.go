package main

import (
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
}

// restartBlocks reads the counts that restart prints, shape by shape.
func restartBlocks(t *testing.T, out string) []restartBlock {
	t.Helper()
	var blocks []restartBlock
	count := regexp.MustCompile(`^  (attempted|served|refused|reset|other)\s+(\d+)$`)
	for _, line := range strings.Split(out, "\n") {
		if m := count.FindStringSubmatch(line); m != nil && len(blocks) > 0 {
			blocks[len(blocks)-1].counts[m[1]], _ = strconv.Atoi(m[2])
		} else if strings.Contains(line, "restarts") {
			blocks = append(blocks, restartBlock{line, map[string]int{}})
		}
	}
	for _, b := range blocks {
		if len(b.counts) != 5 {
			t.Fatalf("restart printed %d of the 5 counts for %q:\n%s", len(b.counts), b.title, out)
		}
	}
	return blocks
}

// TestRestart runs the restart demonstration for its three shapes (one
// listener, a group of 3 in one process, 3 worker processes), with MPTCP
// and plain TCP listeners: every connection attempted is counted once,
// and with the handover none is lost (what the package's handover tests
// assert under longer loads); the naive restarts are printed beside them.
func TestRestart(t *testing.T) {
	requireSelfExec(t)
	if runtime.GOOS != "linux" {
		t.Skipf("the handover (reuse.Handover) is Linux's; on %s it fails with errors.ErrUnsupported", runtime.GOOS)
	}
	for _, mptcp := range []string{"true", "false"} {
		args := []string{"-handovers", "6", "-listeners", "1,3", "-workers", "3", "-mptcp=" + mptcp}
		var out strings.Builder
		if err := runRestart(args, &out); err != nil {
			t.Fatalf("restart %v: %v\n%s", args, err, out.String())
		}
		t.Logf("restart %v:\n%s", args, out.String())
		if !strings.Contains(out.String(), "net.ipv4.tcp_migrate_req") {
			t.Errorf("restart %v does not say what net.ipv4.tcp_migrate_req is", args)
		}
		blocks := restartBlocks(t, out.String())
		if len(blocks) != 6 {
			t.Fatalf("restart %v printed %d shapes, want 6 (3 shapes, handover and naive):\n%s", args, len(blocks), out.String())
		}
		for _, b := range blocks {
			c := b.counts
			if c["attempted"] == 0 || c["served"]+c["refused"]+c["reset"]+c["other"] != c["attempted"] {
				t.Errorf("%s: counts do not add up: %v", b.title, c)
			}
			if !strings.Contains(b.title, "naively") && c["served"] != c["attempted"] {
				t.Errorf("%s: the handover lost %d of %d connections: %v", b.title, c["attempted"]-c["served"], c["attempted"], c)
			}
		}
	}
}
