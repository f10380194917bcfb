package reuse

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// This file is the protocol of a handover: its messages, their bounds,
// and the one message that carries more than a word.

// The messages of the rendezvous, one a packet (SOCK_SEQPACKET), in order.
const (
	msgTakeOver = "takeover" // new → old: take the address over from you
	msgSockets  = "sockets"  // old → new: "sockets PID GENERATION QUIET INODE... [at INDEX...]", with the rendezvous socket attached
	msgProbe    = "probe"    // new → old: "probe": mark the listeners; "probe PORT": drop the datagrams from PORT
	msgReady    = "ready"    // old → new: done ("ready MSS" for the listeners' mark)
	msgSteered  = "steered"  // new → old: "steered INODE...": new connections go to these sockets now
	msgQuiet    = "quiet"    // old → new: nothing more can reach my sockets: may I go?
	msgGo       = "go"       // new → old: go (the point of no return)
	msgClosed   = "closed"   // old → new: the old process let go of its sockets
)

// maxMessage bounds a message of the rendezvous: "sockets" and "steered"
// name each socket of a group by its inode (up to 20 digits and a space),
// for groups of a thousand sockets and more. A longer message would be cut
// short (SOCK_SEQPACKET), so sendMessage refuses one.
const maxMessage = 32 << 10

// answerTimeout bounds each step of the rendezvous: how long a party may
// take to send the next message it owes. A peer that breaks it is hung up
// on: the old process serves on, the new one's TakeOver fails.
var answerTimeout = 10 * time.Second

// errSilent is the error of a peer that sent nothing within answerTimeout.
var errSilent = errors.New("the other process of the handover sent nothing in time")

// readMessage reads the peer's next message, waiting answerTimeout at most,
// or until ctx ends (its AfterFunc sets conn's deadline).
func readMessage(ctx context.Context, conn *net.UnixConn) (string, error) {
	return readMessageWithin(ctx, conn, answerTimeout)
}

// readMessageWithin is readMessage waiting d at most.
func readMessageWithin(ctx context.Context, conn *net.UnixConn, d time.Duration) (string, error) {
	if err := readDeadline(ctx, conn, d); err != nil {
		return "", err
	}
	buf := make([]byte, maxMessage)
	n, err := conn.Read(buf)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return "", errSilent
	}
	if err == nil && n == 0 {
		err = io.EOF // SOCK_SEQPACKET: the peer hung up
	}
	return string(buf[:n]), err
}

// readDeadline sets conn's read deadline d from now, and returns ctx's
// error if ctx ended: its AfterFunc, which set the deadline to now, may
// have run before.
func readDeadline(ctx context.Context, conn *net.UnixConn, d time.Duration) error {
	_ = conn.SetReadDeadline(time.Now().Add(d))
	return ctx.Err()
}

// sendMessage sends the peer a message, waiting answerTimeout at most (a
// full buffer: a peer that stopped reading).
func sendMessage(conn *net.UnixConn, msg string) error {
	if err := checkLength(msg); err != nil {
		return err
	}
	_ = conn.SetWriteDeadline(time.Now().Add(answerTimeout))
	_, err := conn.Write([]byte(msg))
	_ = conn.SetWriteDeadline(time.Time{})
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return errSilent
	}
	return err
}

// checkLength refuses a message longer than maxMessage.
func checkLength(msg string) error {
	if len(msg) > maxMessage {
		return fmt.Errorf("a handover message of %d bytes, more than %d: too many sockets in one process", len(msg), maxMessage)
	}
	return nil
}

// hungUp reports, without waiting, whether the peer of conn hung up (its
// process died or closed it): a read that would return end of file.
func hungUp(conn *net.UnixConn) bool {
	rc, err := conn.SyscallConn()
	if err != nil {
		return true
	}
	gone := false
	_ = withFD(rc, func(fd uintptr) error {
		var b [1]byte
		n, _, err := unix.Recvfrom(int(fd), b[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
		gone = (err == nil && n == 0) || isGone(err)
		return nil
	})
	return gone
}

// isGone reports an error that means the peer closed the connection.
func isGone(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, unix.ECONNRESET) || errors.Is(err, unix.EPIPE)
}

// protocolError is the error of a peer that sent got where want was due.
func protocolError(got, want string) error {
	return fmt.Errorf("the other process of the handover said %q, want %q", got, want)
}

// sendSockets tells the successor what it needs of this process: "sockets
// PID GENERATION QUIET INODE...", with the rendezvous socket attached.
func (st *handoverState) sendSockets(conn *net.UnixConn) error {
	msg := msgSockets + " " + strconv.Itoa(os.Getpid()) + " " + strconv.Itoa(st.gen) + " " + strconv.FormatInt(int64(st.quiet), 10)
	for _, s := range st.socks {
		msg += " " + strconv.FormatUint(s.ino, 10)
	}
	if len(st.at) == len(st.socks) {
		msg += " at"
		for _, i := range st.at {
			msg += " " + strconv.Itoa(i)
		}
	}
	// The descriptor itself, not a File's duplicate: File may leave the
	// socket, shared with the successor, in blocking mode, where Close
	// would not end this process's Accept.
	rc, err := st.rv.SyscallConn()
	if err != nil {
		return err
	}
	if err := checkLength(msg); err != nil {
		return err
	}
	_ = conn.SetWriteDeadline(time.Now().Add(answerTimeout))
	return withFD(rc, func(fd uintptr) error {
		_, _, err := conn.WriteMsgUnix([]byte(msg), unix.UnixRights(int(fd)), nil)
		return err
	})
}

// oldSockets is what the old process says of itself: "sockets PID
// GENERATION QUIET INODE... [at INDEX...]", with the rendezvous socket
// attached.
type oldSockets struct {
	pid, gen int
	quiet    time.Duration // its Handover's Quiet: how long it may drain
	inos     []uint64
	at       []int // where it believes its sockets sit in the group's array: a guess for the probes
	rv       *net.UnixListener
}

// readSockets reads the old process's answer: what it says of itself, and
// its rendezvous socket.
func readSockets(ctx context.Context, conn *net.UnixConn) (oldSockets, error) {
	buf := make([]byte, maxMessage)
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

// parseSockets reads the old process's id, generation, Quiet, sockets'
// inodes and, if it knows them, their indexes in the group. (The rendezvous socket's SO_PEERCRED names the process that first
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
	inos, at, hasAt := fields[4:], []string(nil), false
	if i := slices.Index(inos, "at"); i >= 0 {
		inos, at, hasAt = inos[:i], inos[i+1:], true
	}
	for _, f := range inos {
		if err != nil {
			break
		}
		var ino uint64
		ino, err = strconv.ParseUint(f, 10, 64)
		old.inos = append(old.inos, ino)
	}
	for _, f := range at {
		if err != nil {
			break
		}
		var i int
		if i, err = strconv.Atoi(f); err == nil && (i < 0 || i >= maxMembers) {
			err = fmt.Errorf("index %d out of range", i)
		}
		old.at = append(old.at, i)
	}
	if err == nil && (len(old.inos) == 0 || hasAt && len(old.at) != len(old.inos)) {
		err = fmt.Errorf("%d sockets at %d indexes", len(old.inos), len(old.at))
	}
	if err != nil || quiet < 0 {
		return oldSockets{}, fmt.Errorf("the old process said %q: %v", msg, err)
	}
	old.pid, old.quiet = pid, time.Duration(quiet)
	return old, nil
}
