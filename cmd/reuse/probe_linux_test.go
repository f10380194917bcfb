package main

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"
)

// inNamespace reports whether the probe made its binds in a private network
// namespace, where it measures the wildcard rows.
func (r *probeReport) inNamespace() bool {
	return strings.HasPrefix(r.Where, "in a private network namespace")
}

// TestProbeLinuxMatrix checks the probe's Linux cells against the rules the
// package's own tests assert (DESIGN.md, "Known behaviour"): the same facts
// seen from two sides, so that a change on either side fails a test.
func TestProbeLinuxMatrix(t *testing.T) {
	requireSelfExec(t)
	before := openFDs(t)
	rep := runProbeJSON(t)
	if after := openFDs(t); after != before {
		t.Errorf("the probe left %d descriptors open", after-before)
	}
	type want struct{ proto, state, addrs, first, second, result string }
	same := []want{
		// A Share group takes any Share socket of the same user.
		{"tcp", stateListening, addrSame, "Share", "Share", "ok"},
		{"udp", stateBound, addrSame, "Share", "Share", "ok"},
		// One socket without SO_REUSEPORT closes the group, either way round.
		{"tcp", stateListening, addrSame, "Share", "none", "EADDRINUSE"},
		{"tcp", stateListening, addrSame, "Share", "Exclusive", "EADDRINUSE"},
		{"tcp", stateListening, addrSame, "Exclusive", "Share", "EADDRINUSE"},
		{"udp", stateBound, addrSame, "Share", "Exclusive", "EADDRINUSE"},
		{"udp", stateBound, addrSame, "Exclusive", "Share", "EADDRINUSE"},
		// SO_REUSEADDR lets TCP sockets share only while neither listens.
		{"tcp", stateListening, addrSame, "REUSEADDR", "REUSEADDR", "EADDRINUSE"},
		{"tcp", stateBound, addrSame, "REUSEADDR", "REUSEADDR", "ok"},
		// On UDP it shares (with no UID check); Share's UDP sockets do not carry it.
		{"udp", stateBound, addrSame, "REUSEADDR", "REUSEADDR", "ok"},
		{"udp", stateBound, addrSame, "REUSEADDR", "Share", "EADDRINUSE"},
	}
	wildcard := []want{
		// With SO_REUSEADDR alone a listening wildcard blocks the specific
		// address; with SO_REUSEPORT on both they can both listen.
		{"tcp", stateListening, addrWildcardSpecific, "REUSEADDR", "REUSEADDR", "EADDRINUSE"},
		{"tcp", stateListening, addrWildcardSpecific, "REUSEPORT", "REUSEPORT", "ok"},
		{"tcp", stateListening, addrWildcardSpecific, "Share", "Share", "ok"},
		{"tcp", stateListening, addrSpecificWildcard, "Share", "Share", "ok"},
	}
	check := func(ws []want) {
		for _, w := range ws {
			for _, family := range []string{"IPv4", "IPv6"} {
				if got := rep.cell(t, w.proto, w.state, w.addrs, family, w.first, w.second).Result; got != w.result {
					t.Errorf("%s %s %s, first %s %s, then %s: %s, want %s", w.proto, family, w.addrs, w.first, w.state, w.second, got, w.result)
				}
			}
		}
	}
	check(same)
	if !rep.inNamespace() {
		t.Skipf("wildcard rows not measured: %s", rep.Where)
	}
	check(wildcard)
}

// TestProbeLinuxFacts checks the probe's facts against the package's claims.
func TestProbeLinuxFacts(t *testing.T) {
	requireSelfExec(t)
	rep := runProbeJSON(t)
	for _, f := range rep.Facts {
		t.Logf("%s: %s %s", f.Name, f.Value, f.Detail)
	}
	wants := map[string]string{
		factBalance: "yes",
		"a steering program attaches (SO_ATTACH_REUSEPORT_CBPF, tcp4)":                                "yes",
		"a steering program attaches (SO_ATTACH_REUSEPORT_CBPF, udp4)":                                "yes",
		"a TCP listener drops every SYN by IP_MINTTL 255, as the MPTCP handover's helper does (tcp4)": "yes",
		factUnixDiag: "yes",
		factMSSMark:  "yes",
	}
	if rep.inNamespace() {
		wants[factSpecific] = "yes"
	}
	if os.Geteuid() == 0 {
		// The same-UID rule of SO_REUSEPORT, and SO_REUSEADDR's lack of it on UDP.
		wants["uid 65534 binds a tcp4 port root holds, both with Share"] = "refused: EADDRINUSE"
		wants["uid 65534 binds a udp4 port root holds, both with Share"] = "refused: EADDRINUSE"
		wants["uid 65534 binds a udp4 port root holds, both with REUSEADDR"] = "allowed"
	}
	for name, want := range wants {
		if got := rep.fact(t, name); got != want {
			t.Errorf("%s: %s, want %s", name, got, want)
		}
	}
	if os.Geteuid() != 0 {
		t.Skipf("the other-user facts need root; running as uid %d", os.Geteuid())
	}
}

// The markers around the Linux matrix in PROBE.md.
const (
	probePageBegin = "<!-- probe -markdown (linux) -->\n"
	probePageEnd   = "<!-- /probe -->"
)

// TestProbePage checks that the Linux matrix in PROBE.md is what the probe
// prints on this kernel.
func TestProbePage(t *testing.T) {
	requireSelfExec(t)
	data, err := os.ReadFile("../../PROBE.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(data), probePageBegin)
	if !ok {
		t.Fatalf("PROBE.md has no %q marker", strings.TrimSpace(probePageBegin))
	}
	committed, _, ok := strings.Cut(rest, probePageEnd)
	if !ok {
		t.Fatalf("PROBE.md has no %q marker after %q", probePageEnd, strings.TrimSpace(probePageBegin))
	}
	rep, err := probe()
	if err != nil {
		t.Fatal(err)
	}
	if !rep.inNamespace() {
		t.Skipf("PROBE.md's matrix is measured in a private network namespace, and none can be made here: %s", rep.Where)
	}
	lines := func(s string) []string { return strings.Split(strings.TrimSpace(s), "\n") }
	if diff := cmp.Diff(lines(committed), lines(rep.markdown())); diff != "" {
		t.Errorf("PROBE.md's Linux matrix is not what `go run ./cmd/reuse probe -markdown` prints here (-want +got):\n%s", diff)
	}
}

// openFDs returns how many file descriptors this process has open.
func openFDs(t *testing.T) int {
	t.Helper()
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(entries) - 1 // the directory being read
}

// TestProbeMPTCP checks that the command, like a program of a module
// whose go line is 1.24 or later, makes MPTCP listeners (its //go:debug
// line), and that the probe says so and under which setting. Under a
// GODEBUG that turns MPTCP off for listeners the probe must say no.
func TestProbeMPTCP(t *testing.T) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, unix.IPPROTO_MPTCP)
	if err != nil {
		t.Skipf("this kernel makes no MPTCP socket (socket(AF_INET, SOCK_STREAM, IPPROTO_MPTCP): %v)", err)
	}
	unix.Close(fd)
	value, source := multipathTCPSetting()
	want := "no (protocol 6)"
	var minor int
	if _, err := fmt.Sscanf(runtime.Version(), "go1.%d", &minor); err == nil && minor < 24 {
		// Before Go 1.24 only multipathtcp=1 made MPTCP listeners.
		if value == "1" {
			want = "yes (IPPROTO_MPTCP)"
		}
	} else if value != "0" && value != "3" {
		want = "yes (IPPROTO_MPTCP)"
	}
	if !strings.Contains(os.Getenv("GODEBUG"), "multipathtcp=") && (value != "2" || !strings.Contains(source, "//go:debug")) {
		t.Errorf("without GODEBUG in the environment the setting is multipathtcp=%q (%s), want 2 from the //go:debug line", value, source)
	}
	f := mptcpFact()
	if f.Value != want {
		t.Errorf("%s: %q, want %q (%s)", f.Name, f.Value, want, f.Detail)
	}
	if !strings.Contains(f.Detail, "multipathtcp="+value) {
		t.Errorf("the fact's detail %q does not name the setting multipathtcp=%s", f.Detail, value)
	}
}

// fact returns the value of the fact called name.
func (r *probeReport) fact(t *testing.T, name string) string {
	t.Helper()
	for _, f := range r.Facts {
		if f.Name == name {
			return f.Value
		}
	}
	t.Fatalf("the probe has no fact %q", name)
	return ""
}
