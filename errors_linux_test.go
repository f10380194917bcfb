package reuse_test

import (
	"context"
	"encoding/binary"
	"errors"
	"math"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/sockreuse/reuse"
	"github.com/sockreuse/reuse/internal/sockettest"
)

// TestErrors checks every kind of error the package returns: what it wraps
// (errors.Is), the fields of its *net.OpError (errors.As), and that its
// message names the network, the address and the option or mode at fault.
func TestErrors(t *testing.T) {
	ctx := context.Background()
	excl := &reuse.Config{Mode: reuse.Exclusive}
	addr, udpAddr := holdExclusive(t)

	// A local address held by a connection to held, for the 5-tuple case.
	first, err := reuse.Dial("tcp4", "127.0.0.1:0", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	// Dial from port 0 binds nothing shared: dial from a port explicitly.
	c1, sharedAddr := dialFromFreePort(t, addr)
	defer c1.Close()

	unixPath := filepath.Join(t.TempDir(), "sock")
	cancelled, cancel := context.WithCancel(ctx)
	cancel()

	tests := []struct {
		name    string
		call    func() error
		is      []error // errors.Is must hold for each
		op      string  // the *net.OpError's Op
		network string  // ... Net
		source  string  // ... Source, "" for none
		address string  // ... Addr, "" for none
		option  string  // the option or mode the message must name, "" when none is at fault
	}{
		{"Exclusive listen on a held port", func() error { return closeIfNil(excl.Listen(ctx, "tcp4", addr)) },
			[]error{syscall.EADDRINUSE}, "listen", "tcp4", "", addr, "Exclusive (SO_REUSEADDR=1 SO_REUSEPORT=0)"},
		{"Share listen on a held port", func() error { return closeIfNil(reuse.Listen("tcp4", addr)) },
			[]error{syscall.EADDRINUSE}, "listen", "tcp4", "", addr, "Share (SO_REUSEADDR=1 SO_REUSEPORT=1)"},
		{"Share datagram on a held port", func() error { return closeIfNil(reuse.ListenPacket("udp4", udpAddr)) },
			[]error{syscall.EADDRINUSE}, "listen", "udp4", "", udpAddr, "Share (SO_REUSEADDR=0 SO_REUSEPORT=1)"},
		{"Exclusive datagram on a held port", func() error { return closeIfNil(excl.ListenPacket(ctx, "udp4", udpAddr)) },
			[]error{syscall.EADDRINUSE}, "listen", "udp4", "", udpAddr, "Exclusive (SO_REUSEADDR=0 SO_REUSEPORT=0)"},
		{"retries spent", func() error {
			c := reuse.Config{Retry: reuse.RetryPolicy{Attempts: 2, Initial: time.Millisecond}}
			return closeIfNil(c.Listen(ctx, "tcp4", addr))
		}, []error{syscall.EADDRINUSE}, "listen", "tcp4", "", addr, "(2 tries): Share (SO_REUSEADDR=1 SO_REUSEPORT=1)"},
		{"retries cut by the context", func() error {
			c := reuse.Config{Retry: reuse.RetryPolicy{Attempts: 5}}
			return closeIfNil(c.Listen(cancelled, "tcp4", addr))
		}, []error{syscall.EADDRINUSE, context.Canceled}, "listen", "tcp4", "", addr, "SO_REUSEPORT=1"},
		{"every fallback fails", func() error {
			c := reuse.Config{Mode: reuse.Exclusive, Fallback: []string{"127.0.0.1:65536"}}
			return closeIfNil(c.Listen(ctx, "tcp4", addr))
		}, []error{syscall.EADDRINUSE}, "listen", "tcp4", "", addr, "SO_REUSEPORT=0): bind: address already in use; held by "},
		{"Exclusive dial from a held port", func() error { return closeIfNil(excl.Dial(ctx, "tcp4", addr, addr)) },
			[]error{syscall.EADDRINUSE}, "dial", "tcp4", addr, addr, "Exclusive (SO_REUSEADDR=0 SO_REUSEPORT=0)"},
		{"dial repeating a 5-tuple", func() error { return closeIfNil(reuse.Dial("tcp4", sharedAddr, addr)) },
			[]error{syscall.EADDRNOTAVAIL}, "dial", "tcp4", sharedAddr, addr, "local and remote address pair is already in use"},
		{"listen on a unix socket", func() error { return closeIfNil(reuse.Listen("unix", unixPath)) },
			[]error{errors.ErrUnsupported}, "listen", "unix", "", unixPath, "port sharing"},
		{"datagram on an ip socket", func() error { return closeIfNil(reuse.ListenPacket("ip4:icmp", "127.0.0.1")) },
			[]error{errors.ErrUnsupported}, "listen", "ip4:icmp", "", "127.0.0.1", "port sharing"},
		{"dial a unixgram socket", func() error { return closeIfNil(reuse.Dial("unixgram", "", unixPath)) },
			[]error{errors.ErrUnsupported}, "dial", "unixgram", "", unixPath, "port sharing"},
		{"listen with an unknown Mode", func() error {
			c := reuse.Config{Mode: 7}
			return closeIfNil(c.Listen(ctx, "tcp4", "127.0.0.1:0"))
		}, nil, "listen", "tcp4", "", "127.0.0.1:0", "Mode(7)"},
		{"dial from a fixed port with an unknown Mode", func() error {
			c := reuse.Config{Mode: 7}
			return closeIfNil(c.Dial(ctx, "tcp4", "127.0.0.1:1", addr))
		}, nil, "dial", "tcp4", "", addr, "Mode(7)"},
		{"dial from an invalid local address", func() error { return closeIfNil(reuse.Dial("tcp4", "127.0.0.1:65536", addr)) },
			nil, "dial", "tcp4", "127.0.0.1:65536", addr, ""},
		{"Control of a caller's listener fails in setsockopt", func() error {
			lc := net.ListenConfig{Control: func(_, address string, rc syscall.RawConn) error {
				// SO_REUSEPORT on a unix socket: EOPNOTSUPP since Linux 6.12.9.
				return reuse.Control("tcp", address, rc)
			}}
			return closeIfNil(lc.Listen(ctx, "unix", unixPath))
		}, []error{syscall.EOPNOTSUPP}, "listen", "unix", "", unixPath, "SO_REUSEPORT=1"},
		{"unknown network", func() error { return closeIfNil(reuse.Listen("sctp", "127.0.0.1:0")) },
			nil, "listen", "sctp", "", "127.0.0.1:0", "unknown network sctp"},
		// 192.0.2.1 (TEST-NET-1) is on no interface: bind fails.
		{"Share listen on port 0 of an address not here", func() error { return closeIfNil(reuse.Listen("tcp4", "192.0.2.1:0")) },
			[]error{syscall.EADDRNOTAVAIL}, "listen", "tcp4", "", "192.0.2.1:0", "Share (SO_REUSEADDR=1 SO_REUSEPORT=1): bind"},
		{"Share datagram on port 0 of an address not here", func() error { return closeIfNil(reuse.ListenPacket("udp4", "192.0.2.1:0")) },
			[]error{syscall.EADDRNOTAVAIL}, "listen", "udp4", "", "192.0.2.1:0", "Share (SO_REUSEADDR=0 SO_REUSEPORT=1): bind"},
		{"Share listen on port 0 with a reservation, of an address not here", func() error {
			var c reuse.Config
			c.ListenConfig.Control = func(string, string, syscall.RawConn) error { return nil }
			return closeIfNil(c.Listen(ctx, "tcp4", "192.0.2.1:0"))
		}, []error{syscall.EADDRNOTAVAIL}, "listen", "tcp4", "", "192.0.2.1:0", "Share (SO_REUSEADDR=1 SO_REUSEPORT=1): bind"},
		{"dial from port 0 with an unknown Mode", func() error {
			c := reuse.Config{Mode: 7}
			return closeIfNil(c.Dial(ctx, "tcp4", "127.0.0.1:0", addr))
		}, nil, "dial", "tcp4", "", addr, "Mode(7)"},
		{"dial from any address with an unknown Mode", func() error {
			c := reuse.Config{Mode: 7}
			return closeIfNil(c.Dial(ctx, "tcp4", "", addr))
		}, nil, "dial", "tcp4", "", addr, "Mode(7)"},
		{"a group too large to open", func() error {
			lns, err := reuse.ListenGroup("tcp4", "127.0.0.1:0", math.MaxInt>>1) // 1<<62, or 1<<30 on 32-bit targets
			for _, ln := range lns {
				ln.Close()
			}
			return err
		}, nil, "listen", "tcp4", "", "127.0.0.1:0", "a group of " + strconv.Itoa(math.MaxInt>>1) + " sockets: want at most 1024"},
		{"a datagram group of math.MaxInt", func() error {
			pcs, err := reuse.ListenPacketGroup("udp4", "127.0.0.1:0", math.MaxInt)
			for _, pc := range pcs {
				pc.Close()
			}
			return err
		}, nil, "listen", "udp4", "", "127.0.0.1:0", "want at most 1024"},
	}
	// A nil context is an error of every function that takes one, whatever
	// the Config holds.
	var nilCtx context.Context
	for _, c := range []*reuse.Config{{}, {Mode: reuse.Exclusive, Retry: reuse.RetryPolicy{Attempts: 3}, Fallback: []string{"127.0.0.1:0"}}} {
		c := c
		tests = append(tests, []struct {
			name    string
			call    func() error
			is      []error
			op      string
			network string
			source  string
			address string
			option  string
		}{
			{"Listen with a nil context", func() error { return closeIfNil(c.Listen(nilCtx, "tcp4", "127.0.0.1:0")) },
				nil, "listen", "tcp4", "", "127.0.0.1:0", "reuse: nil context.Context"},
			{"ListenPacket with a nil context", func() error { return closeIfNil(c.ListenPacket(nilCtx, "udp4", "127.0.0.1:0")) },
				nil, "listen", "udp4", "", "127.0.0.1:0", "reuse: nil context.Context"},
			{"Dial with a nil context", func() error { return closeIfNil(c.Dial(nilCtx, "tcp4", "", addr)) },
				nil, "dial", "tcp4", "", addr, "reuse: nil context.Context"},
			{"ListenGroup with a nil context", func() error {
				_, err := c.ListenGroup(nilCtx, "tcp4", "127.0.0.1:0", 1)
				return err
			}, nil, "listen", "tcp4", "", "127.0.0.1:0", "reuse: nil context.Context"},
			{"ListenPacketGroup with a nil context", func() error {
				_, err := c.ListenPacketGroup(nilCtx, "udp4", "127.0.0.1:0", 1)
				return err
			}, nil, "listen", "udp4", "", "127.0.0.1:0", "nil context.Context"},
			{"ListenMulticastUDP with a nil context", func() error {
				return closeIfNil(c.ListenMulticastUDP(nilCtx, "udp4", nil, &net.UDPAddr{IP: net.IPv4(239, 0, 0, 1), Port: 9999}))
			}, nil, "listen", "udp4", "", "239.0.0.1:9999", "nil context.Context"},
		}...)
	}
	for _, tt := range tests {
		tt := tt
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			if err == nil {
				t.Fatal("no error")
			}
			t.Logf("%v", err)
			for _, want := range tt.is {
				if !errors.Is(err, want) {
					t.Errorf("errors.Is(err, %v) = false", want)
				}
			}
			var oe *net.OpError
			if !errors.As(err, &oe) {
				t.Fatalf("error %T is not a *net.OpError", err)
			}
			if oe.Op != tt.op || oe.Net != tt.network || addrString(oe.Source) != tt.source || addrString(oe.Addr) != tt.address {
				t.Errorf("OpError{Op: %q, Net: %q, Source: %q, Addr: %q}, want {%q, %q, %q, %q}",
					oe.Op, oe.Net, addrString(oe.Source), addrString(oe.Addr), tt.op, tt.network, tt.source, tt.address)
			}
			option := tt.option
			if e := sockettest.Emulator(); e != "" {
				// qemu-user answers no NETLINK_SOCK_DIAG dump: no holder is named.
				option = strings.TrimSuffix(option, "; held by ")
			}
			for _, want := range []string{tt.network, tt.source, tt.address, option} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("message %q does not name %q", err, want)
				}
			}
			if n := strings.Count(err.Error(), "reuse: "); n > 1 {
				t.Errorf("message %q says \"reuse: \" %d times, want at most once", err, n)
			}
		})
	}
}

// TestControlErrors checks the errors of Control, which net wraps in its
// own *net.OpError when Control runs inside a listen or dial.
func TestControlErrors(t *testing.T) {
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	rc, err := conn.(*net.UDPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name    string
		c       reuse.Config
		network string
		want    string
	}{
		{"unknown network", reuse.Config{}, "sctp", `reuse: unknown network sctp`},
		{"unix network", reuse.Config{}, "unix", "reuse: port sharing does not apply to unix sockets"},
		{"unknown Mode", reuse.Config{Mode: 9}, "udp4", "reuse: unknown Mode(9)"},
	} {
		err := tt.c.Control(tt.network, "127.0.0.1:0", rc)
		if err == nil || !strings.HasPrefix(err.Error(), tt.want) {
			t.Errorf("%s: Control(%q) = %v, want an error starting %q", tt.name, tt.network, err, tt.want)
		}
		var oe *net.OpError
		if errors.As(err, &oe) {
			t.Errorf("%s: Control returned a *net.OpError, which net adds itself", tt.name)
		}
	}
	var se *os.SyscallError
	if err := reuse.Control("udp4", "127.0.0.1:0", rc); err != nil || errors.As(err, &se) {
		t.Errorf("Control on a datagram socket: %v", err)
	}
	var c reuse.Config
	for name, control := range map[string]func(string, string, syscall.RawConn) error{"Control": c.Control, "DialerControl": c.DialerControl} {
		if err := control("tcp4", "127.0.0.1:80", nil); err == nil || err.Error() != "reuse: nil syscall.RawConn" {
			t.Errorf("%s with a nil RawConn = %v, want reuse: nil syscall.RawConn", name, err)
		}
	}
	if err := c.DialerControl("sctp", "127.0.0.1:80", rc); err == nil || !strings.HasPrefix(err.Error(), `reuse: unknown network sctp`) {
		t.Errorf("DialerControl(sctp) = %v, want an unknown network", err)
	}
}

// closeIfNil closes the socket of a call that unexpectedly succeeded, and
// returns its error.
func closeIfNil[T interface{ Close() error }](c T, err error) error {
	if err == nil {
		c.Close()
	}
	return err
}

func addrString(a net.Addr) string {
	if a == nil {
		return ""
	}
	return a.String()
}

// holdExclusive holds a TCP and a UDP port on 127.0.0.1 under Exclusive until
// the test ends, and returns their addresses.
func holdExclusive(t *testing.T) (tcpAddr, udpAddr string) {
	t.Helper()
	ctx := context.Background()
	excl := &reuse.Config{Mode: reuse.Exclusive}
	held, err := excl.Listen(ctx, "tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { held.Close() })
	heldUDP, err := excl.ListenPacket(ctx, "udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { heldUDP.Close() })
	return held.Addr().String(), heldUDP.LocalAddr().String()
}

// refusingSetsockopt runs f on an OS thread of its own whose setsockopt of
// (SOL_SOCKET, opt) the kernel refuses with EPERM, through a seccomp filter
// on that thread only; the thread exits with f's goroutine. It skips where
// seccomp filters cannot be installed (qemu-user refuses them).
func refusingSetsockopt(t *testing.T, opt int, f func()) {
	t.Helper()
	// Where seccomp_data keeps the low 32 bits of syscall argument i.
	arg := func(i int) uint32 {
		off := uint32(16 + 8*i)
		if binary.NativeEndian.Uint16([]byte{1, 0}) != 1 {
			off += 4
		}
		return off
	}
	const (
		retErrno = 0x00050000 // SECCOMP_RET_ERRNO
		retAllow = 0x7fff0000 // SECCOMP_RET_ALLOW
	)
	prog := []unix.SockFilter{
		{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: 0}, // syscall number
		{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, K: unix.SYS_SETSOCKOPT, Jt: 0, Jf: 5},
		{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: arg(1)}, // level
		{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, K: unix.SOL_SOCKET, Jt: 0, Jf: 3},
		{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: arg(2)}, // option
		{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, K: uint32(opt), Jt: 0, Jf: 1},
		{Code: unix.BPF_RET | unix.BPF_K, K: retErrno | uint32(unix.EPERM)},
		{Code: unix.BPF_RET | unix.BPF_K, K: retAllow},
	}
	done := make(chan struct{})
	var setupErr error
	go func() {
		defer close(done)
		// Never unlocked: the thread, filtered for good, ends with this
		// goroutine, and Go starts no thread from a locked one.
		runtime.LockOSThread()
		if setupErr = unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); setupErr != nil {
			return
		}
		fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
		if setupErr = unix.Prctl(unix.PR_SET_SECCOMP, unix.SECCOMP_MODE_FILTER, uintptr(unsafe.Pointer(&fprog)), 0, 0); setupErr != nil {
			return
		}
		f()
	}()
	<-done
	if setupErr != nil {
		t.Skipf("no seccomp filter on this kernel or emulator: %v", setupErr)
	}
}

// TestSetsockoptFailure: where the kernel refuses an option, Listen,
// ListenPacket and Dial return an error naming it and wrapping the errno,
// and close the socket. SO_REUSEPORT is set before bind on a fixed port and
// after bind on port 0 (Linux), both are covered.
func TestSetsockoptFailure(t *testing.T) {
	ctx := context.Background()
	peer, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	var mptcp, plain reuse.Config
	mptcp.ListenConfig.SetMultipathTCP(true)
	plain.ListenConfig.SetMultipathTCP(false)
	// fixed returns a port that was free a moment ago.
	fixed := func(network string) string {
		var a net.Addr
		if network == "tcp4" {
			ln, err := net.Listen(network, "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			a = ln.Addr()
		} else {
			pc, err := net.ListenPacket(network, "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer pc.Close()
			a = pc.LocalAddr()
		}
		return a.String()
	}
	for _, tt := range []struct {
		name    string
		network string // of the fixed port given to call, "" for none
		call    func(addr string) error
	}{
		{"Listen on a fixed port", "tcp4", func(addr string) error { return closeIfNil(reuse.Listen("tcp4", addr)) }},
		{"Listen on port 0", "", func(string) error { return closeIfNil(reuse.Listen("tcp4", "127.0.0.1:0")) }},
		// Go 1.24+ modules listen with MPTCP by default; when a Control
		// fails on an MPTCP socket, Go tries again with plain TCP.
		{"Listen on a fixed port, MPTCP", "tcp4", func(addr string) error { return closeIfNil(mptcp.Listen(ctx, "tcp4", addr)) }},
		{"Listen on port 0, MPTCP", "", func(string) error { return closeIfNil(mptcp.Listen(ctx, "tcp4", "127.0.0.1:0")) }},
		{"Listen on port 0, plain TCP", "", func(string) error { return closeIfNil(plain.Listen(ctx, "tcp4", "127.0.0.1:0")) }},
		{"ListenPacket on a fixed port", "udp4", func(addr string) error { return closeIfNil(reuse.ListenPacket("udp4", addr)) }},
		{"ListenPacket on port 0", "", func(string) error { return closeIfNil(reuse.ListenPacket("udp4", "127.0.0.1:0")) }},
		{"ListenGroup on port 0", "", func(string) error {
			_, err := reuse.ListenGroup("tcp4", "127.0.0.1:0", 2)
			return err
		}},
		{"Dial from a fixed port", "tcp4", func(addr string) error {
			return closeIfNil(reuse.Dial("tcp4", addr, peer.Addr().String()))
		}},
		{"Dial from a fixed port, with a Control of the caller's", "tcp4", func(addr string) error {
			c := reuse.Config{}
			c.Dialer.Control = func(string, string, syscall.RawConn) error { return nil }
			return closeIfNil(c.Dial(ctx, "tcp4", addr, peer.Addr().String()))
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if strings.HasSuffix(tt.name, ", MPTCP") && !mptcpEnabled() {
				t.Skipf("the kernel has no MPTCP (net.mptcp.enabled is not 1)")
			}
			before := openFDs(t)
			var err error
			var addr string
			if tt.network != "" {
				addr = fixed(tt.network)
			}
			refusingSetsockopt(t, unix.SO_REUSEPORT, func() { err = tt.call(addr) })
			t.Logf("%v", err)
			var oe *net.OpError
			if !errors.Is(err, syscall.EPERM) || !errors.As(err, &oe) || !strings.Contains(err.Error(), "set SO_REUSEPORT=1: setsockopt: operation not permitted") {
				t.Errorf("error %v, want a *net.OpError wrapping EPERM and naming SO_REUSEPORT=1", err)
			}
			if n := strings.Count(err.Error(), "reuse: "); n != 1 {
				t.Errorf("message %q says \"reuse: \" %d times, want once", err, n)
			}
			if after := openFDs(t); after != before {
				t.Errorf("%d descriptors open before, %d after", before, after)
			}
		})
	}
}
