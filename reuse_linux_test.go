package reuse_test

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"github.com/sockreuse/reuse"
	"github.com/sockreuse/reuse/internal/sockettest"
)

func init() {
	sockettest.Register("accept-pid", acceptPidWorker)
	sockettest.Register("try-bind", tryBindWorker)
}

// acceptPidWorker listens under Share on args[0] ("tcp4" address), prints
// "addr ADDR", and answers every connection with its pid until stdin closes.
func acceptPidWorker(args []string) error {
	ln, err := reuse.Listen("tcp4", args[0])
	if err != nil {
		return err
	}
	fmt.Printf("addr %s\n", ln.Addr())
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		ln.Close()
	}()
	pid := []byte(strconv.Itoa(os.Getpid()) + "\n")
	for {
		c, err := ln.Accept()
		if errors.Is(err, net.ErrClosed) {
			return nil
		}
		if err != nil {
			return err
		}
		_, _ = c.Write(pid)
		c.Close()
	}
}

// tryBindWorker binds args[1] on network args[0] under Share and prints
// "result ok" or "result " and the errno's name.
func tryBindWorker(args []string) error {
	var err error
	var c io.Closer
	if strings.HasPrefix(args[0], "udp") {
		c, err = reuse.ListenPacket(args[0], args[1])
	} else {
		c, err = reuse.Listen(args[0], args[1])
	}
	switch {
	case err == nil:
		c.Close()
		fmt.Println("result ok")
	case errors.Is(err, unix.EADDRINUSE):
		fmt.Println("result EADDRINUSE")
	default:
		fmt.Printf("result %v\n", err)
	}
	return nil
}

// listenN opens n sockets of cfg on network and address ("host:0" picks the
// port with the first), closing them when the test ends.
func listenN(t *testing.T, cfg *reuse.Config, network, address string, n int) []io.Closer {
	t.Helper()
	var socks []io.Closer
	for i := 0; i < n; i++ {
		var c io.Closer
		var addr net.Addr
		var err error
		if strings.HasPrefix(network, "udp") {
			var pc net.PacketConn
			pc, err = cfg.ListenPacket(context.Background(), network, address)
			if err == nil {
				c, addr = pc, pc.LocalAddr()
			}
		} else {
			var ln net.Listener
			ln, err = cfg.Listen(context.Background(), network, address)
			if err == nil {
				c, addr = ln, ln.Addr()
			}
		}
		if err != nil {
			t.Fatalf("member %d of %d on %s %s: %v", i+1, n, network, address, err)
		}
		t.Cleanup(func() { c.Close() })
		socks = append(socks, c)
		address = addr.String()
	}
	return socks
}

// addrOf returns the local address of a listener or packet conn.
func addrOf(c io.Closer) string {
	if ln, ok := c.(net.Listener); ok {
		return ln.Addr().String()
	}
	return c.(net.PacketConn).LocalAddr().String()
}

// bindPlain binds address on network with net's defaults, and no sharing.
func bindPlain(network, address string) (io.Closer, error) {
	if strings.HasPrefix(network, "udp") {
		return net.ListenPacket(network, address)
	}
	return net.Listen(network, address)
}

// TestShareGroupRefusesOthers: Share sockets bind one port together; a plain
// socket cannot join them, and they cannot join a plain or Exclusive one.
func TestShareGroupRefusesOthers(t *testing.T) {
	for _, network := range []string{"tcp4", "udp4", "tcp6", "udp6"} {
		t.Run(network, func(t *testing.T) {
			host := "127.0.0.1"
			if strings.HasSuffix(network, "6") {
				host = "::1"
				if ln, err := net.Listen("tcp6", "[::1]:0"); err != nil {
					t.Skipf("no IPv6 loopback: %v", err)
				} else {
					ln.Close()
				}
			}
			share := &reuse.Config{Mode: reuse.Share}
			group := listenN(t, share, network, hostPort(host, 0), 3)
			addr := addrOf(group[0])
			if _, err := bindPlain(network, addr); !errors.Is(err, unix.EADDRINUSE) {
				t.Errorf("plain bind on %s held by a Share group: %v, want EADDRINUSE", addr, err)
			}

			for _, holder := range []reuse.Mode{-1, reuse.Exclusive} {
				var held io.Closer
				var err error
				if holder == -1 {
					held, err = bindPlain(network, hostPort(host, 0))
				} else {
					held = listenN(t, &reuse.Config{Mode: holder}, network, hostPort(host, 0), 1)[0]
				}
				if err != nil {
					t.Fatal(err)
				}
				what := map[reuse.Mode]string{-1: "plain", reuse.Exclusive: "Exclusive"}[holder]
				_, err = bindShare(share, network, addrOf(held))
				if !errors.Is(err, unix.EADDRINUSE) {
					t.Errorf("Share bind on %s held by a %s socket: %v, want EADDRINUSE", addrOf(held), what, err)
				}
				held.Close()
			}
		})
	}
}

// bindShare binds one socket of cfg, returning its error.
func bindShare(cfg *reuse.Config, network, address string) (io.Closer, error) {
	if strings.HasPrefix(network, "udp") {
		pc, err := cfg.ListenPacket(context.Background(), network, address)
		if err == nil {
			pc.Close()
		}
		return pc, err
	}
	ln, err := cfg.Listen(context.Background(), network, address)
	if err == nil {
		ln.Close()
	}
	return ln, err
}

// countAccepts runs an accept loop per listener; the returned function
// stops them and returns how many connections each accepted.
func countAccepts(lns []net.Listener) func() []int {
	counts := make([]int, len(lns))
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
				counts[i]++
				c.Close()
			}
		}()
	}
	return func() []int {
		for _, ln := range lns {
			ln.Close()
		}
		wg.Wait()
		return counts
	}
}

// connectAll opens n connections to addr, each from a new source port, and
// waits until the peer has closed each one (so that it was accepted).
func connectAll(t *testing.T, addr string, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatalf("connection %d to %s: %v", i, addr, err)
		}
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Read(make([]byte, 1)); err != io.EOF {
			t.Fatalf("connection %d to %s: read %v, want EOF once accepted and closed", i, addr, err)
		}
		c.Close()
	}
}

// TestEveryMemberServes: connections and datagrams from many source ports
// reach every member of a Share group. With 4 members and 400 arrivals
// spread by a hash, the chance that one member gets none is 4*(3/4)^400,
// about 1e-50.
func TestEveryMemberServes(t *testing.T) {
	const members, arrivals = 4, 400
	t.Run("tcp", func(t *testing.T) {
		var lns []net.Listener
		for _, c := range listenN(t, &reuse.Config{}, "tcp4", "127.0.0.1:0", members) {
			lns = append(lns, c.(net.Listener))
		}
		stop := countAccepts(lns)
		connectAll(t, lns[0].Addr().String(), arrivals)
		counts := stop()
		t.Logf("accepted per member: %v", counts)
		for i, n := range counts {
			if n == 0 {
				t.Errorf("member %d accepted none of %d connections: %v", i, arrivals, counts)
			}
		}
	})
	t.Run("udp", func(t *testing.T) {
		var pcs []net.PacketConn
		for _, c := range listenN(t, &reuse.Config{}, "udp4", "127.0.0.1:0", members) {
			pcs = append(pcs, c.(net.PacketConn))
		}
		counts := make([]int, members)
		var total sync.WaitGroup
		total.Add(arrivals)
		var wg sync.WaitGroup
		for i, pc := range pcs {
			i, pc := i, pc
			wg.Add(1)
			go func() {
				defer wg.Done()
				buf := make([]byte, 16)
				for {
					if _, _, err := pc.ReadFrom(buf); err != nil {
						return
					}
					counts[i]++
					total.Done()
				}
			}()
		}
		for i := 0; i < arrivals; i++ {
			c, err := net.Dial("udp4", pcs[0].LocalAddr().String())
			if err != nil {
				t.Fatal(err)
			}
			if _, err := c.Write([]byte("x")); err != nil {
				t.Fatal(err)
			}
			c.Close()
		}
		arrived := make(chan struct{})
		go func() { total.Wait(); close(arrived) }()
		select {
		case <-arrived:
		case <-time.After(10 * time.Second):
			t.Errorf("not every datagram arrived in 10 s")
		}
		for _, pc := range pcs {
			pc.Close()
		}
		wg.Wait()
		t.Logf("datagrams per member: %v", counts)
		for i, n := range counts {
			if n == 0 {
				t.Errorf("member %d received none of %d datagrams: %v", i, arrivals, counts)
			}
		}
	})
}

// TestProcessesShare: worker processes share one port and the kernel
// spreads connections across them; a process of another user is refused.
// With 3 workers and 300 connections, the chance that one gets none is
// 3*(2/3)^300, about 1e-52.
func TestProcessesShare(t *testing.T) {
	const nWorkers, conns = 3, 300
	addr := "127.0.0.1:0"
	pids := map[string]int{}
	for i := 0; i < nWorkers; i++ {
		w := sockettest.StartWorker(t, "accept-pid", []string{addr})
		addr = w.Expect("addr ", 10*time.Second)
		pids[strconv.Itoa(w.Pid())] = 0
	}
	for i := 0; i < conns; i++ {
		c, err := net.DialTimeout("tcp4", addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		line, err := bufio.NewReader(c).ReadString('\n')
		c.Close()
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		pid := strings.TrimSpace(line)
		if _, ok := pids[pid]; !ok {
			t.Fatalf("connection %d answered by pid %s, not a worker (%v)", i, pid, pids)
		}
		pids[pid]++
	}
	t.Logf("connections per worker pid: %v", pids)
	for pid, n := range pids {
		if n == 0 {
			t.Errorf("worker %s accepted none of %d connections: %v", pid, conns, pids)
		}
	}

	t.Run("another user", func(t *testing.T) {
		sockettest.RequireRoot(t, "run a worker as uid 65534")
		pc := listenN(t, &reuse.Config{}, "udp4", "127.0.0.1:0", 1)[0]
		for _, target := range [][2]string{{"tcp4", addr}, {"udp4", addrOf(pc)}} {
			same := sockettest.StartWorker(t, "try-bind", target[:])
			if got := same.Expect("result ", 10*time.Second); got != "ok" {
				t.Errorf("same user joining %s %s: %s, want ok", target[0], target[1], got)
			}
			other := sockettest.StartWorker(t, "try-bind", target[:], sockettest.AsUser(65534, 65534))
			if got := other.Expect("result ", 10*time.Second); got != "EADDRINUSE" {
				t.Errorf("uid 65534 joining %s %s: %s, want EADDRINUSE", target[0], target[1], got)
			}
		}
	})
}

// TestSpecificBeatsWildcard: a socket on 127.0.0.2:P takes the traffic for
// that address from a wildcard group on P; 0.0.0.0:P and 127.0.0.1:P listen
// together under Share but not under Exclusive. It binds the wildcard, so it
// runs in a private network namespace.
func TestSpecificBeatsWildcard(t *testing.T) {
	if !sockettest.RunInNetNS(t) {
		return
	}
	share := &reuse.Config{}
	wild := listenN(t, share, "tcp4", "0.0.0.0:0", 2)
	p := port(t, wild[0].(net.Listener).Addr())
	specific := listenN(t, share, "tcp4", hostPort("127.0.0.2", p), 1)
	lns := []net.Listener{wild[0].(net.Listener), wild[1].(net.Listener), specific[0].(net.Listener)}
	stop := countAccepts(lns)
	connectAll(t, hostPort("127.0.0.2", p), 50)
	counts := stop()
	if diff := cmp.Diff([]int{0, 0, 50}, counts); diff != "" {
		t.Errorf("connections to 127.0.0.2:%d per listener [wildcard, wildcard, specific] (-want +got):\n%s", p, diff)
	}

	wild = listenN(t, share, "tcp4", "0.0.0.0:0", 2)
	p = port(t, wild[0].(net.Listener).Addr())
	specific = listenN(t, share, "tcp4", hostPort("127.0.0.2", p), 1)
	lns = []net.Listener{wild[0].(net.Listener), wild[1].(net.Listener), specific[0].(net.Listener)}
	stop = countAccepts(lns)
	connectAll(t, hostPort("127.0.0.1", p), 50)
	counts = stop()
	if counts[2] != 0 || counts[0]+counts[1] != 50 {
		t.Errorf("connections to 127.0.0.1:%d per listener [wildcard, wildcard, specific]: %v, want all 50 on the wildcard group", p, counts)
	}

	t.Run("Share", func(t *testing.T) {
		w := listenN(t, share, "tcp4", "0.0.0.0:0", 1)
		if _, err := bindShare(share, "tcp4", hostPort("127.0.0.1", port(t, w[0].(net.Listener).Addr()))); err != nil {
			t.Errorf("Share on 127.0.0.1 beside a Share wildcard: %v", err)
		}
	})
	t.Run("Exclusive", func(t *testing.T) {
		excl := &reuse.Config{Mode: reuse.Exclusive}
		w := listenN(t, excl, "tcp4", "0.0.0.0:0", 1)
		_, err := bindShare(excl, "tcp4", hostPort("127.0.0.1", port(t, w[0].(net.Listener).Addr())))
		if !errors.Is(err, unix.EADDRINUSE) {
			t.Errorf("Exclusive on 127.0.0.1 beside an Exclusive wildcard: %v, want EADDRINUSE", err)
		}
		s := listenN(t, excl, "tcp4", "127.0.0.1:0", 1)
		_, err = bindShare(excl, "tcp4", hostPort("0.0.0.0", port(t, s[0].(net.Listener).Addr())))
		if !errors.Is(err, unix.EADDRINUSE) {
			t.Errorf("Exclusive wildcard beside an Exclusive 127.0.0.1: %v, want EADDRINUSE", err)
		}
	})
}

// TestRebindPastTimeWait: a server that closed its connection first (so it
// sits in TIME_WAIT on the server's port) listens again on that port, in
// both modes. A socket without SO_REUSEADDR is refused, which shows the
// TIME_WAIT is there.
func TestRebindPastTimeWait(t *testing.T) {
	for _, mode := range []reuse.Mode{reuse.Share, reuse.Exclusive} {
		t.Run(mode.String(), func(t *testing.T) {
			retryTimeWait(t, func() bool { return rebindPastTimeWait(t, mode) })
		})
	}
}

// rebindPastTimeWait is one try of TestRebindPastTimeWait; it reports false
// if the TIME_WAIT was gone before the result could show anything.
func rebindPastTimeWait(t *testing.T, mode reuse.Mode) bool {
	cfg := &reuse.Config{Mode: mode}
	ln, err := cfg.Listen(context.Background(), "tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	c, err := net.Dial("tcp4", addr)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	s.Close() // the server closes first: its side goes to TIME_WAIT
	if _, err := c.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("client read: %v, want EOF", err)
	}
	c.Close()
	ln.Close()
	peer := c.LocalAddr().String()
	if !waitTimeWait(addr, peer, 5*time.Second) {
		return false
	}

	var noReuse net.ListenConfig
	noReuse.Control = func(network, address string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEADDR, 0) })
		return errors.Join(err, serr)
	}
	if l, err := noReuse.Listen(context.Background(), "tcp4", addr); !errors.Is(err, unix.EADDRINUSE) {
		if err == nil {
			l.Close()
		}
		if !inTimeWait(addr, peer) {
			return false
		}
		t.Fatalf("bind without SO_REUSEADDR on %s: %v, want EADDRINUSE from the TIME_WAIT connection", addr, err)
	}
	again, err := cfg.Listen(context.Background(), "tcp4", addr)
	if err != nil {
		t.Fatalf("%v listen on %s with a connection in TIME_WAIT: %v", mode, addr, err)
	}
	defer again.Close()
	return inTimeWait(addr, peer) // the listen shows something only if the TIME_WAIT was there
}

// readOpts reads back the sharing options of a socket.
func readOpts(t *testing.T, c syscall.Conn) map[string]int {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	var gerr error
	err = rc.Control(func(fd uintptr) {
		for name, opt := range map[string]int{"SO_REUSEADDR": unix.SO_REUSEADDR, "SO_REUSEPORT": unix.SO_REUSEPORT} {
			v, err := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, opt)
			if err != nil {
				gerr = err
			}
			got[name] = v
		}
	})
	if err != nil || gerr != nil {
		t.Fatalf("getsockopt: %v %v", err, gerr)
	}
	return got
}

// port returns the port of a TCP or UDP address.
func port(t testing.TB, a net.Addr) int {
	t.Helper()
	switch a := a.(type) {
	case *net.TCPAddr:
		return a.Port
	case *net.UDPAddr:
		return a.Port
	}
	t.Fatalf("no port in %T %v", a, a)
	return 0
}

// hostPort joins a host and a port.
func hostPort(host string, port int) string { return net.JoinHostPort(host, strconv.Itoa(port)) }

// docTable returns doc.go's option list for the GOOS named first in
// osGroup (e.g. "linux,android"): mode → kind column (listener, dialer,
// datagram, multicast) → option → 0 or 1.
func docTable(t *testing.T, osGroup string) map[string][]map[string]int {
	t.Helper()
	goos, _, _ := strings.Cut(osGroup, ",")
	rows, err := reuse.DocTable(goos)
	if err != nil {
		t.Fatal(err)
	}
	return rows
}

// TestOptionsReadBack: the options read back from each kind of socket are
// those in doc.go's table, for each mode. UDP under Share carries no
// SO_REUSEADDR: with it, another user could bind the port and take the
// traffic.
func TestOptionsReadBack(t *testing.T) {
	table := docTable(t, "linux,android")
	ctx := context.Background()
	peer, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	for _, mode := range []reuse.Mode{reuse.Share, reuse.Exclusive} {
		cfg := &reuse.Config{Mode: mode}
		kinds := []struct {
			name string
			open func() (syscall.Conn, io.Closer, error)
		}{
			{"stream listener", func() (syscall.Conn, io.Closer, error) {
				ln, err := cfg.Listen(ctx, "tcp4", "127.0.0.1:0")
				if err != nil {
					return nil, nil, err
				}
				return ln.(*net.TCPListener), ln, nil
			}},
			{"stream dialer", func() (syscall.Conn, io.Closer, error) {
				probe, err := net.Listen("tcp4", "127.0.0.1:0")
				if err != nil {
					return nil, nil, err
				}
				laddr := probe.Addr().String()
				probe.Close()
				c, err := cfg.Dial(ctx, "tcp4", laddr, peer.Addr().String())
				if err != nil {
					return nil, nil, err
				}
				return c.(*net.TCPConn), c, nil
			}},
			{"datagram", func() (syscall.Conn, io.Closer, error) {
				pc, err := cfg.ListenPacket(ctx, "udp4", "127.0.0.1:0")
				if err != nil {
					return nil, nil, err
				}
				return pc.(*net.UDPConn), pc, nil
			}},
		}
		for i, k := range kinds {
			sc, c, err := k.open()
			if err != nil {
				t.Fatalf("%v %s: %v", mode, k.name, err)
			}
			got := readOpts(t, sc)
			c.Close()
			want := map[string]int{"SO_REUSEADDR": 0, "SO_REUSEPORT": 0}
			for name, v := range table[mode.String()][i] {
				want[name] = v
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("%v %s: options read back differ from doc.go's table (-want +got):\n%s", mode, k.name, diff)
			}
		}
	}
}

// mptcpEnabled reports whether this network namespace allows MPTCP sockets.
func mptcpEnabled() bool {
	b, err := os.ReadFile("/proc/sys/net/mptcp/enabled")
	return err == nil && strings.TrimSpace(string(b)) == "1"
}

// TestMPTCPAndPlainJoinOneGroup: a default listener (MPTCP since Go 1.24
// where the kernel allows), an MPTCP one and a plain TCP one share one port
// and all serve. With 3 members and 300 connections the chance that one
// gets none is about 1e-52.
func TestMPTCPAndPlainJoinOneGroup(t *testing.T) {
	var dflt, mptcp, plain reuse.Config
	mptcp.ListenConfig.SetMultipathTCP(true)
	plain.ListenConfig.SetMultipathTCP(false)
	ctx := context.Background()
	addr := "127.0.0.1:0"
	var lns []net.Listener
	for _, c := range []*reuse.Config{&dflt, &mptcp, &plain} {
		ln, err := c.Listen(ctx, "tcp4", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		addr = ln.Addr().String()
		lns = append(lns, ln)
	}
	protocol := func(ln net.Listener) int {
		rc, err := ln.(*net.TCPListener).SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		var p int
		var gerr error
		if err := rc.Control(func(fd uintptr) { p, gerr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_PROTOCOL) }); err != nil || gerr != nil {
			t.Fatal(err, gerr)
		}
		return p
	}
	if got := protocol(lns[2]); got != unix.IPPROTO_TCP {
		t.Errorf("SetMultipathTCP(false) listener has protocol %d, want IPPROTO_TCP", got)
	}
	if mptcpEnabled() {
		if got := protocol(lns[1]); got != unix.IPPROTO_MPTCP {
			t.Errorf("SetMultipathTCP(true) listener has protocol %d, want IPPROTO_MPTCP (%d)", got, unix.IPPROTO_MPTCP)
		}
	} else {
		t.Logf("MPTCP is off in this network namespace: all three listeners are plain TCP")
	}
	stop := countAccepts(lns)
	connectAll(t, addr, 300)
	counts := stop()
	t.Logf("accepted by [default, MPTCP, plain]: %v", counts)
	for i, n := range counts {
		if n == 0 {
			t.Errorf("listener %d accepted none of 300: %v", i, counts)
		}
	}
}

// TestControlIdempotent: Control may run twice on one socket (Go retries a
// failed MPTCP listen with plain TCP); the options stay as the table says.
func TestControlIdempotent(t *testing.T) {
	for _, mode := range []reuse.Mode{reuse.Share, reuse.Exclusive} {
		cfg := &reuse.Config{Mode: mode}
		var calls int
		lc := net.ListenConfig{Control: func(network, address string, rc syscall.RawConn) error {
			for i := 0; i < 2; i++ {
				calls++
				if err := cfg.Control(network, address, rc); err != nil {
					return err
				}
			}
			return nil
		}}
		ln, err := lc.Listen(context.Background(), "tcp4", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("%v: %v", mode, err)
		}
		got := readOpts(t, ln.(*net.TCPListener))
		ln.Close()
		want := map[string]int{"SO_REUSEADDR": 1, "SO_REUSEPORT": 1}
		if mode == reuse.Exclusive {
			want["SO_REUSEPORT"] = 0
		}
		if diff := cmp.Diff(want, got); diff != "" || calls < 2 {
			t.Errorf("%v after %d calls of Control (-want +got):\n%s", mode, calls, diff)
		}
	}
}

// TestPortZeroNeverShared: Share with port 0 never hands back a port that
// another open socket holds. The same binds with SO_REUSEPORT set by hand
// do collide on UDP: the kernel's port choice skips ports held by
// SO_REUSEPORT sockets of the same user only when it must. With 1,000 binds
// into about 28,000 ephemeral ports, about 18 collisions are expected; the
// chance of none is about e^-18.
func TestPortZeroNeverShared(t *testing.T) {
	const n = 1000
	hold := func(t *testing.T, network string, bind func() (io.Closer, net.Addr, error)) (collisions int) {
		seen := map[int]bool{}
		var socks []io.Closer
		defer func() {
			for _, s := range socks {
				s.Close()
			}
		}()
		for i := 0; i < n; i++ {
			s, a, err := bind()
			if err != nil {
				t.Fatalf("bind %d on %s: %v", i, network, err)
			}
			socks = append(socks, s)
			if p := port(t, a); seen[p] {
				collisions++
			} else {
				seen[p] = true
			}
		}
		return collisions
	}
	byHand := net.ListenConfig{Control: func(network, address string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1) })
		return errors.Join(err, serr)
	}}
	ctx := context.Background()
	raw := hold(t, "udp4", func() (io.Closer, net.Addr, error) {
		pc, err := byHand.ListenPacket(ctx, "udp4", "127.0.0.1:0")
		if err != nil {
			return nil, nil, err
		}
		return pc, pc.LocalAddr(), nil
	})
	t.Logf("UDP, SO_REUSEPORT set by hand: %d of %d binds to port 0 got a port already held", raw, n)
	if raw == 0 {
		t.Errorf("no collision in %d hand-made SO_REUSEPORT binds: the kernel no longer shows the problem this guards against; revisit Config.Listen's and Config.Control's docs on port 0", n)
	}
	// Control runs before bind: with port 0 it cannot keep the promise,
	// and under Share it sets SO_REUSEPORT as by hand (Control's doc).
	withControl := net.ListenConfig{Control: reuse.Control}
	ctl := hold(t, "udp4", func() (io.Closer, net.Addr, error) {
		pc, err := withControl.ListenPacket(ctx, "udp4", "127.0.0.1:0")
		if err != nil {
			return nil, nil, err
		}
		return pc, pc.LocalAddr(), nil
	})
	t.Logf("UDP, reuse.Control in a ListenConfig: %d of %d binds to port 0 got a port already held", ctl, n)
	if ctl == 0 {
		t.Errorf("no collision in %d binds with reuse.Control: Control's doc says it cannot protect port 0; revisit it", n)
	}
	// Every way of writing port 0 is protected: "" (every address), "host:",
	// "host:0", a Fallback entry and a group's address. With a Control of
	// the caller's, port 0 is reserved first instead of set after bind.
	reserving := &reuse.Config{}
	reserving.ListenConfig.Control = func(string, string, syscall.RawConn) error { return nil }
	fallback := &reuse.Config{Fallback: []string{""}}
	for _, tt := range []struct {
		name, network string
		open          func(network string) (io.Closer, net.Addr, error)
	}{
		{"127.0.0.1:0", "", nil},
		{"", "", nil},
		{"127.0.0.1:", "", nil},
		{"fallback", "udp4", func(network string) (io.Closer, net.Addr, error) {
			// 192.0.2.1 is on no interface: the fallback "" binds.
			pc, err := fallback.ListenPacket(ctx, network, "192.0.2.1:0")
			if err != nil {
				return nil, nil, err
			}
			return pc, pc.LocalAddr(), nil
		}},
		{"group", "udp4", func(network string) (io.Closer, net.Addr, error) {
			pcs, err := reuse.ListenPacketGroup(network, "", 1)
			if err != nil {
				return nil, nil, err
			}
			return pcs[0], pcs[0].LocalAddr(), nil
		}},
		{"reservation", "", func(network string) (io.Closer, net.Addr, error) {
			if network == "udp4" {
				pc, err := reserving.ListenPacket(ctx, network, "")
				if err != nil {
					return nil, nil, err
				}
				return pc, pc.LocalAddr(), nil
			}
			ln, err := reserving.Listen(ctx, network, "")
			if err != nil {
				return nil, nil, err
			}
			return ln, ln.Addr(), nil
		}},
	} {
		for _, network := range []string{"udp4", "tcp4"} {
			if tt.network != "" && tt.network != network {
				continue
			}
			address, open := tt.name, tt.open
			if open == nil {
				open = func(network string) (io.Closer, net.Addr, error) {
					if network == "udp4" {
						pc, err := reuse.ListenPacket(network, address)
						if err != nil {
							return nil, nil, err
						}
						return pc, pc.LocalAddr(), nil
					}
					ln, err := reuse.Listen(network, address)
					if err != nil {
						return nil, nil, err
					}
					return ln, ln.Addr(), nil
				}
			}
			got := hold(t, network, func() (io.Closer, net.Addr, error) { return open(network) })
			if got != 0 {
				t.Errorf("%s %q: %d of %d Share binds to port 0 got a port another socket held", network, tt.name, got, n)
			}
		}
	}
}

// TestDialTupleInUseErrno: the refused second connection comes from
// connect, not bind, carries Linux's EADDRNOTAVAIL, and matches EADDRINUSE
// too. A second connected UDP socket on the same 4-tuple is allowed.
func TestDialTupleInUseErrno(t *testing.T) {
	ln, err := reuse.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, laddr := dialFromFreePort(t, ln.Addr().String())
	defer c.Close()
	_, err = reuse.Dial("tcp4", laddr, ln.Addr().String())
	var se *os.SyscallError
	if !errors.As(err, &se) || se.Syscall != "connect" || !errors.Is(err, syscall.EADDRNOTAVAIL) || !errors.Is(err, syscall.EADDRINUSE) {
		t.Errorf("second Dial: %v, want EADDRNOTAVAIL from connect, matching EADDRINUSE too", err)
	}

	srv, err := reuse.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	for i := 0; i < 2; i++ {
		c, err := reuse.Dial("udp4", laddr, srv.LocalAddr().String())
		if err != nil {
			t.Fatalf("connected UDP socket %d from %s to %v: %v", i+1, laddr, srv.LocalAddr(), err)
		}
		defer c.Close()
	}
}

// dialFromFreePort connects to raddr over TCP with reuse.Dial from a local
// port that nobody held (bound at port 0, then closed), and returns the
// connection and that local address: another Dial from it to raddr repeats
// the 4-tuple.
func dialFromFreePort(t *testing.T, raddr string) (net.Conn, string) {
	t.Helper()
	free, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	laddr := free.Addr().String()
	free.Close()
	c, err := reuse.Dial("tcp4", laddr, raddr)
	if err != nil {
		t.Fatal(err)
	}
	return c, laddr
}

// TestNoDescriptorLeaks: a thousand failing calls of each kind leave the
// number of open descriptors where it was.
func TestNoDescriptorLeaks(t *testing.T) {
	ctx := context.Background()
	heldTCP, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer heldTCP.Close()
	heldUDP, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer heldUDP.Close()
	remote, err := reuse.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer remote.Close()
	first, laddr := dialFromFreePort(t, remote.Addr().String())
	defer first.Close()
	closedPort := laddr // a connection's port: nothing listens there
	errControl := errors.New("refused by the caller")
	var failing reuse.Config
	failing.ListenConfig.Control = func(string, string, syscall.RawConn) error { return errControl }

	calls := map[string]func() error{
		"Listen on a held port": func() error { _, err := reuse.Listen("tcp4", heldTCP.Addr().String()); return err },
		"ListenPacket on a held port": func() error {
			_, err := reuse.ListenPacket("udp4", heldUDP.LocalAddr().String())
			return err
		},
		"Dial repeating a 5-tuple": func() error { _, err := reuse.Dial("tcp4", laddr, remote.Addr().String()); return err },
		"Dial to a closed port":    func() error { _, err := reuse.Dial("tcp4", "", closedPort); return err },
		"Listen refused by the caller's Control": func() error {
			_, err := failing.Listen(ctx, "tcp4", "127.0.0.1:0")
			return err
		},
		"ListenPacket refused by the caller's Control": func() error {
			_, err := failing.ListenPacket(ctx, "udp4", "127.0.0.1:0")
			return err
		},
		"Listen on a unix socket": func() error { _, err := reuse.Listen("unix", "/tmp/reuse.sock"); return err },
		"Listen on a bad address": func() error { _, err := reuse.Listen("tcp4", "127.0.0.1:99999"); return err },
	}
	for name, call := range calls {
		if err := call(); err == nil {
			t.Fatalf("%s succeeded; want an error", name)
		}
		before := sockettest.OpenFDs(t)
		for i := 0; i < 1000; i++ {
			if err := call(); err == nil {
				t.Fatalf("%s succeeded on call %d; want an error", name, i)
			}
		}
		if after := sockettest.OpenFDs(t); after != before {
			t.Errorf("%s: %d open descriptors before 1,000 failing calls, %d after", name, before, after)
		}
	}
}

// TestCallerControlSeesOptions: the caller's own Control runs after the
// package's options are set, for listeners, datagram sockets and dialers.
func TestCallerControlSeesOptions(t *testing.T) {
	ctx := context.Background()
	var seen []string
	look := func(what string) func(string, string, syscall.RawConn) error {
		return func(network, address string, rc syscall.RawConn) error {
			var v int
			var gerr error
			if err := rc.Control(func(fd uintptr) { v, gerr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT) }); err != nil || gerr != nil {
				return errors.Join(err, gerr)
			}
			seen = append(seen, fmt.Sprintf("%s SO_REUSEPORT=%d", what, v))
			return nil
		}
	}
	var c reuse.Config
	c.ListenConfig.Control = look("listener")
	ln, err := c.Listen(ctx, "tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c.ListenConfig.Control = look("datagram")
	pc, err := c.ListenPacket(ctx, "udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()

	probe, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	laddr := probe.Addr().String()
	probe.Close()
	c.Dialer.Control = look("dialer Control")
	conn, err := c.Dial(ctx, "tcp4", laddr, ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	conn.Close()
	c.Dialer.Control = nil
	viaCtx := look("dialer ControlContext")
	c.Dialer.ControlContext = func(_ context.Context, network, address string, rc syscall.RawConn) error {
		return viaCtx(network, address, rc)
	}
	other, err := reuse.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	conn, err = c.Dial(ctx, "tcp4", laddr, other.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	conn.Close()

	// The listener's Control may run twice: an MPTCP listen retried as TCP.
	want := []string{"listener SO_REUSEPORT=1", "datagram SO_REUSEPORT=1", "dialer Control SO_REUSEPORT=1", "dialer ControlContext SO_REUSEPORT=1"}
	if diff := cmp.Diff(want, dedupe(seen)); diff != "" {
		t.Errorf("what the caller's Control saw (-want +got):\n%s", diff)
	}
}

// dedupe drops repeats of the previous element.
func dedupe(s []string) []string {
	var out []string
	for _, e := range s {
		if len(out) == 0 || out[len(out)-1] != e {
			out = append(out, e)
		}
	}
	return out
}

// TestDialerControl: in a net.Dialer of the caller's own, DialerControl sets
// the dialer options of doc.go's list and Control the listener options,
// which differ under Exclusive. Under Share, DialerControl lets the Dialer
// connect from a port that a Share listener holds.
func TestDialerControl(t *testing.T) {
	table := docTable(t, "linux")
	peer, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	for _, mode := range []reuse.Mode{reuse.Share, reuse.Exclusive} {
		cfg := &reuse.Config{Mode: mode}
		for _, tt := range []struct {
			name    string
			control func(string, string, syscall.RawConn) error
			row     int // of docTable: 0 listener, 1 dialer
		}{{"Control", cfg.Control, 0}, {"DialerControl", cfg.DialerControl, 1}} {
			probe, err := net.Listen("tcp4", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			laddr := probe.Addr().(*net.TCPAddr)
			probe.Close()
			d := net.Dialer{LocalAddr: laddr, Control: tt.control}
			c, err := d.Dial("tcp4", peer.Addr().String())
			if err != nil {
				t.Fatalf("%v %s: %v", mode, tt.name, err)
			}
			got := readOpts(t, c.(*net.TCPConn))
			c.Close()
			if diff := cmp.Diff(table[mode.String()][tt.row], got); diff != "" {
				t.Errorf("%v %s in a net.Dialer: options read back (-want +got):\n%s", mode, tt.name, diff)
			}
		}
	}
	shared, err := reuse.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer shared.Close()
	var share reuse.Config
	d := net.Dialer{LocalAddr: shared.Addr(), Control: share.DialerControl}
	c, err := d.Dial("tcp4", peer.Addr().String())
	if err != nil {
		t.Fatalf("dial from %v, which a Share listener holds, with DialerControl: %v", shared.Addr(), err)
	}
	c.Close()
	var plain net.Dialer
	plain.LocalAddr = shared.Addr()
	if c, err := plain.Dial("tcp4", peer.Addr().String()); !errors.Is(err, unix.EADDRINUSE) {
		if err == nil {
			c.Close()
		}
		t.Errorf("plain dial from %v, which a Share listener holds: %v, want EADDRINUSE", shared.Addr(), err)
	}
}

// TestDialPastTimeWait: a connection from a fixed local port that closed
// first leaves that port in TIME_WAIT. A Share dialer (SO_REUSEADDR) binds
// the port again to another remote address; an Exclusive one, which clears
// SO_REUSEADDR, is refused with EADDRINUSE at bind, as a plain socket is.
func TestDialPastTimeWait(t *testing.T) {
	servers := make([]string, 3)
	for i := range servers {
		ln, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		servers[i] = ln.Addr().String()
		go func() {
			for {
				s, err := ln.Accept()
				if err != nil {
					return
				}
				go func() {
					io.Copy(io.Discard, s) // until the client's FIN
					s.Close()
				}()
			}
		}()
	}
	retryTimeWait(t, func() bool { return dialPastTimeWait(t, servers) })
}

// dialPastTimeWait is one try of TestDialPastTimeWait; it reports false if
// the TIME_WAIT was gone before the results could show anything.
func dialPastTimeWait(t *testing.T, servers []string) bool {
	c, laddr := dialFromFreePort(t, servers[0])
	c.Close() // the client closes first: its side goes to TIME_WAIT
	if !waitTimeWait(laddr, servers[0], 5*time.Second) {
		return false
	}
	var failures []string
	excl := &reuse.Config{Mode: reuse.Exclusive}
	if c, err := excl.Dial(context.Background(), "tcp4", laddr, servers[1]); !errors.Is(err, unix.EADDRINUSE) || !strings.Contains(err.Error(), "Exclusive (SO_REUSEADDR=0 SO_REUSEPORT=0): bind") {
		if err == nil {
			c.Close()
		}
		failures = append(failures, fmt.Sprintf("Exclusive dial from %s in TIME_WAIT: %v, want EADDRINUSE at bind", laddr, err))
	}
	plain := net.Dialer{LocalAddr: mustTCPAddr(t, laddr)}
	if c, err := plain.Dial("tcp4", servers[1]); !errors.Is(err, unix.EADDRINUSE) {
		if err == nil {
			c.Close()
		}
		failures = append(failures, fmt.Sprintf("plain dial from %s in TIME_WAIT: %v, want EADDRINUSE", laddr, err))
	}
	if c, err := reuse.Dial("tcp4", laddr, servers[2]); err != nil {
		failures = append(failures, fmt.Sprintf("Share dial from %s in TIME_WAIT to another server: %v", laddr, err))
	} else {
		c.Close()
	}
	// The dials show something only if the TIME_WAIT was there throughout.
	if !inTimeWait(laddr, servers[0]) {
		return false
	}
	for _, f := range failures {
		t.Error(f)
	}
	return true
}

func mustTCPAddr(t *testing.T, s string) *net.TCPAddr {
	t.Helper()
	a, err := net.ResolveTCPAddr("tcp4", s)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// timeWaitTries bounds the tries of a test that needs a connection in
// TIME_WAIT. A TIME_WAIT can end early: a duplicate segment that reaches the
// peer after its socket closed is answered with a reset, and a reset ends a
// TIME_WAIT under Linux's default net.ipv4.tcp_rfc1337=0 (RFC 1337's
// "TIME-WAIT assassination"). Measured here at about 1 try in 400 on loopback
// under load (TestDialPastTimeWait), and never in 2,400 with tcp_rfc1337=1.
const timeWaitTries = 5

// retryTimeWait runs try, a test's use of a fresh connection in TIME_WAIT,
// until it reports that the TIME_WAIT lasted, at most timeWaitTries times.
func retryTimeWait(t *testing.T, try func() bool) {
	t.Helper()
	for i := 1; i <= timeWaitTries; i++ {
		if try() {
			return
		}
		t.Logf("try %d: the TIME_WAIT ended early (a reset); trying a fresh port", i)
	}
	t.Fatalf("the TIME_WAIT ended early in all %d tries", timeWaitTries)
}

// waitTimeWait reports whether the TCP connection between the IPv4
// addresses local and remote is in TIME_WAIT on local's side within d.
func waitTimeWait(local, remote string, d time.Duration) bool {
	for deadline := time.Now().Add(d); ; time.Sleep(10 * time.Millisecond) {
		if inTimeWait(local, remote) {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
	}
}

// inTimeWait reports whether /proc/net/tcp shows the TCP connection between
// the IPv4 addresses local and remote in TIME_WAIT on local's side.
func inTimeWait(local, remote string) bool {
	b, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		return false
	}
	// The kernel prints addresses in its own byte order, which under
	// qemu-user is not the test's: either will do.
	var tuples []string
	for _, order := range []binary.ByteOrder{binary.LittleEndian, binary.BigEndian} {
		tuples = append(tuples, procTCP4(local, order)+" "+procTCP4(remote, order))
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 3 && slices.Contains(tuples, f[1]+" "+f[2]) && f[3] == "06" { // TCP_TIME_WAIT
			return true
		}
	}
	return false
}

// procTCP4 writes the IPv4 address a (host:port) as /proc/net/tcp does on a
// kernel of byte order order: the 4 address bytes as a hexadecimal integer,
// a colon, the port.
func procTCP4(a string, order binary.ByteOrder) string {
	ap := netip.MustParseAddrPort(a)
	ip := ap.Addr().As4()
	return fmt.Sprintf("%08X:%04X", order.Uint32(ip[:]), ap.Port())
}
