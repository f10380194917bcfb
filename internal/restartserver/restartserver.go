// Package restartserver is the server that the restart drivers replace
// under load, one process a generation: cmd/reuse's restart and
// bench/cmd/restartload (through bench/cmd/restartserver, which adds
// tableflip's ways of restarting). One server, so that what the two
// measure is the same thing.
//
// A generation is a net/http server answering every request with its pid,
// or a receiver of numbered UDP datagrams, on one socket or a group of them
// opened under reuse's Share. It is replaced one of three ways:
//
//   - reuse: it serves, then calls reuse.Handover.TakeOver; once
//     Handover.Replaced says that a successor took over, it stops as the
//     README's server does (reusehttp's Serving.Stop: every accepted
//     connection's first request is read before http.Server.Shutdown),
//     calls Handover.Close, and returns.
//   - reuse-plain: the same, but it calls Shutdown as soon as Replaced is
//     closed.
//   - naive: no handover; it shuts down at once when the driver says stop.
//
// UDP knows reuse and naive only: the sockets close at once in both.
//
// It reports to its driver one line an event (see Event): "ready" once it
// serves (after TakeOver returns, in the reuse modes), with its address and
// protocol, and "exit" as it ends, with the number of requests or
// datagrams it served and the datagrams that the kernel dropped on its
// sockets.
package restartserver

import (
	"context"
	"encoding/binary"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sockreuse/reuse"
)

// Options say what a generation serves and how it is replaced.
type Options struct {
	Proto   string        // "http" or "udp"
	Mode    string        // "reuse", "reuse-plain" or "naive"
	Addr    string        // the address to share (port 0: the first generation picks one)
	Sockets int           // sockets this process opens on Addr (a group when more than 1)
	Slot    string        // the Handover's Slot (a worker of a group of processes)
	MPTCP   bool          // listen with MPTCP (Go's default for modules with go >= 1.24)
	Quiet   time.Duration // the Handover's Quiet (0: the package's default)
	SeqFile string        // udp: the file where the sequence numbers received are written at exit ("": none)
	RcvBuf  int           // udp: each socket's receive buffer (0: the system's default)
}

// Flags defines the flags of the server's command line in fs, one for each
// field of o, with the defaults that o holds.
func (o *Options) Flags(fs *flag.FlagSet) {
	fs.StringVar(&o.Proto, "proto", o.Proto, "http or udp")
	fs.StringVar(&o.Mode, "mode", o.Mode, "how it is replaced: reuse, reuse-plain or naive")
	fs.StringVar(&o.Addr, "addr", o.Addr, "local address")
	fs.IntVar(&o.Sockets, "k", o.Sockets, "sockets this process opens on addr (a group when more than 1)")
	fs.StringVar(&o.Slot, "slot", o.Slot, "reuse: the Handover's Slot (a worker of a group of processes)")
	fs.BoolVar(&o.MPTCP, "mptcp", o.MPTCP, "listen with MPTCP (Go's default for modules with go >= 1.24)")
	fs.DurationVar(&o.Quiet, "quiet", o.Quiet, "reuse: the Handover's Quiet (0: the package's default)")
	fs.StringVar(&o.SeqFile, "seqfile", o.SeqFile, "udp: file where the sequence numbers received are written at exit, 8 bytes each, little-endian")
	fs.IntVar(&o.RcvBuf, "rcvbuf", o.RcvBuf, "udp: receive buffer of each socket in bytes (0: the system's default)")
}

// Event writes one line for the driver: "KIND pid=P slot=S FIELDS...". It
// writes it at once, and every line is shorter than PIPE_BUF, so that the
// lines of several processes on one pipe never mix.
func Event(w io.Writer, kind, slot string, fields ...string) {
	line := fmt.Sprintf("%s pid=%d slot=%s", kind, os.Getpid(), slot)
	if len(fields) > 0 {
		line += " " + strings.Join(fields, " ")
	}
	_, _ = io.WriteString(w, line+"\n")
}

// A Server is one generation.
type Server struct {
	opts   Options
	served atomic.Int64
}

// New returns a server with options o; Run runs it.
func New(o Options) *Server { return &Server{opts: o} }

// Served returns the number of requests, or numbered datagrams, served so
// far.
func (s *Server) Served() int64 { return s.served.Load() }

// Run opens the sockets, serves, reports "ready" on events, and shuts down
// once replaced (reuse modes) or once stop is closed (every mode), then
// reports "exit".
func (s *Server) Run(stop <-chan struct{}, events io.Writer) error {
	var svc *service
	var err error
	switch {
	case s.opts.Sockets < 1:
		err = fmt.Errorf("-k %d: want at least 1 socket", s.opts.Sockets)
	case s.opts.Proto == "http" && (s.opts.Mode == "reuse" || s.opts.Mode == "reuse-plain" || s.opts.Mode == "naive"):
		svc, err = s.serveHTTP()
	case s.opts.Proto == "udp" && (s.opts.Mode == "reuse" || s.opts.Mode == "naive"):
		svc, err = s.serveUDP()
	default:
		err = fmt.Errorf("-proto %q -mode %q: want http with reuse, reuse-plain or naive, or udp with reuse or naive", s.opts.Proto, s.opts.Mode)
	}
	if err != nil {
		return err
	}
	var replaced <-chan struct{}
	h := reuse.Handover{Slot: s.opts.Slot, Quiet: s.opts.Quiet}
	if s.opts.Mode != "naive" {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err := h.TakeOver(ctx, svc.socks...)
		cancel()
		if err != nil {
			_, _ = svc.close(false)
			return err
		}
		replaced = h.Replaced()
	}
	Event(events, "ready", s.opts.Slot, "addr="+svc.addr, "proto="+svc.proto)
	select {
	case <-replaced:
	case <-stop:
	}
	dropped, err := svc.close(s.opts.Mode == "reuse")
	if s.opts.Mode != "naive" {
		if cerr := h.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		return err
	}
	Event(events, "exit", s.opts.Slot, "n="+strconv.FormatInt(s.Served(), 10), "dropped="+strconv.Itoa(dropped))
	return nil
}

// A service is the sockets of a generation, serving.
type service struct {
	socks       []any  // for Handover.TakeOver
	addr, proto string // for the ready line
	// close stops serving, at once or, with drain, once what was accepted
	// was served; it returns the datagrams that the kernel dropped.
	close func(drain bool) (dropped int, err error)
}

func (s *Server) config() *reuse.Config {
	var c reuse.Config
	c.ListenConfig.SetMultipathTCP(s.opts.MPTCP)
	return &c
}

// serveHTTP serves HTTP on the sockets. Serving starts before TakeOver:
// connections that the kernel gives them meanwhile are served at once.
func (s *Server) serveHTTP() (*service, error) {
	lns, err := s.config().ListenGroup(context.Background(), "tcp", s.opts.Addr, s.opts.Sockets)
	if err != nil {
		return nil, err
	}
	srv := NewHTTP(s.opts.Slot, &s.served)
	srv.Serve(lns)
	svc := &service{addr: lns[0].Addr().String(), proto: protocol(lns[0])}
	for _, ln := range lns {
		svc.socks = append(svc.socks, ln)
	}
	svc.close = func(drain bool) (int, error) {
		if drain {
			srv.Drain()
		} else {
			srv.Shutdown()
		}
		return 0, nil
	}
	return svc, nil
}

// serveUDP reads numbered datagrams (the first 8 bytes, little-endian) on
// the sockets. Its close closes them at once and writes the numbers
// received to SeqFile.
func (s *Server) serveUDP() (*service, error) {
	pcs, err := s.config().ListenPacketGroup(context.Background(), "udp", s.opts.Addr, s.opts.Sockets)
	if err != nil {
		return nil, err
	}
	svc := &service{addr: pcs[0].LocalAddr().String(), proto: "UDP"}
	seqs := make([][]uint64, len(pcs))
	var readers sync.WaitGroup
	for i, pc := range pcs {
		svc.socks = append(svc.socks, pc)
		if s.opts.RcvBuf > 0 {
			_ = pc.(*net.UDPConn).SetReadBuffer(s.opts.RcvBuf)
		}
		readers.Add(1)
		go func(i int, pc net.PacketConn) {
			defer readers.Done()
			buf := make([]byte, 2048)
			for {
				n, _, err := pc.ReadFrom(buf)
				if err != nil {
					return
				}
				if n >= 8 { // not a handover's empty probe
					seqs[i] = append(seqs[i], binary.LittleEndian.Uint64(buf))
					s.served.Add(1)
				}
			}
		}(i, pc)
	}
	svc.close = func(bool) (dropped int, err error) {
		for _, pc := range pcs {
			dropped += udpDrops(pc)
			pc.Close()
		}
		readers.Wait()
		if s.opts.SeqFile == "" {
			return dropped, nil
		}
		var out []byte
		for _, s := range seqs {
			for _, v := range s {
				out = binary.LittleEndian.AppendUint64(out, v)
			}
		}
		return dropped, os.WriteFile(s.opts.SeqFile, out, 0o644)
	}
	return svc, nil
}
