package main

import (
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/sockreuse/reuse"
	"github.com/sockreuse/reuse/internal/sockettest"
)

// TestDemo runs the demo with 3 workers and 300 connections: every worker
// is listed with its pid, the counts add up, and, where the OS balances,
// every worker got some. The chance that the kernel's hash gives one of 3
// workers none of 300 is about 3*(2/3)^300, or 1e-52.
func TestDemo(t *testing.T) {
	requireSelfExec(t)
	if sockettest.IsWine() {
		t.Skip("Wine refuses a second listener on a port that Windows shares (it applies Linux's rules once a socket listens)")
	}
	var out strings.Builder
	if err := runDemo([]string{"-workers", "3", "-conns", "300"}, &out); err != nil {
		t.Fatalf("demo: %v\n%s", err, out.String())
	}
	t.Log("\n" + out.String())
	row := regexp.MustCompile(`(?m)^  (\d+)\s+(\d+)\s+(\d+)\s+[\d.]+%`)
	rows := row.FindAllStringSubmatch(out.String(), -1)
	if len(rows) != 3 {
		t.Fatalf("demo printed %d worker rows, want 3:\n%s", len(rows), out.String())
	}
	total := 0
	pids := map[string]bool{}
	// Where the OS balances, every worker gets some; elsewhere (macOS,
	// Windows) one may get all, and the counts must still add up.
	balances := reuse.BalancingHere().Balances
	for _, r := range rows {
		n, _ := strconv.Atoi(r[3])
		if n == 0 && balances {
			t.Errorf("worker %s (pid %s) accepted no connection", r[1], r[2])
		}
		total += n
		pids[r[2]] = true
	}
	if total != 300 || len(pids) != 3 {
		t.Errorf("demo counted %d connections over %d pids, want 300 over 3", total, len(pids))
	}
	if strings.Contains(out.String(), "failed") {
		t.Errorf("demo reports failed connections:\n%s", out.String())
	}
}

func TestDemoBadFlags(t *testing.T) {
	var out strings.Builder
	if err := runDemo([]string{"-workers", "0"}, &out); err == nil {
		t.Error("demo with -workers 0 succeeded; want an error")
	}
}
