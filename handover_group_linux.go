package reuse

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// This file reads what the kernel says of the sockets given to TakeOver
// and of their group: its members in join order, their queues, and the
// drops that tell where a UDP probe went.

// sockInfo is what the handover needs to know of one socket.
type sockInfo struct {
	rc    syscall.RawConn
	ino   uint64
	proto int // SO_PROTOCOL: IPPROTO_TCP, IPPROTO_MPTCP or IPPROTO_UDP
}

// inspectSocket reads what the handover needs of the socket of rc, and its
// local address, IPV6_V6ONLY and SO_BINDTODEVICE.
func inspectSocket(rc syscall.RawConn) (info sockInfo, sa unix.Sockaddr, v6only bool, dev string, err error) {
	info.rc = rc
	err = withFD(rc, func(fd uintptr) error {
		var stat unix.Stat_t
		if err := unix.Fstat(int(fd), &stat); err != nil {
			return os.NewSyscallError("fstat", err)
		}
		info.ino = stat.Ino
		var err error
		if info.proto, err = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_PROTOCOL); err != nil {
			return os.NewSyscallError("getsockopt SO_PROTOCOL", err)
		}
		if on, err := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT); err != nil {
			return os.NewSyscallError("getsockopt SO_REUSEPORT", err)
		} else if on == 0 {
			return errNotShared
		}
		if sa, err = unix.Getsockname(int(fd)); err != nil {
			return os.NewSyscallError("getsockname", err)
		}
		if _, ok := sa.(*unix.SockaddrInet6); ok {
			on, err := unix.GetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_V6ONLY)
			if err != nil {
				return os.NewSyscallError("getsockopt IPV6_V6ONLY", err)
			}
			v6only = on == 1
		}
		dev, _ = unix.GetsockoptString(int(fd), unix.SOL_SOCKET, unix.SO_BINDTODEVICE)
		return nil
	})
	return info, sa, v6only, dev, err
}

// inspect checks the sockets of g and learns what the handover needs.
func inspect(g *sockGroup) (*handoverState, error) {
	st := &handoverState{g: g, released: make(chan struct{})}
	for i, s := range g.socks {
		rc, err := s.SyscallConn()
		if err != nil {
			return nil, fmt.Errorf("socket %d: %w", i+1, err)
		}
		info, sa, v6only, dev, err := inspectSocket(rc)
		if err != nil {
			return nil, fmt.Errorf("socket %d: %w", i+1, err)
		}
		if i == 0 {
			st.sa, st.v6, st.dev = sa, v6only, dev
		}
		st.socks = append(st.socks, info)
	}
	st.base = fmt.Sprintf("reuse/%d/%s/%s", os.Geteuid(), g.network, g.address)
	return st, nil
}

// errNotShared is the error for a socket opened without SO_REUSEPORT, which
// no other socket can join.
var errNotShared = fmt.Errorf("the socket does not share its port (opened under Exclusive, or not by this package): a handover needs sockets opened under Share")

// addrPort returns the group's local address.
func (st *handoverState) addrPort() netip.AddrPort {
	switch sa := st.sa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), uint16(sa.Port))
	case *unix.SockaddrInet6:
		return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr), uint16(sa.Port))
	}
	return netip.AddrPort{}
}

// dialAddr returns where to send a probe: the group's address, loopback
// for a wildcard.
func (st *handoverState) dialAddr() netip.AddrPort {
	a := st.addrPort()
	switch {
	case !a.Addr().IsUnspecified():
		return a
	case a.Addr().Is4():
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), a.Port())
	}
	return netip.AddrPortFrom(netip.IPv6Loopback(), a.Port())
}

// v6Family reports whether the group's sockets are IPv6 ones.
func (st *handoverState) v6Family() bool { return st.addrPort().Addr().Is6() }

// familyOf returns AF_INET or AF_INET6 for a.
func familyOf(a netip.Addr) uint8 {
	if a.Is4() {
		return unix.AF_INET
	}
	return unix.AF_INET6
}

// inodes returns the inodes of the process's own sockets.
func (st *handoverState) inodes() []uint64 {
	inos := make([]uint64, len(st.socks))
	for i, s := range st.socks {
		inos[i] = s.ino
	}
	return inos
}

// members returns the inodes of the group's members, in the order they
// joined: from a sock_diag dump (diagSockets), or from /proc/net where the
// kernel answers none. Both list a hash chain of the namespace's sockets,
// IPv4 ones newest first, IPv6 ones oldest first: the kernel adds IPv6
// SO_REUSEPORT sockets at the tail of their chain, others at the head.
func (st *handoverState) members() ([]uint64, error) {
	a := st.addrPort()
	addr := a.Addr().AsSlice()
	var inos []uint64
	var err error
	if !st.noSockDiag {
		proto, state := unix.IPPROTO_UDP, tcpClose
		if st.g.network == "tcp" {
			proto, state = unix.IPPROTO_TCP, tcpListen
		}
		// A kernel without the dump for the protocol (ENOENT), qemu-user
		// (EPROTONOSUPPORT), a sandbox that forbids netlink: /proc then,
		// for the rest of the handover.
		ifindex := 0 // the group's SO_BINDTODEVICE
		if st.dev != "" {
			if ifi, err := net.InterfaceByName(st.dev); err == nil {
				ifindex = ifi.Index
			}
		}
		inos, err = diagSockets(proto, state, addr, int(a.Port()), ifindex)
		st.noSockDiag = err != nil
	}
	if st.noSockDiag {
		inos, err = st.procMembers(len(addr) == 16)
	}
	if err != nil {
		return nil, err
	}
	if len(addr) == 4 {
		slices.Reverse(inos)
	}
	return inos, nil
}

// procMembers returns the inodes of the group's members, as /proc/net lists
// them (see members). The kernel prints addresses in its own byte order,
// which under qemu-user is not the program's: the group's address is taken
// as printed on the line of this process's first socket, and a listing that
// lacks it yields no members (read again: see stableMembers).
func (st *handoverState) procMembers(v6 bool) ([]uint64, error) {
	file := "/proc/net/" + st.g.network
	if v6 {
		file += "6"
	}
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	uid := strconv.Itoa(os.Geteuid())
	type entry struct {
		local string
		ino   uint64
	}
	var entries []entry
	local := ""
	sc := bufio.NewScanner(f)
	sc.Scan() // the header
	for sc.Scan() {
		// sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode ...
		fields := strings.Fields(sc.Text())
		if len(fields) <= 9 {
			continue
		}
		if st.g.network == "tcp" && fields[3] != "0A" {
			// Listening sockets come first; stop before the (maybe
			// huge) table of connections.
			break
		}
		unconnected := strings.Trim(fields[2], "0") == ":" // 00000000:0000
		if fields[7] != uid || !unconnected {
			continue
		}
		ino, err := strconv.ParseUint(fields[9], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("reading %s: %q: %w", file, sc.Text(), err)
		}
		if ino == st.socks[0].ino {
			local = fields[1]
		}
		if slices.ContainsFunc(entries, func(e entry) bool { return e.ino == ino }) {
			continue // listed again, where a socket that closed meanwhile moved the resumed listing back
		}
		entries = append(entries, entry{fields[1], ino})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading %s: %w", file, err)
	}
	var inos []uint64
	for _, e := range entries {
		if e.local == local {
			inos = append(inos, e.ino)
		}
	}
	return inos, nil
}

// stableMembers returns the group's members as two reads in a row list
// them: a read while a member leaves may skip another one where the kernel
// resumes its listing by position (/proc, or a dump of a group too large
// for its first buffer; see diagSockets).
func (st *handoverState) stableMembers() ([]uint64, error) {
	prev, err := st.members()
	for try := 0; err == nil && try < steerTries; try++ {
		var cur []uint64
		if cur, err = st.members(); err == nil && slices.Equal(cur, prev) {
			return cur, nil
		}
		prev = cur
	}
	if err == nil {
		err = fmt.Errorf("the group of %s %s changed during each of %d reads", st.g.network, st.g.address, steerTries)
	}
	return nil, err
}

// ownIndexes returns where this process's sockets sit in the kernel's
// array of the group while no member left since they joined: their places
// in join order (a member joins at the array's end). In a rolling restart
// they stay there: the member that joined last, a newer one, moves into
// the index of each that leaves. Nil where the members cannot be read.
func (st *handoverState) ownIndexes() []int {
	members, err := st.stableMembers()
	if err != nil {
		return nil
	}
	at := indexesOf(members, st.inodes())
	if slices.Contains(at, -1) {
		return nil
	}
	return at
}

// listsOwn reports whether members lists every socket of this process.
func (st *handoverState) listsOwn(members []uint64) bool {
	for _, s := range st.socks {
		if !slices.Contains(members, s.ino) {
			return false
		}
	}
	return true
}

// containsAny reports whether members holds one of inos.
func containsAny(members, inos []uint64) bool {
	return slices.ContainsFunc(members, func(ino uint64) bool { return slices.Contains(inos, ino) })
}

// waitGone waits until none of the sockets old is a member of the group.
func (st *handoverState) waitGone(ctx context.Context, old []uint64) error {
	for {
		// A read that skipped entries (see stableMembers) must not pass
		// for the old members' leaving: it must list this process's own.
		members, err := st.stableMembers()
		if err != nil {
			return err
		}
		if st.listsOwn(members) && !containsAny(members, old) {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(pollInterval):
		}
	}
}

// queued returns how much waits in the sockets' queues: connections in a
// listener's accept queue (TCP_INFO's tcpi_unacked, which MPTCP listeners
// report too), bytes of the next datagram (SIOCINQ).
func (st *handoverState) queued() (int, error) {
	total := 0
	for _, s := range st.socks {
		err := withFD(s.rc, func(fd uintptr) error {
			if st.g.network == "udp" {
				n, err := unix.IoctlGetInt(int(fd), unix.SIOCINQ)
				total += n
				return os.NewSyscallError("ioctl SIOCINQ", err)
			}
			info, err := unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
			if err != nil {
				return os.NewSyscallError("getsockopt TCP_INFO", err)
			}
			total += int(info.Unacked)
			return nil
		})
		if err != nil {
			return 0, fmt.Errorf("reading the queue of %s %s: %w", st.g.network, st.g.address, err)
		}
	}
	return total, nil
}
