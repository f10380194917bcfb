package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sockreuse/reuse"
)

// restartWorkerProc is a running restart worker and its standard streams.
type restartWorkerProc struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *bufio.Scanner
}

func startRestartWorker(addr string) (*restartWorkerProc, string, error) {
	cmd, err := workerCommand("restart", addr)
	if err != nil {
		return nil, "", err
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, "", err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, "", err
	}
	if err := cmd.Start(); err != nil {
		return nil, "", err
	}
	w := &restartWorkerProc{cmd: cmd, stdin: stdin, out: bufio.NewScanner(out)}
	line, err := w.ask("")
	return w, line, err
}

// ask sends cmd (if any) and returns the worker's next line.
func (w *restartWorkerProc) ask(cmd string) (string, error) {
	if cmd != "" {
		if _, err := io.WriteString(w.stdin, cmd+"\n"); err != nil {
			return "", err
		}
	}
	if !w.out.Scan() {
		return "", fmt.Errorf("worker pid %d ended before answering %q", w.cmd.Process.Pid, cmd)
	}
	return w.out.Text(), nil
}

func (w *restartWorkerProc) stop() error {
	_ = w.stdin.Close()
	return w.cmd.Wait()
}

// runRestart restarts a server under load: a worker process serves a
// loopback port, and -handovers times a new worker replaces it, with
// reuse.TakeOver and reuse.WaitDrained, or, with -naive, by closing the old
// listener as soon as the new one listens.
func runRestart(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("restart", flag.ContinueOnError)
	n := fs.Int("handovers", 20, "successive restarts")
	naive := fs.Bool("naive", false, "close the old listener without a handover")
	clients := fs.Int("clients", 2, "client goroutines opening connections as fast as they can")
	maxConns := fs.Int("conns", 20000, "stop the load after this many connections")
	if err := parseArgs(fs, args); err != nil {
		return err
	}
	if *n < 1 || *clients < 1 || *maxConns < 1 {
		return badFlag(fs, "-handovers, -clients and -conns must be at least 1")
	}
	migrates, err := reuse.MigratesQueue()
	if err != nil {
		return err
	}
	old, line, err := startRestartWorker("127.0.0.1:0")
	if err != nil {
		return err
	}
	defer func() { _ = old.stop() }()
	addr := line
	var attempted, served, refused, reset, other atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := 0; i < *clients; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if attempted.Add(1) > int64(*maxConns) {
					attempted.Add(-1)
					return
				}
				switch connectAndRead(addr) {
				case "":
					served.Add(1)
				case "refused":
					refused.Add(1)
				case "reset":
					reset.Add(1)
				default:
					other.Add(1)
				}
			}
		}()
	}
	start := time.Now()
	for i := 0; i < *n; i++ {
		next, _, err := startRestartWorker(addr)
		if err != nil {
			return err
		}
		steps := []struct {
			w   *restartWorkerProc
			cmd string
		}{{old, "close"}}
		if !*naive {
			steps = []struct {
				w   *restartWorkerProc
				cmd string
			}{{next, "takeover"}, {old, "drain"}, {next, "release"}}
		}
		for _, s := range steps {
			if line, err := s.w.ask(s.cmd); err != nil || strings.HasPrefix(line, "error") {
				_ = next.stop()
				return fmt.Errorf("%s: %v %s", s.cmd, err, line)
			}
		}
		if err := old.stop(); err != nil {
			return err
		}
		old = next
	}
	elapsed := time.Since(start)
	close(stop)
	wg.Wait()
	how := "with reuse.TakeOver and reuse.WaitDrained"
	if *naive {
		how = "naively (the old listener closes as soon as the new one listens)"
	}
	fmt.Fprintf(stdout, "%d restarts of the server on %s %s, in %v; net.ipv4.tcp_migrate_req=1: %v\n",
		*n, addr, how, elapsed.Round(time.Millisecond), migrates)
	fmt.Fprintf(stdout, "  attempted %d\n  served    %d\n  refused   %d\n  reset     %d\n  other     %d\n",
		attempted.Load(), served.Load(), refused.Load(), reset.Load(), other.Load())
	return nil
}

// connectAndRead opens one connection, reads the server's line and closes.
// It returns "" when served, else "refused", "reset" or the error's text.
// It matches the errors' text: plan9's syscall package has no errno values.
func connectAndRead(addr string) string {
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err == nil {
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		_, err = bufio.NewReader(c).ReadString('\n')
	}
	switch {
	case err == nil:
		return ""
	case strings.Contains(err.Error(), "connection refused"):
		return "refused"
	case strings.Contains(err.Error(), "connection reset"), errors.Is(err, io.EOF):
		return "reset" // EOF: closed before the server wrote a line
	}
	return err.Error()
}

// restartWorker listens on args[0], prints its address, serves each
// connection with one line, and obeys takeover, release, drain and close
// on stdin, answering each with one line.
func restartWorker(args []string) error {
	if len(args) != 1 {
		return errors.New("want one argument: the address to share")
	}
	var cfg reuse.Config
	cfg.ListenConfig.SetMultipathTCP(false)
	ln, err := cfg.Listen(context.Background(), "tcp", args[0])
	if err != nil {
		return err
	}
	fmt.Println(ln.Addr())
	loopDone := make(chan struct{})
	go func() {
		defer close(loopDone)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_ = c.SetDeadline(time.Now().Add(5 * time.Second))
			if _, err := io.WriteString(c, "ok\n"); err == nil {
				_, _ = io.Copy(io.Discard, c) // the client closes first
			}
			c.Close()
		}
	}()
	var takeover *reuse.Takeover
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		var err error
		switch sc.Text() {
		case "takeover":
			takeover, err = reuse.TakeOver(ln)
		case "release":
			if takeover != nil {
				err = takeover.Release()
			}
		case "drain":
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			err = reuse.WaitDrained(ctx, ln, 20*time.Millisecond)
			cancel()
			if err == nil {
				err = ln.Close()
				<-loopDone
			}
		case "close":
			err = ln.Close()
			<-loopDone
		default:
			err = fmt.Errorf("unknown command %q", sc.Text())
		}
		if err != nil {
			fmt.Println("error", err)
		} else {
			fmt.Println("done")
		}
	}
	return sc.Err()
}
