package reuse_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sockreuse/reuse"
	"github.com/sockreuse/reuse/internal/sockettest"
)

// loadDeadline bounds every load loop below in time, besides its count.
const loadDeadline = 20 * time.Second

// Balance bounds. A member's count of n connections or datagrams spread
// uniformly over 4 members is Binomial(n, 1/4): for n = 4,000 its mean is
// 1,000 and its standard deviation sqrt(4000·1/4·3/4) ≈ 27.4, so 20% of the
// mean, 200, is about 7.3 standard deviations. The chance that any of the 4
// members strays that far from a correct kernel's hash is below 1e-12.
const (
	groupSize  = 4
	loadCount  = 4000
	maxSkewPct = 20
)

// TestBalancingHereLinux checks that this machine's kernel reports, and
// gives, balancing by SO_REUSEPORT.
func TestBalancingHereLinux(t *testing.T) {
	b := reuse.BalancingHere()
	if !b.Shares || !b.Balances || b.Option != "SO_REUSEPORT" || b.By != "hash of the 4-tuple" {
		t.Errorf("BalancingHere() = %+v, want Shares and Balances by SO_REUSEPORT, hash of the 4-tuple", b)
	}
}

// memberCounts counts, per member of a group, what it received.
type memberCounts struct {
	n     []atomic.Int64
	total atomic.Int64
}

func newMemberCounts(n int) *memberCounts { return &memberCounts{n: make([]atomic.Int64, n)} }

func (m *memberCounts) add(i int) {
	m.n[i].Add(1)
	m.total.Add(1)
}

func (m *memberCounts) snapshot() []int {
	s := make([]int, len(m.n))
	for i := range m.n {
		s[i] = int(m.n[i].Load())
	}
	return s
}

// waitTotal waits until the counts add up to want or until deadline, and
// returns the total.
func (m *memberCounts) waitTotal(want int, deadline time.Time) int {
	for m.total.Load() < int64(want) && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	return int(m.total.Load())
}

// serveGroup accepts on every listener of lns until it is closed, counting
// per member; each connection is read to EOF, so that the client closes
// first and keeps its port in TIME_WAIT, then closed.
func serveGroup(t *testing.T, lns []net.Listener) *memberCounts {
	counts := newMemberCounts(len(lns))
	var wg sync.WaitGroup
	for i, ln := range lns {
		i, ln := i, ln
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				counts.add(i)
				wg.Add(1)
				go func() {
					defer wg.Done()
					c.SetReadDeadline(time.Now().Add(loadDeadline))
					io.Copy(io.Discard, c)
					c.Close()
				}()
			}
		}()
	}
	t.Cleanup(func() {
		for _, ln := range lns {
			ln.Close()
		}
		wg.Wait()
	})
	return counts
}

// readGroup reads on every socket of pcs until it is closed, counting per
// member, and tells seen (if not nil) the member and source of each datagram.
func readGroup(t *testing.T, pcs []net.PacketConn, seen func(member int, from string)) *memberCounts {
	counts := newMemberCounts(len(pcs))
	var wg sync.WaitGroup
	for i, pc := range pcs {
		i, pc := i, pc
		// A large receive buffer, besides the sender's pacing, keeps
		// loopback from dropping datagrams while readers wait for a core.
		if err := pc.(*net.UDPConn).SetReadBuffer(1 << 20); err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 64)
			for {
				_, from, err := pc.ReadFrom(buf)
				if err != nil {
					return
				}
				if seen != nil {
					seen(i, from.String())
				}
				counts.add(i)
			}
		}()
	}
	t.Cleanup(func() {
		for _, pc := range pcs {
			pc.Close()
		}
		wg.Wait()
	})
	return counts
}

// checkBalanced fails unless every member got within maxSkewPct of the mean.
func checkBalanced(t *testing.T, what string, counts []int) {
	t.Helper()
	total := 0
	for _, c := range counts {
		total += c
	}
	mean := float64(total) / float64(len(counts))
	t.Logf("%s: %d over %d members: %v (mean %.0f, allowed ±%d%%)", what, total, len(counts), counts, mean, maxSkewPct)
	for i, c := range counts {
		if d := float64(c) - mean; d > mean*maxSkewPct/100 || -d > mean*maxSkewPct/100 {
			t.Errorf("%s: member %d got %d, more than %d%% from the mean %.0f: %v", what, i, c, maxSkewPct, mean, counts)
		}
	}
}

// samePort fails unless every address has the same port, and returns it.
func samePort(t *testing.T, addrs []net.Addr) int {
	t.Helper()
	first := port(t, addrs[0])
	for i, a := range addrs {
		if p := port(t, a); p != first {
			t.Fatalf("member %d is on %v, member 0 on port %d", i, a, first)
		}
	}
	if first == 0 {
		t.Fatalf("members are on port 0")
	}
	return first
}

func listenerAddrs(lns []net.Listener) []net.Addr {
	var a []net.Addr
	for _, ln := range lns {
		a = append(a, ln.Addr())
	}
	return a
}

func packetAddrs(pcs []net.PacketConn) []net.Addr {
	var a []net.Addr
	for _, pc := range pcs {
		a = append(a, pc.LocalAddr())
	}
	return a
}

// dialMany makes count connections to addr, each from a fresh socket, from a
// few goroutines, and returns the distinct source ports used. The
// connections stay open until the end: on loopback, Linux reuses a closed
// connection's port while in TIME_WAIT (net.ipv4.tcp_tw_reuse=2), which
// would repeat source ports.
func dialMany(t *testing.T, addr string, count int, deadline time.Time) int {
	t.Helper()
	const dialers = 4
	var (
		mu       sync.Mutex
		ports    = map[int]bool{}
		conns    []net.Conn
		firstErr error
		next     atomic.Int64
		wg       sync.WaitGroup
	)
	for d := 0; d < dialers; d++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(count) {
				if time.Now().After(deadline) {
					mu.Lock()
					if firstErr == nil {
						firstErr = fmt.Errorf("not done after %v", loadDeadline)
					}
					mu.Unlock()
					return
				}
				c, err := net.DialTimeout("tcp4", addr, time.Until(deadline))
				mu.Lock()
				if err != nil {
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					return
				}
				ports[c.LocalAddr().(*net.TCPAddr).Port] = true
				conns = append(conns, c)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	for _, c := range conns {
		c.Close()
	}
	if firstErr != nil {
		t.Fatalf("dialing %s: %v", addr, firstErr)
	}
	return len(ports)
}

// sendMany sends count datagrams to addr, each from a fresh connected socket
// that stays open until the end, so that every source port is distinct. It
// paces itself on received, the total the group has read, so that no
// receive buffer overflows, and returns the distinct source ports used.
func sendMany(t *testing.T, addr string, count int, received func() int, deadline time.Time) int {
	t.Helper()
	const batch = 100
	ports := map[int]bool{}
	var clients []net.Conn
	defer func() {
		for _, c := range clients {
			c.Close()
		}
	}()
	for i := 0; i < count; i++ {
		if time.Now().After(deadline) {
			t.Fatalf("sent %d of %d datagrams in %v", i, count, loadDeadline)
		}
		c, err := net.Dial("udp4", addr)
		if err != nil {
			t.Fatal(err)
		}
		clients = append(clients, c)
		ports[c.LocalAddr().(*net.UDPAddr).Port] = true
		if _, err := c.Write([]byte(strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
		if (i+1)%batch == 0 {
			// Wait, a bounded time, for the readers to catch up.
			for wait := time.Now().Add(time.Second); received() < i+1 && time.Now().Before(wait); {
				time.Sleep(100 * time.Microsecond)
			}
		}
	}
	return len(ports)
}

// TestListenGroupBalancesConnections sends 4,000 connections from distinct
// source ports to a group of 4 listeners on port 0 and checks that each got
// within 20% of the mean.
func TestListenGroupBalancesConnections(t *testing.T) {
	c := &reuse.Config{RequireBalancing: true}
	lns, err := c.ListenGroup(context.Background(), "tcp4", "127.0.0.1:0", groupSize)
	if err != nil {
		t.Fatal(err)
	}
	port := samePort(t, listenerAddrs(lns))
	counts := serveGroup(t, lns)
	deadline := time.Now().Add(loadDeadline)
	distinct := dialMany(t, net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), loadCount, deadline)
	if distinct != loadCount {
		t.Errorf("%d connections came from %d distinct source ports, want all distinct", loadCount, distinct)
	}
	if got := counts.waitTotal(loadCount, deadline); got != loadCount {
		t.Fatalf("the group accepted %d of %d connections: %v", got, loadCount, counts.snapshot())
	}
	checkBalanced(t, "connections", counts.snapshot())
}

// TestListenPacketGroupBalancesDatagrams sends 4,000 datagrams, each from its
// own source port, to a group of 4 datagram sockets on port 0, and checks
// that at least 99% arrive and each member got within 20% of the mean.
func TestListenPacketGroupBalancesDatagrams(t *testing.T) {
	c := &reuse.Config{RequireBalancing: true}
	pcs, err := c.ListenPacketGroup(context.Background(), "udp4", "127.0.0.1:0", groupSize)
	if err != nil {
		t.Fatal(err)
	}
	port := samePort(t, packetAddrs(pcs))
	counts := readGroup(t, pcs, nil)
	deadline := time.Now().Add(loadDeadline)
	distinct := sendMany(t, net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), loadCount, func() int { return int(counts.total.Load()) }, deadline)
	if distinct != loadCount {
		t.Errorf("%d datagrams came from %d distinct source ports, want all distinct", loadCount, distinct)
	}
	if got := counts.waitTotal(loadCount, time.Now().Add(2*time.Second)); got < loadCount*99/100 {
		t.Fatalf("the group read %d of %d datagrams, want at least 99%%: %v", got, loadCount, counts.snapshot())
	}
	checkBalanced(t, "datagrams", counts.snapshot())
}

// TestListenPacketGroupSteersBySource sends 50 datagrams from each of 16
// connected sockets to a group of 4 and checks that every datagram of one
// source reached the same member: the kernel picks by a hash of the 4-tuple.
// It also checks that the sources did not all reach one member, which a
// correct hash does with probability 4·(1/4)^16 < 1e-9.
func TestListenPacketGroupSteersBySource(t *testing.T) {
	const sources, perSource = 16, 50
	pcs, err := reuse.ListenPacketGroup("udp4", "127.0.0.1:0", groupSize)
	if err != nil {
		t.Fatal(err)
	}
	port := samePort(t, packetAddrs(pcs))
	var mu sync.Mutex
	members := map[string]map[int]int{} // source -> member -> datagrams
	counts := readGroup(t, pcs, func(member int, from string) {
		mu.Lock()
		defer mu.Unlock()
		if members[from] == nil {
			members[from] = map[int]int{}
		}
		members[from][member]++
	})
	deadline := time.Now().Add(loadDeadline)
	for s := 0; s < sources; s++ {
		c, err := net.Dial("udp4", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		for i := 0; i < perSource; i++ {
			if _, err := c.Write([]byte("x")); err != nil {
				t.Fatal(err)
			}
		}
		// One source at a time: the readers catch up before the next.
		counts.waitTotal((s+1)*perSource, deadline)
	}
	if got := counts.waitTotal(sources*perSource, deadline); got != sources*perSource {
		t.Fatalf("the group read %d of %d datagrams", got, sources*perSource)
	}
	mu.Lock()
	defer mu.Unlock()
	used := map[int]bool{}
	for from, m := range members {
		if len(m) != 1 {
			t.Errorf("datagrams from %s reached %d members: %v, want one", from, len(m), m)
		}
		for member := range m {
			used[member] = true
		}
	}
	t.Logf("%d sources reached %d of %d members: %v", len(members), len(used), groupSize, members)
	if len(members) != sources {
		t.Errorf("saw %d sources, want %d", len(members), sources)
	}
	if len(used) < 2 {
		t.Errorf("all %d sources reached one member: no hashing", sources)
	}
}

// TestGroupPortZero opens groups on port 0 while this process holds 200
// sockets of its own with SO_REUSEPORT on ports the kernel chose, and checks
// that every member of a group has the same port and that it is none of
// theirs: a group never joins someone else's port.
func TestGroupPortZero(t *testing.T) {
	const held, groups = 200, 20
	reusePort := func(network, address string, rc syscall.RawConn) error {
		var serr error
		if err := rc.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
		}); err != nil {
			return err
		}
		return serr
	}
	raw := net.ListenConfig{Control: reusePort}
	ctx := context.Background()
	for _, network := range []string{"tcp4", "udp4"} {
		taken := map[int]bool{}
		for i := 0; i < held; i++ {
			var a net.Addr
			if network == "tcp4" {
				ln, err := raw.Listen(ctx, network, "127.0.0.1:0")
				if err != nil {
					t.Fatal(err)
				}
				defer ln.Close()
				a = ln.Addr()
			} else {
				pc, err := raw.ListenPacket(ctx, network, "127.0.0.1:0")
				if err != nil {
					t.Fatal(err)
				}
				defer pc.Close()
				a = pc.LocalAddr()
			}
			taken[port(t, a)] = true
		}
		groupPorts := map[int]bool{}
		for g := 0; g < groups; g++ {
			var addrs []net.Addr
			if network == "tcp4" {
				lns, err := reuse.ListenGroup(network, "127.0.0.1:0", groupSize)
				if err != nil {
					t.Fatal(err)
				}
				for _, ln := range lns {
					defer ln.Close()
				}
				addrs = listenerAddrs(lns)
			} else {
				pcs, err := reuse.ListenPacketGroup(network, "127.0.0.1:0", groupSize)
				if err != nil {
					t.Fatal(err)
				}
				for _, pc := range pcs {
					defer pc.Close()
				}
				addrs = packetAddrs(pcs)
			}
			port := samePort(t, addrs)
			if taken[port] {
				t.Errorf("%s group %d got port %d, which another SO_REUSEPORT socket held", network, g, port)
			}
			if groupPorts[port] {
				t.Errorf("%s group %d got port %d, which an earlier group holds", network, g, port)
			}
			groupPorts[port] = true
		}
	}
}

// TestGroupSurvivesClosedMember closes one member of a group of 4 and checks
// that the other three take every connection and datagram that follows.
func TestGroupSurvivesClosedMember(t *testing.T) {
	const count = 400
	t.Run("tcp", func(t *testing.T) {
		lns, err := reuse.ListenGroup("tcp4", "127.0.0.1:0", groupSize)
		if err != nil {
			t.Fatal(err)
		}
		port := samePort(t, listenerAddrs(lns))
		counts := serveGroup(t, lns)
		if err := lns[0].Close(); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(loadDeadline)
		dialMany(t, net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), count, deadline)
		got := counts.waitTotal(count, deadline)
		s := counts.snapshot()
		t.Logf("after closing member 0: %v", s)
		if got != count || s[0] != 0 || s[1] == 0 || s[2] == 0 || s[3] == 0 {
			t.Errorf("after closing member 0, %d connections were accepted as %v; want all %d by members 1 to 3", got, s, count)
		}
	})
	t.Run("udp", func(t *testing.T) {
		pcs, err := reuse.ListenPacketGroup("udp4", "127.0.0.1:0", groupSize)
		if err != nil {
			t.Fatal(err)
		}
		port := samePort(t, packetAddrs(pcs))
		counts := readGroup(t, pcs, nil)
		if err := pcs[0].Close(); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(loadDeadline)
		sendMany(t, net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), count, func() int { return int(counts.total.Load()) }, deadline)
		got := counts.waitTotal(count, time.Now().Add(2*time.Second))
		s := counts.snapshot()
		t.Logf("after closing member 0: %v", s)
		// A datagram steered to the closed member would be lost: a quarter.
		if got < count*99/100 || s[1] == 0 || s[2] == 0 || s[3] == 0 {
			t.Errorf("after closing member 0, %d of %d datagrams were read as %v; want at least 99%% by members 1 to 3", got, count, s)
		}
	})
}

// TestGroupAllOrNothing makes the third member of a group fail and checks
// that the error names it, wraps the cause, and that the two members opened
// before are closed: no descriptor is left and the port binds exclusively.
func TestGroupAllOrNothing(t *testing.T) {
	errThird := errors.New("refused from the third socket on")
	for _, network := range []string{"tcp4", "udp4"} {
		var calls atomic.Int64
		var firstAddr atomic.Value
		c := &reuse.Config{}
		c.ListenConfig.Control = func(_, address string, _ syscall.RawConn) error {
			n := calls.Add(1)
			if n == 1 {
				firstAddr.Store(address)
			}
			// Go retries a failed MPTCP listener as plain TCP, calling
			// Control again: keep refusing.
			if n >= 3 {
				return errThird
			}
			return nil
		}
		before := sockettest.OpenFDs(t)
		var n int
		var err error
		if network == "tcp4" {
			var lns []net.Listener
			lns, err = c.ListenGroup(context.Background(), network, "127.0.0.1:0", groupSize)
			n = len(lns)
		} else {
			var pcs []net.PacketConn
			pcs, err = c.ListenPacketGroup(context.Background(), network, "127.0.0.1:0", groupSize)
			n = len(pcs)
		}
		var oe *net.OpError
		if n != 0 || !errors.As(err, &oe) || !errors.Is(err, errThird) || !strings.Contains(err.Error(), "reuse: member 3 of 4") {
			t.Fatalf("%s group with a failing third member: %d sockets, err = %v; want none and a *net.OpError naming member 3 of 4", network, n, err)
		}
		t.Logf("%s: %v", network, err)
		if after := sockettest.OpenFDs(t); after != before {
			t.Errorf("%s: %d descriptors open before the group, %d after its failure", network, before, after)
		}
		// Port 0 was resolved for member 1; a socket of the group still
		// open there would refuse this exclusive bind.
		excl := &reuse.Config{Mode: reuse.Exclusive}
		addr := firstAddr.Load().(string)
		var cerr error
		if network == "tcp4" {
			ln, err := excl.Listen(context.Background(), network, addr)
			if cerr = err; err == nil {
				ln.Close()
			}
		} else {
			pc, err := excl.ListenPacket(context.Background(), network, addr)
			if cerr = err; err == nil {
				pc.Close()
			}
		}
		if cerr != nil {
			t.Errorf("%s: binding %s exclusively after the failed group: %v", network, addr, cerr)
		}
	}
}

// TestGroupPortInUse checks that a group on a port held by a socket that
// does not share fails at its first member with EADDRINUSE.
func TestGroupPortInUse(t *testing.T) {
	excl := &reuse.Config{Mode: reuse.Exclusive}
	ln, err := excl.Listen(context.Background(), "tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	lns, err := reuse.ListenGroup("tcp4", ln.Addr().String(), groupSize)
	if len(lns) != 0 || !errors.Is(err, syscall.EADDRINUSE) || !strings.Contains(err.Error(), "member 1 of 4") {
		t.Errorf("ListenGroup on a port held exclusively: %d listeners, err = %v; want none and EADDRINUSE for member 1", len(lns), err)
	}
}

// TestGroupNeverFallsBack: with Config.Fallback set, a member after the
// first that cannot join the first member's address fails the group; it
// does not fall back to another address, which would split the group.
func TestGroupNeverFallsBack(t *testing.T) {
	errJoin := errors.New("refused the second socket on the group's address")
	var mu sync.Mutex
	seen := map[string]int{}
	c := &reuse.Config{Fallback: []string{"127.0.0.1:0"}}
	c.ListenConfig.Control = func(_, address string, _ syscall.RawConn) error {
		mu.Lock()
		defer mu.Unlock()
		if seen[address]++; seen[address] > 1 {
			return errJoin
		}
		return nil
	}
	lns, err := c.ListenGroup(context.Background(), "tcp4", "127.0.0.1:0", 2)
	for _, ln := range lns {
		ln.Close()
	}
	if !errors.Is(err, errJoin) || !strings.Contains(err.Error(), "member 2 of 2") {
		var addrs []string
		for _, ln := range lns {
			addrs = append(addrs, ln.Addr().String())
		}
		t.Fatalf("group whose second member cannot join: members %v, err = %v; want member 2 of 2 to fail", addrs, err)
	}
}

// TestGroupPortZeroMPTCPBothWays: a group on port 0, whose sharing options
// are set after bind on Linux, forms and balances with MPTCP listeners (the
// default of modules with go 1.24 or later) and with plain TCP ones. 400
// connections over 2 members: a member's count is Binomial(400, 1/2), mean
// 200 and standard deviation 10; outside 130..270 is 7 deviations, a chance
// below 1e-11 for a correct hash.
func TestGroupPortZeroMPTCPBothWays(t *testing.T) {
	const members, count = 2, 400
	for _, mptcp := range []bool{true, false} {
		t.Run(fmt.Sprintf("mptcp=%v", mptcp), func(t *testing.T) {
			if mptcp && !mptcpEnabled() {
				t.Skipf("the kernel has no MPTCP (net.mptcp.enabled is not 1)")
			}
			c := &reuse.Config{}
			c.ListenConfig.SetMultipathTCP(mptcp)
			lns, err := c.ListenGroup(context.Background(), "tcp4", "127.0.0.1:0", members)
			if err != nil {
				t.Fatal(err)
			}
			for _, ln := range lns {
				proto := readProtocol(t, ln.(*net.TCPListener))
				if want := map[bool]int{true: unix.IPPROTO_MPTCP, false: unix.IPPROTO_TCP}[mptcp]; proto != want {
					t.Fatalf("listener protocol %d, want %d", proto, want)
				}
			}
			port := samePort(t, listenerAddrs(lns))
			counts := serveGroup(t, lns)
			deadline := time.Now().Add(loadDeadline)
			dialMany(t, net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), count, deadline)
			if got := counts.waitTotal(count, deadline); got != count {
				t.Fatalf("the group accepted %d of %d connections: %v", got, count, counts.snapshot())
			}
			got := counts.snapshot()
			t.Logf("connections per member: %v", got)
			for i, n := range got {
				if n < 130 || n > 270 {
					t.Errorf("member %d accepted %d of %d connections, want 130 to 270", i, n, count)
				}
			}
		})
	}
}

// readProtocol reads SO_PROTOCOL of a socket: IPPROTO_MPTCP or IPPROTO_TCP.
func readProtocol(t *testing.T, c syscall.Conn) int {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var proto int
	var gerr error
	if err := rc.Control(func(fd uintptr) { proto, gerr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_PROTOCOL) }); err != nil || gerr != nil {
		t.Fatalf("getsockopt SO_PROTOCOL: %v %v", err, gerr)
	}
	return proto
}

// TestGroupContextCancelledBetweenMembers: a context cancelled while the
// second member opens stops the group before the third, with an error
// naming member 3 and wrapping context.Canceled, and nothing left open.
func TestGroupContextCancelledBetweenMembers(t *testing.T) {
	for _, network := range []string{"tcp4", "udp4"} {
		ctx, cancel := context.WithCancel(context.Background())
		var calls atomic.Int64
		c := &reuse.Config{}
		c.ListenConfig.Control = func(string, string, syscall.RawConn) error {
			if calls.Add(1) == 2 {
				cancel()
			}
			return nil
		}
		before := sockettest.OpenFDs(t)
		var n int
		var err error
		if network == "tcp4" {
			var lns []net.Listener
			lns, err = c.ListenGroup(ctx, network, "127.0.0.1:0", groupSize)
			n = len(lns)
		} else {
			var pcs []net.PacketConn
			pcs, err = c.ListenPacketGroup(ctx, network, "127.0.0.1:0", groupSize)
			n = len(pcs)
		}
		cancel()
		if n != 0 || !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "reuse: member 3 of 4") {
			t.Errorf("%s group cancelled at its second member: %d sockets, err = %v; want none and context.Canceled for member 3 of 4", network, n, err)
		}
		if after := sockettest.OpenFDs(t); after != before {
			t.Errorf("%s: %d descriptors open before the group, %d after", network, before, after)
		}
	}
}
