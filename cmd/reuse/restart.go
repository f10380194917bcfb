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
	"strconv"
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

// startRestartWorker starts a server generation: k listeners on addr, MPTCP
// or not, in the Handover slot slot. It returns the worker and its first line: "ADDR PROTO".
func startRestartWorker(addr string, k int, mptcp bool, slot string) (*restartWorkerProc, string, error) {
	cmd, err := workerCommand("restart", addr, strconv.Itoa(k), strconv.FormatBool(mptcp), slot)
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
	if err != nil {
		_ = w.stop()
	}
	return w, line, err
}

// ask sends cmd (if any) and returns the worker's next line; a line
// "error ..." is returned as an error.
func (w *restartWorkerProc) ask(cmd string) (string, error) {
	if cmd != "" {
		if _, err := io.WriteString(w.stdin, cmd+"\n"); err != nil {
			return "", err
		}
	}
	if !w.out.Scan() {
		return "", fmt.Errorf("worker pid %d ended before answering %q", w.cmd.Process.Pid, cmd)
	}
	if msg, ok := strings.CutPrefix(w.out.Text(), "error "); ok {
		return "", fmt.Errorf("worker pid %d: %s: %s", w.cmd.Process.Pid, cmd, msg)
	}
	return w.out.Text(), nil
}

// stop closes the worker's stdin, which ends it, and waits for it.
func (w *restartWorkerProc) stop() error {
	_ = w.stdin.Close()
	return w.cmd.Wait()
}

// restartCase is one shape of server, restarted one way.
type restartCase struct {
	listeners int // a process
	workers   int // processes, each in a slot of its own
	mptcp     bool
	naive     bool
}

// restartCounts is what the clients saw during one case.
type restartCounts struct {
	attempted, served, refused, reset, other atomic.Int64
}

// runRestart restarts a server under load, for each shape asked: a worker
// process serves a loopback port with one listener or a group of them, and
// -handovers times a new worker replaces it, with reuse.Handover or, with
// -naive, also by closing the old listeners as soon as the new ones listen.
func runRestart(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("restart", flag.ContinueOnError)
	n := fs.Int("handovers", 20, "successive restarts of each shape")
	listeners := fs.String("listeners", "1,4", "shapes of one process: listeners per server process, comma-separated")
	workers := fs.Int("workers", 4, "a shape of several processes: worker processes of one listener each, replaced one at a time (0: none)")
	mptcp := fs.Bool("mptcp", true, "listen with MPTCP, Go's default since 1.24 (false: plain TCP)")
	naive := fs.Bool("naive", true, "also restart each shape naively: the old listeners close as soon as the new ones listen")
	clients := fs.Int("clients", 2, "client goroutines opening connections as fast as they can")
	maxConns := fs.Int("conns", 20000, "stop a shape's load after this many connections")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *n < 1 || *clients < 1 || *maxConns < 1 {
		return errors.New("-handovers, -clients and -conns must be at least 1")
	}
	var cases []restartCase
	for _, f := range strings.Split(*listeners, ",") {
		k, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || k < 1 {
			return fmt.Errorf("-listeners %q: want positive numbers, comma-separated", *listeners)
		}
		cases = append(cases, restartCase{k, 1, *mptcp, false})
		if *naive {
			cases = append(cases, restartCase{k, 1, *mptcp, true})
		}
	}
	if *workers > 1 {
		cases = append(cases, restartCase{1, *workers, *mptcp, false})
		if *naive {
			cases = append(cases, restartCase{1, *workers, *mptcp, true})
		}
	}
	fmt.Fprintln(stdout, migrateReqWords())
	for _, c := range cases {
		if err := restartShape(c, *n, *clients, *maxConns, stdout); err != nil {
			return err
		}
	}
	return nil
}

// migrateReqWords says what net.ipv4.tcp_migrate_req is here.
func migrateReqWords() string {
	data, err := os.ReadFile("/proc/sys/net/ipv4/tcp_migrate_req")
	switch {
	case err != nil:
		return "net.ipv4.tcp_migrate_req: unknown here (before Linux 5.14, or not Linux): a closing listener resets the connections in its queue"
	case strings.TrimSpace(string(data)) == "1":
		return "net.ipv4.tcp_migrate_req = 1: a closing listener hands the connections in its queue to the others of its port"
	}
	return "net.ipv4.tcp_migrate_req = 0: a closing listener resets the connections in its queue"
}

// restartShape runs one case and prints its counts: c.workers processes
// (in slots of their own when more than one) are replaced in turn, n times
// in all.
func restartShape(c restartCase, n, clients, maxConns int, stdout io.Writer) error {
	procs := make([]*restartWorkerProc, c.workers)
	defer func() {
		for _, w := range procs {
			if w != nil {
				_ = w.stop()
			}
		}
	}()
	slot := func(i int) string {
		if c.workers == 1 {
			return ""
		}
		return "worker-" + strconv.Itoa(i)
	}
	addr, proto := "127.0.0.1:0", ""
	for i := range procs {
		w, line, err := startRestartWorker(addr, c.listeners, c.mptcp, slot(i))
		if err != nil {
			return err
		}
		procs[i] = w
		addr, proto, _ = strings.Cut(line, " ")
		if !c.naive {
			if _, err := w.ask("takeover"); err != nil {
				return err
			}
		}
	}
	var counts restartCounts
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := 0; i < clients; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if counts.attempted.Add(1) > int64(maxConns) {
					counts.attempted.Add(-1)
					return
				}
				switch connectAndRead(addr) {
				case "":
					counts.served.Add(1)
				case "refused":
					counts.refused.Add(1)
				case "reset":
					counts.reset.Add(1)
				default:
					counts.other.Add(1)
				}
			}
		}()
	}
	start := time.Now()
	err := func() error {
		for i := 0; i < n; i++ {
			j := i % c.workers
			next, _, err := startRestartWorker(addr, c.listeners, c.mptcp, slot(j))
			if err != nil {
				return err
			}
			if c.naive {
				_, err = procs[j].ask("close")
			} else {
				// Returns once the old worker let go; it exits by itself.
				_, err = next.ask("takeover")
			}
			if err == nil {
				err = procs[j].stop()
			}
			procs[j] = next
			if err != nil {
				return err
			}
		}
		return nil
	}()
	elapsed := time.Since(start)
	close(stop)
	wg.Wait()
	if err != nil {
		return err
	}
	how := "with reuse.Handover"
	if c.naive {
		how = "naively (the old listeners close as soon as the new ones listen)"
	}
	shape := fmt.Sprintf("%d listener%s a process", c.listeners, plural(c.listeners))
	if c.workers > 1 {
		shape = fmt.Sprintf("%d worker processes of %d listener%s, replaced in turn", c.workers, c.listeners, plural(c.listeners))
	}
	fmt.Fprintf(stdout, "%s (%s), %d restarts %s, in %v:\n", shape, proto, n, how, elapsed.Round(time.Millisecond))
	fmt.Fprintf(stdout, "  attempted %d\n  served    %d\n  refused   %d\n  reset     %d\n  other     %d\n",
		counts.attempted.Load(), counts.served.Load(), counts.refused.Load(), counts.reset.Load(), counts.other.Load())
	return nil
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// connectAndRead opens one connection, reads the server's line and closes.
// It returns "" when served, else "refused", "reset" or the error's text.
// It matches the errors' text: plan9's syscall package has no errno values.
func connectAndRead(addr string) string {
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err == nil {
		defer c.Close()
		// Close with a reset: no TIME_WAIT, so the load never runs out of ports.
		_ = c.(*net.TCPConn).SetLinger(0)
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

// restartWorker is one generation of the server: args are the address, the
// number of listeners, whether to listen with MPTCP, and the Handover slot. It prints "ADDR
// PROTO", serves each connection with one line, and obeys, answering each
// with one line: takeover (reuse.Handover.TakeOver; once replaced, it closes
// its listeners and exits by itself) and close (close the listeners at once).
func restartWorker(args []string) error {
	if len(args) != 4 {
		return errors.New("want four arguments: the address to share, the number of listeners, MPTCP (true or false), the Handover slot")
	}
	k, err := strconv.Atoi(args[1])
	if err != nil {
		return err
	}
	var cfg reuse.Config
	cfg.ListenConfig.SetMultipathTCP(args[2] == "true")
	lns, err := cfg.ListenGroup(context.Background(), "tcp", args[0], k)
	if err != nil {
		return err
	}
	fmt.Println(lns[0].Addr(), protocol(lns[0]))
	var loops sync.WaitGroup
	for _, ln := range lns {
		ln := ln
		loops.Add(1)
		go func() {
			defer loops.Done()
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
	}
	closeAll := func() {
		for _, ln := range lns {
			ln.Close()
		}
		loops.Wait()
	}
	ho := reuse.Handover{Slot: args[3], Quiet: 20 * time.Millisecond}
	defer ho.Close()
	cmds := make(chan string)
	go func() {
		sc := bufio.NewScanner(os.Stdin)
		for sc.Scan() {
			cmds <- sc.Text()
		}
		close(cmds)
	}()
	for {
		select {
		case <-ho.Replaced():
			closeAll()
			return nil
		case cmd, ok := <-cmds:
			if !ok {
				return nil
			}
			var err error
			switch cmd {
			case "takeover":
				socks := make([]any, len(lns))
				for i, ln := range lns {
					socks[i] = ln
				}
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				err = ho.TakeOver(ctx, socks...)
				cancel()
			case "close":
				closeAll()
			default:
				err = fmt.Errorf("unknown command %q", cmd)
			}
			if err != nil {
				fmt.Println("error", err)
			} else {
				fmt.Println("done")
			}
		}
	}
}
