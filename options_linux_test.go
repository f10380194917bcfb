package reuse

import (
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// kindNames are the kinds of socket as doc.go's option list names them.
var kindNames = [numKinds]string{
	streamListener:    "listener",
	streamDialer:      "dialer",
	datagram:          "datagram",
	multicastDatagram: "multicast",
}

// everyGOOS is every GOOS of `go tool dist list` (Go 1.26).
var everyGOOS = []string{"aix", "android", "darwin", "dragonfly", "freebsd", "illumos", "ios", "js", "linux", "netbsd", "openbsd", "plan9", "solaris", "wasip1", "windows"}

// docOptions parses doc.go's option list: GOOS → "Share listener" →
// "SO_REUSEADDR=1 SO_REUSEPORT=1", or "unsupported".
func docOptions() (map[string]map[string]string, error) {
	src, err := os.ReadFile("doc.go")
	if err != nil {
		return nil, err
	}
	var section []string
	in := false
	for _, line := range strings.Split(string(src), "\n") {
		switch {
		case line == "// # Per OS":
			in = true
		case in && strings.HasPrefix(line, "// # "):
			in = false
		case in:
			section = append(section, strings.TrimPrefix(strings.TrimPrefix(line, "//"), " "))
		}
	}
	isGOOS := map[string]bool{}
	for _, g := range everyGOOS {
		isGOOS[g] = true
	}
	all := map[string]map[string]string{}
	var group []string
	var mode string
	for _, line := range section {
		if head, rest, ok := strings.Cut(line, ":"); ok && !strings.HasPrefix(line, "\t") {
			names := strings.Fields(head)
			known := len(names) > 0
			for _, n := range names {
				known = known && isGOOS[n]
			}
			if !known {
				continue
			}
			group = names
			for _, g := range group {
				if all[g] != nil {
					return nil, fmt.Errorf("%s listed twice", g)
				}
				all[g] = map[string]string{}
			}
			if strings.TrimSpace(rest) == "every row unsupported (no socket options)." {
				for _, g := range group {
					for _, m := range []string{"Share", "Exclusive"} {
						for _, k := range kindNames {
							all[g][m+" "+k] = "unsupported"
						}
					}
				}
			}
			continue
		}
		if !strings.HasPrefix(line, "\t") || group == nil {
			continue
		}
		f := strings.Fields(line)
		if f[0] == "Share" || f[0] == "Exclusive" {
			mode, f = f[0], f[1:]
		}
		if len(f) < 2 {
			return nil, fmt.Errorf("row %q: want a kind and its options", line)
		}
		for _, g := range group {
			all[g][mode+" "+f[0]] = strings.Join(f[1:], " ")
		}
	}
	return all, nil
}

// format writes a table entry as doc.go does.
func format(opts []sockOpt) string {
	if opts == nil {
		return "unsupported"
	}
	var f []string
	for _, o := range opts {
		f = append(f, o.name.String()+"="+strconv.Itoa(o.value))
	}
	return strings.Join(f, " ")
}

// TestDocOptionsEveryOS: doc.go's option list names every GOOS once, and
// every row of it is what the code's table for that GOOS sets.
func TestDocOptionsEveryOS(t *testing.T) {
	doc, err := docOptions()
	if err != nil {
		t.Fatalf("doc.go's option list: %v", err)
	}
	var listed []string
	for g := range doc {
		listed = append(listed, g)
	}
	sort.Strings(listed)
	if diff := cmp.Diff(everyGOOS, listed); diff != "" {
		t.Errorf("GOOS values in doc.go's option list (-want +got):\n%s", diff)
	}
	for _, g := range everyGOOS {
		table := tableFor(g)
		code := map[string]string{}
		for _, m := range []Mode{Share, Exclusive} {
			for k, name := range kindNames {
				code[m.String()+" "+name] = format(table.opts[m][k])
			}
		}
		if diff := cmp.Diff(code, doc[g]); diff != "" {
			t.Errorf("%s: doc.go's option list differs from the code (-code +doc.go):\n%s", g, diff)
		}
	}
}

// TestShareTablesSplit: in every Share entry of every table, the options
// that clear come before those that set, so that splitSharing can set the
// first before bind and the others after it without allocating.
func TestShareTablesSplit(t *testing.T) {
	for _, g := range everyGOOS {
		for k, opts := range tableFor(g).opts[Share] {
			before, after := splitSharing(opts)
			for _, o := range before {
				if o.value != 0 {
					t.Errorf("%s %s: %v=%d before bind", g, kindNames[k], o.name, o.value)
				}
			}
			for _, o := range after {
				if o.value == 0 {
					t.Errorf("%s %s: %v cleared after bind; the table must list clearing options first", g, kindNames[k], o.name)
				}
			}
		}
	}
}

// DocTable is doc.go's option list for goos, for the tests of package
// reuse_test: Mode → kind (listener, dialer, datagram, multicast) → option
// → value; a nil map for an unsupported row.
func DocTable(goos string) (map[string][]map[string]int, error) {
	doc, err := docOptions()
	if err != nil {
		return nil, err
	}
	rows := map[string][]map[string]int{}
	for _, m := range []string{"Share", "Exclusive"} {
		for _, k := range kindNames {
			cell, ok := doc[goos][m+" "+k]
			if !ok {
				return nil, fmt.Errorf("doc.go lists no %s %s for %s", m, k, goos)
			}
			var opts map[string]int
			if cell != "unsupported" {
				opts = map[string]int{}
				for _, f := range strings.Fields(cell) {
					name, v, _ := strings.Cut(f, "=")
					if opts[name], err = strconv.Atoi(v); err != nil {
						return nil, fmt.Errorf("%s %s %s: %q", goos, m, k, f)
					}
				}
			}
			rows[m] = append(rows[m], opts)
		}
	}
	return rows, nil
}
