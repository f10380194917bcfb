package reuse

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// The messages of the rendezvous, one a packet (SOCK_SEQPACKET).
const (
	msgTakeOver = "takeover" // new → old: take the address over from you
	msgSockets  = "sockets"  // old → new: "sockets PID GENERATION INODE...", with the rendezvous socket attached
	msgSteered  = "steered"  // new → old: new connections go to the new sockets now
	msgClosed   = "closed"   // old → new: the old process let go of its sockets
	msgProbe    = "probe"    // new → old: "probe": defer accepting; "probe PORT": drop the datagrams from PORT
	msgReady    = "ready"    // old → new: done
	msgQuiet    = "quiet"    // old → new: my queues stayed empty: may I go?
	msgGo       = "go"       // new → old: go (the point of no return)
)

// maxMessage bounds a message of the rendezvous, but the old process's
// "sockets" (see readSockets).
const maxMessage = 512

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
	_ = conn.SetWriteDeadline(time.Now().Add(answerTimeout))
	_, err := conn.Write([]byte(msg))
	_ = conn.SetWriteDeadline(time.Time{})
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return errSilent
	}
	return err
}

// hungUp reports, without waiting, whether the peer of conn hung up (its
// process died or closed it): a read that would return end of file.
func hungUp(conn *net.UnixConn) bool {
	rc, err := conn.SyscallConn()
	if err != nil {
		return true
	}
	gone := false
	_ = rc.Control(func(fd uintptr) {
		var b [1]byte
		n, _, err := unix.Recvfrom(int(fd), b[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
		gone = (err == nil && n == 0) || isGone(err)
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
