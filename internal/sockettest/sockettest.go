// Package sockettest runs parts of a test where the kernel's rules differ:
// in worker processes (the test binary run again), as another user, and in a
// private network namespace. Nothing in it fakes a syscall.
//
// A test package that uses it calls Main from its TestMain.
package sockettest

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// Environment variables that tell a re-run test binary what it is.
const (
	envWorker = "SOCKETTEST_WORKER" // the name of the worker to run
	envNetNS  = "SOCKETTEST_NETNS"  // set in a test re-run in a private network namespace
)

var (
	workersMu sync.Mutex
	workers   = map[string]func(args []string) error{}
)

// Register makes fn runnable as the worker called name. Call it before Main,
// from an init function or TestMain. A worker reads commands from its
// standard input and reports on its standard output; it returns when done.
func Register(name string, fn func(args []string) error) {
	workersMu.Lock()
	defer workersMu.Unlock()
	workers[name] = fn
}

// Main runs the tests, or, in a re-run test binary, the worker or the
// namespaced test that the parent asked for. Call it from TestMain.
func Main(m *testing.M) {
	if name := os.Getenv(envWorker); name != "" {
		workersMu.Lock()
		fn := workers[name]
		workersMu.Unlock()
		if fn == nil {
			fmt.Fprintf(os.Stderr, "sockettest: no worker %q\n", name)
			os.Exit(2)
		}
		if err := fn(flagArgs()); err != nil {
			fmt.Fprintf(os.Stderr, "worker %s: %v\n", name, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	if os.Getenv(envNetNS) != "" {
		if err := setUpNetNS(); err != nil {
			fmt.Fprintf(os.Stderr, "sockettest: setting up the network namespace: %v\n", err)
			os.Exit(3)
		}
	}
	code := m.Run()
	removeSharedCopy()
	os.Exit(code)
}

// flagArgs returns the worker's arguments: those after "--".
func flagArgs() []string {
	for i, a := range os.Args {
		if a == "--" {
			return os.Args[i+1:]
		}
	}
	return nil
}

// InNetNS reports whether this process runs in a private network namespace
// made by RunInNetNS.
func InNetNS() bool { return os.Getenv(envNetNS) != "" }

// RunInNetNS runs the calling test again, alone, in a child process with a
// private user and network namespace, where the loopback interface is up,
// every 127.0.0.0/8 address is local, and the namespace's sysctls are
// writable. It returns true in that child, where the test goes on, and false
// in the parent, after the child finished and its outcome was reported on t.
//
//	if !sockettest.RunInNetNS(t) {
//		return
//	}
//
// It skips the test when the kernel or the emulator refuses the namespaces.
func RunInNetNS(t *testing.T) bool {
	t.Helper()
	if InNetNS() {
		return true
	}
	if runtime.GOOS != "linux" {
		t.Skipf("network namespaces exist on Linux only, not on %s", runtime.GOOS)
	}
	var pattern []string
	for _, part := range strings.Split(t.Name(), "/") {
		pattern = append(pattern, "^"+regexp.QuoteMeta(part)+"$")
	}
	// The child's time is bounded by the test binary's -test.timeout, or
	// netNSTimeout: its own timeout, shorter, ends it with its goroutines'
	// stacks printed, and one that runs on is killed.
	limit := netNSTimeout
	if d, ok := t.Deadline(); ok {
		limit = time.Until(d) - netNSGrace
	}
	limit = max(limit, 2*netNSGrace)
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run="+strings.Join(pattern, "/"), "-test.v=true", "-test.count=1",
		"-test.timeout="+(limit-netNSGrace).String())
	cmd.WaitDelay = netNSGrace // its output may be held open by a worker it left
	cmd.Env = append(os.Environ(), envNetNS+"=1")
	cmd.SysProcAttr = netNSAttr()
	out, err := cmd.CombinedOutput()
	text := string(out)
	switch {
	case err != nil && cmd.Process == nil && isRefusal(err):
		t.Skipf("cannot create a private user and network namespace here (qemu-user and some sandboxes refuse them): %v", err)
	case ctx.Err() != nil:
		t.Fatalf("in the private network namespace: still running after %v: killed (%v)\n%s", limit, err, text)
	case err != nil:
		t.Fatalf("in the private network namespace: %v\n%s", err, text)
	case strings.Contains(text, "--- SKIP: "+t.Name()+" "):
		t.Skipf("in the private network namespace:\n%s", text)
	case !strings.Contains(text, "--- PASS: "+t.Name()+" "):
		t.Fatalf("in the private network namespace the test did not run:\n%s", text)
	default:
		t.Logf("in the private network namespace:\n%s", text)
	}
	return false
}

// How long a test run in a private network namespace may take where the
// test binary has no -test.timeout, and the time its parent keeps to
// report it.
const (
	netNSTimeout = 10 * time.Minute
	netNSGrace   = 10 * time.Second
)

// Worker is a worker process started by StartWorker.
type Worker struct {
	t      testing.TB
	name   string
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	lines  chan string
	stderr *strings.Builder
	done   chan struct{}
	err    error
}

// WorkerOption changes how StartWorker runs a worker.
type WorkerOption func(*exec.Cmd) error

// StartWorker runs the worker registered as name in a new process of the
// test binary, with args. The process is killed, if still running, when the
// test ends.
func StartWorker(t testing.TB, name string, args []string, opts ...WorkerOption) *Worker {
	t.Helper()
	cmd := exec.Command(os.Args[0], append([]string{"-test.run=^$", "--"}, args...)...)
	cmd.Env = append(os.Environ(), envWorker+"="+name)
	for _, o := range opts {
		if err := o(cmd); err != nil {
			t.Fatalf("worker %s: %v", name, err)
		}
	}
	if emu := Emulator(); emu != "" {
		if err := underEmulator(cmd, emu); err != nil {
			t.Fatalf("worker %s: running it under %s: %v", name, emu, err)
		}
	}
	w := &Worker{t: t, name: name, cmd: cmd, lines: make(chan string, 64), stderr: new(strings.Builder), done: make(chan struct{})}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if w.stdin, err = cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = &lockedWriter{b: w.stderr}
	if err := cmd.Start(); err != nil {
		if isExecFormatError(err) {
			t.Skipf("cannot run the test binary again: %v (under qemu-user without binfmt_misc, set %s=qemu-<arch>, as .ci/bin's wrappers do)", err, envEmulator)
		}
		t.Fatalf("starting worker %s: %v", name, err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			w.lines <- sc.Text()
		}
		close(w.lines)
		w.err = cmd.Wait()
		close(w.done)
	}()
	t.Cleanup(func() {
		if err := w.kill(); err != nil {
			t.Error(err)
		}
	})
	return w
}

// exitTimeout bounds how long a worker takes to end once told to (its
// input closed, or killed): one that runs on is killed, and reported.
const exitTimeout = 30 * time.Second

// kill kills the worker unless it ended, and waits, exitTimeout at most,
// until it did, discarding the lines nobody read (which would otherwise
// hold its output, and so it, up).
func (w *Worker) kill() error {
	select {
	case <-w.done:
		return nil
	default:
	}
	_ = w.cmd.Process.Kill()
	return w.await("killed")
}

// await discards the worker's unread lines until it ended, exitTimeout at
// most; how says what ended it, for the error.
func (w *Worker) await(how string) error {
	deadline := time.NewTimer(exitTimeout)
	defer deadline.Stop()
	lines := w.lines
	for {
		select {
		case _, ok := <-lines:
			if !ok {
				lines = nil
			}
		case <-w.done:
			return nil
		case <-deadline.C:
			return fmt.Errorf("worker %s (pid %d) %s: its output did not end in %v", w.name, w.Pid(), how, exitTimeout)
		}
	}
}

// lockedWriter lets the process's stderr be read while it is written.
type lockedWriter struct {
	mu sync.Mutex
	b  *strings.Builder
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedWriter) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Pid returns the worker's process id.
func (w *Worker) Pid() int { return w.cmd.Process.Pid }

// Send writes one line to the worker's standard input.
func (w *Worker) Send(line string) {
	w.t.Helper()
	if _, err := io.WriteString(w.stdin, line+"\n"); err != nil {
		w.t.Fatalf("worker %s: sending %q: %v\n%s", w.name, line, err, w.Stderr())
	}
}

// Expect reads lines from the worker until one starts with prefix and
// returns the rest of it, trimmed. It fails the test when the worker ends
// first or nothing comes within timeout.
func (w *Worker) Expect(prefix string, timeout time.Duration) string {
	w.t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		select {
		case line, ok := <-w.lines:
			if !ok {
				<-w.done
				w.t.Fatalf("worker %s ended (%v) before printing %q\n%s", w.name, w.err, prefix, w.Stderr())
			}
			if rest, found := strings.CutPrefix(line, prefix); found {
				return strings.TrimSpace(rest)
			}
		case <-deadline.C:
			w.t.Fatalf("worker %s printed no %q in %v\n%s", w.name, prefix, timeout, w.Stderr())
		}
	}
}

// ExpectOneOf reads lines from the worker until one starts with one of
// prefixes, and returns that prefix and the rest of the line, trimmed. It
// fails the test as Expect does.
func (w *Worker) ExpectOneOf(timeout time.Duration, prefixes ...string) (prefix, rest string) {
	w.t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		select {
		case line, ok := <-w.lines:
			if !ok {
				<-w.done
				w.t.Fatalf("worker %s ended (%v) before printing one of %q\n%s", w.name, w.err, prefixes, w.Stderr())
			}
			for _, p := range prefixes {
				if rest, found := strings.CutPrefix(line, p); found {
					return p, strings.TrimSpace(rest)
				}
			}
		case <-deadline.C:
			w.t.Fatalf("worker %s printed none of %q in %v\n%s", w.name, prefixes, timeout, w.Stderr())
		}
	}
}

// Exited reports whether the worker's process ended, and its output was
// read to the end.
func (w *Worker) Exited() bool {
	select {
	case <-w.done:
		return true
	default:
		return false
	}
}

// Next returns the worker's next line that nobody read yet, waiting
// timeout at most; ok is false if none came: the worker ended, or timeout
// passed (Exited tells which).
func (w *Worker) Next(timeout time.Duration) (line string, ok bool) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	select {
	case line, ok := <-w.lines:
		if !ok {
			_ = w.await("ended") // its output ended: it exits
		}
		return line, ok
	case <-deadline.C:
		return "", false
	}
}

// Rest returns the lines the worker printed and nobody read yet, once it
// exited (killed, or ended); it fails the test if it runs on past timeout.
func (w *Worker) Rest(timeout time.Duration) []string {
	w.t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	var lines []string
	for {
		select {
		case line, ok := <-w.lines:
			if !ok {
				<-w.done
				return lines
			}
			lines = append(lines, line)
		case <-deadline.C:
			w.t.Fatalf("worker %s still runs after %v", w.name, timeout)
		}
	}
}

// Wait closes the worker's standard input and waits, discarding the lines
// nobody read, for it to exit; one that runs on for exitTimeout is killed,
// and Wait returns an error saying so.
func (w *Worker) Wait() error {
	_ = w.stdin.Close()
	if err := w.await("told to end (its input closed)"); err != nil {
		_ = w.cmd.Process.Kill()
		if kerr := w.await("killed"); kerr != nil {
			return fmt.Errorf("%v; %v\n%s", err, kerr, w.Stderr())
		}
		return fmt.Errorf("%v: killed\n%s", err, w.Stderr())
	}
	if w.err != nil {
		return fmt.Errorf("worker %s: %w\n%s", w.name, w.err, w.Stderr())
	}
	return nil
}

// Stderr returns what the worker wrote to its standard error so far.
func (w *Worker) Stderr() string { return w.cmd.Stderr.(*lockedWriter).String() }

// RequireRoot skips the test unless it runs as root, naming why root is needed.
func RequireRoot(t testing.TB, why string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skipf("needs root to %s; running as uid %d", why, os.Geteuid())
	}
}
