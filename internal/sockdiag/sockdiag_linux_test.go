package sockdiag

import (
	"context"
	"net"
	"net/netip"
	"os"
	"sort"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"github.com/sockreuse/reuse/internal/sockettest"
)

// TestOnPort lists a port's sockets: an IPv4 listener (MPTCP where the
// kernel has it, listed as TCP) with a connection waiting in its accept queue, an IPv6
// only listener, and a UDP socket whose small buffer dropped datagrams;
// FindOwners finds this process for each socket that has one.
func TestOnPort(t *testing.T) {
	var lc net.ListenConfig
	lc.SetMultipathTCP(true) // where the kernel has MPTCP; listed as TCP
	ln, err := lc.Listen(context.Background(), "tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	ln6, err := net.Listen("tcp6", net.JoinHostPort("::1", strconv.Itoa(port)))
	if err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	}
	defer ln6.Close()
	c, err := net.Dial("tcp4", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	pc, err := net.ListenPacket("udp4", ln.Addr().String())
	if err != nil {
		t.Skipf("the UDP port of the listener is taken: %v", err)
	}
	defer pc.Close()
	if err := pc.(*net.UDPConn).SetReadBuffer(1); err != nil {
		t.Fatal(err)
	}
	sender, err := net.Dial("udp4", pc.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer sender.Close()
	for i := 0; i < 100; i++ {
		sender.Write(make([]byte, 1000))
	}
	time.Sleep(50 * time.Millisecond)

	socks, err := OnPort(port)
	if err != nil && sockettest.Emulator() != "" {
		t.Skipf("%s answers no NETLINK_SOCK_DIAG dump: %v", sockettest.Emulator(), err)
	}
	if err != nil {
		t.Fatal(err)
	}
	var listeners, connected, udp int
	var inodes []uint64
	for _, s := range socks {
		t.Logf("%+v", s)
		switch {
		case s.Proto != "udp" && s.State == Listen && s.Local.Addr().Is4():
			listeners++
			if s.Proto != "tcp" {
				t.Errorf("listener's protocol %s, want tcp", s.Proto)
			}
			if s.RecvQ != 1 {
				t.Errorf("accept queue %d, want 1", s.RecvQ)
			}
			inodes = append(inodes, s.Inode)
		case s.Proto == "tcp" && s.State == Listen:
			listeners++
			if !s.V6Only || s.Local != netip.MustParseAddrPort(ln6.Addr().String()) {
				t.Errorf("IPv6 listener %v, V6Only %v", s.Local, s.V6Only)
			}
			inodes = append(inodes, s.Inode)
		case s.State == Established:
			connected++
			if s.Inode != 0 || s.NoProcess() == "" {
				t.Errorf("a connection not yet accepted has inode %d, and no process: %q", s.Inode, s.NoProcess())
			}
		case s.Proto == "udp":
			udp++
			if s.Drops == 0 {
				t.Errorf("UDP socket with a 1-byte buffer dropped nothing of 100 datagrams")
			}
			inodes = append(inodes, s.Inode)
		}
	}
	if listeners != 2 || connected != 1 || udp != 1 {
		t.Errorf("%d listeners, %d connections, %d UDP sockets; want 2, 1, 1", listeners, connected, udp)
	}
	o, err := FindOwners(inodes)
	if err != nil {
		t.Fatal(err)
	}
	for _, ino := range inodes {
		if ps := o.ByInode[ino]; len(ps) != 1 || ps[0].PID != os.Getpid() {
			t.Errorf("socket %d held by %v, want this process %d", ino, ps, os.Getpid())
		}
	}
}

// TestOnPortRange refuses ports that cannot be.
func TestOnPortRange(t *testing.T) {
	for _, p := range []int{0, -1, 65536} {
		if _, err := OnPort(p); err == nil {
			t.Errorf("OnPort(%d) = nil error", p)
		}
	}
}

// TestOnPortMPTCP: a group of 4 MPTCP listeners is listed whole, as TCP,
// each with the inode of its own socket (the MPTCP socket's).
func TestOnPortMPTCP(t *testing.T) {
	if b, err := os.ReadFile("/proc/sys/net/mptcp/enabled"); err != nil || len(b) == 0 || b[0] != '1' {
		t.Skip("MPTCP is not enabled in this network namespace (net.mptcp.enabled)")
	}
	lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		var err error
		rc.Control(func(fd uintptr) { err = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1) })
		return err
	}}
	lc.SetMultipathTCP(true)
	want := map[uint64]bool{}
	addr := "127.0.0.1:0"
	for i := 0; i < 4; i++ {
		ln, err := lc.Listen(context.Background(), "tcp4", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		addr = ln.Addr().String()
		f, err := ln.(*net.TCPListener).File()
		if err != nil {
			t.Fatal(err)
		}
		var st unix.Stat_t
		if err := unix.Fstat(int(f.Fd()), &st); err != nil {
			t.Fatal(err)
		}
		proto, err := unix.GetsockoptInt(int(f.Fd()), unix.SOL_SOCKET, unix.SO_PROTOCOL)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		if proto != unix.IPPROTO_MPTCP {
			t.Skipf("listener %d is not MPTCP (protocol %d): the kernel fell back to TCP", i, proto)
		}
		want[st.Ino] = true
	}
	port := netip.MustParseAddrPort(addr).Port()
	socks, err := OnPort(int(port))
	if err != nil && sockettest.Emulator() != "" {
		t.Skipf("%s answers no NETLINK_SOCK_DIAG dump: %v", sockettest.Emulator(), err)
	}
	if err != nil {
		t.Fatal(err)
	}
	got := map[uint64]bool{}
	for _, s := range socks {
		if s.State == Listen && s.Proto == "tcp" {
			got[s.Inode] = true
		}
	}
	if len(got) != 4 || len(want) != 4 {
		t.Fatalf("listed %v, want the 4 listeners %v", got, want)
	}
	for ino := range want {
		if !got[ino] {
			t.Errorf("listener inode %d not listed; listed %v", ino, got)
		}
	}
}

// TestDumpUnix lists the abstract names under a prefix of this test's
// own: a listener, the socket it accepted (which carries its name), and a
// socket bound without listening, each with this user as its owner and its
// own inode and state; a name outside the prefix is left out.
func TestDumpUnix(t *testing.T) {
	prefix := "reuse-test/" + strconv.Itoa(os.Getpid()) + "/"
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: "@" + prefix + "listener", Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("unix", "@"+prefix+"listener")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ac, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer ac.Close()
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if err := unix.Bind(fd, &unix.SockaddrUnix{Name: "@" + prefix + "bound"}); err != nil {
		t.Fatal(err)
	}
	outside, err := net.ListenUnix("unix", &net.UnixAddr{Name: "@" + prefix[:len(prefix)-1] + "-outside", Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer outside.Close()

	inode := func(s any) uint64 {
		var st unix.Stat_t
		switch s := s.(type) {
		case int:
			err = unix.Fstat(s, &st)
		case syscall.Conn:
			rc, _ := s.SyscallConn()
			rc.Control(func(fd uintptr) { err = unix.Fstat(int(fd), &st) })
		}
		if err != nil {
			t.Fatal(err)
		}
		return st.Ino
	}
	want := []UnixSocket{
		{prefix + "bound", os.Geteuid(), inode(fd), Close},
		{prefix + "listener", os.Geteuid(), inode(ac.(syscall.Conn)), Established},
		{prefix + "listener", os.Geteuid(), inode(ln), Listen},
	}
	var got []UnixSocket
	err = DumpUnix(prefix, func(s UnixSocket) { got = append(got, s) })
	if err != nil && sockettest.Emulator() != "" {
		t.Skipf("%s answers no NETLINK_SOCK_DIAG dump: %v", sockettest.Emulator(), err)
	}
	if err != nil {
		t.Fatal(err)
	}
	sort.Slice(got, func(i, j int) bool {
		return got[i].Name < got[j].Name || got[i].Name == got[j].Name && got[i].State < got[j].State
	})
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("DumpUnix(%q) (-want +got):\n%s", prefix, diff)
	}
}

// TestConnection finds one connection by its two ends: a handshake held in
// flight (the listener defers it until the client's first bytes, which do
// not come), listed alike by Dump, then the connection once the client
// writes; a pair of ends that no connection has is not found. It runs for
// an IPv4 listener, an IPv6 one and a dual-stack one with an IPv4 client.
func TestConnection(t *testing.T) {
	for _, tc := range []struct{ name, network, listen, dial string }{
		{"IPv4", "tcp4", "127.0.0.1:0", "127.0.0.1"},
		{"IPv6", "tcp6", "[::1]:0", "::1"},
		{"dual-stack", "tcp", "[::]:0", "127.0.0.1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
				var serr error
				err := rc.Control(func(fd uintptr) {
					serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_DEFER_ACCEPT, 5)
				})
				if err == nil {
					err = serr
				}
				return err
			}}
			ln, err := lc.Listen(context.Background(), tc.network, tc.listen)
			if err != nil {
				t.Skipf("no %s loopback: %v", tc.name, err)
			}
			defer ln.Close()
			port := ln.Addr().(*net.TCPAddr).Port
			c, err := net.Dial("tcp", net.JoinHostPort(tc.dial, strconv.Itoa(port)))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			local := netip.MustParseAddrPort(c.RemoteAddr().String())
			remote := netip.MustParseAddrPort(c.LocalAddr().String())

			fam := uint8(unix.AF_INET)
			if tc.network != "tcp4" {
				fam = unix.AF_INET6 // a request socket has its listener's family
			}
			var listed []Socket
			q := Query{Family: fam, Proto: unix.IPPROTO_TCP, States: 1<<SynRecv | 1<<NewSynRecv, Port: port}
			err = Dump(q, func(s Socket) { listed = append(listed, s) })
			if err != nil && sockettest.Emulator() != "" {
				t.Skipf("%s answers no NETLINK_SOCK_DIAG dump: %v", sockettest.Emulator(), err)
			}
			if err != nil {
				t.Fatal(err)
			}
			s, ok, err := Connection(local, remote)
			if err != nil || !ok {
				t.Fatalf("Connection(%v, %v) = %v, %v, %v; want the handshake in flight", local, remote, s, ok, err)
			}
			if s.State != SynRecv && s.State != NewSynRecv {
				t.Errorf("the handshake's state %v, want SYN_RECV", s.State)
			}
			if len(listed) != 1 || listed[0].Local.Port() != local.Port() || listed[0].Remote.Port() != remote.Port() {
				t.Errorf("Dump listed %+v as handshakes in flight, want one from %v", listed, remote)
			}
			if len(listed) == 1 {
				if s, ok, err := Connection(listed[0].Local, listed[0].Remote); err != nil || !ok || s.State != listed[0].State {
					t.Errorf("Connection of Dump's ends %v, %v = %v, %v, %v", listed[0].Local, listed[0].Remote, s.State, ok, err)
				}
			}
			if _, err := c.Write([]byte("x")); err != nil {
				t.Fatal(err)
			}
			deadline := time.Now().Add(5 * time.Second)
			for s.State != Established && time.Now().Before(deadline) {
				time.Sleep(time.Millisecond)
				s, ok, err = Connection(local, remote)
				if err != nil || !ok {
					t.Fatalf("Connection once established = %v, %v", ok, err)
				}
			}
			if s.State != Established {
				t.Errorf("the connection's state %v 5s after its first bytes, want ESTABLISHED", s.State)
			}
			other := netip.AddrPortFrom(remote.Addr(), remote.Port()^1)
			if s, ok, err := Connection(local, other); err != nil || ok {
				t.Errorf("Connection(%v, %v), ends of no connection = %+v, %v, %v; want not found", local, other, s, ok, err)
			}
			ln.Close()
			if s, ok, err := Connection(netip.AddrPortFrom(local.Addr(), 1), other); err != nil || ok {
				t.Errorf("Connection to a port without listener = %+v, %v, %v; want not found", s, ok, err)
			}
		})
	}
}
