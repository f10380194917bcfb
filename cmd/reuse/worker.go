package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"time"
)

// envWorker names the worker that a re-run of this command is to be.
const envWorker = "REUSE_CMD_WORKER"

// workers maps a worker name to its body; it reads commands on stdin and
// ends when stdin closes, so that no worker outlives the command.
var workers = map[string]func(args []string) error{
	"demo":        demoWorker,
	"probe-bind":  probeBindWorker,  // the probe's other user
	"probe-netns": probeNetNSWorker, // the probe in a private network namespace
	"restart":     restartWorker,
}

func runWorker(name string, args []string) int {
	w, ok := workers[name]
	if !ok {
		fmt.Fprintf(os.Stderr, "reuse: no worker %q\n", name)
		return 2
	}
	if err := w(args); err != nil {
		fmt.Fprintf(os.Stderr, "reuse worker %s (pid %d): %v\n", name, os.Getpid(), err)
		return 1
	}
	return 0
}

// workerCommand returns a command that runs this program again as worker
// name. Most callers want startWorker, which also talks to it.
func workerCommand(name string, args ...string) (*exec.Cmd, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe, args...)
	cmd.Env = append(os.Environ(), envWorker+"="+name)
	cmd.Stderr = os.Stderr
	return cmd, nil
}

// worker is this program running again as one of workers: it reads
// requests on its stdin, answers each with a line on its stdout, and exits
// when its stdin closes.
type worker struct {
	name    string
	cmd     *exec.Cmd
	stdin   io.WriteCloser
	lines   chan string
	done    chan struct{}
	cleanup func() // undoes what the options made (a copy of the program)
}

// workerOption changes how startWorker runs a worker: another user, a
// private network namespace. It may return a cleanup, run after the worker
// has exited.
type workerOption func(*exec.Cmd) (cleanup func(), err error)

// workerTimeout bounds each answer of a worker.
const workerTimeout = 30 * time.Second

// startWorker runs worker name with args and returns once it has started.
// Its stderr is the command's.
func startWorker(name string, args []string, opts ...workerOption) (*worker, error) {
	cmd, err := workerCommand(name, args...)
	if err != nil {
		return nil, err
	}
	w := &worker{name: name, cmd: cmd, lines: make(chan string, 16), done: make(chan struct{}), cleanup: func() {}}
	for _, o := range opts {
		undo, err := o(cmd)
		if err != nil {
			w.cleanup()
			return nil, fmt.Errorf("worker %s: %w", name, err)
		}
		if undo != nil {
			prev := w.cleanup
			w.cleanup = func() { undo(); prev() }
		}
	}
	stdout, err := cmd.StdoutPipe()
	if err == nil {
		w.stdin, err = cmd.StdinPipe()
	}
	if err == nil {
		err = cmd.Start()
	}
	if err != nil {
		w.cleanup()
		return nil, fmt.Errorf("starting worker %s: %w", name, err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(nil, 16<<20) // the probe's namespace worker answers with one long JSON line
		for sc.Scan() {
			w.lines <- sc.Text()
		}
		close(w.lines)
		_ = cmd.Wait()
		close(w.done)
	}()
	return w, nil
}

// pid returns the worker's process id.
func (w *worker) pid() int { return w.cmd.Process.Pid }

// ask sends req, unless it is "", and returns the worker's next line.
func (w *worker) ask(req string) (string, error) {
	if req != "" {
		if _, err := io.WriteString(w.stdin, req+"\n"); err != nil {
			return "", fmt.Errorf("worker %s (pid %d): %w", w.name, w.pid(), err)
		}
	}
	what := fmt.Sprintf("an answer to %q", req)
	if req == "" {
		what = "a line"
	}
	select {
	case line, ok := <-w.lines:
		if !ok {
			<-w.done
			return "", fmt.Errorf("worker %s (pid %d) ended (%v) before %s", w.name, w.pid(), w.cmd.ProcessState, what)
		}
		return line, nil
	case <-time.After(workerTimeout):
		return "", fmt.Errorf("worker %s (pid %d): waited %v for %s", w.name, w.pid(), workerTimeout, what)
	}
}

// stop closes the worker's stdin, waits for it to exit (killing it after
// a few seconds), and returns an error if it did not exit with status 0.
func (w *worker) stop() error {
	defer w.cleanup()
	_ = w.stdin.Close()
	go func() {
		for range w.lines { // let the worker finish writing
		}
	}()
	select {
	case <-w.done:
	case <-time.After(5 * time.Second):
		_ = w.cmd.Process.Kill()
		<-w.done
		return fmt.Errorf("worker %s (pid %d) did not exit when its stdin closed", w.name, w.pid())
	}
	if !w.cmd.ProcessState.Success() {
		return fmt.Errorf("worker %s (pid %d): %v", w.name, w.pid(), w.cmd.ProcessState)
	}
	return nil
}
