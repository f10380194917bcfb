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
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/sockreuse/reuse"
)

// restartQuiet is the Handover.Quiet of the restart workers: shorter than
// the default (250 ms), which covers the round trips of the internet, since
// loopback clients answer within it.
const restartQuiet = 20 * time.Millisecond

// startRestartWorker starts a server generation of case c on addr, in the
// Handover slot slot. It returns the worker and its first line: "ADDR PROTO".
func startRestartWorker(c restartCase, addr, slot string) (*worker, string, error) {
	network := "tcp"
	if c.udp {
		network = "udp"
	}
	w, err := startWorker("restart", []string{addr, strconv.Itoa(c.listeners), strconv.FormatBool(c.mptcp), slot, network})
	if err != nil {
		return nil, "", err
	}
	line, err := askRestart(w, "")
	if err != nil {
		_ = w.stop()
		return nil, "", err
	}
	return w, line, nil
}

// askRestart is w.ask for a restart worker, which answers a request it
// could not carry out with a line "error ...": that is returned as an error.
func askRestart(w *worker, req string) (string, error) {
	line, err := w.ask(req)
	if msg, ok := strings.CutPrefix(line, "error "); ok && err == nil {
		return "", fmt.Errorf("worker %s (pid %d): %s: %s", w.name, w.pid(), req, msg)
	}
	return line, err
}

// restartCase is one shape of server, restarted one way.
type restartCase struct {
	listeners int // sockets a process
	workers   int // processes, each in a slot of its own
	mptcp     bool
	udp       bool
	naive     bool
}

// shape describes the servers of c: "4 worker processes of 1 UDP socket, replaced in turn".
func (c restartCase) shape() string {
	s := fmt.Sprintf("%d listener%s a process", c.listeners, plural(c.listeners))
	if c.workers > 1 {
		s = fmt.Sprintf("%d worker processes of %d listener%s, replaced in turn", c.workers, c.listeners, plural(c.listeners))
	}
	if c.udp {
		s = strings.ReplaceAll(s, "listener", "UDP socket")
	}
	return s
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
	workers := fs.Int("workers", 4, "a shape of several processes: worker processes of one listener each, replaced one at a time (0: no such shape)")
	mptcp := fs.Bool("mptcp", true, "listen with MPTCP, Go's default since 1.24 (false: plain TCP)")
	naive := fs.Bool("naive", true, "also restart each shape naively: the old sockets close as soon as the new ones are bound")
	udp := fs.Bool("udp", true, "also hand over UDP services of each shape, under a stream of numbered datagrams")
	clients := fs.Int("clients", 2, "client goroutines opening connections as fast as they can")
	maxConns := fs.Int("conns", 20000, "stop a shape's load after this many connections")
	if err := parseArgs(fs, args); err != nil {
		return err
	}
	if *n < 1 || *clients < 1 || *maxConns < 1 {
		return badFlag(fs, "-handovers, -clients and -conns must be at least 1")
	}
	if *workers < 0 || *workers == 1 {
		return badFlag(fs, "-workers %d: want 0 (no shape of several processes) or at least 2", *workers)
	}
	var shapes []restartCase
	for _, f := range strings.Split(*listeners, ",") {
		k, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || k < 1 {
			return badFlag(fs, "-listeners %q: want positive numbers, comma-separated", *listeners)
		}
		shapes = append(shapes, restartCase{listeners: k, workers: 1})
	}
	if *workers > 1 {
		shapes = append(shapes, restartCase{listeners: 1, workers: *workers})
	}
	var cases []restartCase
	for _, u := range []bool{false, true} {
		if u && !*udp {
			continue
		}
		for _, c := range shapes {
			c.mptcp, c.udp = *mptcp && !u, u
			cases = append(cases, c)
			if *naive {
				c.naive = true
				cases = append(cases, c)
			}
		}
	}
	migrate := migrateReqWords()
	fmt.Fprintln(stdout, migrate)
	fmt.Fprintf(stdout, "Each handover waits until the old queues stayed empty for Quiet %v; a server's default Quiet, 250ms, makes each restart about %v longer.\n", restartQuiet, 250*time.Millisecond-restartQuiet)
	lost := make([]string, len(cases))
	for i, c := range cases {
		l, total, err := restartShape(c, *n, *clients, *maxConns, stdout)
		if err != nil {
			return err
		}
		lost[i] = fmt.Sprintf("%d of %d", l, total)
	}
	printRestartSummary(stdout, cases, lost, migrate)
	return nil
}

// printRestartSummary prints, for each shape, how many connections or
// datagrams each way of restarting lost, and what tcp_migrate_req makes a
// closing listener do.
func printRestartSummary(stdout io.Writer, cases []restartCase, lost []string, migrate string) {
	fmt.Fprintln(stdout, "\nLost in all, per shape:")
	tw := tabwriter.NewWriter(stdout, 0, 0, 3, ' ', 0)
	fmt.Fprintln(tw, "  shape\twith reuse.Handover\tnaively")
	for i := 0; i < len(cases); i++ {
		row := []string{cases[i].shape() + unitsOf(cases[i]), lost[i], "-"}
		if i+1 < len(cases) && cases[i+1].naive {
			i++
			row[2] = lost[i]
		}
		fmt.Fprintf(tw, "  %s\n", strings.Join(row, "\t"))
	}
	tw.Flush()
	fmt.Fprintln(stdout, migrate)
}

// unitsOf names what a case counts.
func unitsOf(c restartCase) string {
	if c.udp {
		return ": datagrams"
	}
	return ": connections"
}

// migrateReqWords says what net.ipv4.tcp_migrate_req makes a closing
// listener do here, in words.
func migrateReqWords() string {
	data, err := os.ReadFile("/proc/sys/net/ipv4/tcp_migrate_req")
	switch {
	case err != nil:
		return "This kernel has no net.ipv4.tcp_migrate_req (Linux before 5.14): a listener that closes resets the connections waiting in its queue."
	case strings.TrimSpace(string(data)) == "1":
		return "Here a listener that closes moves the connections waiting in its queue to another listener of its port (net.ipv4.tcp_migrate_req = 1)."
	}
	return "Here a listener that closes resets the connections waiting in its queue (net.ipv4.tcp_migrate_req = 0; 1 would move them to another listener of its port)."
}

// restartShape runs one case and prints its counts: c.workers processes
// (in slots of their own when more than one) are replaced in turn, n times
// in all. It returns how many connections or datagrams were lost, of how
// many attempted or sent.
func restartShape(c restartCase, n, clients, maxConns int, stdout io.Writer) (lost, total int64, err error) {
	procs := make([]*worker, c.workers)
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
		w, line, err := startRestartWorker(c, addr, slot(i))
		if err != nil {
			return 0, 0, err
		}
		procs[i] = w
		addr, proto, _ = strings.Cut(line, " ")
		if !c.naive {
			if _, err := askRestart(w, "takeover"); err != nil {
				return 0, 0, err
			}
		}
	}
	var counts restartCounts
	var read atomic.Int64 // UDP: datagrams the workers read
	// readBy adds the count of a UDP worker's last line, "read N".
	var dropped atomic.Int64 // UDP: datagrams the kernel counted dropped on the workers' sockets
	readBy := func(line string) error {
		var n, d int64
		if _, err := fmt.Sscanf(line, "read %d %d", &n, &d); err != nil {
			return fmt.Errorf("a UDP worker said %q: %v", line, err)
		}
		read.Add(n)
		dropped.Add(d)
		return nil
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	if c.udp {
		send, err := udpSender(addr, 1000, &counts.attempted)
		if err != nil {
			return 0, 0, err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			send(stop)
		}()
	}
	for i := 0; i < clients && !c.udp; i++ {
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
	how := "with reuse.Handover"
	if c.naive {
		how = "naively"
	}
	prog := newProgress("restart: "+c.shape()+", "+how+": restarts", n)
	start := time.Now()
	err = func() error {
		for i := 0; i < n; i++ {
			j := i % c.workers
			next, _, err := startRestartWorker(c, addr, slot(j))
			if err != nil {
				return err
			}
			var line string
			if c.naive {
				line, err = askRestart(procs[j], "close")
			} else {
				// Returns once the old worker let go; it exits by itself.
				if _, err = askRestart(next, "takeover"); err == nil && c.udp {
					line, err = askRestart(procs[j], "")
				}
			}
			if err == nil && c.udp {
				err = readBy(line)
			}
			if serr := procs[j].stop(); err == nil {
				err = serr
			}
			procs[j] = next
			if err != nil {
				return err
			}
			prog.add(1)
		}
		return nil
	}()
	prog.end()
	elapsed := time.Since(start)
	close(stop)
	wg.Wait()
	if err == nil && c.udp {
		time.Sleep(50 * time.Millisecond) // the last datagrams in flight
		for _, w := range procs {
			line, err := askRestart(w, "close")
			if err == nil {
				err = readBy(line)
			}
			if err != nil {
				return 0, 0, err
			}
		}
	}
	if err != nil {
		return 0, 0, err
	}
	if c.naive {
		how = "naively (the old sockets close as soon as the new ones are bound)"
	}
	fmt.Fprintf(stdout, "%s (%s), %d restarts %s, in %v:\n", c.shape(), proto, n, how, elapsed.Round(time.Millisecond))
	if c.udp {
		sent := counts.attempted.Load()
		probes := 0
		if !c.naive {
			probes = n * c.listeners // each old socket drops one
		}
		fmt.Fprintf(stdout, "  sent      %d\n  read      %d\n  lost      %d\n  dropped   %d (counted by the kernel on the sockets: full buffers, and %d probes of the handovers)\n",
			sent, read.Load(), sent-read.Load(), dropped.Load(), probes)
		return sent - read.Load(), sent, nil
	}
	fmt.Fprintf(stdout, "  attempted %d\n  served    %d\n  refused   %d\n  reset     %d\n  other     %d\n",
		counts.attempted.Load(), counts.served.Load(), counts.refused.Load(), counts.reset.Load(), counts.other.Load())
	return counts.attempted.Load() - counts.served.Load(), counts.attempted.Load(), nil
}

// udpSender dials addr from sources sockets of their own (each its own
// source port) and returns a function that sends them numbered datagrams in
// turn, about 20,000 a second, counting them in sent, until stop closes.
func udpSender(addr string, sources int, sent *atomic.Int64) (func(stop chan struct{}), error) {
	conns := make([]net.Conn, 0, sources)
	for i := 0; i < sources; i++ {
		c, err := net.Dial("udp", addr)
		if err != nil {
			for _, c := range conns {
				c.Close()
			}
			return nil, err
		}
		conns = append(conns, c)
	}
	return func(stop chan struct{}) {
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		for n := 0; ; n++ {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := fmt.Fprintf(conns[n%len(conns)], "%d", n); err != nil {
				return
			}
			sent.Add(1)
			if n%20 == 19 {
				time.Sleep(time.Millisecond)
			}
		}
	}, nil
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
	if len(args) != 5 {
		return errors.New("want five arguments: the address to share, the number of sockets, MPTCP (true or false), the Handover slot, tcp or udp")
	}
	if args[4] == "udp" {
		return restartUDPWorker(args)
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
	ho := reuse.Handover{Slot: args[3], Quiet: restartQuiet}
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

// restartUDPWorker is restartWorker for UDP: it reads numbered datagrams
// with k sockets, and says "read N D" (how many it read, how many the
// kernel counted dropped on its sockets) once replaced or closed, as its
// last line.
func restartUDPWorker(args []string) error {
	k, err := strconv.Atoi(args[1])
	if err != nil {
		return err
	}
	pcs, err := reuse.ListenPacketGroup("udp", args[0], k)
	if err != nil {
		return err
	}
	for _, pc := range pcs {
		// More room for a reader descheduled on a loaded machine (up to
		// net.core.rmem_max).
		_ = pc.(*net.UDPConn).SetReadBuffer(4 << 20)
	}
	fmt.Println(pcs[0].LocalAddr(), "UDP")
	var read atomic.Int64
	var readers sync.WaitGroup
	for _, pc := range pcs {
		pc := pc
		readers.Add(1)
		go func() {
			defer readers.Done()
			buf := make([]byte, 64)
			for {
				n, _, err := pc.ReadFrom(buf)
				if err != nil {
					return
				}
				if n > 0 { // not a handover's empty probe
					read.Add(1)
				}
			}
		}()
	}
	closeAll := func() {
		dropped := 0
		for _, pc := range pcs {
			dropped += udpDrops(pc)
			pc.Close()
		}
		readers.Wait()
		fmt.Println("read", read.Load(), dropped)
	}
	ho := reuse.Handover{Slot: args[3], Quiet: restartQuiet}
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
			switch {
			case !ok:
				return nil
			case cmd == "takeover":
				socks := make([]any, len(pcs))
				for i, pc := range pcs {
					socks[i] = pc
				}
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				err := ho.TakeOver(ctx, socks...)
				cancel()
				if err != nil {
					fmt.Println("error", err)
				} else {
					fmt.Println("done")
				}
			case cmd == "close":
				closeAll()
			default:
				fmt.Println("error unknown command", cmd)
			}
		}
	}
}
