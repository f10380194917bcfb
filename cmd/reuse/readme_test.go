package main

import (
	"errors"
	"fmt"
	"go/ast"
	"go/importer"
	"go/parser"
	"go/token"
	"go/types"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
)

// readmePrelude declares what the README's Go snippets take as given, and
// imports what they use.
const readmePrelude = `package snippet

import (
	"context"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"runtime"
	"sync"
	"time"

	"github.com/sockreuse/reuse"
)

var (
	ctx        context.Context
	h, handler http.Handler
	ifi        *net.Interface
)
`

// TestREADMEGoSnippets type-checks the Go code of the repository's
// README.md against the package as it is, so that the front page never
// shows code that does not compile. A snippet's leading func and type
// declarations stay at the top level, its statements go in a function of
// their own; unused variables and imports are allowed (a snippet shows a
// part of a program). The QUIC snippet needs quic-go, which is not a
// dependency of this module: examples/quic runs the same code.
func TestREADMEGoSnippets(t *testing.T) {
	data, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := regexp.MustCompile("(?s)```go\n(.*?)```").FindAllStringSubmatch(string(data), -1)
	if len(blocks) < 6 {
		t.Fatalf("README.md has %d Go snippets, want at least 6 (the server, the modes, the restart, QUIC, the group, multicast, retries)", len(blocks))
	}
	imp := exportImporter(t)
	checked := 0
	for _, b := range blocks {
		code := b[1]
		if strings.Contains(code, "quic.") {
			continue
		}
		var decls, body []string
		for _, para := range strings.Split(code, "\n\n") {
			if len(body) == 0 && (strings.HasPrefix(para, "func ") || strings.HasPrefix(para, "type ")) {
				decls = append(decls, para)
			} else {
				body = append(body, para)
			}
		}
		src := readmePrelude + strings.Join(decls, "\n\n") + "\n\nfunc snippet() {\n" + strings.Join(body, "\n\n") + "\n}\n"
		if strings.HasPrefix(code, "package ") { // a whole program, checked as copied
			src = code
		}
		fset := token.NewFileSet()
		f, err := parser.ParseFile(fset, "README.md", src, 0)
		if err != nil {
			t.Errorf("README snippet does not parse: %v\n%s", err, code)
			continue
		}
		var hard []error
		conf := types.Config{Importer: imp, Error: func(err error) {
			var te types.Error
			if !errors.As(err, &te) || !te.Soft {
				hard = append(hard, err)
			}
		}}
		_, _ = conf.Check("snippet", fset, []*ast.File{f}, nil)
		if len(hard) > 0 {
			t.Errorf("README snippet does not compile: %v\n%s", hard, code)
		}
		checked++
	}
	t.Logf("type-checked %d of the README's %d Go snippets", checked, len(blocks))
}

// exportImporter returns an importer of the packages that readmePrelude
// imports, from the export data that "go list -export" finds in the build
// cache or compiles: much faster than type-checking net/http from source.
func exportImporter(t *testing.T) types.Importer {
	t.Helper()
	pkgs := regexp.MustCompile(`(?m)^\t(?:\w+ )?"([^"]+)"$`).FindAllStringSubmatch(readmePrelude, -1)
	args := []string{"list", "-export", "-deps", "-f", "{{.ImportPath}}\t{{.Export}}"}
	for _, p := range pkgs {
		args = append(args, p[1])
	}
	gocmd, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("no go command to compile the README's imports with: %v", err)
	}
	out, err := exec.Command(gocmd, args...).Output()
	if err != nil {
		t.Fatalf("go list -export, for the README's imports: %v", err)
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
