package reuse

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// This file is the new process's side of a handover: it finds the process
// serving its slot, steers the group away from that process's sockets, and
// waits until they are gone. The old process's side is in
// handover_predecessor_linux.go.

func takeOver(ctx context.Context, g *sockGroup, slot string, quiet time.Duration, steering *Steering) (*handoverState, error) {
	st, err := inspect(g)
	if err != nil {
		return nil, err
	}
	st.quiet, st.slot, st.steering = quiet, slot, steering
	if !st.canAttach() {
		// MPTCP listeners are steered through a helper: fail before
		// meeting anyone where the kernel cannot make one.
		if err := st.checkHelper(); err != nil {
			return nil, err
		}
	}
	// The slot in hexadecimal: no slot's prefix starts another's.
	prefix := st.namePrefix("slot/" + hex.EncodeToString([]byte(slot)))
	for silent := 0; ; {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		names, err := namesAt(prefix)
		if err != nil {
			return nil, err
		}
		again := false
		if len(names) == 0 {
			again, err = st.serveFirst(prefix)
		} else {
			again, err = st.takeOverAt(ctx, names[0])
		}
		if errors.Is(err, errSilent) && !again && silent < silentTries-1 {
			// No answer to "takeover": the old process may be busy with
			// another successor (each of whose steps is bounded); ask
			// again, a few times.
			silent++
			again = true
		}
		if !again && err != nil {
			return nil, err
		}
		if !again {
			return st, nil
		}
		// The old process went away, or another successor is ahead.
		if err := backOff(ctx); err != nil {
			return nil, err
		}
	}
}

// serveFirst makes this process the first to serve the slot of prefix,
// where nobody serves it; again reports that another new one listens there
// too, by a hair.
func (st *handoverState) serveFirst(prefix string) (again bool, err error) {
	ln, err := listenRendezvous(prefix)
	if err != nil || ln == nil {
		return ln == nil && err == nil, err
	}
	if err := st.steerAlone(); err != nil {
		ln.Close()
		return false, err
	}
	st.rv = ln
	st.at = st.ownIndexes()
	st.markReleased()
	return false, nil
}

// takeOverAt takes over from the process listening at name; again reports
// that it went away, or is not listening yet.
func (st *handoverState) takeOverAt(ctx context.Context, name string) (again bool, err error) {
	conn, err := dialPeer(ctx, name)
	if errors.Is(err, unix.ECONNREFUSED) || errors.Is(err, unix.ENOENT) {
		return true, nil // not listening yet, or gone since the listing
	}
	if err != nil {
		return false, ctxErr(ctx, err)
	}
	return st.takeOverFrom(ctx, conn)
}

// silentTries is how many times a successor asks an old process that does
// not answer "takeover" (answerTimeout each) before TakeOver fails.
const silentTries = 3

// namesAt returns the names of this user's sockets under prefix: the
// prefix, then the 32 hexadecimal digits of freshName.
func namesAt(prefix string) ([]string, error) {
	names, err := abstractNames(prefix)
	if err != nil {
		return nil, fmt.Errorf("listing the sockets where a handover meets (Linux's unix_diag, NETLINK_SOCK_DIAG): %w", err)
	}
	ok := names[:0]
	for _, n := range names {
		if len(n) == len(prefix)+32 {
			ok = append(ok, n)
		}
	}
	return ok, nil
}

// takeOverFrom runs the new process's side of a handover with the process
// at the other end of conn, and closes conn (or leaves it to st.follow, or
// to the wait for the old sockets). again reports that that process went
// away before it answered: the caller starts over.
//
// The point of no return is this process's "go", its answer to the old
// process's "quiet" (nothing more can reach its sockets, after the
// steering): the old process then closes Replaced. Before it, an error or
// the end of ctx gives the takeover up (the old process serves on, by the
// hash again); after it, TakeOver succeeds, and if ctx ends before the old
// sockets are gone, the rest (waiting for them, restoring the hash) goes on
// in the background. The old process dying at any step is a success too,
// once its sockets are gone.
func (st *handoverState) takeOverFrom(ctx context.Context, conn *net.UnixConn) (again bool, err error) {
	stopCancel := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Now()) })
	defer stopCancel()
	s := &successor{st: st, ctx: ctx, conn: conn}
	if err := s.meet(); err != nil {
		conn.Close()
		return isGone(err), ctxErr(ctx, err)
	}
	// From here the rendezvous socket is shared: a successor racing this one
	// waits at it until one of the two processes accepts it.
	lock, err := st.lock(ctx)
	if err == nil && st.steering != nil {
		err = s.withSteering()
		lock.Close()
	} else if err == nil {
		err = s.withHash(lock)
	}
	if !s.handedOff {
		conn.Close()
	}
	if err != nil {
		s.old.rv.Close()
		return false, ctxErr(ctx, err)
	}
	st.rv = s.old.rv
	return false, nil
}

// successor is the new process's side of one handover, with the old
// process at the other end of conn.
type successor struct {
	st        *handoverState
	ctx       context.Context
	conn      *net.UnixConn
	old       oldSockets
	handedOff bool // conn belongs to what goes on after TakeOver
}

// meet asks the old process to hand over, and reads what it says of itself.
func (s *successor) meet() error {
	if err := sendMessage(s.conn, msgTakeOver); err != nil {
		return err
	}
	old, err := readSockets(s.ctx, s.conn)
	if err != nil {
		return err
	}
	s.old = old
	s.st.gen, s.st.oldPid = (old.gen+1)%maxMembers, old.pid
	return nil
}

// ask sends the old process a message and returns its answer.
func (s *successor) ask(msg string) (string, error) {
	if err := sendMessage(s.conn, msg); err != nil {
		return "", err
	}
	m, err := readMessage(s.ctx, s.conn)
	if err == nil && strings.HasPrefix(m, "error ") {
		err = fmt.Errorf("the old process: %s", m[len("error "):])
	}
	return m, err
}

// withSteering takes over under a Steering: the old members keep their
// connections' datagrams, and st.follow follows their leaves.
func (s *successor) withSteering() error {
	st, old := s.st, s.old
	if err := st.steerGenerations(s.conn, old.inos, old.gen, s.ask); err != nil {
		if !s.oldGone() {
			return err
		}
		st.markReleased()
		return st.steerAlone()
	}
	if err := s.agree(); err != nil && !s.oldGone() {
		st.follow = nil
		st.recoverSteering()
		return err
	}
	s.handedOff = true // st.follow's
	return nil
}

// withHash takes over without a Steering, holding lock (which it closes):
// it steers new connections to this process's sockets, agrees, and waits
// until the old sockets are gone (in the background once ctx ends), then
// lets the kernel's hash spread the load again.
func (s *successor) withHash(lock *os.File) error {
	st, old := s.st, s.old
	sg, err := st.steer(old.inos, old.at, s.ask)
	if err != nil || sg == nil { // an error, or no old member left
		lock.Close()
		if err != nil && !s.oldGone() {
			return err
		}
		ctx, cancel := context.WithTimeout(context.Background(), answerTimeout)
		defer cancel()
		if err := st.waitGone(ctx, old.inos); err != nil {
			return err
		}
		st.markReleased()
		return nil
	}
	if err := s.agree(); err != nil && !s.oldGone() {
		lock.Close()
		return errors.Join(err, sg.release())
	}
	// Past the point of no return: the old process goes.
	s.handedOff = true
	finished := make(chan error, 1)
	go func() {
		defer s.conn.Close()
		defer lock.Close()
		err := st.awaitRelease(s.conn, old.inos)
		if rerr := sg.release(); err == nil {
			err = rerr
		}
		st.markReleased()
		finished <- err
	}()
	select {
	case err := <-finished:
		return err
	case <-s.ctx.Done():
		return nil
	}
}

// oldGone reports whether the old process is gone or going (see
// handoverState.oldGone), after a step failed; false at once where ctx
// ended, which failed the step.
func (s *successor) oldGone() bool {
	return s.ctx.Err() == nil && s.st.oldGone(s.conn, s.old.inos)
}

// agree tells the old process that the group is steered (naming this
// process's sockets, which it checks), waits for its "quiet", and answers
// "go": the point of no return (see takeOverFrom), unless ctx ended.
func (s *successor) agree() error {
	msg := msgSteered
	for _, ino := range s.st.inodes() {
		msg += " " + strconv.FormatUint(ino, 10)
	}
	if err := sendMessage(s.conn, msg); err != nil {
		return err
	}
	// The old process drains: Quiet at most.
	m, err := readMessageWithin(s.ctx, s.conn, s.old.quiet+answerTimeout)
	if err != nil {
		return err
	}
	if m != msgQuiet {
		return protocolError(m, msgQuiet)
	}
	if err := s.ctx.Err(); err != nil {
		return err
	}
	if testHookGo != nil {
		testHookGo()
	}
	return sendMessage(s.conn, msgGo)
}

// testHookGo, if set, runs before this process says "go".
var testHookGo func()

// oldGone reports whether the old process is gone, or going: within
// exitTime, none of its sockets is left in the group, or it hung up on conn
// and its sockets leave (it exited; one that only hung up, refusing this
// process, keeps them). A step that failed because the old process began
// to exit (its /proc/PID/fd closes to other users before its descriptors
// do) is told from a real failure so.
func (st *handoverState) oldGone(conn *net.UnixConn, old []uint64) bool {
	ctx, cancel := context.WithTimeout(context.Background(), exitTime)
	defer cancel()
	for {
		if hungUp(conn) {
			return st.waitGone(ctx, old) == nil
		}
		members, err := st.stableMembers()
		if err == nil && st.listsOwn(members) && !containsAny(members, old) {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(pollInterval):
		}
	}
}

// exitTime bounds how long the sockets of a process that exited take to
// leave its groups: the kernel closes them as the process ends.
const exitTime = time.Second

// awaitRelease waits until the old process let go of its sockets: it says
// "closed", or exits, and its sockets leave the group.
func (st *handoverState) awaitRelease(conn *net.UnixConn, old []uint64) error {
	for {
		m, err := readMessage(context.Background(), conn)
		if errors.Is(err, errSilent) {
			continue // it drains: as long as it takes
		}
		if err != nil && !isGone(err) {
			return err
		}
		if err == nil && m != msgClosed {
			return protocolError(m, msgClosed)
		}
		return st.waitGone(context.Background(), old)
	}
}

// ctxErr returns ctx's error in place of err when ctx ended.
func ctxErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

// checkHelper checks, on a socket that joins nothing, that the kernel lets
// a plain-TCP helper drop every SYN (see openHelper).
func (st *handoverState) checkHelper() error {
	family := unix.AF_INET
	if _, ok := st.sa.(*unix.SockaddrInet6); ok {
		family = unix.AF_INET6
	}
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return os.NewSyscallError("socket", err)
	}
	defer unix.Close(fd)
	return dropAll(fd, unix.SOCK_STREAM, family)
}
