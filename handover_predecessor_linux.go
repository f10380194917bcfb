package reuse

import (
	"context"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
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
	msgs := make(chan string) // "" when the successor went away
	stopReading := make(chan struct{})
	defer close(stopReading)
	go func() {
		b := make([]byte, maxMessage)
		for {
			n, err := conn.Read(b)
			m := string(b[:n])
			if err != nil {
				m = ""
			}
			select {
			case msgs <- m:
			case <-stopReading:
				return
			}
			if err != nil {
				return
			}
		}
	}()
	say := func(m string) { _ = sendMessage(conn, m) }
	defer st.unfilter()
	// Until steered: probes, each within answerTimeout of the last message.
	var successor []uint64
	for successor == nil {
		select {
		case m := <-msgs:
			port, isProbe := strings.CutPrefix(m, msgProbe+" ")
			switch {
			case isProbe:
				// The successor looks for this process's members in the
				// group (see findSlots).
				if err := st.filterProbes(port); err != nil {
					say("error " + err.Error())
					continue
				}
				say(msgReady)
			case st.checkSteered(m) != nil:
				st.recover()
				return false
			default:
				// No more probes: a client that got the probes' port
				// since must not be dropped.
				st.unfilter()
				successor = parseInodes(strings.TrimPrefix(m, msgSteered+" "))
			}
		case <-time.After(answerTimeout):
			st.recover()
			return false
		case <-closing:
			say(msgClosed)
			return true
		}
	}
	// Steered: serve what the queues hold until they stay empty; with a
	// Steering, no new handshake reaches this process any more, and its
	// connections' datagrams go on reaching it.
	if st.steering == nil {
		switch st.drain(msgs, closing) {
		case drainClosed:
			say(msgClosed)
			return true
		case drainPeerGone:
			st.recover()
			return false
		}
	}
	// The successor must still be there, and say so: "go" (the point of no
	// return), within answerTimeout.
	say(msgQuiet)
	select {
	case m := <-msgs:
		if m != msgGo || hungUp(conn) || !st.serving(successor) {
			st.recover()
			return false
		}
	case <-time.After(answerTimeout):
		st.recover()
		return false
	case <-closing:
		say(msgClosed)
		return true
	}
	close(replaced)
	select {
	case <-msgs:
		// The successor died after this process was replaced; it serves
		// until Close, by the kernel's hash again.
		st.recover()
		<-closing
	case <-closing:
		say(msgClosed)
	}
	return true
}

// sendSockets tells the successor what it needs of this process: "sockets
// PID GENERATION QUIET INODE...", with the rendezvous socket attached.
func (st *handoverState) sendSockets(conn *net.UnixConn) error {
	msg := msgSockets + " " + strconv.Itoa(os.Getpid()) + " " + strconv.Itoa(st.gen) + " " + strconv.FormatInt(int64(st.quiet), 10)
	for _, s := range st.socks {
		msg += " " + strconv.FormatUint(s.ino, 10)
	}
	// The descriptor itself, not a File's duplicate: File may leave the
	// socket, shared with the successor, in blocking mode, where Close
	// would not end this process's Accept.
	rc, err := st.rv.SyscallConn()
	if err != nil {
		return err
	}
	_ = conn.SetWriteDeadline(time.Now().Add(answerTimeout))
	var werr error
	if err := rc.Control(func(fd uintptr) { _, _, werr = conn.WriteMsgUnix([]byte(msg), unix.UnixRights(int(fd)), nil) }); err != nil {
		return err
	}
	return werr
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

// The ends of drain.
const (
	drainQuiet    = iota // the queues stayed empty for Quiet
	drainClosed          // Close
	drainPeerGone        // the successor went away, or spoke out of turn
)

// drain waits until the sockets' queues stayed empty for st.quiet.
func (st *handoverState) drain(msgs <-chan string, closing chan struct{}) int {
	tick := time.NewTicker(min(max(st.quiet/20, 100*time.Microsecond), 10*time.Millisecond))
	defer tick.Stop()
	emptySince := time.Now()
	for {
		select {
		case <-msgs:
			return drainPeerGone
		case <-closing:
			return drainClosed
		case now := <-tick.C:
			q, err := st.queued()
			if err != nil || q > 0 {
				emptySince = now
				continue
			}
			if now.Sub(emptySince) >= st.quiet {
				return drainQuiet
			}
		}
	}
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
	_ = st.unsteer()
}
