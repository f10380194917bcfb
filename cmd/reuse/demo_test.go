package main

import (
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

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

// TestDemoFlagBounds: -workers and -conns out of range exit with status 2
// before any worker starts, and the message names the flag, the value, the
// most this machine allows and why; -h says the most.
func TestDemoFlagBounds(t *testing.T) {
	defer func(f func() (limit, limit)) { demoLimits = f }(demoLimits)
	demoLimits = func() (limit, limit) { return limit{5, "five, say"}, limit{70, "seventy, say"} }
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"-workers", "0"}, "-workers 0: want at least 1"},
		{[]string{"-conns", "-3"}, "-conns -3: want at least 1"},
		{[]string{"-workers", "6"}, "-workers 6: this machine allows at most 5: five, say"},
		{[]string{"-workers", "100000"}, "-workers 100000: this machine allows at most 5: five, say"},
		{[]string{"-conns", "71"}, "-conns 71: this machine allows at most 70: seventy, say"},
	} {
		var stdout, stderr strings.Builder
		start := time.Now()
		code := run(append([]string{"demo"}, c.args...), &stdout, &stderr)
		if code != 2 || !strings.HasPrefix(stderr.String(), "reuse demo: "+c.want+"\n") || stdout.Len() > 0 {
			t.Errorf("reuse demo %v: exit %d, stdout %q, stderr:\n%s\nwant exit 2, nothing on stdout, and %q on stderr", c.args, code, stdout.String(), stderr.String(), c.want)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("reuse demo %v took %v to refuse its flags: did it start workers?", c.args, d)
		}
	}
	var stdout, stderr strings.Builder
	if code := run([]string{"demo", "-h"}, &stdout, &stderr); code != 0 {
		t.Fatalf("reuse demo -h: exit %d\n%s", code, stderr.String())
	}
	for _, want := range []string{"worker processes sharing the port, at most 5 here", "connections to open, at most 70 here"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("reuse demo -h does not say %q:\n%s", want, stdout.String())
		}
	}
}

// TestDemoLimitsHere: the limits of this machine refuse -workers 100000000
// and -conns 100000000 with a reason.
func TestDemoLimitsHere(t *testing.T) {
	for _, flag := range []string{"-workers", "-conns"} {
		var stdout, stderr strings.Builder
		code := run([]string{"demo", flag, "100000000"}, &stdout, &stderr)
		re := regexp.MustCompile(`^reuse demo: ` + flag + ` 100000000: this machine allows at most ([1-9]\d*): \w.*\n`)
		if code != 2 || !re.MatchString(stderr.String()) {
			t.Errorf("reuse demo %s 100000000: exit %d, stderr:\n%s\nwant exit 2 and a line matching %v", flag, code, stderr.String(), re)
		}
	}
}

// TestDemoLimitsLinux: on Linux the limits come from the machine: the
// available memory and the ephemeral port range.
func TestDemoLimitsLinux(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skipf("the limits are read from /proc on Linux, not on %s", runtime.GOOS)
	}
	lo, hi, ok := ephemeralPorts()
	if !ok {
		t.Fatal("cannot read net.ipv4.ip_local_port_range")
	}
	if got := connLimit().max; got != hi-lo+1 {
		t.Errorf("connLimit = %d, want %d, the size of ip_local_port_range %d-%d", got, hi-lo+1, lo, hi)
	}
	avail, ok := memAvailable()
	if !ok {
		t.Fatal("cannot read MemAvailable from /proc/meminfo")
	}
	if got, most := workerLimit().max, int(avail/workerMemory); got > most {
		t.Errorf("workerLimit = %d, more than the %d workers of %d MiB that %d MiB of available memory holds", got, most, workerMemory>>20, avail>>20)
	}
}
