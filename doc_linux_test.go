package reuse

import (
	"fmt"
	"go/ast"
	"go/doc"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
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

// TestEveryIdentifierDocumented: every exported function, type, method,
// constant and variable has a doc comment, and every exported function and
// type an example (a method may share its type's).
func TestEveryIdentifierDocumented(t *testing.T) {
	fset := token.NewFileSet()
	var files, tests []*ast.File
	names, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range names {
		f, err := parser.ParseFile(fset, name, nil, parser.ParseComments)
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasSuffix(name, "_test.go") {
			tests = append(tests, f)
		} else if f.Name.Name == "reuse" {
			files = append(files, f)
		}
	}
	p, err := doc.NewFromFiles(fset, append(files, tests...), "github.com/sockreuse/reuse")
	if err != nil {
		t.Fatal(err)
	}
	undocumented := func(what, name, text string) {
		if strings.TrimSpace(text) == "" {
			t.Errorf("%s %s has no doc comment", what, name)
		}
	}
	// A group of constants or variables is documented as a whole or
	// each of its names.
	values := func(vs []*doc.Value) {
		for _, v := range vs {
			if strings.TrimSpace(v.Doc) != "" {
				continue
			}
			for _, spec := range v.Decl.Specs {
				s := spec.(*ast.ValueSpec)
				if s.Names[0].IsExported() && s.Doc == nil && s.Comment == nil {
					t.Errorf("%s has no doc comment", s.Names[0])
				}
			}
		}
	}
	values(append(p.Consts, p.Vars...))
	funcs := p.Funcs
	for _, typ := range p.Types {
		undocumented("type", typ.Name, typ.Doc)
		if len(typ.Examples) == 0 {
			t.Errorf("type %s has no example", typ.Name)
		}
		values(append(typ.Consts, typ.Vars...))
		funcs = append(funcs, typ.Funcs...)
		for _, m := range typ.Methods {
			undocumented("method", typ.Name+"."+m.Name, m.Doc)
		}
	}
	for _, f := range funcs {
		undocumented("function", f.Name, f.Doc)
		if len(f.Examples) == 0 {
			t.Errorf("function %s has no example", f.Name)
		}
	}
}
