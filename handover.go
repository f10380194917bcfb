package reuse

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"
)

// Takeover is the hold that a new listener has taken on a shared port with
// TakeOver: the kernel gives it every new connection, and none to the
// listener it takes over from, until Release.
type Takeover struct {
	// Migrates reports whether the kernel of the current network namespace
	// hands the connections queued on a closing listener to another
	// listener of its group (see MigratesQueue). The handover does not need
	// it; it only covers the residual risk that WaitDrained documents.
	Migrates bool

	ln *net.TCPListener
}

// TakeOver makes ln, a listener that has just joined a shared port (with
// Listen, under Share), the only listener of the port's group that the
// kernel gives new connections to. The one other listener on the port, in
// the process being replaced, then receives no new connection: it can serve
// what is already queued (see WaitDrained) and close without resetting any.
//
// The group must hold exactly two listeners, the old one and ln, which
// joined last, and none may join or leave until the old one has closed.
// ln must be a plain TCP listener, not MPTCP: Go 1.24+ listens with MPTCP by
// default, so set net.ListenConfig.SetMultipathTCP(false) in the Config.
//
// On Linux (4.5+) it attaches to the group a classic BPF program
// (SO_ATTACH_REUSEPORT_CBPF, no privilege needed) that always selects the
// newest member. Elsewhere it returns an error wrapping
// errors.ErrUnsupported. Call Release once the old listener has closed.
func TakeOver(ln net.Listener) (*Takeover, error) {
	tl, err := tcpListener("takeover", ln)
	if err != nil {
		return nil, err
	}
	migrates, err := MigratesQueue()
	if err != nil {
		return nil, opError("takeover", "tcp", tl.Addr().String(), err)
	}
	if err := takeOver(tl); err != nil {
		return nil, opError("takeover", "tcp", tl.Addr().String(), err)
	}
	return &Takeover{Migrates: migrates, ln: tl}, nil
}

// Release lets the kernel spread new connections across the port's group
// again, by its hash. Call it once the old listener has closed; until then
// the old listener could receive connections again. The listener itself
// stays open.
func (t *Takeover) Release() error {
	if err := release(t.ln); err != nil {
		return opError("release", "tcp", t.ln.Addr().String(), err)
	}
	return nil
}

// WaitDrained returns nil once the accept queue of ln, a listener that
// another has taken the port over from with TakeOver, has stayed empty for
// quiet, so that closing ln then resets no connection. The caller keeps
// accepting from ln meanwhile (http.Server.Serve does), then closes ln (or
// calls http.Server.Shutdown). It returns ctx.Err() if ctx ends first.
//
// A connection whose handshake the old listener answered just before the
// takeover lands in its queue one round trip later, so quiet must exceed
// the round-trip time of the slowest client. The residual risk: a
// handshake whose final ACK reaches the kernel only after ln closed (a
// SYN-ACK or ACK lost and retransmitted) is reset, unless Migrates. On
// Linux the queue length is read with TCP_INFO; elsewhere WaitDrained
// returns an error wrapping errors.ErrUnsupported.
func WaitDrained(ctx context.Context, ln net.Listener, quiet time.Duration) error {
	tl, err := tcpListener("drain", ln)
	if err != nil {
		return err
	}
	if quiet <= 0 {
		return opError("drain", "tcp", tl.Addr().String(), fmt.Errorf("%squiet period %v: want more than 0", errPrefix, quiet))
	}
	// Poll often enough that a queue filled and emptied between two polls
	// is unlikely to go unseen, but without spinning.
	interval := min(max(quiet/20, 100*time.Microsecond), 10*time.Millisecond)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	emptySince := time.Now()
	for {
		n, err := queueLen(tl)
		if err != nil {
			return opError("drain", "tcp", tl.Addr().String(), err)
		}
		now := time.Now()
		if n > 0 {
			emptySince = now
		} else if now.Sub(emptySince) >= quiet {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// MigratesQueue reports whether the kernel hands the connections still
// queued on a closing TCP listener to another listener of its group,
// instead of resetting them: on Linux 5.14+, whether the sysctl
// net.ipv4.tcp_migrate_req of the current network namespace is 1. It
// returns false, and no error, on older kernels and other OSes.
func MigratesQueue() (bool, error) { return migratesQueue() }

// tcpListener returns ln as a *net.TCPListener.
func tcpListener(op string, ln net.Listener) (*net.TCPListener, error) {
	tl, ok := ln.(*net.TCPListener)
	if !ok || tl == nil {
		return nil, opError(op, "tcp", "", fmt.Errorf("%sa handover needs a *net.TCPListener, not %T", errPrefix, ln))
	}
	return tl, nil
}

// errMPTCP is the error for an MPTCP listener, whose group the kernel does
// not let a program steer.
var errMPTCP = fmt.Errorf("%sthe listener is MPTCP, which a handover does not support (the kernel refuses SO_ATTACH_REUSEPORT_CBPF on it); listen with net.ListenConfig.SetMultipathTCP(false): %w", errPrefix, errors.ErrUnsupported)
