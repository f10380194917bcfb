package reuse

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// The processes of a handover meet in the network namespace they share (the
// port belongs to it), not in a filesystem, which each may see privately
// (systemd's PrivateTmp, a mount namespace of its own). Abstract Unix socket
// names are the namespace's, but any user may bind any of them: a name that
// a stranger can predict, the stranger can take first, and so keep a server
// from starting or from ever being replaced. So each socket of a handover
// binds a name that nobody can predict, a prefix naming the user, the
// address and the purpose, then random bytes; the processes find each
// other's names by listing the namespace's sockets with their owners
// (abstractNames), and trust only names of this user's sockets. A stranger
// may still list a name and connect to it: the listener accepts at once and
// hangs up on anyone of another user (SO_PEERCRED), so that a flood of
// connects neither fills its backlog for long nor delays a handover.

// namePrefix returns the prefix of the abstract names of purpose (a slot's
// rendezvous, or the steering lock) for the address of st: the longest are
// hashed, so that a name with its random part fits in sun_path.
func (st *handoverState) namePrefix(purpose string) string {
	p := st.base + "/" + purpose + "/"
	if len(p) > 64 {
		sum := sha256.Sum256([]byte(p))
		p = fmt.Sprintf("reuse/%d/#%s/", os.Geteuid(), hex.EncodeToString(sum[:12]))
	}
	return p
}

// freshName returns prefix and 16 random bytes, in hexadecimal.
func freshName(prefix string) string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand's doc, Go 1.24+), or panics
	return prefix + hex.EncodeToString(b[:])
}

// backOff waits a random 1 to 4 poll intervals, so that two processes that
// met at once do not meet again; it returns ctx's error if ctx ends first.
func backOff(ctx context.Context) error {
	n, _ := rand.Int(rand.Reader, big.NewInt(3*int64(pollInterval)))
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(pollInterval + time.Duration(n.Int64())):
		return nil
	}
}

// alone reports whether name is the only name of this user under prefix.
// Of two processes that each bind a name, then list, at least the later
// sees both: at most one sees itself alone.
func alone(prefix, name string) (bool, error) {
	names, err := abstractNames(prefix)
	if err != nil {
		return false, fmt.Errorf("listing the sockets where a handover meets (Linux's unix_diag, NETLINK_SOCK_DIAG): %w", err)
	}
	return len(names) == 1 && names[0] == name, nil
}

// listenRendezvous listens at a fresh name under prefix, for the process
// that serves first: it returns the listener once its name is the only one
// under prefix, or nil if another process of this user listens there too
// (which then serves, and this one takes over from it).
func listenRendezvous(prefix string) (*net.UnixListener, error) {
	name := freshName(prefix)
	ln, err := net.ListenUnix("unixpacket", &net.UnixAddr{Name: "@" + name, Net: "unixpacket"})
	if err != nil {
		return nil, fmt.Errorf("waiting for a successor: %w", err)
	}
	ok, err := alone(prefix, name)
	if err != nil || !ok {
		ln.Close()
		return nil, err
	}
	return ln, nil
}

// lock takes the steering lock of st's address, so that two handovers
// never steer its group at once: a socket bound to a fresh name under the
// lock's prefix, alone there. The kernel releases it if this process dies.
func (st *handoverState) lock(ctx context.Context) (*os.File, error) {
	prefix := st.namePrefix("steering")
	for {
		name := freshName(prefix)
		f, err := bindName(name, "steering lock")
		if err != nil {
			return nil, err
		}
		ok, err := alone(prefix, name)
		if ok {
			return f, nil
		}
		f.Close()
		if err != nil {
			return nil, err
		}
		if err := backOff(ctx); err != nil {
			return nil, err
		}
	}
}

// tagGeneration binds a socket whose name tells the generation of the
// process serving st's slot, which `reuse who` shows: "gen/SLOT/" (or a
// hash), the generation, "/", random digits. The rendezvous socket cannot
// tell it: it passes from each process to its successor.
func (st *handoverState) tagGeneration() (*os.File, error) {
	prefix := st.namePrefix("gen/" + hex.EncodeToString([]byte(st.slot)))
	return bindName(freshName(prefix+strconv.Itoa(st.gen)+"/"), "generation tag")
}

// bindName binds a new Unix socket to the abstract name, and returns it.
func bindName(name, what string) (*os.File, error) {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, os.NewSyscallError("socket", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrUnix{Name: "@" + name}); err != nil {
		unix.Close(fd)
		return nil, os.NewSyscallError("bind", err)
	}
	return os.NewFile(uintptr(fd), what), nil
}

// dialPeer connects to the process listening at the abstract name and
// checks that it runs as this user. A full backlog (EAGAIN: a flood of
// connects, or successors waiting their turn) is tried again until ctx ends.
func dialPeer(ctx context.Context, name string) (*net.UnixConn, error) {
	var d net.Dialer
	for {
		c, err := d.DialContext(ctx, "unixpacket", "@"+name)
		if errors.Is(err, unix.EAGAIN) {
			if err := backOff(ctx); err != nil {
				return nil, err
			}
			continue
		}
		if err != nil {
			return nil, err
		}
		conn := c.(*net.UnixConn)
		if err := checkPeer(conn); err != nil {
			conn.Close()
			return nil, err
		}
		return conn, nil
	}
}

// checkPeer refuses a peer that runs as another user: only the address's
// owner may take it over.
func checkPeer(conn *net.UnixConn) error {
	rc, err := conn.SyscallConn()
	if err != nil {
		return err
	}
	var cred *unix.Ucred
	err = withFD(rc, func(fd uintptr) (err error) {
		cred, err = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
		return os.NewSyscallError("getsockopt SO_PEERCRED", err)
	})
	if err != nil {
		return err
	}
	if int(cred.Uid) != os.Geteuid() {
		return fmt.Errorf("the handover's rendezvous %q is held by process %d of uid %d, not by this user (uid %d): %w",
			conn.RemoteAddr(), cred.Pid, cred.Uid, os.Geteuid(), unix.EPERM)
	}
	return nil
}

// acceptPeers accepts connections at the rendezvous ln until it is closed,
// hangs up at once on those of other users, and hands the others to peers;
// one that finds peers full (a handover under way and successors waiting)
// is hung up on too, and tries again. It never blocks on a peer, so that
// the backlog empties as fast as the kernel fills it.
func acceptPeers(ln *net.UnixListener, peers chan<- *net.UnixConn) {
	defer close(peers)
	for {
		conn, err := ln.AcceptUnix()
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil {
			time.Sleep(pollInterval) // EMFILE and the like: try again
			continue
		}
		if checkPeer(conn) != nil {
			conn.Close()
			continue
		}
		select {
		case peers <- conn:
		default:
			conn.Close()
		}
	}
}
