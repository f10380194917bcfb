package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/sockreuse/reuse"
)

// generation is one generation of a restarting QUIC server: 4 quic-go
// transports on one UDP port, under a reuse.Handover that keeps the
// steering by connection ID through the restart. A real server runs one
// generation per process; here both run in one process, which the kernel
// cannot tell apart from two.
type generation struct {
	ho         *reuse.Handover
	conns      []net.PacketConn
	transports []*quic.Transport
	listeners  []*quic.Listener
	accepted   atomic.Int64
	accepting  sync.WaitGroup // the accept loops
	live       sync.WaitGroup // the connections served
}

// startGeneration opens 4 sockets on addr, takes the address over from the
// generation serving it, if any, and serves an echo on them with connection
// IDs that name the member and the generation.
func startGeneration(ctx context.Context, addr string, tlsConf *tls.Config) (*generation, error) {
	conns, err := reuse.ListenPacketGroup("udp4", addr, members)
	if err != nil {
		return nil, err
	}
	s := reuse.QUICSteering()
	g := &generation{ho: &reuse.Handover{Steering: &s}, conns: conns}
	socks := make([]any, len(conns))
	for i, c := range conns {
		socks[i] = c
	}
	// TakeOver returns once new handshakes come here; meanwhile they wait
	// in the sockets' queues.
	if err := g.ho.TakeOver(ctx, socks...); err != nil {
		for _, c := range conns {
			c.Close()
		}
		return nil, err
	}
	for i, c := range conns {
		tr := &quic.Transport{
			Conn:                  c.(*net.UDPConn),
			ConnectionIDGenerator: connIDs{reuse.QUICConnectionIDs{Member: i, Generation: g.ho.Generation()}},
		}
		g.transports = append(g.transports, tr)
		ln, err := tr.Listen(tlsConf, &quic.Config{})
		if err != nil {
			g.close(0)
			return nil, err
		}
		g.listeners = append(g.listeners, ln)
		g.accepting.Add(1)
		go func() {
			defer g.accepting.Done()
			for {
				conn, err := ln.Accept(context.Background())
				if err != nil {
					return // closed
				}
				g.accepted.Add(1)
				g.live.Add(1)
				go func() {
					defer g.live.Done()
					echo(conn)
				}()
			}
		}()
	}
	return g, nil
}

// stopAccepting closes g's listeners; its connections go on.
func (g *generation) stopAccepting() {
	for _, ln := range g.listeners {
		ln.Close()
	}
	g.accepting.Wait()
}

// close waits up to drain for g's connections to end, closes what is left
// of them, then g's sockets from the last member down (each close moves
// the new member of the same number into the freed place), and lets its
// Handover go.
func (g *generation) close(drain time.Duration) {
	g.stopAccepting()
	done := make(chan struct{})
	go func() {
		g.live.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(drain):
	}
	for _, tr := range g.transports {
		tr.Close() // closes its connections, not its socket
	}
	for i := len(g.conns) - 1; i >= 0; i-- {
		g.conns[i].Close()
	}
	g.ho.Close()
}

// restartFigures are the counts of a restart under load.
type restartFigures struct {
	n                int   // clients of each generation
	keptOld          int   // old connections that echoed and migrated during the handover
	acceptedOld      int64 // handshakes that the old generation accepted after it was replaced
	acceptedNew      int64 // handshakes that the new generation accepted
	keptNew          int   // new connections that echoed and migrated after the old generation closed
	oldGen, newGen   int
	handoverDuration time.Duration
}

// restart serves a generation, connects n clients, starts a new
// generation that takes the address over, and then checks that the old
// connections keep echoing and migrating, that n new clients land on the
// new generation only, and that after the old generation closed the new
// connections keep working and migrating.
func restart(n int, timeout time.Duration) (restartFigures, error) {
	f := restartFigures{n: n}
	ctx, cancel := context.WithTimeout(context.Background(), 4*timeout)
	defer cancel()
	tlsConf, err := selfSigned()
	if err != nil {
		return f, err
	}
	old, err := startGeneration(ctx, "127.0.0.1:0", tlsConf)
	if err != nil {
		return f, err
	}
	defer old.close(0)
	addr := old.conns[0].LocalAddr().String()
	raddr, err := net.ResolveUDPAddr("udp4", addr)
	if err != nil {
		return f, err
	}
	handshakes := make(chan struct{}, 16)
	oldClients, err := dialAll(n, raddr, timeout, handshakes)
	defer closeAll(oldClients)
	if err != nil {
		return f, err
	}

	start := time.Now()
	next, err := startGeneration(ctx, addr, tlsConf)
	if err != nil {
		return f, err
	}
	defer next.close(0)
	select {
	case <-old.ho.Replaced():
	case <-ctx.Done():
		return f, fmt.Errorf("the old generation was not replaced: %w", ctx.Err())
	}
	f.handoverDuration = time.Since(start)
	f.oldGen, f.newGen = old.ho.Generation(), next.ho.Generation()
	old.stopAccepting()
	acceptedBefore := old.accepted.Load()

	// The old connections echo and migrate while new clients connect.
	var kept atomic.Int64
	var wg sync.WaitGroup
	for _, c := range oldClients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if roundTrip(c.s, "during", timeout) == nil && c.migrate(timeout) == nil {
				kept.Add(1)
			}
		}()
	}
	newClients, err := dialAll(n, raddr, timeout, handshakes)
	defer closeAll(newClients)
	wg.Wait()
	if err != nil {
		return f, err
	}
	f.keptOld = int(kept.Load())
	f.acceptedOld = old.accepted.Load() - acceptedBefore
	f.acceptedNew = next.accepted.Load()

	// The old connections end; the old generation closes.
	closeAll(oldClients)
	oldClients = nil
	old.close(timeout)
	kept.Store(0)
	for _, c := range newClients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if roundTrip(c.s, "later", timeout) == nil && c.migrate(timeout) == nil {
				kept.Add(1)
			}
		}()
	}
	wg.Wait()
	f.keptNew = int(kept.Load())
	return f, nil
}

// dialAll connects n clients to raddr, each echoing once.
func dialAll(n int, raddr *net.UDPAddr, timeout time.Duration, handshakes chan struct{}) ([]*echoClient, error) {
	clients := make([]*echoClient, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			clients[i], errs[i] = dial(raddr, timeout, handshakes)
		}()
	}
	wg.Wait()
	var ok []*echoClient
	for _, c := range clients {
		if c != nil {
			ok = append(ok, c)
		}
	}
	return ok, errors.Join(errs...)
}

func closeAll(clients []*echoClient) {
	for _, c := range clients {
		c.close()
	}
}

func (f restartFigures) String() string {
	return fmt.Sprintf("restart of 4 transports (generation %d → %d, taken over in %v, one process):\n"+
		"  old connections that echoed and migrated during the handover: %d of %d\n"+
		"  new connections accepted by the new generation: %d of %d (by the old one after it was replaced: %d)\n"+
		"  new connections that echoed and migrated after the old generation closed: %d of %d",
		f.oldGen, f.newGen, f.handoverDuration.Round(time.Millisecond), f.keptOld, f.n, f.acceptedNew, f.n, f.acceptedOld, f.keptNew, f.n)
}

// ok reports whether every connection was kept and every new one landed
// on the new generation.
func (f restartFigures) ok() bool {
	return f.keptOld == f.n && f.acceptedOld == 0 && f.acceptedNew == int64(f.n) && f.keptNew == f.n
}
