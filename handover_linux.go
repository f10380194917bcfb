package reuse

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// migrateReqPath is the sysctl net.ipv4.tcp_migrate_req of the network
// namespace of the calling process (/proc/sys follows the namespace).
const migrateReqPath = "/proc/sys/net/ipv4/tcp_migrate_req"

func migratesQueue() (bool, error) {
	data, err := os.ReadFile(migrateReqPath)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil // before Linux 5.14
	}
	if err != nil {
		return false, fmt.Errorf("%sreading net.ipv4.tcp_migrate_req: %w", errPrefix, err)
	}
	return string(bytes.TrimSpace(data)) == "1", nil
}

// takeOver steers the group of tl, which must hold exactly tl and one older
// listener, to tl. The kernel keeps a group's members in an array in the
// order they joined (a leaving member's slot takes the last one), and a
// classic BPF program returns the index of the member to pick; an index past
// the end falls back to the hash. tl joined last, so it is at index 1.
func takeOver(tl *net.TCPListener) error {
	rc, err := plainTCP(tl)
	if err != nil {
		return err
	}
	before, err := groupSize(rc)
	if err != nil {
		return err
	}
	if before != 2 {
		return fmt.Errorf("%sa takeover needs exactly one other listener on the port, of the same user, found %d", errPrefix, before-1)
	}
	prog := []unix.SockFilter{{Code: unix.BPF_RET | unix.BPF_K, K: 1}}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptSockFprog(int(fd), unix.SOL_SOCKET, unix.SO_ATTACH_REUSEPORT_CBPF, &unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]})
	}); err != nil {
		return err
	}
	if serr != nil {
		err := fmt.Errorf("%ssteering the port's group: %w", errPrefix, os.NewSyscallError("setsockopt SO_ATTACH_REUSEPORT_CBPF", serr))
		switch {
		case errors.Is(serr, unix.EOPNOTSUPP):
			err = fmt.Errorf("%w (is the other listener MPTCP?)", err)
		case errors.Is(serr, unix.ENOPROTOOPT):
			// Linux before 4.5 lacks the option (and so does qemu-user's
			// translation of setsockopt).
			err = fmt.Errorf("%w: %w", err, errors.ErrUnsupported)
		}
		return err
	}
	// A member that left or joined meanwhile moved tl in the array.
	after, err := groupSize(rc)
	if err == nil && after != 2 {
		err = fmt.Errorf("%sthe port's group changed during the takeover: %d listeners, want 2", errPrefix, after)
	}
	if err != nil {
		_ = release(tl)
		return err
	}
	return nil
}

func release(tl *net.TCPListener) error {
	rc, err := tl.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_DETACH_REUSEPORT_BPF, 0)
	}); err != nil {
		return err
	}
	if serr != nil && !errors.Is(serr, unix.ENOENT) { // ENOENT: no program left to detach
		return fmt.Errorf("%s%w", errPrefix, os.NewSyscallError("setsockopt SO_DETACH_REUSEPORT_BPF", serr))
	}
	return nil
}

// queueLen returns how many established connections wait in tl's accept
// queue: TCP_INFO reports it in tcpi_unacked for a listening socket.
func queueLen(tl *net.TCPListener) (int, error) {
	rc, err := plainTCP(tl)
	if err != nil {
		return 0, err
	}
	var info *unix.TCPInfo
	var serr error
	if err := rc.Control(func(fd uintptr) {
		info, serr = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
	}); err != nil {
		return 0, err
	}
	if serr != nil {
		return 0, fmt.Errorf("%s%w", errPrefix, os.NewSyscallError("getsockopt TCP_INFO", serr))
	}
	return int(info.Unacked), nil
}

// plainTCP returns the RawConn of tl, or errMPTCP if tl is an MPTCP socket.
func plainTCP(tl *net.TCPListener) (syscall.RawConn, error) {
	rc, err := tl.SyscallConn()
	if err != nil {
		return nil, err
	}
	var proto int
	var serr error
	if err := rc.Control(func(fd uintptr) { proto, serr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_PROTOCOL) }); err != nil {
		return nil, err
	}
	if serr != nil {
		return nil, os.NewSyscallError("getsockopt SO_PROTOCOL", serr)
	}
	if proto == unix.IPPROTO_MPTCP {
		return nil, errMPTCP
	}
	return rc, nil
}

// groupSize counts the listening sockets of the current network namespace
// on the same local address and port as the socket behind rc, of the same
// family and owner: the members of its SO_REUSEPORT group. It reads
// /proc/net/tcp or tcp6, which list every socket of the namespace,
// listening ones first.
func groupSize(rc syscall.RawConn) (int, error) {
	var sa unix.Sockaddr
	var serr error
	if err := rc.Control(func(fd uintptr) { sa, serr = unix.Getsockname(int(fd)) }); err != nil {
		return 0, err
	}
	if serr != nil {
		return 0, os.NewSyscallError("getsockname", serr)
	}
	var file, local string
	switch sa := sa.(type) {
	case *unix.SockaddrInet4:
		file, local = "/proc/net/tcp", procAddr(sa.Addr[:], sa.Port)
	case *unix.SockaddrInet6:
		file, local = "/proc/net/tcp6", procAddr(sa.Addr[:], sa.Port)
	default:
		return 0, fmt.Errorf("%snot an inet socket: %T", errPrefix, sa)
	}
	f, err := os.Open(file)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	uid := strconv.Itoa(os.Geteuid())
	n := 0
	sc := bufio.NewScanner(f)
	sc.Scan() // the header
	for sc.Scan() {
		// sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid ...
		fields := strings.Fields(sc.Text())
		if len(fields) <= 7 || fields[3] != "0A" {
			// The kernel lists the listening sockets first; stop before
			// it walks the (maybe huge) table of connections.
			break
		}
		if fields[1] == local && fields[7] == uid {
			n++
		}
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("%sreading %s: %w", errPrefix, file, err)
	}
	return n, nil
}

// procAddr writes an address and port as /proc/net/tcp does: each 32-bit
// word of the address in network byte order printed as a native integer, in
// hexadecimal, then the port.
func procAddr(ip []byte, port int) string {
	var b strings.Builder
	for i := 0; i < len(ip); i += 4 {
		fmt.Fprintf(&b, "%08X", binary.NativeEndian.Uint32(ip[i:i+4]))
	}
	fmt.Fprintf(&b, ":%04X", port)
	return b.String()
}
