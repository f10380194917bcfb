package reuse

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
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
		if len(names) == 0 {
			// Nobody serves the slot: this process is the first, unless
			// another new one listens there by a hair.
			ln, err := listenRendezvous(prefix)
			if err != nil {
				return nil, err
			}
			if ln == nil {
				if err := backOff(ctx); err != nil {
					return nil, err
				}
				continue
			}
			if err := st.steerAlone(); err != nil {
				ln.Close()
				return nil, err
			}
			st.rv = ln
			st.markReleased()
			return st, nil
		}
		conn, err := dialPeer(ctx, names[0])
		if errors.Is(err, unix.ECONNREFUSED) || errors.Is(err, unix.ENOENT) {
			// Not listening yet, or gone since the listing.
			if err := backOff(ctx); err != nil {
				return nil, err
			}
			continue
		}
		if err != nil {
			return nil, ctxErr(ctx, err)
		}
		again, err := st.takeOverFrom(ctx, conn)
		if errors.Is(err, errSilent) && !again && silent < silentTries-1 {
			// No answer to "takeover": the old process may be busy with
			// another successor (each of whose steps is bounded); ask
			// again, a few times.
			silent++
			again = true
		}
		if again {
			// The old process went away, or another successor is ahead.
			if err := backOff(ctx); err != nil {
				return nil, err
			}
			continue
		}
		if err != nil {
			return nil, err
		}
		return st, nil
	}
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

// oldSockets is what the old process says of itself: "sockets PID
// GENERATION QUIET INODE...", with the rendezvous socket attached.
type oldSockets struct {
	pid, gen int
	quiet    time.Duration // its Handover's Quiet: how long it may drain
	inos     []uint64
	rv       *net.UnixListener
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
		if !st.oldGone(s.conn, old.inos) {
			return err
		}
		st.markReleased()
		return st.steerAlone()
	}
	if err := s.agree(); err != nil && !st.oldGone(s.conn, old.inos) {
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
	sg, err := st.steer(old.inos, s.ask)
	if err != nil || sg == nil { // an error, or no old member left
		lock.Close()
		if err != nil && !st.oldGone(s.conn, old.inos) {
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
	if err := s.agree(); err != nil && !st.oldGone(s.conn, old.inos) {
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

// readSockets reads the old process's answer: what it says of itself, and
// its rendezvous socket.
func readSockets(ctx context.Context, conn *net.UnixConn) (oldSockets, error) {
	buf := make([]byte, 64<<10)
	oob := make([]byte, unix.CmsgSpace(4))
	if err := readDeadline(ctx, conn, answerTimeout); err != nil {
		return oldSockets{}, err
	}
	n, oobn, _, _, err := conn.ReadMsgUnix(buf, oob)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		err = errSilent
	}
	if err == nil && n == 0 {
		err = io.EOF
	}
	if err != nil {
		return oldSockets{}, err
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) != 1 {
		return oldSockets{}, fmt.Errorf("the old process sent no rendezvous socket (%d control messages): %v", len(msgs), err)
	}
	fds, err := unix.ParseUnixRights(&msgs[0])
	if err != nil || len(fds) != 1 {
		for _, fd := range fds {
			unix.Close(fd)
		}
		return oldSockets{}, fmt.Errorf("the old process sent %d descriptors: %v", len(fds), err)
	}
	f := os.NewFile(uintptr(fds[0]), "rendezvous")
	ln, err := net.FileListener(f)
	f.Close()
	if err != nil {
		return oldSockets{}, err
	}
	ul, ok := ln.(*net.UnixListener)
	if !ok {
		ln.Close()
		return oldSockets{}, fmt.Errorf("the old process sent a %T, not a Unix listener", ln)
	}
	old, err := parseSockets(string(buf[:n]))
	if err != nil {
		ul.Close()
		return oldSockets{}, err
	}
	old.rv = ul
	return old, nil
}

// parseSockets reads the old process's id, generation, Quiet and sockets'
// inodes. (The rendezvous socket's SO_PEERCRED names the process that first
// listened on it, which may have handed it on since.)
func parseSockets(msg string) (oldSockets, error) {
	fields := strings.Fields(msg)
	if len(fields) < 5 || fields[0] != msgSockets {
		return oldSockets{}, fmt.Errorf("the old process said %q, want %q, its id, generation, Quiet and sockets", msg, msgSockets)
	}
	var old oldSockets
	var quiet int64
	pid, err := strconv.Atoi(fields[1])
	if err == nil {
		old.gen, err = strconv.Atoi(fields[2])
	}
	if err == nil && (old.gen < 0 || old.gen >= maxMembers) {
		err = fmt.Errorf("generation %d out of range", old.gen)
	}
	if err == nil {
		quiet, err = strconv.ParseInt(fields[3], 10, 64)
	}
	for _, f := range fields[4:] {
		if err != nil {
			break
		}
		var ino uint64
		ino, err = strconv.ParseUint(f, 10, 64)
		old.inos = append(old.inos, ino)
	}
	if err != nil || quiet < 0 {
		return oldSockets{}, fmt.Errorf("the old process said %q: %v", msg, err)
	}
	old.pid, old.quiet = pid, time.Duration(quiet)
	return old, nil
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
