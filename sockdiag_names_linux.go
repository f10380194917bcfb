package reuse

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// From linux/unix_diag.h, which x/sys does not export.
const (
	udiagShowName     = 0x01 // UDIAG_SHOW_NAME
	udiagShowUID      = 0x40 // UDIAG_SHOW_UID (Linux 5.3+)
	unixDiagName      = 0    // UNIX_DIAG_NAME: the bound name
	unixDiagUID       = 7    // UNIX_DIAG_UID: the socket's owner
	sizeofUnixDiagReq = 24
	sizeofUnixDiagMsg = 16
	unixDiagAllStates = 0xffffffff
)

// abstractNames returns the abstract Unix socket names of the network
// namespace that start with prefix and belong to a socket of this user, from
// one NETLINK_SOCK_DIAG dump of AF_UNIX sockets. Any user may bind any
// abstract name, but not in another user's name: the owner the kernel
// reports (the socket's creator) tells this user's sockets from a
// stranger's. Names are returned without the leading NUL, as many times as
// sockets hold them (a name is held by one bound socket at a time).
func abstractNames(prefix string) ([]string, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
	if err != nil {
		return nil, os.NewSyscallError("socket AF_NETLINK", err)
	}
	defer unix.Close(fd)
	ne := binary.NativeEndian
	reqLen := unix.SizeofNlMsghdr + sizeofUnixDiagReq
	req := make([]byte, reqLen)
	ne.PutUint32(req[0:], uint32(reqLen))
	ne.PutUint16(req[4:], unix.SOCK_DIAG_BY_FAMILY)
	ne.PutUint16(req[6:], unix.NLM_F_REQUEST|unix.NLM_F_DUMP)
	ne.PutUint32(req[8:], 1) // sequence number
	r := req[unix.SizeofNlMsghdr:]
	r[0] = unix.AF_UNIX
	ne.PutUint32(r[4:], unixDiagAllStates)
	ne.PutUint32(r[12:], udiagShowName|udiagShowUID)
	if err := unix.Sendto(fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return nil, os.NewSyscallError("sendto NETLINK_SOCK_DIAG", err)
	}
	uid := uint32(os.Geteuid())
	want := append([]byte{0}, prefix...)
	var names []string
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
				if len(m) >= 4 && ne.Uint32(m) != 0 {
					return nil, os.NewSyscallError("NETLINK_SOCK_DIAG", unix.Errno(-int32(ne.Uint32(m))))
				}
				return names, nil
			case unix.NLMSG_ERROR:
				if len(m) < 4 {
					return nil, fmt.Errorf("%sa sock_diag error of %d bytes", errPrefix, len(m))
				}
				return nil, os.NewSyscallError("NETLINK_SOCK_DIAG", unix.Errno(-int32(ne.Uint32(m))))
			case unix.SOCK_DIAG_BY_FAMILY:
				if len(m) < sizeofUnixDiagMsg {
					return nil, fmt.Errorf("%sa unix_diag answer of %d bytes", errPrefix, len(m))
				}
				name, owner, hasOwner := unixDiagAttrs(m[sizeofUnixDiagMsg:])
				if !bytes.HasPrefix(name, want) {
					continue
				}
				if !hasOwner {
					return nil, errors.New(errPrefix + "the kernel's unix_diag names no socket's owner (UNIX_DIAG_UID needs Linux 5.3+)")
				}
				if owner == uid {
					names = append(names, string(name[1:]))
				}
			}
		}
	}
}

// unixDiagAttrs reads the name and owner attributes of a unix_diag answer.
func unixDiagAttrs(b []byte) (name []byte, uid uint32, hasUID bool) {
	ne := binary.NativeEndian
	for len(b) >= unix.SizeofNlAttr {
		l := int(ne.Uint16(b[0:]))
		if l < unix.SizeofNlAttr || l > len(b) {
			break
		}
		v := b[unix.SizeofNlAttr:l]
		switch ne.Uint16(b[2:]) {
		case unixDiagName:
			name = v
		case unixDiagUID:
			if len(v) >= 4 {
				uid, hasUID = ne.Uint32(v), true
			}
		}
		b = b[min(nlmAlign(l), len(b)):]
	}
	return name, uid, hasUID
}
