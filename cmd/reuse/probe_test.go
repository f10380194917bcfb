//go:build linux || windows

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/sockreuse/reuse"
)

// runProbeJSON runs the probe subcommand with -json and decodes its report.
func runProbeJSON(t *testing.T) *probeReport {
	t.Helper()
	start := time.Now()
	var out bytes.Buffer
	if err := runProbe([]string{"-json"}, &out); err != nil {
		t.Fatalf("reuse probe -json: %v", err)
	}
	// The issue asks for a few seconds; the bound is wide for a loaded machine.
	elapsed := time.Since(start)
	t.Logf("the probe took %v (%s)", elapsed.Round(time.Millisecond), runtimeWhere(out.Bytes()))
	if elapsed > 20*time.Second {
		t.Errorf("the probe took %v, want a few seconds", elapsed)
	}
	var rep probeReport
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("decoding the probe's JSON: %v\n%s", err, out.Bytes())
	}
	return &rep
}

func runtimeWhere(data []byte) string {
	var r struct{ Where string }
	_ = json.Unmarshal(data, &r)
	return r.Where
}

// cell returns the result of one row of the report.
func (r *probeReport) cell(t *testing.T, proto, state, addrs, family, first, second string) bindRow {
	t.Helper()
	for _, row := range r.Binds {
		if row.Proto == proto && row.FirstState == state && row.Addrs == addrs && row.Family == family && row.First == first && row.Second == second {
			return row
		}
	}
	t.Fatalf("the probe has no row %s %s %s %s %s×%s", proto, state, addrs, family, first, second)
	return bindRow{}
}

// TestProbeRows checks that the probe made every row it lists: the
// same-address rows on every OS, the wildcard rows only with a reason.
func TestProbeRows(t *testing.T) {
	requireSelfExec(t)
	rep := runProbeJSON(t)
	if got, want := len(rep.Binds), len(matrixRows()); got != want {
		t.Errorf("the probe printed %d rows, want %d", got, want)
	}
	for _, r := range rep.Binds {
		switch {
		case r.Result == "":
			t.Errorf("row %+v has no result", r)
		case r.Addrs == addrSame && r.Result == notMeasured:
			t.Errorf("same-address row %+v was not measured", r)
		case r.Result == notMeasured && r.Why == "":
			t.Errorf("row %+v was not measured and says not why", r)
		case strings.HasPrefix(r.Result, "first"):
			t.Errorf("row %+v: the first socket failed, so the row says nothing", r)
		}
	}
	text := rep.text()
	for _, want := range []string{"TCP, same address, first socket listening", "UDP, same address", "Facts"} {
		if !strings.Contains(text, want) {
			t.Errorf("the text output lacks %q", want)
		}
	}
}

// TestProbeAgreesWithPackage makes the probe's same-address Share and
// Exclusive cells a second time through the package's own Listen and
// ListenPacket: the probe sets the options with Config.Control on sockets
// of its own, the package through net; both must meet the same answer.
func TestProbeAgreesWithPackage(t *testing.T) {
	requireSelfExec(t)
	rep := runProbeJSON(t)
	modes := map[string]reuse.Mode{"Share": reuse.Share, "Exclusive": reuse.Exclusive}
	ctx := context.Background()
	udp := true
	if pc, err := net.ListenPacket("udp4", "127.0.0.1:0"); err != nil {
		// Wine 8.0 lacks the SIO_UDP_CONNRESET ioctl that Go's UDP sockets need.
		t.Logf("Go's UDP sockets do not open here, so the UDP rows are left out: %v", err)
		udp = false
	} else {
		pc.Close()
	}
	for first, m1 := range modes {
		for second, m2 := range modes {
			c1, c2 := reuse.Config{Mode: m1}, reuse.Config{Mode: m2}
			ln, err := c1.Listen(ctx, "tcp4", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			ln2, err := c2.Listen(ctx, "tcp4", ln.Addr().String())
			if err == nil {
				ln2.Close()
			}
			ln.Close()
			want := rep.cell(t, "tcp", stateListening, addrSame, "IPv4", first, second).Result
			if got := resultOf(err); got != strings.TrimPrefix(want, "listen: ") {
				t.Errorf("tcp4 %s listening, then %s: Listen gives %s, the probe %s", first, second, got, want)
			}
			if !udp {
				continue
			}
			pc, err := c1.ListenPacket(ctx, "udp4", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			pc2, err := c2.ListenPacket(ctx, "udp4", pc.LocalAddr().String())
			if err == nil {
				pc2.Close()
			}
			pc.Close()
			want = rep.cell(t, "udp", stateBound, addrSame, "IPv4", first, second).Result
			if got := resultOf(err); got != want {
				t.Errorf("udp4 %s, then %s: ListenPacket gives %s, the probe %s", first, second, got, want)
			}
		}
	}
}

// resultOf names an error the way the probe's cells do.
func resultOf(err error) string {
	if err == nil {
		return "ok"
	}
	return errnoName(err)
}

// TestProbeBindWorker checks the worker the probe runs as another user:
// it answers each request and exits when its stdin closes.
func TestProbeBindWorker(t *testing.T) {
	requireSelfExec(t)
	cmd, err := workerCommand("probe-bind")
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdin = strings.NewReader("tcp 4 127.0.0.1 0 Share\nudp 4 127.0.0.1 0 Exclusive\n")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("probe-bind worker: %v", err)
	}
	if got, want := string(out), "ok\nok\n"; got != want {
		t.Errorf("probe-bind answered %q, want %q", got, want)
	}
}
