package reuse

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// From linux/inet_diag.h, which x/sys does not export.
const (
	inetDiagReqBytecode = 1  // INET_DIAG_REQ_BYTECODE: a filter program
	inetDiagBcSGE       = 2  // INET_DIAG_BC_S_GE: local port >=
	inetDiagBcSLE       = 3  // INET_DIAG_BC_S_LE: local port <=
	tcpListen           = 10 // TCP_LISTEN: a listener's state
	tcpClose            = 7  // TCP_CLOSE: an unconnected UDP socket's state
	sizeofInetDiagReqV2 = 56
	sizeofInetDiagMsg   = 72
)

// diagSockets returns the inodes of this user's sockets of protocol proto
// (IPPROTO_TCP or IPPROTO_UDP) in state, bound to the IPv4 or IPv6 address
// addr and port and connected to nobody, in the order of the kernel's hash
// chain, from one NETLINK_SOCK_DIAG dump. The dump filters by port in the
// kernel and, by the kernel's source (udp_dump, inet_diag_dump_icsk), reads
// each hash chain under its lock: all of a group (one chain) is read at once
// while its matches fit the dump's first buffer, some 4 KB, which holds 29
// answers of 124 bytes (an IPv4 socket's, measured). /proc/net lists a table
// a page at a time, resuming by position, so that a socket that leaves
// meanwhile shifts another one past the cut (seen: TestHandoverSteering).
func diagSockets(proto, state int, addr []byte, port int) ([]uint64, error) {
	family := unix.AF_INET
	if len(addr) == 16 {
		family = unix.AF_INET6
	}
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
	if err != nil {
		return nil, os.NewSyscallError("socket AF_NETLINK", err)
	}
	defer unix.Close(fd)

	// A program of the kind ss writes for "sport = :port": port >= port,
	// then port <= port; a jump past the end accepts, one 4 bytes further
	// rejects. S_EQ would do in one test, from Linux 4.16 on.
	bytecode := []byte{inetDiagBcSGE, 8, 20, 0, 0, 0, 0, 0, inetDiagBcSLE, 8, 12, 0, 0, 0, 0, 0}
	ne := binary.NativeEndian
	ne.PutUint16(bytecode[6:], uint16(port))
	ne.PutUint16(bytecode[14:], uint16(port))
	reqLen := unix.SizeofNlMsghdr + sizeofInetDiagReqV2 + unix.SizeofNlAttr + len(bytecode)
	req := make([]byte, reqLen)
	ne.PutUint32(req[0:], uint32(reqLen))
	ne.PutUint16(req[4:], unix.SOCK_DIAG_BY_FAMILY)
	ne.PutUint16(req[6:], unix.NLM_F_REQUEST|unix.NLM_F_DUMP)
	ne.PutUint32(req[8:], 1) // sequence number
	r := req[unix.SizeofNlMsghdr:]
	r[0], r[1] = byte(family), byte(proto)
	ne.PutUint32(r[4:], 1<<state) // idiag_states
	a := r[sizeofInetDiagReqV2:]
	ne.PutUint16(a[0:], uint16(unix.SizeofNlAttr+len(bytecode)))
	ne.PutUint16(a[2:], inetDiagReqBytecode)
	copy(a[unix.SizeofNlAttr:], bytecode)
	if err := unix.Sendto(fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return nil, os.NewSyscallError("sendto NETLINK_SOCK_DIAG", err)
	}

	uid := uint32(os.Geteuid())
	var zero [16]byte
	var inos []uint64
	buf := make([]byte, 32<<10)
	for {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			return nil, os.NewSyscallError("recvfrom NETLINK_SOCK_DIAG", err)
		}
		for b := buf[:n]; len(b) >= unix.SizeofNlMsghdr; {
			l := int(ne.Uint32(b[0:]))
			if l < unix.SizeofNlMsghdr || l > len(b) {
				return nil, fmt.Errorf("%sa sock_diag message of %d bytes in %d", errPrefix, l, len(b))
			}
			typ, m := ne.Uint16(b[4:]), b[unix.SizeofNlMsghdr:l]
			b = b[min(nlmAlign(l), len(b)):]
			switch typ {
			case unix.NLMSG_DONE:
				if len(m) >= 4 && ne.Uint32(m) != 0 { // the dump failed midway
					return nil, os.NewSyscallError("NETLINK_SOCK_DIAG", unix.Errno(-int32(ne.Uint32(m))))
				}
				return inos, nil
			case unix.NLMSG_ERROR:
				if len(m) < 4 {
					return nil, fmt.Errorf("%sa sock_diag error of %d bytes", errPrefix, len(m))
				}
				return nil, os.NewSyscallError("NETLINK_SOCK_DIAG", unix.Errno(-int32(ne.Uint32(m))))
			case unix.SOCK_DIAG_BY_FAMILY:
				if len(m) < sizeofInetDiagMsg {
					return nil, fmt.Errorf("%sa sock_diag answer of %d bytes", errPrefix, len(m))
				}
				// inet_diag_msg: family, state, timer, retrans, then the
				// id (sport, dport, src[16], dst[16], if, cookie[8]),
				// expires, rqueue, wqueue, uid, inode.
				src, dst := m[8:8+len(addr)], m[24:24+len(addr)]
				sport := int(binary.BigEndian.Uint16(m[4:]))
				if sport != port || ne.Uint32(m[64:]) != uid || !bytes.Equal(src, addr) || !bytes.Equal(dst, zero[:len(addr)]) || m[6]|m[7] != 0 {
					continue
				}
				inos = append(inos, uint64(ne.Uint32(m[68:])))
			}
		}
	}
}

// nlmAlign rounds a netlink message length up to NLMSG_ALIGNTO (4).
func nlmAlign(l int) int { return (l + unix.NLMSG_ALIGNTO - 1) &^ (unix.NLMSG_ALIGNTO - 1) }
