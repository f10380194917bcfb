package reuse

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Handover takes a local address over from the process(es) serving it, and
// later hands it on: every process of a server that restarts without loss
// makes one. The zero Handover is ready to use. A Handover serves one
// TakeOver; its methods may be called from several goroutines.
//
// UDP sockets are handed over like listeners: new datagrams go to the new
// sockets by a hash of their source, and the old ones read what they hold.
//
// What a handover cannot save, each rare:
//   - with net.ipv4.tcp_migrate_req=0, a handshake that the old listener
//     answered before the takeover and whose last ACK arrives later than
//     Quiet (lost and sent again) is reset;
//   - where every socket given to TakeOver is MPTCP, the few SYNs that the
//     kernel's hash gives the short-lived plain-TCP member (before the
//     program is attached, or after it is removed) are dropped, and the
//     clients send them again a second later;
//   - while the old sockets close, new connections wait in one new socket of
//     each kind, whose queue must hold them that long.
type Handover struct {
	// Slot names this process's place in a group of worker processes
	// sharing the address: a new process takes over only from the process
	// holding the same Slot, while the other workers, old and new, go on
	// sharing the load. "" (a server of one process, with one listener or a
	// group of them) takes over from every process serving the address.
	Slot string

	// Quiet is how long the old process's queues must stay empty before it
	// is told it was replaced; zero means 250 ms. A connection whose
	// handshake the old listener answered just before the takeover lands in
	// its queue one round trip later, so Quiet must exceed the round-trip
	// time of the slowest client: 250 ms covers nearly every path on the
	// internet (a geostationary satellite hop needs more) and adds only that
	// much to a restart.
	Quiet time.Duration

	// Steering, if set, is the steering of a UDP group whose members issue
	// connection IDs that name their member and generation (QUICSteering
	// with QUICConnectionIDs: the byte after the member's names the
	// generation). The handover then keeps it through the restart, instead
	// of spreading the datagrams by a hash: the byte at Offset of a socket
	// given to TakeOver names it (socks[i] is member i), its Generation is
	// the old process's plus one, and until the old members are gone a
	// datagram of the old generation reaches the old member it names, one
	// of the new generation the new member it names, and every other one
	// (a new handshake: a datagram with a bit of HashIf set, or of no
	// generation serving) one of the new members, by its source port. The
	// old process keeps its live connections (see Replaced) and closes its
	// members when they ended, from the last one down: each close then
	// moves the new member of the same number into the freed place, the
	// Handover attaches its program again (within milliseconds; meanwhile
	// the moved member's datagrams go by the hash, and QUIC sends them
	// again), and once the old members are gone the Steering alone steers
	// the group. A process that nobody serves steers the group by
	// Steering, as Steer does. It needs UDP sockets, in no Slot.
	//
	// With a Steering, TakeOver returns once new handshakes reach socks,
	// and the Handover follows the old members' leaves in the background
	// until they are gone or Close; a successor waits until then.
	Steering *Steering

	mu       sync.Mutex
	started  bool          // TakeOver was called
	taken    bool          // TakeOver succeeded
	gen      int           // the generation, once taken
	replaced chan struct{} // closed once a successor took over and the queues stayed quiet
	closing  chan struct{} // closed by Close
	done     chan struct{} // closed when the background work ended
}

// defaultQuiet is the quiet period of a Handover whose Quiet is zero.
const defaultQuiet = 250 * time.Millisecond

// TakeOver makes socks - the listeners (net.Listener) or datagram sockets
// (net.PacketConn) that this process has just opened under Share on one
// address - the servers of that address. If a process of the same user
// serves it (in h.Slot), the kernel gives new connections or datagrams to
// socks only (never to the old process's sockets), and TakeOver returns once
// the old process has drained its queues and let go of its sockets (closed
// them, or exited). If nobody serves it, it returns at once. Either way, h
// then waits for a successor (see Replaced). Serving socks may start before
// or after TakeOver; connections that arrive meanwhile wait in socks' queues.
//
// The old process must go on serving (accepting, reading) until Replaced:
// the new one finds where the old sockets sit in the port's group (the
// kernel reorders it when a member leaves) with probes, a connection that
// the old process accepts (a server that closes a new connection before
// reading from it may hide it: TakeOver then fails, and the old process
// serves on) or an empty datagram that its sockets drop; a wrong guess
// costs another member a probe, a connection that resets at once or an
// empty datagram.
//
// The two processes meet in the network namespace they share, whatever
// else each sees privately (its /tmp, a mount namespace): on Linux, at an
// abstract Unix socket name that nobody can predict, found by listing the
// namespace's sockets with their owners (unix_diag, Linux 5.3+); each
// trusts only sockets and peers (SO_PEERCRED) of its own user, so that
// another user can neither take the meeting place first nor hold or flood
// it. Only one successor at a time takes over from a process: a second one
// waits its turn, then takes over from the first.
//
// Each step of the exchange waits 10 s at most for the other process: a
// successor that goes silent or breaks the protocol is dropped and the old
// process serves on, by the kernel's hash again. If the old process dies
// during the handover, TakeOver returns nil once its sockets are gone; if
// the new one dies, the old one serves on as before.
//
// The point of no return is the new process's answer to the old one's
// word that its queues stayed empty for its Quiet: the old process is then
// told it was replaced (Replaced). If ctx ends before, TakeOver gives the
// takeover up and returns ctx's error; after, TakeOver returns nil, and
// the rest (waiting for the old sockets to go) goes on in the background.
//
// When TakeOver fails, socks already serve beside the old process's (the
// kernel spreads new connections over both): the process must not exit,
// which would drop what their queues hold. It serves on, and may try again
// with a new Handover.
//
// A handover needs Linux 5.3+ with unix_diag (CONFIG_UNIX_DIAG, for the
// meeting place above; TakeOver says so where it is missing), and steers
// the group with a classic BPF program attached with
// SO_ATTACH_REUSEPORT_CBPF (no privilege needed; MPTCP listeners, Go's
// default since 1.24, are steered through a short-lived plain-TCP member of
// their group, which drops every SYN it is given by IP_MINTTL, also
// without privilege). Elsewhere TakeOver returns an error wrapping
// [errors.ErrUnsupported]; the fallback there is to start the new process,
// then stop the old one, which loses what its queues held (on Linux 5.14+
// without steering, net.ipv4.tcp_migrate_req=1 hands a closing listener's
// queue to the other members instead).
//
// A nil ctx is an error, as in every function of the package that takes
// one. Errors are *[net.OpError] with Op "takeover".
func (h *Handover) TakeOver(ctx context.Context, socks ...any) error {
	switch {
	case h == nil:
		return edgeError("takeover", "", "", errors.New("TakeOver on a nil *Handover"))
	case ctx == nil:
		return edgeError("takeover", "", "", errNilContext)
	}
	h.mu.Lock()
	if h.started {
		h.mu.Unlock()
		return edgeError("takeover", "", "", errors.New("this Handover has already taken over: make one Handover per TakeOver"))
	}
	h.started = true
	h.init()
	h.mu.Unlock()
	g, err := newSockGroup(socks)
	if err != nil {
		h.fail()
		return edgeError("takeover", "", "", err)
	}
	if err := h.takeOverGroup(ctx, g); err != nil {
		h.fail()
		return edgeError("takeover", g.network, g.address, err)
	}
	return nil
}

// takeOverGroup is TakeOver on the checked sockets g; its errors are bare.
func (h *Handover) takeOverGroup(ctx context.Context, g *sockGroup) error {
	quiet := h.Quiet
	switch {
	case quiet == 0:
		quiet = defaultQuiet
	case quiet < 0:
		return fmt.Errorf("negative Quiet %v", quiet)
	}
	if err := h.checkSteering(g); err != nil {
		return err
	}
	// Close during TakeOver gives up the takeover.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-h.closing:
			cancel()
		case <-ctx.Done():
		}
	}()
	st, err := takeOver(ctx, g, h.Slot, quiet, h.Steering)
	if err != nil {
		return err
	}
	h.mu.Lock()
	h.gen, h.taken = st.generation(), true
	h.mu.Unlock()
	go func() {
		defer close(h.done)
		st.serve(h.replaced, h.closing)
	}()
	return nil
}

// checkSteering returns an error naming what keeps h.Steering from
// steering g, if anything.
func (h *Handover) checkSteering(g *sockGroup) error {
	switch {
	case h.Steering == nil:
		return nil
	case g.network != "udp":
		return errors.New("a Handover's Steering needs UDP sockets (from ListenPacket or ListenPacketGroup), not listeners")
	case h.Slot != "":
		return fmt.Errorf("a Handover's Steering needs the whole group in one process: Slot %q with Steering", h.Slot)
	case len(g.socks) > maxMembers:
		return fmt.Errorf("a Handover's Steering names %d members at most by one byte, not %d", maxMembers, len(g.socks))
	}
	// The offset is checked for the sockets' family, as Steer checks it.
	host, _, _ := net.SplitHostPort(g.address)
	return h.Steering.checkFor(strings.Contains(host, ":"))
}

// maxMembers is the most members that a byte names.
const maxMembers = 256

// Generation returns the generation of the connection IDs that this
// process's members issue under h.Steering (QUICConnectionIDs.Generation):
// 0 for a process that served the address first, the old process's plus
// one (after 255, 0) for one that took it over. It is valid once TakeOver
// returned nil; before, it returns -1.
func (h *Handover) Generation() int {
	if h == nil {
		return -1
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.taken {
		return -1
	}
	return h.gen
}

// init makes the channels; h.mu is held.
func (h *Handover) init() {
	if h.replaced == nil {
		h.replaced = make(chan struct{})
		h.closing = make(chan struct{})
		h.done = make(chan struct{})
	}
}

// fail ends a Handover whose TakeOver failed: nothing runs in the background.
func (h *Handover) fail() { close(h.done) }

// Replaced is closed once a successor has taken the address over from h and
// h's sockets' queues have stayed empty for Quiet: the process then stops
// serving (http.Server.Shutdown, closing its sockets) and exits, or calls
// Close. A Handover that has not taken over is never replaced.
//
// With a Steering, Replaced is closed as soon as no new handshake reaches
// h's sockets; the datagrams of h's live connections still do. The process
// then stops accepting (quic-go: closes its Listener, not its Transports),
// serves its live connections until they end or a deadline of its own
// (quic-go: each Conn's Context is done), closes its sockets from the last
// member down, and calls Close.
func (h *Handover) Replaced() <-chan struct{} {
	if h == nil {
		return nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.init()
	return h.replaced
}

// Close lets the successor know this process let go of its sockets; it also
// stops waiting for a successor. Exiting the process does the same. Close
// during TakeOver gives the takeover up; after a failed TakeOver, or without
// one, it does nothing.
func (h *Handover) Close() error {
	if h == nil {
		return nil
	}
	h.mu.Lock()
	h.init()
	select {
	case <-h.closing:
	default:
		close(h.closing)
	}
	started := h.started
	h.mu.Unlock()
	if started {
		<-h.done
	}
	return nil
}

// sockGroup is the sockets given to TakeOver, checked: one kind, one address.
type sockGroup struct {
	network string // "tcp" or "udp"
	address string // the local address they share
	socks   []sockConn
}

// sockConn is one socket of a sockGroup: a *net.TCPListener or *net.UDPConn.
type sockConn interface {
	SyscallConn() (syscall.RawConn, error)
}

// newSockGroup checks socks: each a *net.TCPListener or a *net.UDPConn, all
// of one kind and bound to one address.
func newSockGroup(socks []any) (*sockGroup, error) {
	if len(socks) == 0 {
		return nil, errors.New("TakeOver needs at least one socket")
	}
	g := new(sockGroup)
	for i, s := range socks {
		var network string
		var addr net.Addr
		var sc sockConn
		switch s := s.(type) {
		case *net.TCPListener:
			if s != nil {
				network, addr, sc = "tcp", s.Addr(), s
			}
		case *net.UDPConn:
			if s != nil {
				network, addr, sc = "udp", s.LocalAddr(), s
			}
		case *FlowListener: // its unconnected socket; the flows stay
			if s != nil && s.conn != nil {
				network, addr, sc = "udp", s.Addr(), s.conn
			}
		default:
			return nil, fmt.Errorf("socket %d of %d is a %T: a handover takes *net.TCPListener (from Listen), *net.UDPConn (from ListenPacket) or *FlowListener", i+1, len(socks), s)
		}
		if sc == nil {
			return nil, fmt.Errorf("socket %d of %d is a nil %T", i+1, len(socks), s)
		}
		if i == 0 {
			g.network, g.address = network, addr.String()
		} else if network != g.network || addr.String() != g.address {
			return nil, fmt.Errorf("socket %d of %d is on %s %s, socket 1 on %s %s: a handover takes the sockets of one address", i+1, len(socks), network, addr, g.network, g.address)
		}
		g.socks = append(g.socks, sc)
	}
	return g, nil
}
