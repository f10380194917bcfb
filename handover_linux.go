package reuse

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Classic BPF offsets from linux/filter.h, which x/sys does not export; they
// are the same on every architecture.
const (
	skfAdOff    = -0x1000   // SKF_AD_OFF: ancillary data
	skfAdRandom = 56        // SKF_AD_RANDOM: a random 32-bit number
	skfNetOff   = -0x100000 // SKF_NET_OFF: the network header
)

// The messages of the rendezvous, one a packet (SOCK_SEQPACKET).
const (
	msgTakeOver = "takeover" // new → old: take the address over from you
	msgSockets  = "sockets"  // old → new: "sockets PID GENERATION INODE...", with the rendezvous socket attached
	msgSteered  = "steered"  // new → old: new connections go to the new sockets now
	msgClosed   = "closed"   // old → new: the old process let go of its sockets
	msgProbe    = "probe"    // new → old: "probe PORT": drop the datagrams from PORT
	msgReady    = "ready"    // old → new: done
	msgQuiet    = "quiet"    // old → new: my queues stayed empty: may I go?
	msgGo       = "go"       // new → old: go (the point of no return)
)

// How often a waiter polls the kernel, and how many times a read of the
// group that keeps changing is tried.
const (
	pollInterval = 2 * time.Millisecond
	steerTries   = 5
)

// sockInfo is what the handover needs to know of one socket.
type sockInfo struct {
	rc    syscall.RawConn
	ino   uint64
	proto int // SO_PROTOCOL: IPPROTO_TCP, IPPROTO_MPTCP or IPPROTO_UDP
}

// handoverState is the serving side of a Handover after TakeOver.
type handoverState struct {
	g        *sockGroup
	socks    []sockInfo
	sa       unix.Sockaddr // the local address, for the helper and members
	v6       bool          // IPV6_V6ONLY of the sockets
	dev      string        // SO_BINDTODEVICE of the sockets
	rv       *net.UnixListener
	base     string // the prefix of the abstract names
	slot     string
	quiet    time.Duration
	filtered bool // filterProbes set a filter on the sockets
	// noSockDiag: a sock_diag dump failed, members reads /proc.
	noSockDiag bool
	steering   *Steering // Handover.Steering
	gen        int       // the generation of the sockets' connection IDs
	// follow, if set, follows the old members' leaves after a handover
	// under a Steering, until they are gone or stop is closed.
	follow func(stop <-chan struct{})
}

func (st *handoverState) generation() int { return st.gen }

// inspect checks the sockets of g and learns what the handover needs.
func inspect(g *sockGroup) (*handoverState, error) {
	st := &handoverState{g: g}
	for i, s := range g.socks {
		rc, err := s.SyscallConn()
		if err != nil {
			return nil, fmt.Errorf("socket %d: %w", i+1, err)
		}
		info := sockInfo{rc: rc}
		var serr error
		var reusePort int
		var sa unix.Sockaddr
		var v6 bool
		var dev string
		err = rc.Control(func(fd uintptr) {
			var stat unix.Stat_t
			if serr = unix.Fstat(int(fd), &stat); serr != nil {
				serr = os.NewSyscallError("fstat", serr)
				return
			}
			info.ino = stat.Ino
			if info.proto, serr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_PROTOCOL); serr != nil {
				serr = os.NewSyscallError("getsockopt SO_PROTOCOL", serr)
				return
			}
			if reusePort, serr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT); serr != nil {
				serr = os.NewSyscallError("getsockopt SO_REUSEPORT", serr)
				return
			}
			if sa, serr = unix.Getsockname(int(fd)); serr != nil {
				serr = os.NewSyscallError("getsockname", serr)
				return
			}
			if _, ok := sa.(*unix.SockaddrInet6); ok {
				var on int
				if on, serr = unix.GetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_V6ONLY); serr != nil {
					serr = os.NewSyscallError("getsockopt IPV6_V6ONLY", serr)
					return
				}
				v6 = on == 1
			}
			dev, _ = unix.GetsockoptString(int(fd), unix.SOL_SOCKET, unix.SO_BINDTODEVICE)
		})
		if err == nil {
			err = serr
		}
		if err != nil {
			return nil, fmt.Errorf("socket %d: %w", i+1, err)
		}
		if reusePort == 0 {
			return nil, fmt.Errorf("socket %d: %w", i+1, errNotShared)
		}
		if i == 0 {
			st.sa, st.v6, st.dev = sa, v6, dev
		}
		st.socks = append(st.socks, info)
	}
	st.base = fmt.Sprintf("reuse/%d/%s/%s", os.Geteuid(), g.network, g.address)
	return st, nil
}

// steering is a program attached to the group by steer.
type steering struct {
	st     *handoverState
	helper int                          // the plain-TCP helper's descriptor, or -1
	ask    func(string) (string, error) // sends the old process a message, returns its answer
}

// steer attaches to the group a program that gives new connections or
// datagrams to other members than the old ones (inodes old). It returns nil,
// and attaches nothing, when no old member is left.
//
// The kernel keeps a group's members in an array in join order; when one
// leaves, the last takes its slot. members lists the group in join order, a
// guess at the old members' slots that findSlots checks with the kernel
// (members may have left since the new sockets joined). Of n members (not
// counting the helper), e of them old, the program picks among the slots 0..n-e that
// are not old ones: while the old members close one by one, only members
// past those slots move (the helper, which joined last, first), so a pick
// never falls on an old, moved or missing member until the last old one is
// gone; then a pick past the end falls back to the kernel's hash among
// members that are all new.
//
// Where all the process's sockets are MPTCP, which cannot attach a program,
// a plain-TCP helper joins the group and attaches it; it stays, never
// picked, until the old members are gone and it detaches the program.
func (st *handoverState) steer(old []uint64, oldPid int, ask func(string) (string, error)) (*steering, error) {
	sg := &steering{st: st, helper: -1, ask: ask}
	for try := 1; ; try++ {
		members, err := st.stableMembers()
		if err == nil && sg.helper < 0 && !st.canSteer() {
			// Opened after reading the members, so that it joins microseconds
			// before the program is attached.
			if sg.helper, err = st.openHelper(); err != nil {
				err = fmt.Errorf("opening a plain-TCP member to steer the group of %s %s: %w", st.g.network, st.g.address, err)
			}
		}
		if err != nil {
			sg.release()
			return nil, err
		}
		helperIno := sg.helperIno()
		members = slices.DeleteFunc(members, func(ino uint64) bool { return ino == helperIno })
		// A read that lacks this process's own sockets skipped
		// entries (see stableMembers), and may lack old ones too.
		if !st.listsOwn(members) {
			if try < steerTries {
				time.Sleep(pollInterval)
				continue
			}
			sg.release()
			return nil, fmt.Errorf("the sockets given to TakeOver are not all in the group of %s %s: closed?", st.g.network, st.g.address)
		}
		var excl []int
		for i, ino := range members {
			if slices.Contains(old, ino) {
				excl = append(excl, i)
			}
		}
		if len(excl) == 0 {
			sg.release()
			return nil, nil
		}
		// A member may have left since these joined (a helper of an
		// earlier handover, a worker of another slot, a process that
		// crashed): ask the kernel where the old ones are.
		if excl, err = sg.findSlots(len(members), excl, old, oldPid); err != nil {
			sg.release()
			return nil, err
		}
		n := len(members)
		var picks []int
		for i := 0; i <= n-len(excl); i++ {
			if !slices.Contains(excl, i) {
				picks = append(picks, i)
			}
		}
		if len(picks) == 0 {
			// More old members than new ones: while the old ones close,
			// a pick may fall past the end and the hash pick an old one.
			for i := 0; i < n; i++ {
				if !slices.Contains(excl, i) {
					picks = append(picks, i)
				}
			}
		}
		if len(picks) == 0 {
			sg.release()
			return nil, fmt.Errorf("every member of the group of %s %s belongs to the old process: none to steer to", st.g.network, st.g.address)
		}
		if err := sg.attach(st.program(picks)); err != nil {
			sg.release()
			return nil, err
		}
		if testHookSteered != nil {
			testHookSteered()
		}
		// A member that joined or left meanwhile moved the slots.
		again, err := st.stableMembers()
		again = slices.DeleteFunc(again, func(ino uint64) bool { return ino == helperIno })
		if err == nil && slices.Equal(again, members) {
			return sg, nil
		}
		if err == nil && try == steerTries {
			err = fmt.Errorf("the group of %s %s changed during each of %d tries to steer it", st.g.network, st.g.address, steerTries)
		}
		// Roll back; a new helper will join last again.
		if rerr := sg.release(); err == nil {
			err = rerr
		}
		if err != nil {
			return nil, err
		}
	}
}

// testHookSteered, if set, runs after each attach of steer.
var testHookSteered func()

// canSteer reports whether one of the process's own sockets can attach a
// program: MPTCP listeners refuse with EOPNOTSUPP.
func (st *handoverState) canSteer() bool {
	return slices.ContainsFunc(st.socks, func(s sockInfo) bool { return s.proto != unix.IPPROTO_MPTCP })
}

// helperIno returns the helper's inode, or 0.
func (sg *steering) helperIno() uint64 {
	var stat unix.Stat_t
	if sg.helper < 0 || unix.Fstat(sg.helper, &stat) != nil {
		return 0
	}
	return stat.Ino
}

// attach sets prog as the group's program.
func (sg *steering) attach(prog []unix.SockFilter) error {
	err := sg.st.onSteerable(sg.helper, func(fd int) error { return attachProgram(fd, prog) })
	if err != nil {
		return fmt.Errorf("steering the group of %s %s: %w", sg.st.g.network, sg.st.g.address, err)
	}
	return nil
}

// release ends the steering, once the old members are gone or on a
// failure: it detaches the program, so that the kernel's hash spreads the
// load again, and closes the helper.
func (sg *steering) release() error {
	err := sg.st.detach(sg.helper)
	if sg.helper >= 0 {
		unix.Close(sg.helper)
		sg.helper = -1
	}
	return err
}

// unsteer detaches the group's program, through a helper where all the
// process's sockets are MPTCP.
func (st *handoverState) unsteer() error {
	helper := -1
	if !st.canSteer() {
		var err error
		if helper, err = st.openHelper(); err != nil {
			return fmt.Errorf("opening a plain-TCP member to restore the hash of the group of %s %s: %w", st.g.network, st.g.address, err)
		}
		defer unix.Close(helper)
	}
	return st.detach(helper)
}

// detach detaches the group's program through helper, or, if -1, one of the
// process's own sockets.
func (st *handoverState) detach(helper int) error {
	err := st.onSteerable(helper, detachProgram)
	if errors.Is(err, errors.ErrUnsupported) {
		// Linux before 5.3, which cannot detach a program: it stays, and
		// its picks past the end of the group fall back to the hash (all
		// of them once the new process has as many sockets as the old one
		// had).
		return nil
	}
	if err != nil {
		return fmt.Errorf("restoring the hash of the group of %s %s: %w", st.g.network, st.g.address, err)
	}
	return nil
}

// onSteerable runs fn on helper, if not -1, else on one of the process's
// own sockets that can attach a program.
func (st *handoverState) onSteerable(helper int, fn func(fd int) error) error {
	if helper >= 0 {
		return fn(helper)
	}
	for _, s := range st.socks {
		if s.proto == unix.IPPROTO_MPTCP {
			continue
		}
		var ferr error
		if err := s.rc.Control(func(fd uintptr) { ferr = fn(int(fd)) }); err != nil {
			return err
		}
		return ferr
	}
	return errors.New("no socket can steer the group")
}

// openHelper opens a plain-TCP listener that joins the group last, with
// raw system calls. Its socket filter drops every packet: a SYN that the
// kernel's hash gives it before the program is attached, or after it is
// detached, is dropped, not answered, and the client sends it again a
// second later, when the helper is gone.
func (st *handoverState) openHelper() (int, error) {
	return joinHelper(st.sa, unix.SOCK_STREAM, st.v6, st.dev)
}

// program returns a classic BPF program that picks one of the slots picks
// (ascending): at random for TCP, where a SYN's choice is final, by a hash
// of the source address and port for UDP, so that a flow stays on one
// member.
func (st *handoverState) program(picks []int) []unix.SockFilter {
	if len(picks) == 1 {
		return []unix.SockFilter{{Code: unix.BPF_RET | unix.BPF_K, K: uint32(picks[0])}}
	}
	var p []unix.SockFilter
	if st.g.network == "udp" {
		// The program sees the UDP payload at offset 0; SKF_NET_OFF
		// reaches the IP header (no IPv4 options or IPv6 extension
		// headers assumed: a wrong guess only changes the hash).
		srcAddr, srcPort := bpfOff(skfNetOff+12), bpfOff(skfNetOff+20)
		if _, ok := st.sa.(*unix.SockaddrInet6); ok {
			srcAddr, srcPort = bpfOff(skfNetOff+20), bpfOff(skfNetOff+40)
		}
		p = append(p,
			unix.SockFilter{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: srcAddr},
			unix.SockFilter{Code: unix.BPF_MISC | unix.BPF_TAX},
			unix.SockFilter{Code: unix.BPF_LD | unix.BPF_H | unix.BPF_ABS, K: srcPort},
			unix.SockFilter{Code: unix.BPF_ALU | unix.BPF_XOR | unix.BPF_X},
			unix.SockFilter{Code: unix.BPF_ALU | unix.BPF_MUL | unix.BPF_K, K: 0x9e3779b1},
			unix.SockFilter{Code: unix.BPF_ALU | unix.BPF_RSH | unix.BPF_K, K: 16},
		)
	} else {
		p = append(p, unix.SockFilter{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: bpfOff(skfAdOff + skfAdRandom)})
	}
	p = append(p, unix.SockFilter{Code: unix.BPF_ALU | unix.BPF_MOD | unix.BPF_K, K: uint32(len(picks))})
	// Map 0..len(picks)-1 onto picks: step over each slot left out, in
	// ascending order.
	for i := 0; i < picks[len(picks)-1]; i++ {
		if !slices.Contains(picks, i) {
			p = append(p,
				unix.SockFilter{Code: unix.BPF_JMP | unix.BPF_JGE | unix.BPF_K, K: uint32(i), Jt: 0, Jf: 1},
				unix.SockFilter{Code: unix.BPF_ALU | unix.BPF_ADD | unix.BPF_K, K: 1},
			)
		}
	}
	return append(p, unix.SockFilter{Code: unix.BPF_RET | unix.BPF_A})
}

// bpfOff returns a negative offset of the classic BPF ABI as the unsigned K
// of an instruction.
func bpfOff(off int32) uint32 { return uint32(off) }

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
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

// members returns the inodes of the group's members, in the order they
// joined: from a sock_diag dump (diagSockets), or from /proc/net where the
// kernel answers none. Both list a hash chain of the namespace's sockets,
// IPv4 ones newest first, IPv6 ones oldest first: the kernel adds IPv6
// SO_REUSEPORT sockets at the tail of their chain, others at the head.
func (st *handoverState) members() ([]uint64, error) {
	var addr []byte
	var port int
	switch sa := st.sa.(type) {
	case *unix.SockaddrInet4:
		addr, port = sa.Addr[:], sa.Port
	case *unix.SockaddrInet6:
		addr, port = sa.Addr[:], sa.Port
	default:
		return nil, fmt.Errorf("not an inet socket: %T", st.sa)
	}
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
		inos, err = diagSockets(proto, state, addr, port, ifindex)
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

// queued returns how much waits in the sockets' queues: connections in a
// listener's accept queue (TCP_INFO's tcpi_unacked, which MPTCP listeners
// report too), bytes of the next datagram (SIOCINQ).
func (st *handoverState) queued() (int, error) {
	total := 0
	for _, s := range st.socks {
		var n int
		var serr error
		err := s.rc.Control(func(fd uintptr) {
			if st.g.network == "udp" {
				n, serr = unix.IoctlGetInt(int(fd), unix.SIOCINQ)
				serr = os.NewSyscallError("ioctl SIOCINQ", serr)
				return
			}
			var info *unix.TCPInfo
			info, serr = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
			if serr == nil {
				n = int(info.Unacked)
			}
			serr = os.NewSyscallError("getsockopt TCP_INFO", serr)
		})
		if err == nil {
			err = serr
		}
		if err != nil {
			return 0, fmt.Errorf("reading the queue of %s %s: %w", st.g.network, st.g.address, err)
		}
		total += n
	}
	return total, nil
}

// errNotShared is the error for a socket opened without SO_REUSEPORT, which
// no other socket can join.
var errNotShared = errors.New("the socket does not share its port (opened under Exclusive, or not by this package): a handover needs sockets opened under Share")
