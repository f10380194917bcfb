package main

import (
	"bufio"
	"encoding/binary"
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

	"github.com/sockreuse/reuse/internal/restartserver"
)

// restartQuiet is the Handover.Quiet of the restart workers: shorter than
// the default (250 ms), which covers the round trips of the internet, since
// loopback clients answer within it.
const restartQuiet = 20 * time.Millisecond

// restartWorker is one generation of the server that restart replaces: the
// one that bench/cmd/restartload replaces too (internal/restartserver; args
// are its flags). It shuts down when replaced or when its stdin closes.
func restartWorker(args []string) error {
	var opts restartserver.Options
	fs := flag.NewFlagSet("restart worker", flag.ContinueOnError)
	opts.Flags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	stop := make(chan struct{})
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		close(stop)
	}()
	return restartserver.New(opts).Run(stop, os.Stdout)
}

// startRestartWorker starts a server generation of case c on addr, in the
// Handover slot slot, and returns once it serves (in the handover's mode:
// once it took over), with its address and protocol.
func startRestartWorker(c restartCase, addr, slot string) (w *worker, gotAddr, proto string, err error) {
	network, mode := "http", "reuse"
	if c.udp {
		network = "udp"
	}
	if c.naive {
		mode = "naive"
	}
	// UDP: a receive buffer of 4 MiB (up to net.core.rmem_max), room for
	// a reader descheduled on a loaded machine.
	w, err = startWorker("restart", []string{"-proto", network, "-mode", mode, "-addr", addr, "-k", strconv.Itoa(c.listeners),
		"-slot", slot, "-mptcp=" + strconv.FormatBool(c.mptcp), "-quiet", restartQuiet.String(), "-rcvbuf", strconv.Itoa(4 << 20)})
	if err != nil {
		return nil, "", "", err
	}
	f, err := restartEvent(w, "ready")
	if err != nil {
		_ = w.stop()
		return nil, "", "", err
	}
	return w, f["addr"], f["proto"], nil
}

// restartEvent reads w's next line, which must be an event of kind (see
// restartserver.Event), and returns its fields.
func restartEvent(w *worker, kind string) (map[string]string, error) {
	line, err := w.ask("")
	if err != nil {
		return nil, err
	}
	words := strings.Fields(line)
	if len(words) == 0 || words[0] != kind {
		return nil, fmt.Errorf("worker %s (pid %d): want a line %q, got %q", w.name, w.pid(), kind, line)
	}
	f := map[string]string{}
	for _, word := range words[1:] {
		k, v, _ := strings.Cut(word, "=")
		f[k] = v
	}
	return f, nil
}

// retireRestartWorker waits for w's last line, telling it to stop first
// if stop is set, and then for w to exit. It returns what w served
// (requests or datagrams) and the datagrams that the kernel dropped on its
// sockets.
func retireRestartWorker(w *worker, stop bool) (read, dropped int64, err error) {
	if stop {
		_ = w.stdin.Close()
	}
	f, err := restartEvent(w, "exit")
	if err == nil {
		read, err = strconv.ParseInt(f["n"], 10, 64)
	}
	if err == nil {
		dropped, err = strconv.ParseInt(f["dropped"], 10, 64)
	}
	if serr := w.stop(); err == nil {
		err = serr
	}
	return read, dropped, err
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
		w, a, p, err := startRestartWorker(c, addr, slot(i))
		if err != nil {
			return 0, 0, err
		}
		procs[i], addr, proto = w, a, p
	}
	var counts restartCounts
	// UDP: datagrams the workers read, and those the kernel counted
	// dropped on their sockets.
	var read, dropped int64
	// retire waits for procs[j] to exit (telling it to stop first if stop
	// is set) and adds its counts.
	retire := func(j int, stop bool) error {
		r, d, err := retireRestartWorker(procs[j], stop)
		procs[j] = nil
		read, dropped = read+r, dropped+d
		return err
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
			// With the handover, next is ready once the old worker let
			// go; that one exits by itself. Naively, the old one is told.
			next, _, _, err := startRestartWorker(c, addr, slot(j))
			if err != nil {
				return err
			}
			err = retire(j, c.naive)
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
		for j := range procs {
			if err := retire(j, true); err != nil {
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
			sent, read, sent-read, dropped, probes)
		return sent - read, sent, nil
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
		buf := make([]byte, 64) // the sequence number, then zeros
		for n := 0; ; n++ {
			select {
			case <-stop:
				return
			default:
			}
			binary.LittleEndian.PutUint64(buf, uint64(n))
			if _, err := conns[n%len(conns)].Write(buf); err != nil {
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

// connectAndRead opens one connection, sends an HTTP request, reads the
// status line of the answer and closes. It returns "" when served (200),
// else "refused", "reset", the status line or the error's text.
// It matches the errors' text: plan9's syscall package has no errno values.
func connectAndRead(addr string) string {
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err == nil {
		defer c.Close()
		// Close with a reset: no TIME_WAIT, so the load never runs out of ports.
		_ = c.(*net.TCPConn).SetLinger(0)
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		var status string
		if _, err = io.WriteString(c, "GET / HTTP/1.1\r\nHost: restart\r\n\r\n"); err == nil {
			status, err = bufio.NewReader(c).ReadString('\n')
		}
		if err == nil && !strings.HasPrefix(status, "HTTP/1.1 200 ") {
			return strings.TrimSpace(status)
		}
	}
	switch {
	case err == nil:
		return ""
	case strings.Contains(err.Error(), "connection refused"):
		return "refused"
	case strings.Contains(err.Error(), "connection reset"), errors.Is(err, io.EOF):
		return "reset" // EOF: closed before the server answered
	}
	return err.Error()
}
