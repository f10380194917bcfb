package reuse

import (
	"fmt"
	"os"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// docBalancing parses the table of doc.go's "Per OS" section that says
// what Share gives on each GOOS: GOOS → what balanceFor answers there.
func docBalancing() (map[string]Balancing, error) {
	src, err := os.ReadFile("doc.go")
	if err != nil {
		return nil, err
	}
	_, section, ok := strings.Cut(string(src), "\n// # Per OS\n")
	if !ok {
		return nil, fmt.Errorf(`no "Per OS" section`)
	}
	_, table, ok := strings.Cut(section, "\n//\tGOOS ")
	if !ok {
		return nil, fmt.Errorf("no table headed GOOS")
	}
	_, table, _ = strings.Cut(table, "\n") // the rest of the heading
	columns := regexp.MustCompile(`\s{2,}`)
	all := map[string]Balancing{}
	for _, line := range strings.Split(table, "\n") {
		row, ok := strings.CutPrefix(line, "//\t")
		if !ok {
			break
		}
		cells := columns.Split(row, -1)
		if len(cells) != 4 {
			return nil, fmt.Errorf("row %q: want 4 columns (GOOS, option, balances, picked by)", row)
		}
		for _, g := range strings.Fields(cells[0]) {
			if _, dup := all[g]; dup {
				return nil, fmt.Errorf("%s listed twice", g)
			}
			b := Balancing{Balances: cells[2] == "yes", By: strings.ReplaceAll(cells[3], "GOOS", g)}
			if cells[1] != "-" {
				b.Shares, b.Option = true, cells[1]
			}
			all[g] = b
		}
	}
	return all, nil
}

// TestDocBalancingEveryOS: doc.go's table of what Share gives names every
// GOOS once, and each row is what BalancingHere answers there (where the
// option that Share sets works, as on every release it names).
func TestDocBalancingEveryOS(t *testing.T) {
	doc, err := docBalancing()
	if err != nil {
		t.Fatalf("doc.go's table of what Share gives: %v", err)
	}
	var listed []string
	for g := range doc {
		listed = append(listed, g)
	}
	sort.Strings(listed)
	if diff := cmp.Diff(everyGOOS, listed); diff != "" {
		t.Errorf("GOOS values in doc.go's table of what Share gives (-want +got):\n%s", diff)
	}
	for _, g := range everyGOOS {
		if diff := cmp.Diff(balanceFor(g, true), doc[g]); diff != "" {
			t.Errorf("%s: doc.go's table of what Share gives differs from the code (-code +doc.go):\n%s", g, diff)
		}
	}
}
