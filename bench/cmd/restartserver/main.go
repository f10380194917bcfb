// Command restartserver is the server that cmd/restartload restarts under
// load: a 1-process net/http server (or a UDP receiver) that one of five
// ways replaces with a new process of itself. The modes reuse, reuse-plain
// and naive are the server of cmd/reuse's restart too
// (github.com/sockreuse/reuse/internal/restartserver, whose doc says what
// each does); this command adds tableflip's:
//
//   - tableflip, tableflip-readme: github.com/cloudflare/tableflip; SIGHUP
//     makes the process exec its successor, which inherits the listener. The
//     readme variant shuts down as tableflip's README and its net/http
//     example (Example_httpShutdown) do; the other one as the reuse mode
//     does.
//
// It reports on standard output, one line an event, for the driver:
// "ready pid=P slot=S ..." once it serves (after TakeOver returns, in the
// reuse modes), "error pid=P slot=S ..." when it fails, "count pid=P slot=S
// n=N" on SIGUSR1 and "exit pid=P slot=S n=N ..." as it exits, where N is
// the number of requests (or datagrams) it served. SIGTERM makes it shut
// down (at the end of a run, and for naive restarts).
package main

import (
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cloudflare/tableflip"
	"github.com/sockreuse/reuse/internal/restartserver"
)

var (
	opts     = restartserver.Options{Proto: "http", Mode: "reuse", Addr: "127.0.0.1:8080", Sockets: 1, MPTCP: true}
	deadline = flag.Duration("deadline", 2*time.Minute, "exit with an error after this long, so that no server outlives a broken driver")
)

func main() {
	opts.Flags(flag.CommandLine)
	flag.Lookup("mode").Usage = "how it is replaced: reuse, reuse-plain, naive, tableflip or tableflip-readme"
	flag.Parse()
	time.AfterFunc(*deadline, func() { fail(fmt.Errorf("still running after -deadline %v", *deadline)) })
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM, syscall.SIGINT)
	stop := make(chan struct{})
	go func() {
		<-term
		close(stop)
	}()
	var err error
	if opts.Mode == "tableflip" || opts.Mode == "tableflip-readme" {
		err = serveTableflip(stop)
	} else {
		srv := restartserver.New(opts)
		counts(srv.Served)
		err = srv.Run(stop, os.Stdout)
	}
	if err != nil {
		fail(err)
	}
}

func fail(err error) {
	restartserver.Event(os.Stdout, "error", opts.Slot, err.Error())
	os.Exit(1)
}

// counts answers SIGUSR1 with a count line.
func counts(served func() int64) {
	usr := make(chan os.Signal, 1)
	signal.Notify(usr, syscall.SIGUSR1)
	go func() {
		for range usr {
			restartserver.Event(os.Stdout, "count", opts.Slot, "n="+strconv.FormatInt(served(), 10))
		}
	}()
}

// serveTableflip serves one listener that SIGHUP hands to a new process of
// this command, by tableflip's Upgrade.
func serveTableflip(stop <-chan struct{}) error {
	if opts.Proto != "http" || opts.Sockets != 1 {
		return fmt.Errorf("-mode %s serves one HTTP listener, not -proto %s -k %d", opts.Mode, opts.Proto, opts.Sockets)
	}
	lc := &net.ListenConfig{}
	lc.SetMultipathTCP(opts.MPTCP)
	upg, err := tableflip.New(tableflip.Options{ListenConfig: lc})
	if err != nil {
		return err
	}
	defer upg.Stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go func() {
		for range hup {
			if err := upg.Upgrade(); err != nil {
				restartserver.Event(os.Stdout, "error", opts.Slot, "upgrade: "+err.Error())
			}
		}
	}()
	ln, err := upg.Fds.Listen("tcp", opts.Addr)
	if err != nil {
		return err
	}
	var served atomic.Int64
	counts(served.Load)
	srv := restartserver.NewHTTP(opts.Slot, &served)
	srv.Serve([]net.Listener{ln})
	if err := upg.Ready(); err != nil {
		return err
	}
	restartserver.Event(os.Stdout, "ready", opts.Slot)
	select {
	case <-upg.Exit():
	case <-stop:
	}
	if opts.Mode == "tableflip-readme" {
		srv.Shutdown()
	} else {
		srv.Drain()
	}
	restartserver.Event(os.Stdout, "exit", opts.Slot, "n="+strconv.FormatInt(served.Load(), 10))
	return nil
}
