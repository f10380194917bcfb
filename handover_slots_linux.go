package reuse

import (
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

// probeTimeout bounds one probe: its connection, and the wait until a
// member's process accepts it.
const probeTimeout = 2 * time.Second

// findSlots returns the slots of the group (of n members, not counting the
// helper) that hold the old process's sockets (inodes old). Worker
// processes of other slots come and go, and a member that leaves moves the
// last one into its slot, so join order (guess) may be wrong. The kernel
// says where a slot is: a program sends one probe, from a port of this
// process's, to the slot, the rest as without a program. A TCP probe is a
// connection, whose server end shows up in the file table of the process
// that accepted it; a UDP probe is an empty datagram, which the old
// process's sockets drop (a socket filter it sets on request), so that it
// counts in their drops. The slots guessed are probed first; only if one is
// wrong are the others probed, each probe then costing a member of another
// slot a connection that resets at once, or an empty datagram.
func (sg *steering) findSlots(n int, guess []int, old []uint64, oldPid int) ([]int, error) {
	p, err := sg.newProber(n, old, oldPid)
	if err != nil {
		return nil, err
	}
	defer p.close()
	want := len(old)
	check := func(slots []int) ([]int, error) {
		var found []int
		for _, i := range slots {
			isOld, err := p.probe(i)
			if err != nil {
				return nil, err
			}
			if isOld {
				found = append(found, i)
			}
			if len(found) == want {
				break
			}
		}
		return found, nil
	}
	found, err := check(guess)
	if err == nil && len(found) != want {
		all := make([]int, n)
		for i := range all {
			all[i] = i
		}
		found, err = check(all)
	}
	if err == nil && len(found) != want {
		err = fmt.Errorf("the old process's %d sockets are in %d slots of the group of %s %s", want, len(found), sg.st.g.network, sg.st.g.address)
	}
	return found, err
}

// prober sends probes to one slot of the group at a time.
type prober struct {
	sg     *steering
	n      int          // members of the group, not counting the helper
	old    []uint64     // the old process's sockets
	dst    *net.TCPAddr // where the probes go
	port   int          // their source port
	fdsDir string       // /proc/PID/fd of the old process
	udp    *net.UDPConn // the UDP probes' socket
}

func (sg *steering) newProber(n int, old []uint64, pid int) (*prober, error) {
	var ip net.IP
	switch sa := sg.st.sa.(type) {
	case *unix.SockaddrInet4:
		ip = net.IP(sa.Addr[:])
		if ip.IsUnspecified() {
			ip = net.IPv4(127, 0, 0, 1)
		}
	case *unix.SockaddrInet6:
		ip = net.IP(sa.Addr[:])
		if ip.IsUnspecified() {
			ip = net.IPv6loopback
		}
	}
	_, portStr, _ := net.SplitHostPort(sg.st.g.address)
	port, _ := strconv.Atoi(portStr)
	p := &prober{sg: sg, n: n, old: old, dst: &net.TCPAddr{IP: ip, Port: port}, fdsDir: fmt.Sprintf("/proc/%d/fd", pid)}
	if sg.st.g.network == "udp" {
		c, err := net.ListenUDP("udp", &net.UDPAddr{IP: ip})
		if err != nil {
			return nil, err
		}
		p.udp, p.port = c, c.LocalAddr().(*net.UDPAddr).Port
		if _, err := sg.ask(msgProbe + " " + strconv.Itoa(p.port)); err != nil {
			c.Close()
			return nil, err
		}
		return p, nil
	}
	// The port the TCP probes leave from: one that nobody holds now, held
	// by each probe in turn (they close with a reset, which leaves no
	// TIME_WAIT behind).
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: ip})
	if err != nil {
		return nil, err
	}
	p.port = ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	return p, nil
}

func (p *prober) close() {
	if p.udp != nil {
		p.udp.Close()
	}
}

// program steers the probes to slot i, and the rest of the traffic as it
// would go without a program (or by the Handover's Steering), but never to
// the helper, which joined last.
func (p *prober) program(i int) []unix.SockFilter {
	v6 := p.dst.IP.To4() == nil
	var rest []unix.SockFilter
	if st := p.sg.st; st.steering != nil {
		rest = steerProgram(*st.steering) // the old process's steering, unchanged
	} else {
		rest = spreadProgram(st.g.network == "udp", v6, upTo(p.n))
	}
	return probeProgram(v6, []int{p.port}, []int{i}, rest)
}

// probe reports whether the old process holds the member in slot i.
func (p *prober) probe(i int) (bool, error) {
	if err := p.sg.attach(p.program(i)); err != nil {
		return false, err
	}
	if p.udp != nil {
		return p.probeUDP()
	}
	d := net.Dialer{
		LocalAddr: &net.TCPAddr{IP: p.dst.IP, Port: p.port},
		Timeout:   probeTimeout,
		Control: func(network, address string, rc syscall.RawConn) error {
			var serr error
			err := rc.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEADDR, 1) })
			if err == nil {
				err = serr
			}
			return err
		},
	}
	d.SetMultipathTCP(false)
	c, err := d.Dial("tcp", p.dst.String())
	if err != nil {
		return false, fmt.Errorf("probing slot %d of the group of %s %s: %w", i, p.sg.st.g.network, p.sg.st.g.address, err)
	}
	defer func() {
		_ = c.(*net.TCPConn).SetLinger(0) // a reset: no TIME_WAIT
		c.Close()
	}()
	// The server end: local address dst, remote address the probe's. Its
	// inode is 0 until a process accepts it.
	file := "/proc/net/tcp"
	if p.dst.IP.To4() == nil {
		file += "6"
	}
	local := procAddrOf(p.dst.IP, p.dst.Port)
	remote := procAddrOf(p.dst.IP, p.port)
	for start := time.Now(); time.Since(start) < probeTimeout; time.Sleep(pollInterval) {
		ino, err := serverInode(file, local, remote)
		if err != nil {
			return false, err
		}
		if ino != 0 {
			return p.holds(ino)
		}
	}
	return false, fmt.Errorf("probing slot %d of the group of %s %s: nobody accepted the probe in %v", i, p.sg.st.g.network, p.sg.st.g.address, probeTimeout)
}

// holds reports whether the old process has socket ino open.
func (p *prober) holds(ino uint64) (bool, error) {
	entries, err := os.ReadDir(p.fdsDir)
	if err != nil {
		return false, err
	}
	want := "socket:[" + strconv.FormatUint(ino, 10) + "]"
	for _, e := range entries {
		if target, err := os.Readlink(p.fdsDir + "/" + e.Name()); err == nil && target == want {
			return true, nil
		}
	}
	return false, nil
}

// procAddrOf writes ip and port as /proc/net/tcp{,6} does.
func procAddrOf(ip net.IP, port int) string {
	if ip4 := ip.To4(); ip4 != nil {
		return procAddr(ip4, port)
	}
	return procAddr(ip.To16(), port)
}

// serverInode returns the inode of the established socket from local to
// remote listed in file, 0 if it has none yet.
func serverInode(file, local, remote string) (uint64, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		fields := strings.Fields(line)
		if len(fields) > 9 && fields[1] == local && fields[2] == remote && fields[3] == "01" {
			return strconv.ParseUint(fields[9], 10, 64)
		}
	}
	return 0, nil
}

// udpProbeWait is how long a UDP probe waits for the old process's sockets
// to count it dropped: on one host the datagram is delivered before the
// send returns, so this only bounds a miss.
const udpProbeWait = 20 * time.Millisecond

// probeUDP sends an empty datagram and reports whether one of the old
// process's sockets dropped it.
func (p *prober) probeUDP() (bool, error) {
	before, err := p.drops()
	if err != nil {
		return false, err
	}
	if _, err := p.udp.WriteTo(nil, &net.UDPAddr{IP: p.dst.IP, Port: p.dst.Port}); err != nil {
		return false, err
	}
	for start := time.Now(); ; time.Sleep(pollInterval) {
		after, err := p.drops()
		if err != nil {
			return false, err
		}
		if after > before {
			return true, nil
		}
		if time.Since(start) > udpProbeWait {
			return false, nil
		}
	}
}

// drops sums the drops that /proc/net/udp{,6} counts for the old
// process's sockets. A read that skipped one of them (see stableMembers)
// is read again.
func (p *prober) drops() (uint64, error) {
	for try := 1; ; try++ {
		total, found, err := p.readDrops()
		if err != nil || found == len(p.old) || try == steerTries {
			return total, err
		}
	}
}

// readDrops is one read of drops, with how many of the old sockets it saw.
func (p *prober) readDrops() (total uint64, found int, err error) {
	file := "/proc/net/udp"
	if p.dst.IP.To4() == nil {
		file += "6"
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return 0, 0, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		// ... inode ref pointer drops
		fields := strings.Fields(line)
		if len(fields) < 13 {
			continue
		}
		ino, err := strconv.ParseUint(fields[9], 10, 64)
		if err != nil || !slices.Contains(p.old, ino) {
			continue
		}
		n, err := strconv.ParseUint(fields[len(fields)-1], 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("reading %s: %q: %w", file, line, err)
		}
		total += n
		found++
	}
	return total, found, nil
}

// filterProbes makes this process's UDP sockets drop the datagrams from
// port (a socket filter), for the successor's probes. Listeners need none:
// a TCP probe is told by who accepts it.
func (st *handoverState) filterProbes(port string) error {
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return fmt.Errorf("probe port %q: %w", port, err)
	}
	if st.g.network != "udp" {
		return nil
	}
	prog := probeFilter([]int{int(n)})
	for _, s := range st.socks {
		var serr error
		err := s.rc.Control(func(fd uintptr) {
			serr = unix.SetsockoptSockFprog(int(fd), unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]})
		})
		if err == nil {
			err = serr
		}
		if err != nil {
			return fmt.Errorf("filtering the probes: %w", os.NewSyscallError("setsockopt SO_ATTACH_FILTER", err))
		}
	}
	st.filtered = true
	return nil
}

// unfilter removes the filter of filterProbes.
func (st *handoverState) unfilter() {
	if !st.filtered {
		return
	}
	st.filtered = false
	for _, s := range st.socks {
		_ = s.rc.Control(func(fd uintptr) { _ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_DETACH_FILTER, 0) })
	}
}
