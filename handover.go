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
// A restart, in order:
//  1. The new process opens its sockets (under Share), serves them, and
//     calls TakeOver: new connections (or datagrams) go to its sockets
//     only, and the old process serves what was already on its way to it.
//  2. The point of no return: the old process is told it was replaced
//     (Replaced). It stops as it would on SIGTERM (reusehttp.Serving.Stop
//     for a net/http server) and calls Close, or exits.
//  3. TakeOver returns once the old process let go of its sockets;
//     OldExited is closed once it exited: the end of the restart.
//
// UDP sockets are handed over like listeners: new datagrams go to the new
// sockets by a hash of their source, and the old ones read what they hold.
//
// What a handover cannot save, each rare:
//   - with net.ipv4.tcp_migrate_req=0, a handshake that an old listener
//     answered before the steering and whose last ACK arrives later than
//     Quiet (lost and sent again) is reset;
//   - where every socket given to TakeOver is MPTCP, the few SYNs that the
//     kernel's hash gives the short-lived plain-TCP member (before the
//     program is attached, or after it is removed) are dropped, and the
//     clients send them again a second later;
//   - while the old sockets close (milliseconds), new connections wait in
//     fewer of the new sockets (one, where the old process had as many),
//     whose queue must hold them that long.
type Handover struct {
	// Slot names this process's place in a group of worker processes
	// sharing the address: a new process takes over only from the process
	// holding the same Slot, while the other workers, old and new, go on
	// sharing the load. "" (a server of one process, with one listener or a
	// group of them) takes over from every process serving the address.
	Slot string

	// Quiet bounds how long the old process waits, once new connections
	// go to the new one, for the handshakes still in flight to its
	// listeners (one round trip each): zero means 250 ms, which covers
	// nearly every path on the internet. A restart waits only for what is
	// in flight: on one host, nothing.
	Quiet time.Duration

	// Steering, if set, steers a UDP group whose members issue connection
	// IDs that name their member and generation (QUICSteering with
	// QUICConnectionIDs: the byte after the member's names the generation).
	// The handover keeps it through the restart: the byte at Offset of a
	// socket given to TakeOver names it (socks[i] is member i), and its
	// Generation is the old process's plus one. It needs UDP sockets, in no
	// Slot.
	//
	// Until the old members are gone, a datagram of the old generation
	// reaches the old member it names, one of the new generation the new
	// member it names, and any other (a new handshake: a datagram with a
	// bit of HashIf set, or of no generation serving) one of the new
	// members, by its source port.
	//
	// The old process keeps its live connections (see Replaced), and closes
	// its members when they ended, from the last one down. Each close moves
	// the new member of the same number into the freed place; the Handover
	// then attaches its program again, within milliseconds (meanwhile the
	// moved member's datagrams go by the hash, and QUIC sends them again).
	// Once the old members are gone, the Steering alone steers the group;
	// a process that nobody serves steers it so from the start, as Steer
	// does.
	//
	// TakeOver then returns once new handshakes reach socks, and the
	// Handover follows the old members' leaves in the background, until
	// they are gone or Close; a successor waits until then.
	Steering *Steering

	mu       sync.Mutex
	started  bool          // TakeOver was called
	taken    bool          // TakeOver succeeded
	gen      int           // the generation, once taken
	replaced chan struct{} // closed once a successor passed the point of no return
	closing  chan struct{} // closed by Close
	done     chan struct{} // closed when the background work ended
	exited   chan struct{} // closed once the old process exited
}

// defaultQuiet is the quiet period of a Handover whose Quiet is zero.
const defaultQuiet = 250 * time.Millisecond

// TakeOver makes socks - the listeners (net.Listener) or datagram sockets
// (net.PacketConn) that this process has just opened under Share on one
// address - the servers of that address. If a process of the same user
// serves it (in h.Slot), the kernel gives new connections or datagrams to
// socks only, never to the old process's sockets, and TakeOver returns once
// the old process has let go of them (closed them, or exited); if nobody
// serves it, at once. Either way h then waits for a successor (Replaced).
// Serve socks before or after TakeOver: what arrives meanwhile waits in
// their queues.
//
// The old process serves until Replaced. To find where its sockets sit in
// the kernel's group (which reorders it when a member leaves), the new one
// probes the group: a connection to each place (during which the old
// listeners announce a lower MSS, so that nobody need accept a probe; one
// that reaches another process's listener resets at once) or an empty
// datagram (which both processes' sockets drop; another process's socket
// reads it).
//
// The two processes meet in the network namespace they share, whatever
// else each sees privately (its /tmp, a mount namespace): at an abstract
// Unix socket name that nobody can predict, found by listing the
// namespace's sockets with their owners (unix_diag, Linux 5.3+); each
// trusts only sockets and peers (SO_PEERCRED) of its own user, so that
// another user can neither take the meeting place first nor hold or flood
// it. One successor at a time takes over from a process; a second one
// waits its turn, then takes over from the first.
//
// Each step waits 10 s at most for the other process: a successor that
// goes silent or breaks the protocol is dropped and the old process serves
// on, by the kernel's hash again. If the old process dies during the
// handover, TakeOver returns nil once its sockets are gone; if the new one
// dies, the old one serves on as before.
//
// Cancelling ctx before the point of no return (the old process is told
// it was replaced) gives the takeover up: TakeOver returns ctx's error and
// the old process serves on. After it, TakeOver returns nil whatever ctx
// does, and waits for the old sockets in the background.
//
// When TakeOver fails, socks already serve beside the old process's (the
// kernel spreads new connections over both): the process must not exit,
// which would drop what their queues hold. It serves on, and may try again
// with a new Handover.
//
// A handover needs Linux 5.3+ with unix_diag (CONFIG_UNIX_DIAG; TakeOver
// says so where it is missing), and steers the group with a classic BPF
// program (SO_ATTACH_REUSEPORT_CBPF, no privilege needed; MPTCP listeners,
// Go's default since 1.24, are steered through a short-lived plain-TCP
// member of their group, which drops every SYN it is given by IP_MINTTL,
// also without privilege). Elsewhere TakeOver returns an error wrapping
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
	go func() {
		if st.waitOldExit(h.closing) {
			close(h.exited)
		}
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
		h.exited = make(chan struct{})
	}
}

// fail ends a Handover whose TakeOver failed: nothing runs in the background.
func (h *Handover) fail() { close(h.done) }

// Replaced is closed once a successor has taken the address over from h:
// nothing new reaches h's sockets, and what was on its way reached them.
// The process then stops as it would on SIGTERM - closes its sockets,
// answers what it accepted (for a net/http server, reusehttp's
// Serving.Stop: http.Server.Shutdown alone, since Go 1.25, drops a
// connection whose first request it has not read) - and calls Close, or
// exits. A Handover that has
// not taken over is never replaced; a server that nobody replaces stops on
// SIGTERM the same way.
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

// OldExited is closed once the process that h took over from has exited:
// the end of a restart, which a supervisor rolling through worker slots
// waits for before it starts the next one. TakeOver returns earlier, once
// the old process let go of its sockets (it may still finish the
// connections it accepted). Where nobody served the address, OldExited is
// closed when TakeOver returns; where the old process is this one (two
// Handovers in one process), once it let go. Close stops the wait.
func (h *Handover) OldExited() <-chan struct{} {
	if h == nil {
		return nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.init()
	return h.exited
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
