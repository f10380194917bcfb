package reuse

import (
	"context"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
)

// This file is the old process's side of a handover: after TakeOver, it
// waits for a successor at the rendezvous and hands the address on. Each
// step waits answerTimeout at most for the successor; one that breaks the
// protocol, goes silent or dies is hung up on, the group's hash is restored,
// and this process serves on until the next successor.

// waitingPeers bounds the successors that wait their turn while one takes
// over; more are hung up on, and try again.
const waitingPeers = 16

// serve waits for successors at the rendezvous and hands the address over
// to one, until Close.
func (st *handoverState) serve(replaced, closing chan struct{}) {
	if tag, err := st.tagGeneration(); err == nil {
		defer tag.Close()
	}
	if st.follow != nil {
		// A successor waits until this generation alone serves.
		st.follow(closing)
	}
	peers := make(chan *net.UnixConn, waitingPeers)
	go acceptPeers(st.rv, peers)
	defer func() {
		st.rv.Close()
		for conn := range peers {
			conn.Close()
		}
	}()
	for {
		select {
		case conn := <-peers:
			done := st.handOver(conn, replaced, closing)
			conn.Close()
			if done {
				return
			}
		case <-closing:
			return
		}
	}
}

// handOver runs the old process's side of a handover to the process at the
// other end of conn. It returns true when this process let go (Close), false
// when the successor went away or broke the protocol first and the process
// serves on.
func (st *handoverState) handOver(conn *net.UnixConn, replaced, closing chan struct{}) (done bool) {
	if m, err := readMessage(context.Background(), conn); err != nil || m != msgTakeOver {
		return false
	}
	if st.sendSockets(conn) != nil {
		return false
	}
	p := &predecessor{st: st, conn: conn, closing: closing}
	defer p.readMessages()()
	defer st.unprobe()
	s := p.untilSteered()
	if s == next && st.steering == nil {
		// With a Steering, no new handshake reaches this process any
		// more, and its connections' datagrams go on reaching it.
		s = p.drain()
	}
	if s == next {
		s = p.untilGo()
	}
	switch s {
	case abandoned:
		st.recover()
		return false
	case closed:
		p.say(msgClosed)
		return true
	}
	close(replaced)
	select {
	case <-p.msgs:
		// The successor died after this process was replaced; it serves
		// until Close, by the kernel's hash again.
		st.recover()
		<-closing
	case <-closing:
		p.say(msgClosed)
	}
	return true
}

// predecessor is the old process's side of one handover.
type predecessor struct {
	st        *handoverState
	conn      *net.UnixConn
	closing   chan struct{}
	msgs      chan string // the successor's messages; "" once it went away
	successor []uint64    // its sockets, from "steered"
}

// A step of a handover ends so.
type step int

const (
	next      step = iota // go on to the next step
	closed                // Close: the process let go of its sockets
	abandoned             // the successor went away, spoke out of turn or went silent
)

// readMessages reads the successor's messages into p.msgs, until the
// function it returns is called.
func (p *predecessor) readMessages() (stop func()) {
	p.msgs = make(chan string)
	done := make(chan struct{})
	go func() {
		b := make([]byte, maxMessage)
		for {
			n, err := p.conn.Read(b)
			m := string(b[:n])
			if err != nil {
				m = ""
			}
			select {
			case p.msgs <- m:
			case <-done:
				return
			}
			if err != nil {
				return
			}
		}
	}()
	return func() { close(done) }
}

func (p *predecessor) say(m string) { _ = sendMessage(p.conn, m) }

// untilSteered answers the successor's probes, each within answerTimeout of
// the last message, until it says the group is steered.
func (p *predecessor) untilSteered() step {
	st := p.st
	for {
		select {
		case m := <-p.msgs:
			port, isPort := strings.CutPrefix(m, msgProbe+" ")
			var err error
			switch {
			case m == msgProbe:
				// The successor looks for this process's listeners in
				// the group (see locateListeners).
				var mss int
				if mss, err = st.markListeners(); err == nil {
					p.say(msgReady + " " + strconv.Itoa(mss))
					continue
				}
			case isPort:
				n, perr := strconv.ParseUint(port, 10, 16)
				if err = perr; err == nil {
					err = st.filterProbes(int(n))
				}
			case st.checkSteered(m) != nil:
				return abandoned
			default:
				// No more probes: a client that got a probe's port since
				// must not be dropped.
				st.unprobe()
				p.successor = parseInodes(strings.TrimPrefix(m, msgSteered+" "))
				return next
			}
			if err != nil {
				p.say("error " + err.Error())
			} else {
				p.say(msgReady)
			}
		case <-time.After(answerTimeout):
			return abandoned
		case <-p.closing:
			return closed
		}
	}
}

// drain waits, once the group is steered, until nothing more can reach
// this process's sockets: the listeners' queues are empty, and the
// handshakes that were in flight (which may land in them) are over or
// Quiet passed, unless the kernel hands them on (migratesHandshakes); a
// datagram socket's queue is empty (nothing is in flight to it once the
// program is attached). The handshakes are listed only where the
// listeners' references say that there may be some (unreferenced); where
// sock_diag cannot list them, it waits for Quiet.
func (p *predecessor) drain() step {
	st := p.st
	var inFlight map[netip.AddrPort]netip.AddrPort
	var err error
	if st.g.network == "tcp" && !st.migratesHandshakes() {
		if idle, _ := st.unreferenced(); !idle {
			inFlight, err = st.handshakes()
		}
	}
	deadline := time.Now().Add(st.quiet)
	tick := time.NewTicker(pollInterval / 2)
	defer tick.Stop()
	// A handshake that completes leaves the listing a moment before its
	// connection is in the queue: once one did, the queue is read again.
	recheck := len(inFlight) > 0
	for {
		q, qerr := st.queued()
		if qerr == nil && q == 0 {
			if err != nil || len(inFlight) > 0 {
				inFlight, err = st.stillInFlight(inFlight, err)
			}
			done := err == nil && len(inFlight) == 0 && !testHoldDrain
			if time.Now().After(deadline) || done && !recheck {
				return next
			}
			recheck = recheck && !done
		}
		select {
		case <-p.msgs:
			return abandoned
		case <-p.closing:
			return closed
		case <-tick.C:
		}
	}
}

// testHoldDrain, if set, makes drain last Quiet, as if a handshake stayed
// in flight.
var testHoldDrain bool

// untilGo says the queues are empty, and waits for the successor's "go"
// (the point of no return), within answerTimeout.
func (p *predecessor) untilGo() step {
	p.say(msgQuiet)
	select {
	case m := <-p.msgs:
		if m != msgGo || hungUp(p.conn) || !p.st.serving(p.successor) {
			return abandoned
		}
		return next
	case <-time.After(answerTimeout):
		return abandoned
	case <-p.closing:
		return closed
	}
}

// checkSteered checks the successor's "steered INODE...": its sockets, in
// the group and none of them this process's.
func (st *handoverState) checkSteered(m string) error {
	rest, ok := strings.CutPrefix(m, msgSteered+" ")
	inos := parseInodes(rest)
	if !ok || inos == nil {
		return protocolError(m, msgSteered+" INODE...")
	}
	if !st.serving(inos) {
		return protocolError(m, "steered, by sockets in the group")
	}
	return nil
}

// parseInodes reads inodes separated by spaces; nil if there are none or
// one is not a number.
func parseInodes(s string) []uint64 {
	var inos []uint64
	for _, f := range strings.Fields(s) {
		ino, err := strconv.ParseUint(f, 10, 64)
		if err != nil {
			return nil
		}
		inos = append(inos, ino)
	}
	return inos
}

// serving reports whether the sockets inos, none of them this process's,
// are all members of the group.
func (st *handoverState) serving(inos []uint64) bool {
	members, err := st.stableMembers()
	if err != nil {
		return false
	}
	for _, ino := range inos {
		if !slices.Contains(members, ino) || slices.ContainsFunc(st.socks, func(s sockInfo) bool { return s.ino == ino }) {
			return false
		}
	}
	return true
}

// recover detaches the program that a successor which died may have left.
func (st *handoverState) recover() {
	ctx, cancel := context.WithTimeout(context.Background(), answerTimeout)
	defer cancel()
	lock, err := st.lock(ctx)
	if err != nil {
		return
	}
	defer lock.Close()
	if st.steering != nil {
		_ = st.steerAlone()
		return
	}
	_ = st.detachAny()
}
