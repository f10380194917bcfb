package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sockreuse/reuse"
)

// runDemo starts worker processes that share one loopback port, opens
// connections to it, and prints how many each worker accepted.
func runDemo(args []string, stdout io.Writer) error {
	maxWorkers, maxConns := demoLimits()
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	nWorkers := fs.Int("workers", 4, fmt.Sprintf("worker processes sharing the port, at most %d here", maxWorkers.max))
	nConns := fs.Int("conns", 1000, fmt.Sprintf("connections to open, at most %d here", maxConns.max))
	addr := fs.String("addr", "127.0.0.1:0", "loopback address to share (port 0: any free port)")
	if err := parseArgs(fs, args); err != nil {
		return err
	}
	if err := checkRange(fs, "workers", *nWorkers, maxWorkers); err != nil {
		return err
	}
	if err := checkRange(fs, "conns", *nConns, maxConns); err != nil {
		return err
	}
	var ws []*worker
	defer func() {
		for _, w := range ws {
			_ = w.stop()
		}
	}()
	shared := *addr
	started := newProgress("demo: workers listening", *nWorkers)
	for i := 0; i < *nWorkers; i++ {
		w, err := startWorker("demo", []string{shared})
		if err != nil {
			return err
		}
		ws = append(ws, w)
		line, err := w.ask("")
		if err != nil {
			return fmt.Errorf("worker %d did not start listening: %v", i+1, err)
		}
		shared = line // the first worker fixes port 0
		started.add(1)
	}
	started.end()
	fmt.Fprintf(stdout, "%d worker processes listen on %s with reuse.Listen (Share)\n", len(ws), shared)

	counts := map[int]int{}
	var failed int
	var mu sync.Mutex
	var wg sync.WaitGroup
	jobs := make(chan struct{})
	start := time.Now()
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range jobs {
				pid, err := askPid(shared)
				mu.Lock()
				if err != nil {
					failed++
				} else {
					counts[pid]++
				}
				mu.Unlock()
			}
		}()
	}
	prog := newProgress("demo: connections", *nConns)
	for i := 0; i < *nConns; i++ {
		jobs <- struct{}{}
		prog.add(1)
	}
	close(jobs)
	wg.Wait()
	prog.end()
	elapsed := time.Since(start)

	fmt.Fprintf(stdout, "%d connections in %v, each from a new source port:\n\n", *nConns, elapsed.Round(time.Millisecond))
	fmt.Fprintf(stdout, "  worker  pid      accepted  share\n")
	most := 0
	for _, w := range ws {
		most = max(most, counts[w.pid()])
	}
	for i, w := range ws {
		n := counts[w.pid()]
		pct := 100 * float64(n) / float64(*nConns)
		// Bars are scaled to the busiest worker, so that small differences show.
		fmt.Fprintf(stdout, "  %-6d  %-7d  %8d  %5.1f%%  %s\n", i+1, w.pid(), n, pct, bar(n, most, 40))
	}
	if failed > 0 {
		fmt.Fprintf(stdout, "\n  %d connections failed\n", failed)
	}
	if b := reuse.BalancingHere(); b.Balances {
		fmt.Fprintf(stdout, "\nThe kernel picks a worker by a hash of each connection's addresses and ports.\n")
	} else {
		fmt.Fprintf(stdout, "\n%s shares the port without balancing; a worker is picked by: %s.\n", runtime.GOOS, b.By)
	}
	return nil
}

// checkRange returns a *usageError unless flag name's value n is from 1 to
// l.max, saying why the machine allows no more.
func checkRange(fs *flag.FlagSet, name string, n int, l limit) error {
	switch {
	case n < 1:
		return badFlag(fs, "-%s %d: want at least 1", name, n)
	case n > l.max:
		return badFlag(fs, "-%s %d: this machine allows at most %d: %s", name, n, l.max, l.why)
	}
	return nil
}

// bar draws n out of most as a row of width blocks.
func bar(n, most, width int) string {
	filled := 0
	if most > 0 {
		filled = min(width, (n*width+most/2)/most)
	}
	return strings.Repeat("█", filled) + strings.Repeat("·", width-filled)
}

// askPid connects to addr and reads the pid the accepting worker writes.
func askPid(addr string) (int, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(5 * time.Second)); err != nil {
		return 0, err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(line))
}

// demoWorker listens on the shared address, prints it, and answers each
// connection with its pid until stdin closes.
func demoWorker(args []string) error {
	if len(args) != 1 {
		return errors.New("want one argument: the address to share")
	}
	ln, err := reuse.Listen("tcp", args[0])
	if err != nil {
		return err
	}
	fmt.Println(ln.Addr())
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		ln.Close()
	}()
	pid := []byte(strconv.Itoa(os.Getpid()) + "\n")
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		_, _ = c.Write(pid)
		c.Close()
	}
}
