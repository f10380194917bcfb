package sockdiag

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// From linux/inet_diag.h and linux/sock_diag.h, which x/sys does not export.
const (
	reqBytecode         = 1  // INET_DIAG_REQ_BYTECODE: a filter program
	bcSGE               = 2  // INET_DIAG_BC_S_GE: local port >=
	bcSLE               = 3  // INET_DIAG_BC_S_LE: local port <=
	attrSkMemInfo       = 7  // INET_DIAG_SKMEMINFO: sk_meminfo, u32 each
	attrV6Only          = 11 // INET_DIAG_SKV6ONLY
	skMemInfoDrops      = 8  // SK_MEMINFO_DROPS
	sizeofInetDiagReqV2 = 56
	sizeofInetDiagMsg   = 72
)

// OnPort returns every socket of this network namespace whose local port is
// port: TCP and UDP, IPv4 and IPv6, in every state but the handshakes in
// flight (request sockets belong to their listener). An MPTCP listener is
// listed as TCP: the kernel keeps its listening subflow, with the MPTCP
// socket's inode, in TCP's table, where it shares ports and groups with
// TCP listeners. (The kernel's own MPTCP listing of listeners cannot tell
// them apart here: on Linux 6.18 it skipped some listeners of a port, 1 of
// a group of 4 and 267 of 300, measured.)
func OnPort(port int) ([]Socket, error) {
	if port <= 0 || port > 0xffff {
		return nil, fmt.Errorf("port %d out of range 1-65535", port)
	}
	var all []Socket
	for _, fam := range []uint8{unix.AF_INET, unix.AF_INET6} {
		for _, proto := range []int{unix.IPPROTO_TCP, unix.IPPROTO_UDP} {
			q := Query{Family: fam, Proto: proto, States: ^uint32(0), Port: port, Drops: proto == unix.IPPROTO_UDP}
			err := Dump(q, func(s Socket) {
				if s.State != SynRecv && s.State != NewSynRecv {
					all = append(all, s)
				}
			})
			if err != nil {
				return nil, err
			}
		}
	}
	return all, nil
}

// Query selects the sockets of one inet dump: those of Family (AF_INET or
// AF_INET6) and Proto (IPPROTO_TCP or IPPROTO_UDP) in States (a mask of
// 1<<State) whose local port is Port. Drops asks the kernel for each
// socket's sk_meminfo, for Socket.Drops: 40 bytes more per answer.
type Query struct {
	Family uint8
	Proto  int
	States uint32
	Port   int
	Drops  bool
}

// Dump calls each for every socket that q selects, in the order of the
// kernel's hash chains, from one NETLINK_SOCK_DIAG dump filtered by port in
// the kernel. The kernel walks its table of connections only for states
// other than Listen: a dump of listeners alone is the cheaper.
func Dump(q Query, each func(Socket)) error {
	name := "tcp"
	if q.Proto == unix.IPPROTO_UDP {
		name = "udp"
	}
	return dump(request(q), func(m []byte) error {
		s, err := parse(m, name)
		if err == nil && s.Local.Port() == uint16(q.Port) {
			each(s)
		}
		return err
	})
}

// Connection returns the TCP socket between local and remote, as the
// kernel's hash of connections holds it, found the way an arriving segment
// finds it (local is the address the connection was made to, not a
// listener's wildcard): a handshake in flight (SynRecv, NewSynRecv), a
// connection, one in TIME_WAIT; ok is false where there is none. Unlike
// Dump, it does not walk the table: one lookup, whatever the number of
// sockets on the host.
func Connection(local, remote netip.AddrPort) (s Socket, ok bool, err error) {
	req := newRequest(sizeofInetDiagReqV2)
	ne := binary.NativeEndian
	ne.PutUint16(req[6:], unix.NLM_F_REQUEST|unix.NLM_F_ACK) // exact, not a dump
	r := req[unix.SizeofNlMsghdr:]
	r[0], r[1] = unix.AF_INET6, unix.IPPROTO_TCP
	if local.Addr().Is4() {
		r[0] = unix.AF_INET
	}
	ne.PutUint32(r[4:], ^uint32(0)) // idiag_states
	// The id: sport, dport, src[16], dst[16], if, cookie[2] (INET_DIAG_NOCOOKIE).
	binary.BigEndian.PutUint16(r[8:], local.Port())
	binary.BigEndian.PutUint16(r[10:], remote.Port())
	la, ra := local.Addr().AsSlice(), remote.Addr().AsSlice()
	copy(r[12:28], la)
	copy(r[28:44], ra)
	ne.PutUint64(r[48:], ^uint64(0))
	err = dump(req, func(m []byte) error {
		s, err = parse(m, "tcp")
		// Where no connection matches, the kernel's lookup falls back
		// to the listener that a new one would reach.
		ok = err == nil && s.State != Listen
		return err
	})
	if errors.Is(err, unix.ENOENT) {
		return Socket{}, false, nil
	}
	if err != nil || !ok {
		return Socket{}, false, err
	}
	return s, true, nil
}

// dump sends req, a NETLINK_SOCK_DIAG request (a dump, or an exact one
// that asks for an acknowledgement), and calls each with
// every answer of the dump (a message's payload) until the dump ends or
// each returns an error: the package's one reader of sock_diag.
func dump(req []byte, each func(m []byte) error) error {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
	if err != nil {
		return os.NewSyscallError("socket AF_NETLINK", err)
	}
	defer unix.Close(fd)
	if err := unix.Sendto(fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return os.NewSyscallError("sendto NETLINK_SOCK_DIAG", err)
	}
	ne := binary.NativeEndian
	bufp := buffers.Get().(*[32 << 10]byte)
	defer buffers.Put(bufp)
	buf := bufp[:]
	for {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			return os.NewSyscallError("recvfrom NETLINK_SOCK_DIAG", err)
		}
		for b := buf[:n]; len(b) >= unix.SizeofNlMsghdr; {
			l := int(ne.Uint32(b[0:]))
			if l < unix.SizeofNlMsghdr || l > len(b) {
				return fmt.Errorf("a sock_diag message of %d bytes in %d", l, len(b))
			}
			typ, m := ne.Uint16(b[4:]), b[unix.SizeofNlMsghdr:l]
			b = b[min(align(l), len(b)):]
			switch typ {
			case unix.NLMSG_DONE:
				if len(m) >= 4 && ne.Uint32(m) != 0 { // the dump failed midway
					return os.NewSyscallError("NETLINK_SOCK_DIAG", unix.Errno(-int32(ne.Uint32(m))))
				}
				return nil
			case unix.NLMSG_ERROR:
				if len(m) < 4 {
					return fmt.Errorf("a sock_diag error of %d bytes", len(m))
				}
				if ne.Uint32(m) == 0 { // the acknowledgement that ends an exact request's answer
					return nil
				}
				return os.NewSyscallError("NETLINK_SOCK_DIAG", unix.Errno(-int32(ne.Uint32(m))))
			case unix.SOCK_DIAG_BY_FAMILY:
				if err := each(m); err != nil {
					return err
				}
			}
		}
	}
}

// buffers holds the buffers that dump reads into: each hands its answers,
// slices of its buffer, to a function, so that the buffer cannot live on
// the stack, and 32 KB a dump would otherwise be allocated.
var buffers = sync.Pool{New: func() any { return new([32 << 10]byte) }}

// newRequest returns a dump request of n bytes after its netlink header,
// the header written.
func newRequest(n int) []byte {
	req := make([]byte, unix.SizeofNlMsghdr+n)
	ne := binary.NativeEndian
	ne.PutUint32(req[0:], uint32(len(req)))
	ne.PutUint16(req[4:], unix.SOCK_DIAG_BY_FAMILY)
	ne.PutUint16(req[6:], unix.NLM_F_REQUEST|unix.NLM_F_DUMP)
	ne.PutUint32(req[8:], 1) // sequence number
	return req
}

// request is a dump request for q, with a filter program of the kind ss
// writes for "sport = :port": port >= port, then port <= port; a jump past
// the end accepts, one 4 bytes further rejects.
func request(q Query) []byte {
	ne := binary.NativeEndian
	bytecode := [...]byte{bcSGE, 8, 20, 0, 0, 0, 0, 0, bcSLE, 8, 12, 0, 0, 0, 0, 0}
	ne.PutUint16(bytecode[6:], uint16(q.Port))
	ne.PutUint16(bytecode[14:], uint16(q.Port))
	req := newRequest(sizeofInetDiagReqV2 + unix.SizeofNlAttr + len(bytecode))
	r := req[unix.SizeofNlMsghdr:]
	r[0], r[1] = q.Family, uint8(q.Proto)
	if q.Drops {
		r[2] = 1 << (attrSkMemInfo - 1) // idiag_ext
	}
	ne.PutUint32(r[4:], q.States) // idiag_states
	a := r[sizeofInetDiagReqV2:]
	ne.PutUint16(a[0:], uint16(unix.SizeofNlAttr+len(bytecode)))
	ne.PutUint16(a[2:], reqBytecode)
	copy(a[unix.SizeofNlAttr:], bytecode[:])
	return req
}

// parse reads an inet_diag_msg and its attributes: family, state, timer,
// retrans, then the id (sport, dport, src[16], dst[16], if, cookie[8]),
// expires, rqueue, wqueue, uid, inode.
func parse(m []byte, proto string) (Socket, error) {
	if len(m) < sizeofInetDiagMsg {
		return Socket{}, fmt.Errorf("a sock_diag answer of %d bytes", len(m))
	}
	ne := binary.NativeEndian
	s := Socket{
		Proto:   proto,
		State:   State(m[1]),
		Ifindex: int(ne.Uint32(m[40:])),
		Expires: time.Duration(ne.Uint32(m[52:])) * time.Millisecond,
		RecvQ:   ne.Uint32(m[56:]),
		SendQ:   ne.Uint32(m[60:]),
		UID:     int(ne.Uint32(m[64:])),
		Inode:   uint64(ne.Uint32(m[68:])),
	}
	sport, dport := binary.BigEndian.Uint16(m[4:]), binary.BigEndian.Uint16(m[6:])
	var src, dst netip.Addr
	if m[0] == unix.AF_INET {
		src, dst = netip.AddrFrom4([4]byte(m[8:12])), netip.AddrFrom4([4]byte(m[24:28]))
	} else {
		src, dst = netip.AddrFrom16([16]byte(m[8:24])), netip.AddrFrom16([16]byte(m[24:40]))
	}
	s.Local = netip.AddrPortFrom(src, sport)
	if dport != 0 || !dst.IsUnspecified() {
		s.Remote = netip.AddrPortFrom(dst, dport)
	}
	if s.TimeWait() {
		// The kernel lists a TIME_WAIT socket with uid and inode 0: it
		// belongs to no process and no user.
		s.UID = -1
	}
	for a := m[sizeofInetDiagMsg:]; len(a) >= unix.SizeofNlAttr; {
		l := int(ne.Uint16(a[0:]))
		if l < unix.SizeofNlAttr || l > len(a) {
			break
		}
		typ, data := ne.Uint16(a[2:]), a[unix.SizeofNlAttr:l]
		a = a[min(align(l), len(a)):]
		switch typ {
		case attrV6Only:
			s.V6Only = len(data) > 0 && data[0] != 0
		case attrSkMemInfo:
			if len(data) >= 4*(skMemInfoDrops+1) {
				s.Drops = ne.Uint32(data[4*skMemInfoDrops:])
			}
		}
	}
	return s, nil
}

// align rounds a netlink length up to 4 bytes (NLMSG_ALIGNTO, NLA_ALIGNTO).
func align(l int) int { return (l + 3) &^ 3 }

// FindOwners looks for the processes that hold the sockets of inodes,
// until each has one: this process first, by fstat of its descriptors, then
// the others in the order of their pids, by /proc/PID/fd. It reads the
// processes this one may read (its own user's, or all with CAP_SYS_PTRACE)
// and counts the others as hidden.
func FindOwners(inodes []uint64) (Owners, error) {
	o := Owners{ByInode: map[uint64][]Process{}}
	want := map[uint64]bool{}
	for _, ino := range inodes {
		if ino != 0 {
			want[ino] = true
		}
	}
	if len(want) == 0 {
		return o, nil
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return o, err
	}
	self := os.Getpid()
	pids := []int{self}
	for _, e := range entries {
		if pid, err := strconv.Atoi(e.Name()); err == nil && pid != self {
			pids = append(pids, pid)
		}
	}
	sort.Ints(pids[1:])
	found := map[uint64]bool{}
	for _, pid := range pids {
		if len(found) == len(want) {
			break // each socket's process is found; a shared one's others go unlisted
		}
		dir := "/proc/" + strconv.Itoa(pid) + "/fd"
		fds, err := os.ReadDir(dir)
		if err != nil {
			if errors.Is(err, os.ErrPermission) {
				o.Hidden++
			}
			continue // or it exited meanwhile
		}
		var comm string
		for _, fd := range fds {
			ino, ok := socketInode(pid == self, dir, fd.Name())
			if !ok || !want[ino] {
				continue
			}
			if comm == "" {
				b, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm")
				comm = strings.TrimSpace(string(b))
			}
			found[ino] = true
			if ps := o.ByInode[ino]; len(ps) == 0 || ps[len(ps)-1].PID != pid {
				o.ByInode[ino] = append(ps, Process{pid, comm})
			}
		}
	}
	for _, ps := range o.ByInode {
		sort.Slice(ps, func(i, j int) bool { return ps[i].PID < ps[j].PID })
	}
	return o, nil
}

// socketInode returns the inode of the socket at descriptor name of the
// process whose fd directory is dir: by fstat where the process is this
// one (some ten times cheaper than readlink through /proc), else from the
// link's text, "socket:[INODE]".
func socketInode(self bool, dir, name string) (uint64, bool) {
	if self {
		fd, err := strconv.Atoi(name)
		var st unix.Stat_t
		if err != nil || unix.Fstat(fd, &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFSOCK {
			return 0, false
		}
		return st.Ino, true
	}
	link, err := os.Readlink(dir + "/" + name)
	if err != nil || !strings.HasPrefix(link, "socket:[") || !strings.HasSuffix(link, "]") {
		return 0, false
	}
	ino, err := strconv.ParseUint(link[len("socket:["):len(link)-1], 10, 64)
	return ino, err == nil
}

// From linux/unix_diag.h, which x/sys does not export.
const (
	udiagShowName     = 0x01 // UDIAG_SHOW_NAME
	udiagShowUID      = 0x40 // UDIAG_SHOW_UID (Linux 5.3+)
	unixDiagName      = 0    // UNIX_DIAG_NAME: the bound name
	unixDiagUID       = 7    // UNIX_DIAG_UID: the socket's owner
	sizeofUnixDiagReq = 24
	sizeofUnixDiagMsg = 16
)

// DumpUnix calls each for every Unix socket of the network namespace whose
// abstract name starts with prefix, with its owner, from one
// NETLINK_SOCK_DIAG dump of every Unix socket (the kernel filters none).
// Any user may bind any abstract name, but the owner is the socket's
// creator: it tells a user's names from a stranger's. A listener's
// accepted sockets carry its name too.
func DumpUnix(prefix string, each func(UnixSocket)) error {
	req := newRequest(sizeofUnixDiagReq)
	r := req[unix.SizeofNlMsghdr:]
	r[0] = unix.AF_UNIX
	ne := binary.NativeEndian
	ne.PutUint32(r[4:], ^uint32(0)) // udiag_states: all
	ne.PutUint32(r[12:], udiagShowName|udiagShowUID)
	want := append([]byte{0}, prefix...)
	return dump(req, func(m []byte) error {
		if len(m) < sizeofUnixDiagMsg {
			return fmt.Errorf("a unix_diag answer of %d bytes", len(m))
		}
		name, uid, hasUID := unixAttrs(m[sizeofUnixDiagMsg:])
		if !bytes.HasPrefix(name, want) {
			return nil
		}
		if !hasUID {
			return errors.New("the kernel's unix_diag names no socket's owner (UNIX_DIAG_UID needs Linux 5.3+)")
		}
		// unix_diag_msg: family, type, state, pad, inode, cookie[2].
		each(UnixSocket{Name: string(name[1:]), UID: int(uid), Inode: uint64(ne.Uint32(m[4:])), State: State(m[2])})
		return nil
	})
}

// unixAttrs reads the name and owner attributes of a unix_diag answer.
func unixAttrs(b []byte) (name []byte, uid uint32, hasUID bool) {
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
		b = b[min(align(l), len(b)):]
	}
	return name, uid, hasUID
}
