package reuse

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/sockreuse/reuse/internal/sockdiag"
	"golang.org/x/sys/unix"
)

// This file finds where the old process's sockets sit in the kernel's
// array of the group's members, the indexes that a program must steer
// around: join order (members) only while no member left since (one that
// leaves moves the last into its index). The old process's word (see
// ownIndexes) and join order are guesses; the kernel tells where an index
// leads: a program sends probes, from ports of this process's, to chosen
// indexes, and the rest of the traffic as before.

// probeTimeout bounds one round of probes.
const probeTimeout = 2 * time.Second

// udpProbeWait is how long a UDP probe that reached no socket of either
// process may take to show up: on one host a datagram is delivered before
// its send returns, unless the kernel defers the work (under load).
const udpProbeWait = 20 * time.Millisecond

// locate returns the indexes, among the n of the group's array (the helper
// not counted), that hold the old process's sockets old, guess first.
func (sg *steering) locate(n int, guess []int, old []uint64) ([]int, error) {
	var found []int
	var err error
	if sg.st.g.network == "tcp" {
		found, err = sg.locateListeners(n, guess, len(old))
	} else {
		found, err = sg.locateDatagramSockets(n, guess, old)
	}
	if err == nil && len(found) != len(old) {
		err = fmt.Errorf("found the old process's %d sockets at %d indexes of the group of %s %s", len(old), len(found), sg.st.g.network, sg.st.g.address)
	}
	return found, err
}

// locateListeners probes the indexes guessed, then, if want listeners are
// not all there, all the others; each round at once, a connection to
// each index from a port of its own. On "probe", the old process lowers
// the MSS that its listeners announce (TCP_MAXSEG) and says to what: a
// probe that one of them answers may send segments of that size at most,
// one that any other member answers larger ones. No process need accept a
// probe; each ends with a reset. A client that an old listener accepts
// during the probes keeps the lower MSS, which on a network (1460 bytes,
// or 8960 with jumbo frames) changes nothing.
func (sg *steering) locateListeners(n int, guess []int, want int) ([]int, error) {
	answer, err := sg.ask(msgProbe)
	if err != nil {
		return nil, err
	}
	marked, err := strconv.Atoi(strings.TrimPrefix(answer, msgReady+" "))
	if err != nil {
		return nil, protocolError(answer, msgReady+" MSS")
	}
	found, err := sg.probeListeners(n, guess, marked)
	if err != nil || len(found) == want {
		return found, err
	}
	var rest []int
	for i := 0; i < n; i++ {
		if !slices.Contains(guess, i) {
			rest = append(rest, i)
		}
	}
	more, err := sg.probeListeners(n, rest, marked)
	found = append(found, more...)
	slices.Sort(found)
	return found, err
}

// probeListeners probes the indexes at once, and returns those that lead
// to a listener announcing the MSS marked.
func (sg *steering) probeListeners(n int, at []int, marked int) ([]int, error) {
	dst := sg.st.dialAddr()
	ports, err := freePorts(dst.Addr(), len(at))
	if err != nil {
		return nil, err
	}
	if err := sg.attach(probeProgram(dst.Addr().Is6(), ports, at, sg.rest(n))); err != nil {
		return nil, err
	}
	conns, err := dialProbes(dst, ports)
	defer func() {
		for _, c := range conns {
			if c != nil {
				_ = c.SetLinger(0) // a reset: no TIME_WAIT
				c.Close()
			}
		}
	}()
	if err != nil {
		return nil, fmt.Errorf("probing the group of %s %s: %w", sg.st.g.network, sg.st.g.address, err)
	}
	var found []int
	for i, c := range conns {
		mss, err := sendMSS(c)
		if err != nil {
			return nil, err
		}
		if mss <= marked {
			found = append(found, at[i])
		}
	}
	return found, nil
}

// sendMSS returns the largest segment that c may send (TCP_INFO's
// tcpi_snd_mss): the peer's announced MSS, less the options.
func sendMSS(c *net.TCPConn) (int, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return 0, err
	}
	var mss int
	err = withFD(rc, func(fd uintptr) error {
		info, err := unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
		if err == nil {
			mss = int(info.Snd_mss)
		}
		return os.NewSyscallError("getsockopt TCP_INFO", err)
	})
	return mss, err
}

// indexes returns 0, 1, ..., n-1.
func indexes(n int) []int {
	all := make([]int, n)
	for i := range all {
		all[i] = i
	}
	return all
}

// rest returns the program for what is not a probe: the traffic as it
// would go without a program (or by the Handover's Steering), but never to
// the helper, which joined last.
func (sg *steering) rest(n int) []unix.SockFilter {
	if sg.st.steering != nil {
		return steerProgram(*sg.st.steering)
	}
	return spreadProgram(sg.st.g.network == "udp", sg.st.v6Family(), indexes(n))
}

// freePorts returns n ports of ip that nobody holds now: the probes'
// source ports, each held by its probe in turn.
func freePorts(ip netip.Addr, n int) ([]int, error) {
	var ports []int
	for i := 0; i < n; i++ {
		ln, err := net.ListenTCP("tcp", net.TCPAddrFromAddrPort(netip.AddrPortFrom(ip, 0)))
		if err != nil {
			return nil, err
		}
		defer ln.Close()
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// dialProbes connects from each of ports to dst, at once, in plain TCP.
func dialProbes(dst netip.AddrPort, ports []int) ([]*net.TCPConn, error) {
	conns := make([]*net.TCPConn, len(ports))
	errs := make([]error, len(ports))
	var wg sync.WaitGroup
	for i, port := range ports {
		i, port := i, port
		wg.Add(1)
		go func() {
			defer wg.Done()
			d := net.Dialer{
				LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(dst.Addr(), uint16(port))),
				Timeout:   probeTimeout,
				Control:   reuseAddrControl,
			}
			d.SetMultipathTCP(false)
			c, err := d.Dial("tcp", dst.String())
			if err != nil {
				errs[i] = fmt.Errorf("probe from port %d: %w", port, err)
				return
			}
			conns[i] = c.(*net.TCPConn)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return conns, err
		}
	}
	return conns, nil
}

// locateDatagramSockets probes one index at a time, those of guess first,
// with an empty datagram from a port of the index's own. The old process's
// sockets drop the datagrams of the port it was told last ("probe PORT"),
// this process's those of every probe's port (socket filters), and
// sock_diag counts each socket's drops. A probe that another process's
// socket reads (another slot's worker) shows nowhere: the first round
// waits udpProbeWait/10 for each, a second one udpProbeWait. A late probe
// finds the old process's filter on another port: read, never counted.
func (sg *steering) locateDatagramSockets(n int, guess []int, old []uint64) ([]int, error) {
	dst := sg.st.dialAddr()
	conns := make([]*net.UDPConn, n)
	ports := make([]int, n)
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	}()
	for i := range conns {
		c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(dst.Addr(), 0)))
		if err != nil {
			return nil, err
		}
		conns[i], ports[i] = c, c.LocalAddr().(*net.UDPAddr).Port
	}
	if err := sg.st.filterProbes(ports...); err != nil {
		return nil, err
	}
	defer sg.st.unprobe()
	order := slices.Clone(guess)
	for i := 0; i < n; i++ {
		if !slices.Contains(order, i) {
			order = append(order, i)
		}
	}
	var found []int
	for _, wait := range []time.Duration{udpProbeWait / 10, udpProbeWait} {
		var left []int
		for _, i := range order {
			if len(found) == len(old) {
				break
			}
			isOld, err := sg.probeDatagram(conns[i], dst, ports[i], i, n, old, wait)
			if err != nil {
				return nil, err
			}
			if isOld {
				found = append(found, i)
			} else {
				left = append(left, i)
			}
		}
		order = left
	}
	slices.Sort(found)
	return found, nil
}

// probeDatagram reports whether the datagram socket at index i of n is one
// of the old process's sockets old, waiting wait at most for a probe that
// shows nowhere.
func (sg *steering) probeDatagram(c *net.UDPConn, dst netip.AddrPort, port, i, n int, old []uint64, wait time.Duration) (bool, error) {
	if _, err := sg.ask(msgProbe + " " + strconv.Itoa(port)); err != nil {
		return false, err
	}
	if err := sg.attach(probeProgram(dst.Addr().Is6(), []int{port}, []int{i}, sg.rest(n))); err != nil {
		return false, err
	}
	own := sg.st.inodes()
	before, err := sg.st.drops()
	if err != nil {
		return false, err
	}
	if _, err := c.WriteToUDPAddrPort(nil, dst); err != nil {
		return false, err
	}
	for start := time.Now(); time.Since(start) < wait; time.Sleep(pollInterval / 8) {
		after, err := sg.st.drops()
		if err != nil {
			return false, err
		}
		switch {
		case sumOf(after, old) > sumOf(before, old):
			return true, nil
		case sumOf(after, own) > sumOf(before, own):
			return false, nil
		}
	}
	return false, nil
}

// sumOf sums the counts of inos.
func sumOf(counts map[uint64]uint32, inos []uint64) (sum uint64) {
	for _, ino := range inos {
		sum += uint64(counts[ino])
	}
	return sum
}

// reuseAddrControl sets SO_REUSEADDR on a probe, whose port another
// probe's reset may have left in use a moment.
func reuseAddrControl(_, _ string, rc syscall.RawConn) error {
	return withFD(rc, func(fd uintptr) error {
		return os.NewSyscallError("setsockopt SO_REUSEADDR", setsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1))
	})
}

// drops returns the drops that sock_diag counts for each datagram socket
// of the group, by inode.
func (st *handoverState) drops() (map[uint64]uint32, error) {
	a := st.addrPort()
	q := sockdiag.Query{Family: familyOf(a.Addr()), Proto: unix.IPPROTO_UDP, Port: int(a.Port()), States: 1 << sockdiag.Close, Drops: true}
	drops := make(map[uint64]uint32)
	err := sockdiag.Dump(q, func(s sockdiag.Socket) { drops[s.Inode] = s.Drops })
	if err != nil {
		return nil, fmt.Errorf("reading the drops of %s %s (NETLINK_SOCK_DIAG): %w", st.g.network, st.g.address, err)
	}
	return drops, nil
}

// filterProbes makes this process's datagram sockets drop the datagrams
// from ports (a socket filter, which replaces the last one), for the
// successor's probes.
func (st *handoverState) filterProbes(ports ...int) error {
	prog := probeFilter(ports)
	for _, s := range st.socks {
		err := withFD(s.rc, func(fd uintptr) error {
			return os.NewSyscallError("setsockopt SO_ATTACH_FILTER", unix.SetsockoptSockFprog(int(fd), unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}))
		})
		if err != nil {
			return fmt.Errorf("filtering the probes: %w", err)
		}
	}
	st.filtered = true
	return nil
}

// markListeners lowers the MSS that this process's listeners announce
// (TCP_MAXSEG), for the successor's probes, and returns it: 16384, below
// the loopback's 65483 and above any network's, or half of what the
// server set.
func (st *handoverState) markListeners() (int, error) {
	st.userMSS = make([]int, len(st.socks))
	marked := markedMSS
	for i, s := range st.socks {
		err := withFD(s.rc, func(fd uintptr) error {
			v, err := unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_MAXSEG)
			if err != nil {
				return os.NewSyscallError("getsockopt TCP_MAXSEG", err)
			}
			if v != defaultMSS { // a listener reads 536 unless the server set one
				st.userMSS[i] = v
				marked = min(marked, v/2)
			}
			return nil
		})
		if err != nil {
			return 0, fmt.Errorf("marking the listeners for the probes: %w", err)
		}
	}
	for _, s := range st.socks {
		err := withFD(s.rc, func(fd uintptr) error {
			return os.NewSyscallError("setsockopt TCP_MAXSEG", unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_MAXSEG, marked))
		})
		if err != nil {
			return 0, fmt.Errorf("marking the listeners for the probes: %w", err)
		}
	}
	return marked, nil
}

// The MSS of markListeners, and what a listener reads when the server set
// none (TCP_MSS_DEFAULT).
const (
	markedMSS  = 16384
	defaultMSS = 536
)

// unprobe removes the filter of filterProbes and restores what
// markListeners changed.
func (st *handoverState) unprobe() {
	for i, s := range st.socks {
		_ = withFD(s.rc, func(fd uintptr) error {
			if st.filtered {
				_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_DETACH_FILTER, 0)
			}
			if st.userMSS != nil {
				_ = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_MAXSEG, st.userMSS[i])
			}
			return nil
		})
	}
	st.filtered, st.userMSS = false, nil
}
