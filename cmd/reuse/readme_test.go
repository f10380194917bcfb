package main

import (
	"fmt"
	"go/ast"
	"go/importer"
	"go/parser"
	"go/token"
	"go/types"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// snippetImports are the packages that a README snippet that is not a
// whole program may use without importing them, by the name it uses: the
// imports an editor adds (goimports). Any other name the snippet uses, it
// declares.
var snippetImports = map[string]string{
	"context": "context",
	"errors":  "errors",
	"fmt":     "fmt",
	"http":    "net/http",
	"log":     "log",
	"net":     "net",
	"os":      "os",
	"quic":    "github.com/quic-go/quic-go",
	"reuse":   "github.com/sockreuse/reuse",
	"runtime": "runtime",
	"sync":    "sync",
	"syscall": "syscall",
	"time":    "time",
	"tls":     "crypto/tls",
}

// TestREADMEGoSnippets compiles the Go code of the repository's README.md
// as a reader would copy it, against the package as it is. A snippet is
// either a whole program (it starts with "package main") or the body of a
// main function, whose leading type and func declarations (paragraphs of
// their own) go above main, or those declarations with main among them; it
// declares every name it uses but those of
// snippetImports, which the test imports. Every compile error counts,
// unused variables and imports too, as for the compiler. A snippet that
// uses quic-go compiles in examples/quic's module, which requires it.
func TestREADMEGoSnippets(t *testing.T) {
	data, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := regexp.MustCompile("(?s)```go\n(.*?)```").FindAllStringSubmatch(string(data), -1)
	if len(blocks) < 6 {
		t.Fatalf("README.md has %d Go snippets, want at least 6 (the server, the modes, the restart, QUIC, the group, multicast, retries)", len(blocks))
	}
	for i, b := range blocks {
		code := b[1]
		t.Run(strconv.Itoa(i+1), func(t *testing.T) {
			src := code
			if !strings.HasPrefix(code, "package main\n") {
				src = snippetProgram(t, code)
			}
			if errs := compileSnippet(t, src); len(errs) > 0 {
				t.Errorf("README snippet %d does not compile as copied:\n\t%s\n--- snippet\n%s---\n--- compiled as\n%s", i+1, strings.Join(errs, "\n\t"), code, src)
			}
		})
	}
}

// TestDocQuickStart compiles the quick start of the package comment
// (doc.go), a whole program.
func TestDocQuickStart(t *testing.T) {
	data, err := os.ReadFile("../../doc.go")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(data), "\n// # Quick start\n")
	if !ok {
		t.Fatal(`doc.go has no "Quick start" section`)
	}
	section, _, _ = strings.Cut(section, "\n// # ")
	var src strings.Builder
	for _, line := range strings.Split(section, "\n") {
		if code, ok := strings.CutPrefix(line, "//\t"); ok {
			src.WriteString(code + "\n")
		} else if line == "//" && src.Len() > 0 {
			src.WriteString("\n")
		}
	}
	if !strings.HasPrefix(src.String(), "package main\n") {
		t.Fatalf("doc.go's quick start is not a whole program:\n%s", src.String())
	}
	if errs := compileSnippet(t, src.String()); len(errs) > 0 {
		t.Errorf("doc.go's quick start does not compile:\n\t%s\n%s", strings.Join(errs, "\n\t"), src.String())
	}
}

// snippetProgram makes a whole program of a snippet that is the body of a
// main function, as a reader who pastes it would: its leading type and
// func paragraphs above main, the rest in main, and the imports of
// snippetImports that it names.
func snippetProgram(t *testing.T, code string) string {
	t.Helper()
	var decls, body []string
	for _, para := range strings.Split(code, "\n\n") {
		if len(body) == 0 && (strings.HasPrefix(para, "func ") || strings.HasPrefix(para, "type ")) {
			decls = append(decls, para)
		} else {
			body = append(body, para)
		}
	}
	rest := strings.Join(decls, "\n\n") + "\n"
	if len(body) > 0 || !strings.Contains(rest, "\nfunc main() {") && !strings.HasPrefix(rest, "func main() {") {
		rest += "\nfunc main() {\n" + strings.Join(body, "\n\n") + "\n}\n"
	}
	f, err := parser.ParseFile(token.NewFileSet(), "snippet.go", "package main\n\n"+rest, 0)
	if err != nil {
		return "package main\n\n" + rest // compileSnippet reports it
	}
	used := map[string]bool{}
	ast.Inspect(f, func(n ast.Node) bool {
		if sel, ok := n.(*ast.SelectorExpr); ok {
			if id, ok := sel.X.(*ast.Ident); ok && snippetImports[id.Name] != "" {
				used[snippetImports[id.Name]] = true
			}
		}
		return true
	})
	var paths []string
	for p := range used {
		paths = append(paths, strconv.Quote(p))
	}
	sort.Strings(paths)
	return "package main\n\nimport (\n\t" + strings.Join(paths, "\n\t") + "\n)\n\n" + rest
}

// compileSnippet type-checks a whole program as the compiler would and
// returns its errors.
func compileSnippet(t *testing.T, src string) []string {
	t.Helper()
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "snippet.go", src, 0)
	if err != nil {
		return []string{err.Error()}
	}
	var paths []string
	for _, imp := range f.Imports {
		p, _ := strconv.Unquote(imp.Path.Value)
		paths = append(paths, p)
	}
	dir := "../.."
	for _, p := range paths {
		if strings.HasPrefix(p, "github.com/quic-go/") {
			dir = "../../examples/quic" // the module that requires quic-go
		}
	}
	var errs []string
	conf := types.Config{Importer: exportImporter(t, dir, paths), Error: func(err error) {
		errs = append(errs, err.Error())
	}}
	_, _ = conf.Check("main", fset, []*ast.File{f}, nil)
	return errs
}

// exportImporter returns an importer of paths and what they import, from
// the export data that "go list -export", run in the module at dir, finds
// in the build cache or compiles: much faster than type-checking net/http
// from source.
func exportImporter(t *testing.T, dir string, paths []string) types.Importer {
	t.Helper()
	gocmd, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("no go command to compile the snippets' imports with: %v", err)
	}
	if dir != "../.." {
		requireGoLine(t, dir)
		// Downloading the module's requirements is the only step that
		// needs the network (the Go module proxy).
		if out, err := exec.Command(gocmd, "-C", dir, "mod", "download").CombinedOutput(); err != nil {
			t.Skipf("cannot download the requirements of %s (no Go module proxy?): %v\n%s", dir, err, out)
		}
	}
	args := append([]string{"-C", dir, "list", "-export", "-deps", "-f", "{{.ImportPath}}\t{{.Export}}"}, paths...)
	out, err := exec.Command(gocmd, args...).Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("go list -export in %s, for %v: %v\n%s", dir, paths, err, stderr)
	}
	exports := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if path, file, ok := strings.Cut(line, "\t"); ok && file != "" {
			exports[path] = file
		}
	}
	return importer.ForCompiler(token.NewFileSet(), "gc", func(path string) (io.ReadCloser, error) {
		file, ok := exports[path]
		if !ok {
			return nil, fmt.Errorf("no export data for %q", path)
		}
		return os.Open(file)
	})
}

// requireGoLine skips the test when the toolchain that runs it is older
// than the go line of the module at dir (as in CI's go1.21.0 pass, whose
// importer reads only its own toolchain's export data).
func requireGoLine(t *testing.T, dir string) {
	t.Helper()
	mod, err := os.ReadFile(filepath.Join(dir, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	line := regexp.MustCompile(`(?m)^go (\S+)$`).FindSubmatch(mod)
	if line == nil {
		t.Fatalf("%s/go.mod has no go line", dir)
	}
	if v, ok := strings.CutPrefix(runtime.Version(), "go"); ok && versionLess(v, string(line[1])) {
		t.Skipf("%s needs go%s (its go.mod); this test runs with %s", dir, line[1], runtime.Version())
	}
}

// versionLess reports whether Go version a ("1.21.0") is older than b.
func versionLess(a, b string) bool {
	as, bs := strings.Split(a, "."), strings.Split(b, ".")
	for i := 0; i < len(as) && i < len(bs); i++ {
		x, _ := strconv.Atoi(as[i])
		y, _ := strconv.Atoi(bs[i])
		if x != y {
			return x < y
		}
	}
	return len(as) < len(bs)
}
