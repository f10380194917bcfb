// Command restartserver is the server that cmd/restartload restarts under
// load: a 1-process net/http server (or a UDP receiver) that one of five
// ways replaces with a new process of itself.
//
//   - reuse: the new process opens its sockets under reuse's Share and calls
//     reuse.Handover.TakeOver; the old one learns from Handover.Replaced that
//     it was replaced, shuts down (see shutdown in serveHTTP) and exits. The
//     two are unrelated processes.
//   - reuse-plain: the same, but the old one calls http.Server.Shutdown at
//     once.
//   - naive: the new process opens its sockets under Share; the old one is
//     told (SIGTERM) once the new one listens and shuts down at once.
//   - tableflip, tableflip-readme: github.com/cloudflare/tableflip; SIGHUP
//     makes the process exec its successor, which inherits the listener. The
//     readme variant shuts down as tableflip's README and its net/http
//     example (Example_httpShutdown) do; the other one as the reuse mode
//     does.
//
// UDP knows reuse and naive only; the sockets close at once in both.
//
// It reports on standard output, one line an event, for the driver:
// "ready pid=P slot=S" once it serves (after TakeOver returns, in the reuse
// modes), "error pid=P slot=S ..." when it fails, "count pid=P slot=S n=N"
// on SIGUSR1 and "exit pid=P slot=S n=N" as it exits, where N is the number
// of requests (or datagrams) it served. SIGTERM makes it shut down (at the
// end of a run, and for naive restarts).
package main

import (
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cloudflare/tableflip"
	"github.com/sockreuse/reuse"
)

var (
	proto    = flag.String("proto", "http", "http or udp")
	mode     = flag.String("mode", "reuse", "how it is replaced: reuse, reuse-plain, naive, tableflip or tableflip-readme")
	addr     = flag.String("addr", "127.0.0.1:8080", "local address")
	k        = flag.Int("k", 1, "sockets this process opens on addr (a group when more than 1)")
	slot     = flag.String("slot", "", "reuse: the Handover's Slot (a worker of a group of processes)")
	mptcp    = flag.Bool("mptcp", true, "listen with MPTCP (Go's default for modules with go >= 1.24)")
	quiet    = flag.Duration("quiet", 0, "reuse: the Handover's Quiet (0: the package's default)")
	seqDir   = flag.String("seqdir", "", "udp: directory where the sequence numbers received are written at exit")
	deadline = flag.Duration("deadline", 2*time.Minute, "exit with an error after this long, so that no server outlives a broken driver")
)

var served atomic.Int64

func main() {
	flag.Parse()
	time.AfterFunc(*deadline, func() { fail(fmt.Errorf("still running after -deadline %v", *deadline)) })
	var err error
	switch *proto {
	case "http":
		err = serveHTTP()
	case "udp":
		err = serveUDP()
	default:
		err = fmt.Errorf("-proto %q: want http or udp", *proto)
	}
	if err != nil {
		fail(err)
	}
	event("exit", served.Load())
}

func fail(err error) {
	fmt.Printf("error pid=%d slot=%s %v\n", os.Getpid(), *slot, err)
	os.Exit(1)
}

// event reports one line to the driver; every line is shorter than
// PIPE_BUF, so that the lines of several processes on one pipe never mix.
func event(what string, n int64) {
	if n < 0 {
		fmt.Printf("%s pid=%d slot=%s\n", what, os.Getpid(), *slot)
		return
	}
	fmt.Printf("%s pid=%d slot=%s n=%d\n", what, os.Getpid(), *slot, n)
}

// config is the Config of every socket: Share, MPTCP as -mptcp says.
func config() *reuse.Config {
	var c reuse.Config
	c.ListenConfig.SetMultipathTCP(*mptcp)
	return &c
}

// signals delivers SIGTERM (and SIGHUP for tableflip) and answers SIGUSR1
// with a count line.
func signals() (term, hup <-chan os.Signal) {
	t := make(chan os.Signal, 1)
	signal.Notify(t, syscall.SIGTERM, syscall.SIGINT)
	h := make(chan os.Signal, 1)
	signal.Notify(h, syscall.SIGHUP)
	usr := make(chan os.Signal, 1)
	signal.Notify(usr, syscall.SIGUSR1)
	go func() {
		for range usr {
			event("count", served.Load())
		}
	}()
	return t, h
}

func serveHTTP() error {
	term, hup := signals()
	tracker := newFirstRequests()
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			served.Add(1)
			fmt.Fprintf(w, "pid %d slot %s\n", os.Getpid(), *slot)
		}),
		ConnState:         tracker.connState,
		ReadHeaderTimeout: 10 * time.Second,
	}
	var serving sync.WaitGroup
	serve := func(lns []net.Listener) {
		for _, ln := range lns {
			serving.Add(1)
			go func(ln net.Listener) {
				defer serving.Done()
				srv.Serve(ln)
			}(ln)
		}
	}
	shutdown := func(lns []net.Listener) {
		// Go 1.26's Shutdown closes, unanswered, a connection whose first
		// request it reads only after shutdown began (golang/go#75591). So
		// close the listeners, wait until Serve has returned (it may have
		// accepted a connection that it has not yet reported as new), then
		// until every connection accepted has had its first request read
		// (5 s at most), and only then call Shutdown, which waits for the
		// answers.
		for _, ln := range lns {
			ln.Close()
		}
		serving.Wait()
		tracker.wait(5 * time.Second)
		srv.Shutdown(context.Background())
	}
	switch *mode {
	case "reuse", "reuse-plain":
		lns, err := config().ListenGroup(context.Background(), "tcp", *addr, *k)
		if err != nil {
			return err
		}
		serve(lns)
		// Serving starts before TakeOver: connections that the kernel gives
		// to lns meanwhile are served at once.
		socks := make([]any, len(lns))
		for i, ln := range lns {
			socks[i] = ln
		}
		h := reuse.Handover{Slot: *slot, Quiet: *quiet}
		if err := h.TakeOver(context.Background(), socks...); err != nil {
			return err
		}
		event("ready", -1)
		select {
		case <-h.Replaced():
		case <-term:
		}
		if *mode == "reuse-plain" {
			srv.Shutdown(context.Background())
		} else {
			shutdown(lns)
		}
		return h.Close()
	case "naive":
		lns, err := config().ListenGroup(context.Background(), "tcp", *addr, *k)
		if err != nil {
			return err
		}
		serve(lns)
		event("ready", -1)
		<-term
		return srv.Shutdown(context.Background())
	case "tableflip", "tableflip-readme":
		if *k != 1 {
			return fmt.Errorf("-mode %s serves one listener, not -k %d", *mode, *k)
		}
		lc := &net.ListenConfig{}
		lc.SetMultipathTCP(*mptcp)
		upg, err := tableflip.New(tableflip.Options{ListenConfig: lc})
		if err != nil {
			return err
		}
		defer upg.Stop()
		go func() {
			for range hup {
				if err := upg.Upgrade(); err != nil {
					fmt.Printf("error pid=%d slot=%s upgrade: %v\n", os.Getpid(), *slot, err)
				}
			}
		}()
		ln, err := upg.Fds.Listen("tcp", *addr)
		if err != nil {
			return err
		}
		serve([]net.Listener{ln})
		if err := upg.Ready(); err != nil {
			return err
		}
		event("ready", -1)
		select {
		case <-upg.Exit():
		case <-term:
		}
		if *mode == "tableflip-readme" {
			return srv.Shutdown(context.Background())
		}
		shutdown([]net.Listener{ln})
		return nil
	}
	return fmt.Errorf("-mode %q: want reuse, reuse-plain, naive, tableflip or tableflip-readme", *mode)
}

// firstRequests tracks the connections accepted whose first request was not
// read yet.
type firstRequests struct {
	mu     sync.Mutex
	unread map[net.Conn]bool
	empty  *sync.Cond
}

func newFirstRequests() *firstRequests {
	t := &firstRequests{unread: make(map[net.Conn]bool)}
	t.empty = sync.NewCond(&t.mu)
	return t
}

func (t *firstRequests) connState(c net.Conn, s http.ConnState) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if s == http.StateNew {
		t.unread[c] = true
		return
	}
	delete(t.unread, c)
	if len(t.unread) == 0 {
		t.empty.Broadcast()
	}
}

func (t *firstRequests) wait(limit time.Duration) {
	timer := time.AfterFunc(limit, func() {
		t.mu.Lock()
		t.empty.Broadcast()
		t.mu.Unlock()
	})
	defer timer.Stop()
	start := time.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	for len(t.unread) > 0 && time.Since(start) < limit {
		t.empty.Wait()
	}
}

// serveUDP reads numbered datagrams (the first 8 bytes, little-endian) on k
// sockets until it is replaced (reuse) or told to stop (SIGTERM), then
// closes them at once and writes the numbers it received to
// -seqdir/PID.seq, 8 bytes each.
func serveUDP() error {
	term, _ := signals()
	if *seqDir == "" {
		return errors.New("-proto udp needs -seqdir")
	}
	pcs, err := config().ListenPacketGroup(context.Background(), "udp", *addr, *k)
	if err != nil {
		return err
	}
	seqs := make([][]uint64, len(pcs))
	var readers sync.WaitGroup
	for i, pc := range pcs {
		readers.Add(1)
		go func(i int, pc net.PacketConn) {
			defer readers.Done()
			buf := make([]byte, 2048)
			for {
				n, _, err := pc.ReadFrom(buf)
				if err != nil {
					return
				}
				if n >= 8 {
					seqs[i] = append(seqs[i], binary.LittleEndian.Uint64(buf))
					served.Add(1)
				}
			}
		}(i, pc)
	}
	var replaced <-chan struct{}
	var h reuse.Handover
	if *mode == "reuse" {
		h = reuse.Handover{Slot: *slot, Quiet: *quiet}
		socks := make([]any, len(pcs))
		for i, pc := range pcs {
			socks[i] = pc
		}
		if err := h.TakeOver(context.Background(), socks...); err != nil {
			return err
		}
		replaced = h.Replaced()
	} else if *mode != "naive" {
		return fmt.Errorf("-proto udp -mode %q: want reuse or naive", *mode)
	}
	event("ready", -1)
	select {
	case <-replaced:
	case <-term:
	}
	for _, pc := range pcs {
		pc.Close()
	}
	readers.Wait()
	if *mode == "reuse" {
		if err := h.Close(); err != nil {
			return err
		}
	}
	var out []byte
	for _, s := range seqs {
		for _, v := range s {
			out = binary.LittleEndian.AppendUint64(out, v)
		}
	}
	return os.WriteFile(filepath.Join(*seqDir, strconv.Itoa(os.Getpid())+".seq"), out, 0o644)
}
