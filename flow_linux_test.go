package reuse_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sockreuse/reuse"
	"github.com/sockreuse/reuse/internal/sockettest"
	"golang.org/x/sys/unix"
)

// rawUDP opens an IPv4 UDP socket with SO_REUSEPORT (and SO_BINDTOIFINDEX
// ifindex, if not 0), bound to 127.0.0.1:port and, if remote is not 0,
// connected to 127.0.0.1:remote. It returns the socket and its port.
func rawUDP(t *testing.T, port, remote, ifindex int) (int, int) {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEPORT, 1); err != nil {
		t.Fatal(err)
	}
	if ifindex != 0 {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_BINDTOIFINDEX, ifindex); err != nil {
			t.Fatalf("SO_BINDTOIFINDEX: %v", err)
		}
	}
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}, Port: port}); err != nil {
		t.Fatal(err)
	}
	if remote != 0 {
		if err := unix.Connect(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}, Port: remote}); err != nil {
			t.Fatal(err)
		}
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	return fd, sa.(*unix.SockaddrInet4).Port
}

// retIndex attaches to fd's group the program "ret #k".
func retIndex(t *testing.T, fd, k int) {
	t.Helper()
	prog := []unix.SockFilter{{Code: unix.BPF_RET | unix.BPF_K, K: uint32(k)}}
	if err := unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_REUSEPORT_CBPF, &unix.SockFprog{Len: 1, Filter: &prog[0]}); err != nil {
		t.Fatal(err)
	}
}

// countQueued reads fd's queue to its end and returns how many datagrams it
// held, and how many of them came from port from.
func countQueued(fd, from int) (all, fromPort int) {
	b := make([]byte, 64)
	for {
		_, sa, err := unix.Recvfrom(fd, b, 0)
		if err != nil {
			return
		}
		all++
		if sa.(*unix.SockaddrInet4).Port == from {
			fromPort++
		}
	}
}

// sendFromNewPorts sends n datagrams to 127.0.0.1:port, each from a new
// socket, and m from client, then waits until they are delivered.
func sendFromNewPorts(t *testing.T, port, n int, client *net.UDPConn, m int) {
	t.Helper()
	dst := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port}
	for i := 0; i < n; i++ {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		c.WriteTo([]byte("x"), dst)
		c.Close()
	}
	for i := 0; i < m; i++ {
		client.WriteTo([]byte("a"), dst)
	}
	time.Sleep(20 * time.Millisecond) // loopback delivers before the send returns; margin
}

// TestFlowKernelGroups pins what the kernel does with a connected UDP
// socket on a shared address, which FlowListener and the handover rely on.
//
//   - It gets its remote's datagrams and no other's, ahead of the group.
//   - On Linux 6.13+ it leaves the reuseport group on connect (the rehash for
//     the 4-tuple hash detaches it): a program's index counts only the
//     unconnected members.
//   - A socket that binds the IPv4 address later takes the connected socket
//     (the newest of the address) for its group's first member: it starts a
//     group of its own, index 0 the connected socket, which a program
//     returning 0 gives every other remote's datagrams to. The group's
//     hash skips it.
//   - A connected socket bound to an interface (SO_BINDTOIFINDEX, as
//     FlowListener binds its flows' sockets) is nobody's first member:
//     later sockets join the group.
func TestFlowKernelGroups(t *testing.T) {
	requireSteering(t)
	var uts unix.Utsname
	unix.Uname(&uts)
	release := unix.ByteSliceToString(uts.Release[:])
	client, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	cport := client.LocalAddr().(*net.UDPAddr).Port

	t.Run("connected leaves the group", func(t *testing.T) {
		if !kernelAtLeast(release, 6, 13) {
			t.Skipf("Linux %s: connected UDP sockets leave their group from 6.13 (udp_lib_hash4)", release)
		}
		u0, port := rawUDP(t, 0, 0, 0)
		u1, _ := rawUDP(t, port, 0, 0)
		u2, _ := rawUDP(t, port, 0, 0)
		c, _ := rawUDP(t, port, cport, 0) // joins at index 3, leaves on connect
		retIndex(t, u0, 2)
		sendFromNewPorts(t, port, 50, client, 3)
		n0, _ := countQueued(u0, cport)
		n1, _ := countQueued(u1, cport)
		n2, _ := countQueued(u2, cport)
		nc, ncFrom := countQueued(c, cport)
		t.Logf("Linux %s, ret #2: u0 %d, u1 %d, u2 %d, connected %d (%d of its remote)", release, n0, n1, n2, nc, ncFrom)
		if n2 != 50 || nc != 3 || ncFrom != 3 {
			t.Errorf("ret #2 after a connect: u2 got %d of 50, the connected socket %d (%d of its remote's 3)", n2, nc, ncFrom)
		}
		// ret #3, the connected socket's index when it joined, is past
		// the end: the hash, which never picks it.
		retIndex(t, u0, 3)
		sendFromNewPorts(t, port, 50, client, 3)
		n0, _ = countQueued(u0, cport)
		n1, _ = countQueued(u1, cport)
		n2, _ = countQueued(u2, cport)
		nc, ncFrom = countQueued(c, cport)
		if n0+n1+n2 != 50 || nc != 3 || ncFrom != 3 {
			t.Errorf("ret #3 after a connect: members %d+%d+%d of 50, the connected socket %d (%d of its remote's 3)", n0, n1, n2, nc, ncFrom)
		}
	})

	t.Run("a later socket groups with the connected one", func(t *testing.T) {
		u0, port := rawUDP(t, 0, 0, 0)
		c, _ := rawUDP(t, port, cport, 0)
		s1, _ := rawUDP(t, port, 0, 0)
		s2, _ := rawUDP(t, port, 0, 0)
		retIndex(t, s1, 0)
		sendFromNewPorts(t, port, 50, client, 3)
		n0, _ := countQueued(u0, cport)
		nc, ncFrom := countQueued(c, cport)
		n1, _ := countQueued(s1, cport)
		n2, _ := countQueued(s2, cport)
		t.Logf("Linux %s, ret #0 on the later sockets' group: first member %d, connected %d (%d of its remote), later %d and %d", release, n0, nc, ncFrom, n1, n2)
		if nc != 53 || ncFrom != 3 {
			t.Errorf("ret #0 on the group of the sockets bound after a connected one: it got %d datagrams (%d of its remote's 3), want all 53: the kernel no longer groups them so (update FlowListener.open's comment)", nc, ncFrom)
		}
		if n0 != 0 {
			t.Errorf("the first group still got %d of 50", n0)
		}
	})

	t.Run("bound to an interface, nobody's first member", func(t *testing.T) {
		lo, err := net.InterfaceByName("lo")
		if err != nil {
			t.Skipf("no loopback interface named lo: %v", err)
		}
		u0, port := rawUDP(t, 0, 0, 0)
		c, _ := rawUDP(t, port, cport, lo.Index)
		s1, _ := rawUDP(t, port, 0, 0)
		retIndex(t, s1, 0)
		sendFromNewPorts(t, port, 50, client, 3)
		n0, _ := countQueued(u0, cport)
		nc, ncFrom := countQueued(c, cport)
		n1, _ := countQueued(s1, cport)
		if n0 != 50 || nc != 3 || ncFrom != 3 || n1 != 0 {
			t.Errorf("ret #0 with the connected socket bound to lo: first member %d of 50, connected %d (%d of its remote's 3), later %d", n0, nc, ncFrom, n1)
		}
	})
}

// listenFlows is reuse.ListenFlows, or a skip under an emulator that does
// not translate the socket options of flows (qemu-user: SO_TIMESTAMPNS).
func listenFlows(t *testing.T, network, address string) *reuse.FlowListener {
	t.Helper()
	l, err := reuse.ListenFlows(network, address)
	if e := sockettest.Emulator(); e != "" && errors.Is(err, syscall.ENOPROTOOPT) {
		t.Skipf("%s does not translate a socket option of flows: %v", e, err)
	}
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// kernelAtLeast reports whether release (uname -r) is at least major.minor.
func kernelAtLeast(release string, major, minor int) bool {
	var ma, mi int
	fmt.Sscanf(release, "%d.%d", &ma, &mi)
	return ma > major || ma == major && mi >= minor
}

// flowLoad runs clients flows against the FlowListener l: each client
// sends numbered datagrams "client seq", the first burst of them at once
// (which race with the flow's socket), the rest one per echo; the server
// checks that each Conn reads one client's datagrams, all of them, in
// order, and echoes them. At most starting clients start at once, while
// the others send.
func flowLoad(t *testing.T, l *reuse.FlowListener, network string, dst *net.UDPAddr, clients, burst, total, starting int) {
	t.Helper()
	var (
		mu       sync.Mutex
		errs     []string
		accepted = map[string]bool{}
		served   sync.WaitGroup
	)
	fail := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		if len(errs) < 10 {
			errs = append(errs, fmt.Sprintf(format, args...))
		}
	}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				if !errors.Is(err, net.ErrClosed) {
					fail("accept: %v", err)
				}
				return
			}
			served.Add(1)
			go func() {
				defer served.Done()
				defer c.Close()
				b := make([]byte, 64)
				who, next := "", 0
				for next < total {
					c.SetReadDeadline(time.Now().Add(10 * time.Second))
					n, err := c.Read(b)
					if err != nil {
						fail("flow from %v: read after seq %d: %v", c.RemoteAddr(), next-1, err)
						return
					}
					f := strings.Fields(string(b[:n]))
					if who == "" {
						// A flow per client: a client's port may be
						// another's, once that one is done.
						who = f[0]
						mu.Lock()
						again := accepted[who]
						accepted[who] = true
						mu.Unlock()
						if again {
							fail("a second flow of client %s, from %v", who, c.RemoteAddr())
						}
					}
					if f[0] != who || f[1] != strconv.Itoa(next) {
						// What follows tells a datagram late from one lost.
						var more []string
						for len(more) < 4 {
							c.SetReadDeadline(time.Now().Add(time.Second))
							m, err := c.Read(b[n:])
							if err != nil {
								break
							}
							more = append(more, string(b[n:n+m]))
						}
						fail("flow from %v (client %s): read %q, want seq %d; then %q", c.RemoteAddr(), who, b[:n], next, more)
						return
					}
					next++
					if _, err := c.Write(b[:n]); err != nil {
						fail("flow from %v: write: %v", c.RemoteAddr(), err)
						return
					}
				}
			}()
		}
	}()
	slots := make(chan struct{}, starting)
	var wg sync.WaitGroup
	for i := 0; i < clients; i++ {
		slots <- struct{}{}
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			c, err := net.DialUDP(network, nil, dst)
			if err != nil {
				fail("client %d: %v", i, err)
				<-slots
				return
			}
			defer c.Close()
			b := make([]byte, 64)
			echo := func(seq int) bool {
				c.SetReadDeadline(time.Now().Add(10 * time.Second))
				n, err := c.Read(b)
				if err != nil {
					fail("client %d: no echo of seq %d: %v", i, seq, err)
					return false
				}
				if want := fmt.Sprintf("%d %d", i, seq); string(b[:n]) != want {
					fail("client %d: echo %q, want %q", i, b[:n], want)
					return false
				}
				return true
			}
			for seq := 0; seq < burst; seq++ {
				fmt.Fprintf(c, "%d %d", i, seq)
			}
			for seq := 0; seq < burst; seq++ {
				if !echo(seq) {
					<-slots
					return
				}
			}
			<-slots // started: the next client may start
			for seq := burst; seq < total; seq++ {
				fmt.Fprintf(c, "%d %d", i, seq)
				if !echo(seq) {
					return
				}
			}
		}(i)
	}
	wg.Wait()
	served.Wait()
	mu.Lock()
	defer mu.Unlock()
	if len(accepted) != clients {
		t.Errorf("%d flows accepted, want %d", len(accepted), clients)
	}
	for _, e := range errs {
		t.Error(e)
	}
}

// TestFlows runs 1,000 flows from 1,000 source ports on IPv4, IPv6 and
// IPv4 to a dual-stack listener, opened 50 at a time while the others
// send: each Conn reads its client's datagrams only, all of them, in
// order, the first ones (sent at once, before the flow's socket exists)
// included. Nothing leaks.
func TestFlows(t *testing.T) {
	for _, tc := range []struct{ network, addr string }{{"udp4", "127.0.0.1:0"}, {"udp6", "[::1]:0"}, {"udp4", "0.0.0.0:0"}, {"udp", "[::]:0"}} {
		t.Run(tc.network+" "+tc.addr, func(t *testing.T) {
			if strings.HasPrefix(tc.addr, "[") {
				if ln, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6loopback}); err != nil {
					t.Skipf("no IPv6 loopback: %v", err)
				} else {
					ln.Close()
				}
			}
			warmUpPoller(t)
			fds, goroutines := openFDs(t), runtime.NumGoroutine()
			l := listenFlows(t, tc.network, tc.addr)
			dst := l.Addr().(*net.UDPAddr)
			if dst.IP.IsUnspecified() {
				// Clients send to loopback: the flows' sockets bind
				// the address each datagram was sent to.
				dst = &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: dst.Port}
			}
			flowLoad(t, l, tc.network, dst, 1000, 3, 20, 50)
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			if _, err := l.Accept(); !errors.Is(err, net.ErrClosed) {
				t.Errorf("Accept after Close: %v, want net.ErrClosed", err)
			}
			checkNoLeaks(t, fds, goroutines)
		})
	}
}

// checkNoLeaks waits a little for goroutines to end, then compares the
// process's descriptors and goroutines with fds and goroutines.
func checkNoLeaks(t *testing.T, fds, goroutines int) {
	t.Helper()
	for start := time.Now(); runtime.NumGoroutine() > goroutines && time.Since(start) < 5*time.Second; {
		time.Sleep(10 * time.Millisecond)
	}
	if got := runtime.NumGoroutine(); got > goroutines {
		buf := make([]byte, 1<<16)
		t.Errorf("%d goroutines, %d before:\n%s", got, goroutines, buf[:runtime.Stack(buf, true)])
	}
	if got := openFDs(t); got != fds {
		t.Errorf("%d descriptors open, %d before", got, fds)
	}
}

// TestFlowEnds shows a flow's end: a Conn closed by the server ends its
// flow (the client's next datagram starts another, which Accept returns),
// an idle flow ends by a read deadline, and closing the listener leaves an
// accepted flow serving.
func TestFlowEnds(t *testing.T) {
	warmUpPoller(t)
	fds, goroutines := openFDs(t), runtime.NumGoroutine()
	l := listenFlows(t, "udp4", "127.0.0.1:0")
	client, err := net.DialUDP("udp4", nil, l.Addr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	accept := func() net.Conn {
		t.Helper()
		client.Write([]byte("hello"))
		c, err := l.Accept()
		if err != nil {
			t.Fatal(err)
		}
		if c.RemoteAddr().String() != client.LocalAddr().String() {
			t.Fatalf("flow from %v, want %v", c.RemoteAddr(), client.LocalAddr())
		}
		b := make([]byte, 16)
		if n, err := c.Read(b); err != nil || string(b[:n]) != "hello" {
			t.Fatalf("first read: %q, %v", b[:n], err)
		}
		return c
	}
	c := accept()
	c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if _, err := c.Read(make([]byte, 16)); !errors.Is(err, unix.EAGAIN) && !isTimeout(err) {
		t.Fatalf("read of an idle flow past its deadline: %v, want a timeout", err)
	}
	c.Close()
	c = accept() // a new flow from the same remote
	l.Close()
	client.Write([]byte("still"))
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	b := make([]byte, 16)
	if n, err := c.Read(b); err != nil || string(b[:n]) != "still" {
		t.Fatalf("read after the listener closed: %q, %v", b[:n], err)
	}
	if _, err := c.Write([]byte("back")); err != nil {
		t.Fatal(err)
	}
	client.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := client.Read(b); err != nil || string(b[:n]) != "back" {
		t.Fatalf("client read: %q, %v", b[:n], err)
	}
	c.Close()
	client.Close()
	checkNoLeaks(t, fds, goroutines)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// TestFlowFDLimit lowers RLIMIT_NOFILE until a new flow's socket cannot be
// opened: Accept says so, naming the limit and wrapping EMFILE, and the
// flow's datagram waits; once a descriptor is free, Accept opens the flow
// and its first datagram is read.
func TestFlowFDLimit(t *testing.T) {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	t.Logf("RLIMIT_NOFILE %d (hard %d): one descriptor a flow", lim.Cur, lim.Max)
	l := listenFlows(t, "udp4", "127.0.0.1:0")
	defer l.Close()
	client, err := net.DialUDP("udp4", nil, l.Addr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	// Take every descriptor up to a lowered limit: the next socket fails.
	fds := openFDs(t)
	low := lim
	low.Cur = uint64(fds + 8)
	var hold []int
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &low); err != nil {
		t.Skipf("cannot lower RLIMIT_NOFILE: %v", err)
	}
	defer unix.Setrlimit(unix.RLIMIT_NOFILE, &lim)
	for {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			break
		}
		hold = append(hold, fd)
	}
	client.Write([]byte("first"))
	_, err = l.Accept()
	if !errors.Is(err, syscall.EMFILE) || !strings.Contains(err.Error(), "RLIMIT_NOFILE") {
		t.Fatalf("Accept at the descriptor limit: %v, want EMFILE naming RLIMIT_NOFILE", err)
	}
	var oe *net.OpError
	if !errors.As(err, &oe) || oe.Op != "accept" {
		t.Errorf("Accept's error is %T, want a *net.OpError of accept", err)
	}
	t.Logf("at the limit: %v", err)
	client.Write([]byte("second"))
	time.Sleep(20 * time.Millisecond)
	for _, fd := range hold {
		unix.Close(fd)
	}
	unix.Setrlimit(unix.RLIMIT_NOFILE, &lim)
	c, err := l.Accept()
	if err != nil {
		t.Fatalf("Accept once descriptors are free: %v", err)
	}
	defer c.Close()
	b := make([]byte, 16)
	for _, want := range []string{"first", "second"} {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if n, err := c.Read(b); err != nil || string(b[:n]) != want {
			t.Fatalf("read %q, %v; want %q", b[:n], err, want)
		}
	}
}

// TestFlowErrors: bad arguments are errors naming what was wrong.
func TestFlowErrors(t *testing.T) {
	for _, tc := range []struct {
		cfg           reuse.Config
		network, want string
	}{
		{reuse.Config{}, "tcp", "UDP network"},
		{reuse.Config{Mode: reuse.Exclusive}, "udp", "Mode Share"},
	} {
		_, err := tc.cfg.ListenFlows(context.Background(), tc.network, "127.0.0.1:0")
		var oe *net.OpError
		if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.As(err, &oe) || oe.Op != "listen" {
			t.Errorf("ListenFlows(%s, %v): %v, want a listen *net.OpError naming %q", tc.network, tc.cfg.Mode, err, tc.want)
		}
	}
	var zero reuse.FlowListener
	if _, err := zero.Accept(); err == nil || !strings.Contains(err.Error(), "not made by ListenFlows") {
		t.Errorf("Accept on a zero FlowListener: %v", err)
	}
	if err := zero.Close(); err == nil {
		t.Error("Close on a zero FlowListener succeeded")
	}
	if a := zero.Addr(); a != nil {
		t.Errorf("Addr of a zero FlowListener: %v", a)
	}
	if err := new(reuse.Handover).TakeOver(context.Background(), &zero); err == nil {
		t.Error("TakeOver of a zero FlowListener succeeded")
	}
	//lint:ignore SA1012 a nil context is the error tested
	if _, err := (&reuse.Config{}).ListenFlows(nil, "udp", "127.0.0.1:0"); err == nil { //nolint:staticcheck
		t.Error("ListenFlows with a nil context succeeded")
	}
}
