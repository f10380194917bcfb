package reuse_test

import (
	"context"
	"errors"
	"net"
	"strconv"
	"syscall"
	"testing"

	"golang.org/x/sys/windows"

	"github.com/sockreuse/reuse"
	"github.com/sockreuse/reuse/internal/sockettest"
)

// soExclusiveAddrUse is Winsock's SO_EXCLUSIVEADDRUSE, ((int)(~SO_REUSEADDR)).
const soExclusiveAddrUse = ^windows.SO_REUSEADDR

// winSockopt reads the SOL_SOCKET option opt of the socket behind c.
func winSockopt(t *testing.T, c syscall.Conn, opt int) int {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var v int
	var gerr error
	if err := rc.Control(func(fd uintptr) {
		v, gerr = windows.GetsockoptInt(windows.Handle(fd), windows.SOL_SOCKET, opt)
	}); err != nil {
		t.Fatal(err)
	}
	if gerr != nil {
		t.Fatalf("getsockopt(%d): %v", opt, gerr)
	}
	return v
}

// wantOptions checks what a socket opened by mode carries: Exclusive sets
// SO_EXCLUSIVEADDRUSE and not SO_REUSEADDR (both at once is WSAEINVAL),
// Share sets SO_REUSEADDR only.
func wantOptions(t *testing.T, what string, c syscall.Conn, mode reuse.Mode) {
	t.Helper()
	wantExcl, wantReuse := 0, 1
	if mode == reuse.Exclusive {
		wantExcl, wantReuse = 1, 0
	}
	if got := winSockopt(t, c, soExclusiveAddrUse); (got != 0) != (wantExcl != 0) {
		t.Errorf("%s %v: SO_EXCLUSIVEADDRUSE = %d, want %d", what, mode, got, wantExcl)
	}
	if got := winSockopt(t, c, windows.SO_REUSEADDR); (got != 0) != (wantReuse != 0) {
		t.Errorf("%s %v: SO_REUSEADDR = %d, want %d", what, mode, got, wantReuse)
	}
}

func TestWindowsOptionsReadBack(t *testing.T) {
	ctx := context.Background()
	for _, mode := range []reuse.Mode{reuse.Share, reuse.Exclusive} {
		c := reuse.Config{Mode: mode}
		t.Run(mode.String()+"/listener", func(t *testing.T) {
			ln, err := c.Listen(ctx, "tcp4", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			wantOptions(t, "listener", ln.(*net.TCPListener), c.Mode)
		})
		t.Run(mode.String()+"/dialer", func(t *testing.T) {
			ln, err := net.Listen("tcp4", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			laddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(freeTCPPort(t)))
			conn, err := c.Dial(ctx, "tcp4", laddr, ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			if got := conn.LocalAddr().String(); got != laddr {
				t.Errorf("dialed from %s, want %s", got, laddr)
			}
			wantOptions(t, "dialer", conn.(*net.TCPConn), c.Mode)
		})
		t.Run(mode.String()+"/packet", func(t *testing.T) {
			sockettest.RequireUDP(t)
			pc, err := c.ListenPacket(ctx, "udp4", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer pc.Close()
			wantOptions(t, "packet conn", pc.(*net.UDPConn), c.Mode)
		})
	}
}

// freeTCPPort returns a loopback TCP port that no socket held a moment ago.
func freeTCPPort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// secondBind is a socket that tries to bind a port another socket holds,
// and the errors Windows gives it when an Exclusive socket holds the
// wildcard, from Microsoft's documentation ("Using SO_REUSEADDR and
// SO_EXCLUSIVEADDRUSE", its table of binds).
type secondBind struct {
	name           string
	listen         func(ctx context.Context, address string) (net.Listener, error)
	onWildcard     syscall.Errno
	onSpecificAddr syscall.Errno
}

var secondBinds = []secondBind{
	{"plain", func(ctx context.Context, address string) (net.Listener, error) {
		var lc net.ListenConfig
		return lc.Listen(ctx, "tcp4", address)
	}, windows.WSAEADDRINUSE, windows.WSAEACCES},
	{"SO_REUSEADDR", func(ctx context.Context, address string) (net.Listener, error) {
		c := reuse.Config{Mode: reuse.Share}
		return c.Listen(ctx, "tcp4", address)
	}, windows.WSAEACCES, windows.WSAEACCES},
	{"SO_EXCLUSIVEADDRUSE", func(ctx context.Context, address string) (net.Listener, error) {
		c := reuse.Config{Mode: reuse.Exclusive}
		return c.Listen(ctx, "tcp4", address)
	}, windows.WSAEADDRINUSE, windows.WSAEACCES},
}

// wantRefused checks that a second bind failed with want, or with
// WSAEADDRINUSE or WSAEACCES where want is 0 or under Wine (which maps the
// bind onto Linux's rules and answers WSAEACCES where Windows says
// WSAEADDRINUSE), wrapped so that errors.Is finds it.
func wantRefused(t *testing.T, what string, ln net.Listener, err error, want syscall.Errno) {
	t.Helper()
	if err == nil {
		ln.Close()
		t.Errorf("%s: bind succeeded, want it refused", what)
		return
	}
	if want != 0 && !sockettest.IsWine() {
		if !errors.Is(err, want) {
			t.Errorf("%s: %v, want %v", what, err, want)
		}
		return
	}
	if !errors.Is(err, windows.WSAEADDRINUSE) && !errors.Is(err, windows.WSAEACCES) {
		t.Errorf("%s: %v, want WSAEADDRINUSE or WSAEACCES", what, err)
		return
	}
	t.Logf("%s: refused: %v", what, err)
}

// An Exclusive socket on a specific address keeps every other socket off it,
// including one with SO_REUSEADDR, which on Windows may otherwise take over
// a port in use.
func TestWindowsExclusiveRefusesSecondBind(t *testing.T) {
	ctx := context.Background()
	excl := reuse.Config{Mode: reuse.Exclusive}
	first, err := excl.Listen(ctx, "tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	for _, s := range secondBinds {
		ln, err := s.listen(ctx, first.Addr().String())
		wantRefused(t, s.name+" on "+first.Addr().String(), ln, err, 0)
	}
}

// An Exclusive socket on the wildcard keeps every other socket off the port,
// on the wildcard and on a specific address: the hijack of a specific
// address that Windows allows over a plain wildcard socket is refused.
func TestWindowsExclusiveWildcardRefusesSecondBind(t *testing.T) {
	requirePrivateNetwork(t)
	ctx := context.Background()
	excl := reuse.Config{Mode: reuse.Exclusive}
	first, err := excl.Listen(ctx, "tcp4", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	port := strconv.Itoa(first.Addr().(*net.TCPAddr).Port)
	for _, s := range secondBinds {
		ln, err := s.listen(ctx, net.JoinHostPort("0.0.0.0", port))
		wantRefused(t, s.name+" on the wildcard", ln, err, s.onWildcard)
		ln, err = s.listen(ctx, net.JoinHostPort("127.0.0.1", port))
		wantRefused(t, s.name+" on 127.0.0.1", ln, err, s.onSpecificAddr)
	}
}

// Over a plain wildcard listener, Windows lets an SO_REUSEADDR socket bind
// the same port on a specific address: the hijack that Exclusive prevents.
func TestWindowsPlainWildcardHijack(t *testing.T) {
	requirePrivateNetwork(t)
	ctx := context.Background()
	var lc net.ListenConfig
	first, err := lc.Listen(ctx, "tcp4", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	address := net.JoinHostPort("127.0.0.1", strconv.Itoa(first.Addr().(*net.TCPAddr).Port))
	share := reuse.Config{Mode: reuse.Share}
	ln, err := share.Listen(ctx, "tcp4", address)
	if err != nil {
		if sockettest.IsWine() {
			// Wine hands a listening socket's port to the host's rules
			// (Linux's), which refuse this bind.
			t.Skipf("Wine refuses what Windows allows (SO_REUSEADDR on %s over a plain wildcard listener): %v", address, err)
		}
		t.Fatalf("SO_REUSEADDR on %s over a plain wildcard listener: %v, want it allowed", address, err)
	}
	ln.Close()
}

// requirePrivateNetwork skips a test that binds the wildcard address unless
// the process's network is private (see sockettest.PrivateNetwork).
func requirePrivateNetwork(t *testing.T) {
	t.Helper()
	if !sockettest.PrivateNetwork() {
		t.Skip("binds the wildcard address: runs only where the network is private (.ci/wine.sh runs Wine in a private network namespace and sets SOCKETTEST_PRIVATE_NET=1)")
	}
}

func TestWindowsDialFromSharedPort(t *testing.T) {
	ctx := context.Background()
	var servers []net.Listener
	for i := 0; i < 2; i++ {
		ln, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		servers = append(servers, ln)
	}
	laddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(freeTCPPort(t)))

	share := reuse.Config{Mode: reuse.Share}
	for _, srv := range servers {
		conn, err := share.Dial(ctx, "tcp4", laddr, srv.Addr().String())
		if err != nil {
			t.Fatalf("Share: second connection from %s: %v", laddr, err)
		}
		defer conn.Close()
		if got := conn.LocalAddr().String(); got != laddr {
			t.Errorf("Share: dialed from %s, want %s", got, laddr)
		}
	}
}

func TestWindowsExclusiveDialRefusesSharedPort(t *testing.T) {
	ctx := context.Background()
	var servers []net.Listener
	for i := 0; i < 2; i++ {
		ln, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		servers = append(servers, ln)
	}
	laddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(freeTCPPort(t)))
	excl := reuse.Config{Mode: reuse.Exclusive}
	conn, err := excl.Dial(ctx, "tcp4", laddr, servers[0].Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn2, err := excl.Dial(ctx, "tcp4", laddr, servers[1].Addr().String())
	if err == nil {
		conn2.Close()
		t.Fatalf("Exclusive: a second connection from %s succeeded, want it refused", laddr)
	}
	var opErr *net.OpError
	if !errors.As(err, &opErr) {
		t.Errorf("error %v (%T) is no *net.OpError", err, err)
	}
	if !errors.Is(err, windows.WSAEADDRINUSE) && !errors.Is(err, windows.WSAEACCES) {
		t.Errorf("Exclusive: second connection from %s: %v, want WSAEADDRINUSE or WSAEACCES", laddr, err)
	}
}

// Two Exclusive datagram sockets cannot share a port.
func TestWindowsExclusiveListenPacket(t *testing.T) {
	sockettest.RequireUDP(t)
	ctx := context.Background()
	excl := reuse.Config{Mode: reuse.Exclusive}
	first, err := excl.ListenPacket(ctx, "udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	second, err := excl.ListenPacket(ctx, "udp4", first.LocalAddr().String())
	if err == nil {
		second.Close()
		t.Fatalf("a second Exclusive socket bound %v", first.LocalAddr())
	}
	if !errors.Is(err, windows.WSAEADDRINUSE) && !errors.Is(err, windows.WSAEACCES) {
		t.Errorf("second Exclusive socket: %v, want WSAEADDRINUSE or WSAEACCES", err)
	}
}
