//go:build linux || windows

package main

// The probe's report as text, for a person, and as markdown, for PROBE.md.

import (
	"fmt"
	"strings"
)

// section is the rows of one grid: one protocol, state and address case.
type section struct {
	proto, state, addrs string
	rows                []bindRow
}

func (s section) title() string {
	t := strings.ToUpper(s.proto) + ", " + s.addrs
	if s.proto == "tcp" {
		t += ", first socket " + s.state
	}
	return t
}

// sections groups the rows by grid, in order.
func (r *probeReport) sections() []section {
	var out []section
	for _, row := range r.Binds {
		if n := len(out); n == 0 || out[n-1].proto != row.Proto || out[n-1].state != row.FirstState || out[n-1].addrs != row.Addrs {
			out = append(out, section{proto: row.Proto, state: row.FirstState, addrs: row.Addrs})
		}
		out[len(out)-1].rows = append(out[len(out)-1].rows, row)
	}
	return out
}

// grid returns the cells of a section, first option × second option, IPv4
// and IPv6 merged into one cell where they agree, and the addresses used,
// or the reason the section was not measured.
func (s section) grid() (names []string, cells [][]string, addrs, why string) {
	type key struct{ first, second string }
	byFamily := map[string]map[key]bindRow{"IPv4": {}, "IPv6": {}}
	for _, r := range s.rows {
		byFamily[r.Family][key{r.First, r.Second}] = r
		if r.Result == notMeasured {
			why = r.Why
		}
		if r.Family == "IPv4" && addrs == "" {
			addrs = r.FirstAddr + " then " + r.SecondAddr
		} else if r.Family == "IPv6" && !strings.Contains(addrs, ";") {
			addrs += "; " + r.FirstAddr + " then " + r.SecondAddr
		}
	}
	for _, o := range probeOptions {
		names = append(names, o.name)
	}
	for _, a := range names {
		var line []string
		for _, b := range names {
			v4, v6 := byFamily["IPv4"][key{a, b}].Result, byFamily["IPv6"][key{a, b}].Result
			cell := v4
			if v4 != v6 {
				cell = "v4 " + v4 + ", v6 " + v6
			}
			line = append(line, cell)
		}
		cells = append(cells, line)
	}
	return names, cells, addrs, why
}

// legend explains the cells.
const legend = `Each cell is a real attempt: a first socket (row) binds and, where it says
so, listens; then a second socket (column) binds the same port and, for TCP,
listens. "ok": both succeeded; otherwise the errno of the step that failed
("listen: ..." when bind succeeded but listen did not; "first: ..." when the
first socket already failed). Where IPv4 and IPv6 differ the cell shows
both. IPv6 sockets are IPV6_V6ONLY, as Go's tcp6 and udp6 sockets are.
Share and Exclusive are the package's modes, set by its Control; "none"
sets no option (Go's own net.Listen sets SO_REUSEADDR on TCP listeners on
Unix).
`

// text renders the report as aligned text.
func (r *probeReport) text() string {
	var b strings.Builder
	fmt.Fprintf(&b, "reuse probe: %s/%s, kernel %s, %s\n", r.OS, r.Arch, r.Kernel, r.Go)
	fmt.Fprintf(&b, "binds made %s\n\n", r.Where)
	b.WriteString(legend)
	for _, s := range r.sections() {
		names, cells, addrs, why := s.grid()
		fmt.Fprintf(&b, "\n%s (%s)\n", s.title(), addrs)
		if why != "" {
			fmt.Fprintf(&b, "  not measured: %s\n", why)
			continue
		}
		width := len("first \\ second")
		for i, n := range names {
			width = max(width, len(n))
			for _, c := range cells[i] {
				width = max(width, len(c))
			}
		}
		fmt.Fprintf(&b, "  %-*s", width, "first \\ second")
		for _, n := range names {
			fmt.Fprintf(&b, "  %-*s", width, n)
		}
		b.WriteString("\n")
		for i, n := range names {
			fmt.Fprintf(&b, "  %-*s", width, n)
			for _, c := range cells[i] {
				fmt.Fprintf(&b, "  %-*s", width, c)
			}
			b.WriteString("\n")
		}
	}
	b.WriteString("\nFacts\n")
	width := 0
	for _, f := range r.Facts {
		width = max(width, len(f.Name))
	}
	for _, f := range r.Facts {
		fmt.Fprintf(&b, "  %-*s  %s", width, f.Name, f.Value)
		if f.Detail != "" {
			fmt.Fprintf(&b, " (%s)", f.Detail)
		}
		b.WriteString("\n")
	}
	return b.String()
}

// markdown renders what depends on the kernel alone: the matrix and the
// stable facts, without versions, timings or counts, so that the same
// kernel prints the same text.
func (r *probeReport) markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "Measured by `reuse probe -markdown` on %s.\n\n", r.OS)
	for _, line := range strings.Split(strings.TrimSpace(legend), "\n") {
		b.WriteString(line + "\n")
	}
	for _, s := range r.sections() {
		names, cells, addrs, why := s.grid()
		fmt.Fprintf(&b, "\n**%s** (%s)\n\n", s.title(), addrs)
		if why != "" {
			fmt.Fprintf(&b, "Not measured: %s\n", why)
			continue
		}
		b.WriteString("| first \\ second |")
		for _, n := range names {
			b.WriteString(" " + n + " |")
		}
		b.WriteString("\n|---|")
		for range names {
			b.WriteString("---|")
		}
		b.WriteString("\n")
		for i, n := range names {
			b.WriteString("| " + n + " |")
			for _, c := range cells[i] {
				b.WriteString(" " + c + " |")
			}
			b.WriteString("\n")
		}
	}
	b.WriteString("\n| fact | value |\n|---|---|\n")
	for _, f := range r.Facts {
		if f.Stable {
			fmt.Fprintf(&b, "| %s | %s |\n", f.Name, f.Value)
		}
	}
	return b.String()
}
