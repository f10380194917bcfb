package main

import (
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

// restartCounts reads the counts that restart prints.
func restartCounts(t *testing.T, out string) map[string]int {
	t.Helper()
	counts := map[string]int{}
	for _, m := range regexp.MustCompile(`(?m)^  (attempted|served|refused|reset|other)\s+(\d+)$`).FindAllStringSubmatch(out, -1) {
		counts[m[1]], _ = strconv.Atoi(m[2])
	}
	if len(counts) != 5 {
		t.Fatalf("restart printed %d of the 5 counts:\n%s", len(counts), out)
	}
	return counts
}

// TestRestart runs the restart demonstration both ways: every connection
// attempted is counted once, and with the handover none is lost (what the
// package's handover tests assert under longer loads).
func TestRestart(t *testing.T) {
	requireSelfExec(t)
	if runtime.GOOS != "linux" {
		t.Skipf("the handover (reuse.TakeOver) is Linux's; on %s it fails with errors.ErrUnsupported", runtime.GOOS)
	}
	for _, naive := range []bool{false, true} {
		args := []string{"-handovers", "5"}
		if naive {
			args = append(args, "-naive")
		}
		var out strings.Builder
		if err := runRestart(args, &out); err != nil {
			t.Fatalf("restart %v: %v\n%s", args, err, out.String())
		}
		t.Logf("restart %v:\n%s", args, out.String())
		c := restartCounts(t, out.String())
		if c["attempted"] == 0 || c["served"]+c["refused"]+c["reset"]+c["other"] != c["attempted"] {
			t.Errorf("restart %v: counts do not add up: %v", args, c)
		}
		if !naive && c["served"] != c["attempted"] {
			t.Errorf("restart with the handover lost %d of %d connections: %v", c["attempted"]-c["served"], c["attempted"], c)
		}
	}
}
