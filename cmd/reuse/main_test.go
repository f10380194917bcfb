package main

import (
	"io"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/sockreuse/reuse/internal/sockettest"
)

// TestMain lets the test binary serve as the command's own worker
// processes, which it starts by re-running its executable.
func TestMain(m *testing.M) {
	if name := os.Getenv(envWorker); name != "" {
		os.Exit(runWorker(name, os.Args[1:]))
	}
	os.Exit(m.Run())
}

// requireSelfExec skips a test in which the command starts itself again (as
// a worker, another user, or in a private network namespace): under a
// user-mode emulator without a binfmt_misc handler, the host kernel cannot
// execute the binary.
func requireSelfExec(t *testing.T) {
	t.Helper()
	if _, err := os.Executable(); err != nil {
		t.Skipf("the command starts itself again, which %s cannot: %v", runtime.GOOS, err)
	}
	if e := sockettest.Emulator(); e != "" {
		t.Skipf("the command starts itself again, which the host cannot execute under %s (no binfmt_misc handler)", e)
	}
}

// TestCommandLine runs the command as a person would type it: -h prints
// the usage on stdout and exits 0; a wrong flag, value or argument exits 2
// with the usage on stderr, before anything runs.
func TestCommandLine(t *testing.T) {
	tests := []struct {
		args       []string
		code       int
		stdout     string // a line the output must hold
		stderrHas  string
		stdoutNone bool
	}{
		{args: []string{"help"}, code: 0, stdout: "usage: reuse <subcommand> [flags]"},
		{args: []string{"-h"}, code: 0, stdout: "usage: reuse <subcommand> [flags]"},
		{args: []string{"help", "probe"}, code: 0, stdout: "usage: reuse probe [flags]"},
		{args: []string{"demo", "-h"}, code: 0, stdout: "usage: reuse demo [flags]"},
		{args: []string{"probe", "-h"}, code: 0, stdout: "usage: reuse probe [flags]"},
		{args: []string{"restart", "-h"}, code: 0, stdout: "usage: reuse restart [flags]"},
		{args: []string{"restart", "--help"}, code: 0, stdout: "usage: reuse restart [flags]"},
		{args: nil, code: 2, stderrHas: "usage: reuse <subcommand> [flags]", stdoutNone: true},
		{args: []string{"nosuch"}, code: 2, stderrHas: `unknown subcommand "nosuch"`, stdoutNone: true},
		{args: []string{"demo", "-workers", "many"}, code: 2, stderrHas: "usage: reuse demo [flags]", stdoutNone: true},
		{args: []string{"demo", "-workers", "0"}, code: 2, stderrHas: "-workers 0: want at least 1", stdoutNone: true},
		{args: []string{"demo", "extra"}, code: 2, stderrHas: `unexpected argument "extra"`, stdoutNone: true},
		{args: []string{"probe", "-json", "-markdown"}, code: 2, stderrHas: "exclude each other", stdoutNone: true},
		{args: []string{"probe", "-nosuch"}, code: 2, stderrHas: "flag provided but not defined: -nosuch", stdoutNone: true},
		{args: []string{"probe", "now"}, code: 2, stderrHas: `unexpected argument "now"`, stdoutNone: true},
		{args: []string{"restart", "-handovers", "0"}, code: 2, stderrHas: "usage: reuse restart [flags]", stdoutNone: true},
		{args: []string{"restart", "-workers", "1"}, code: 2, stderrHas: "-workers 1: want 0", stdoutNone: true},
		{args: []string{"restart", "-listeners", "2,x"}, code: 2, stderrHas: `-listeners "2,x"`, stdoutNone: true},
		{args: []string{"restart", "-naive", "twice"}, code: 2, stderrHas: `unexpected argument "twice"`, stdoutNone: true},
	}
	for _, tt := range tests {
		var stdout, stderr strings.Builder
		code := run(tt.args, &stdout, &stderr)
		if code != tt.code {
			t.Errorf("reuse %s: exit status %d, want %d\nstdout:\n%s\nstderr:\n%s", strings.Join(tt.args, " "), code, tt.code, stdout.String(), stderr.String())
		}
		if tt.stdout != "" && !strings.Contains(stdout.String(), tt.stdout) {
			t.Errorf("reuse %s: stdout lacks %q:\n%s", strings.Join(tt.args, " "), tt.stdout, stdout.String())
		}
		if tt.stderrHas != "" && !strings.Contains(stderr.String(), tt.stderrHas) {
			t.Errorf("reuse %s: stderr lacks %q:\n%s", strings.Join(tt.args, " "), tt.stderrHas, stderr.String())
		}
		if tt.stdoutNone && stdout.Len() > 0 {
			t.Errorf("reuse %s: printed on stdout:\n%s", strings.Join(tt.args, " "), stdout.String())
		}
		if tt.code == 2 && strings.Contains(stderr.String(), "usage:") && !strings.Contains(stderr.String(), "reuse") {
			t.Errorf("reuse %s: usage does not name the command", strings.Join(tt.args, " "))
		}
	}
}

// TestProgress checks that progress stays quiet for a step's first second
// and then reports the count done, and its end.
func TestProgress(t *testing.T) {
	var out strings.Builder
	defer func(w io.Writer) { progressOut = w }(progressOut)
	progressOut = &out
	quiet := newProgress("test: units", 10)
	quiet.add(3)
	quiet.end()
	if out.Len() != 0 {
		t.Errorf("progress printed during the first second: %q", out.String())
	}
	slow := newProgress("test: units", 10)
	slow.start = slow.start.Add(-2 * time.Second) // started two seconds ago
	slow.next = time.Now()
	slow.add(4)
	slow.add(1) // within a second of the last line: nothing
	slow.end()
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "reuse test: units: 4 of 10 (2") || !strings.HasPrefix(lines[1], "reuse test: units: 5 of 10 (2") {
		t.Errorf("progress printed %q, want a line for 4 of 10 and one for 5 of 10, each after 2s", out.String())
	}
	out.Reset()
	said := newProgress("test: units", 2)
	said.next = time.Now()
	said.add(2)
	said.end() // the last line already said 2 of 2
	if got := strings.Count(out.String(), "\n"); got != 1 {
		t.Errorf("progress printed %q, want one line for 2 of 2", out.String())
	}
}

// TestWorkerHelper runs the probe's bind worker through startWorker: it
// answers each request in turn, and stop ends it with status 0.
func TestWorkerHelper(t *testing.T) {
	requireSelfExec(t)
	if runtime.GOOS != "linux" && runtime.GOOS != "windows" {
		t.Skipf("the probe's worker binds sockets of its own on Linux and Windows only, not %s", runtime.GOOS)
	}
	w, err := startWorker("probe-bind", nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, req := range []string{"tcp 4 127.0.0.1 0 Share", "tcp 4 127.0.0.1 0 Exclusive"} {
		if got, err := w.ask(req); err != nil || got != "ok" {
			t.Errorf("ask(%q) = %q, %v; want ok", req, got, err)
		}
	}
	if err := w.stop(); err != nil {
		t.Errorf("stop: %v", err)
	}
	if _, err := w.ask("tcp 4 127.0.0.1 0 Share"); err == nil {
		t.Error("ask after stop succeeded")
	}
	quiet := func(cmd *exec.Cmd) (func(), error) { cmd.Stderr = io.Discard; return nil, nil } // its complaint is expected
	bad, err := startWorker("probe-bind", nil, quiet)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bad.ask("not a request"); err == nil {
		t.Error("the worker answered a bad request")
	}
	if err := bad.stop(); err == nil {
		t.Error("stop of a worker that failed returned no error")
	}
}
