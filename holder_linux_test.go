package reuse_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"os/user"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/sockreuse/reuse"
	"github.com/sockreuse/reuse/internal/netns"
	"github.com/sockreuse/reuse/internal/sockdiag"
	"github.com/sockreuse/reuse/internal/sockettest"
)

func init() {
	sockettest.Register("hold", holdWorker)
	sockettest.Register("try-listen", tryListenWorker)
	sockettest.Register("hold-udp", holdUDPWorker)
}

// holdWorker holds sockets on address args[2] of network args[1], made as
// args[0] says: "plain" (net, no option of the package), "share",
// "exclusive", "mptcp" (an Exclusive MPTCP listener), "group4" and
// "group300" (groups under Share). With a fourth argument "netns" it first
// brings up the loopback interface of its private network namespace. It
// prints "holding ADDRESS" and holds them until its standard input closes.
func holdWorker(args []string) error {
	if len(args) < 3 {
		return fmt.Errorf("want how, network, address; got %q", args)
	}
	how, network, address := args[0], args[1], args[2]
	if len(args) > 3 && args[3] == "netns" {
		if err := netns.SetUpLoopback(); err != nil {
			return err
		}
	}
	socks, err := holdSockets(how, network, address)
	if err != nil {
		return err
	}
	fmt.Println("holding", localAddrOf(socks[0]))
	_, _ = io.Copy(io.Discard, os.Stdin)
	for _, s := range socks {
		s.Close()
	}
	return nil
}

// holdSockets opens the sockets of holdWorker.
func holdSockets(how, network, address string) ([]io.Closer, error) {
	ctx := context.Background()
	udp := strings.HasPrefix(network, "udp")
	var c reuse.Config
	n := 1
	switch how {
	case "plain":
		var s io.Closer
		var err error
		if udp {
			s, err = net.ListenPacket(network, address)
		} else {
			s, err = net.Listen(network, address)
		}
		return []io.Closer{s}, err
	case "share":
	case "exclusive":
		c.Mode = reuse.Exclusive
	case "mptcp":
		c.Mode = reuse.Exclusive
		c.ListenConfig.SetMultipathTCP(true)
	case "group4":
		n = 4
	case "group300":
		n = 300
	default:
		return nil, fmt.Errorf("unknown way to hold %q", how)
	}
	var socks []io.Closer
	if udp {
		pcs, err := c.ListenPacketGroup(ctx, network, address, n)
		for _, pc := range pcs {
			socks = append(socks, pc)
		}
		return socks, err
	}
	lns, err := c.ListenGroup(ctx, network, address, n)
	for _, ln := range lns {
		socks = append(socks, ln)
	}
	return socks, err
}

// localAddrOf returns the local address of a listener or packet conn.
func localAddrOf(s io.Closer) string {
	switch s := s.(type) {
	case net.Listener:
		return s.Addr().String()
	case net.PacketConn:
		return s.LocalAddr().String()
	}
	return ""
}

// tryReport is what tryListenWorker prints, as JSON: the error's message
// and the holders it names.
type tryReport struct {
	Message string
	Holders []reuse.Holder
}

// tryListenWorker listens with reuse.Listen or ListenPacket (args[0]
// network, args[1] address) and prints "bound", or "refused " and a
// tryReport.
func tryListenWorker(args []string) error {
	if len(args) != 2 {
		return fmt.Errorf("want network, address; got %q", args)
	}
	s, err := listenAny(reuse.Config{}, args[0], args[1])
	if err == nil {
		s.Close()
		fmt.Println("bound")
		return nil
	}
	r := tryReport{Message: err.Error()}
	var ie *reuse.InUseError
	if errors.As(err, &ie) {
		r.Holders = ie.Holders
	}
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	fmt.Printf("refused %s\n", b)
	return nil
}

// listenAny is c.Listen or c.ListenPacket, by network.
func listenAny(c reuse.Config, network, address string) (io.Closer, error) {
	if strings.HasPrefix(network, "udp") {
		return c.ListenPacket(context.Background(), network, address)
	}
	return c.Listen(context.Background(), network, address)
}

// holding starts a holdWorker and returns it and the address it holds.
func holding(t *testing.T, how, network, address string, opts ...sockettest.WorkerOption) (*sockettest.Worker, netip.AddrPort) {
	t.Helper()
	args := []string{how, network, address}
	w := sockettest.StartWorker(t, "hold", args, opts...)
	t.Cleanup(func() { _ = w.Wait() })
	return w, netip.MustParseAddrPort(w.Expect("holding", 20*time.Second))
}

// shown is what a test compares of a Holder: everything but the rule,
// which it checks by a phrase, the time left and the command.
type shown struct {
	Network, Local, Remote, State string
	UID                           int
	User                          string
	PID                           int
	PIDUnknown                    bool
}

func show(hs []reuse.Holder) []shown {
	var s []shown
	for _, h := range hs {
		r := ""
		if h.Remote.IsValid() {
			r = h.Remote.String()
		}
		s = append(s, shown{h.Network, h.Local.String(), r, h.State, h.UID, h.User, h.PID, h.NoPID != ""})
	}
	return s
}

// protoOf is the protocol a Holder names for a listener or UDP socket of
// network: "tcp" for TCP and MPTCP listeners alike.
func protoOf(network string) string { return network[:3] }

// userName is the name of uid on this machine, as the error gives it.
func userName(t *testing.T, uid int) string {
	t.Helper()
	u, err := user.LookupId(strconv.Itoa(uid))
	if err != nil {
		return ""
	}
	return u.Username
}

// inUse returns the InUseError of err, failing the test if err is none or
// does not match syscall.EADDRINUSE.
func inUse(t *testing.T, err error) *reuse.InUseError {
	t.Helper()
	if err == nil {
		t.Fatal("bound, want refused")
	}
	if !errors.Is(err, syscall.EADDRINUSE) {
		t.Errorf("errors.Is(%v, EADDRINUSE) = false", err)
	}
	var ie *reuse.InUseError
	if !errors.As(err, &ie) {
		requireSockDiag(t)
		t.Fatalf("no *reuse.InUseError in %T: %v", err, err)
	}
	return ie
}

// requireSockDiag skips a test under an emulator that answers no
// NETLINK_SOCK_DIAG dump (qemu-user), without which the package cannot
// name a port's holders.
func requireSockDiag(t testing.TB) {
	t.Helper()
	if _, err := sockdiag.OnPort(9); err != nil && sockettest.Emulator() != "" {
		t.Skipf("%s answers no NETLINK_SOCK_DIAG dump: %v", sockettest.Emulator(), err)
	}
}

// checkHolders compares the holders of ie with want, and each rule with
// the phrase of rules.
func checkHolders(t *testing.T, ie *reuse.InUseError, want []shown, rules ...string) {
	t.Helper()
	if diff := cmp.Diff(want, show(ie.Holders)); diff != "" {
		t.Errorf("holders (-want +got):\n%s\nmessage: %v", diff, ie)
	}
	for _, h := range ie.Holders {
		for _, r := range rules {
			if !strings.Contains(h.Rule, r) {
				t.Errorf("rule %q, want it to say %q", h.Rule, r)
			}
		}
	}
	if msg := ie.Error(); !strings.Contains(msg, "held by") {
		t.Errorf("message names no holder: %s", msg)
	}
	t.Logf("%v", ie)
}

// TestInUseErrorSameUser: a socket of this user that does not share
// (net's own, Exclusive, an MPTCP Exclusive listener), in another process,
// refuses Listen and ListenPacket; the error names it, its process, and
// says that it was bound without SO_REUSEPORT, inferred. Run as root and
// as uid 65534 alike.
func TestInUseErrorSameUser(t *testing.T) {
	me := os.Geteuid()
	for _, c := range []struct{ how, network, addr, proto string }{
		{"plain", "tcp4", "127.0.0.1:0", "tcp"},
		{"plain", "udp4", "127.0.0.1:0", "udp"},
		{"plain", "tcp6", "[::1]:0", "tcp"},
		{"plain", "udp6", "[::1]:0", "udp"},
		{"exclusive", "tcp4", "127.0.0.1:0", "tcp"},
		{"exclusive", "udp6", "[::1]:0", "udp"},
		{"mptcp", "tcp4", "127.0.0.1:0", "tcp"},
	} {
		t.Run(c.how+"/"+c.network, func(t *testing.T) {
			if c.how == "mptcp" && !mptcpEnabled() {
				t.Skip("MPTCP is not enabled in this network namespace (net.mptcp.enabled)")
			}
			w, held := holding(t, c.how, c.network, c.addr)
			_, err := listenAny(reuse.Config{}, c.network, held.String())
			ie := inUse(t, err)
			checkHolders(t, ie, []shown{{c.proto, held.String(), "", map[bool]string{true: "bound", false: "listening"}[c.proto == "udp"], me, userName(t, me), w.Pid(), false}},
				"bound without SO_REUSEPORT", "(inferred")
		})
	}
}

// TestInUseErrorGroup: ListenGroup and ListenPacketGroup refused by a
// socket that does not share name it, as Listen does.
func TestInUseErrorGroup(t *testing.T) {
	me := os.Geteuid()
	for _, network := range []string{"tcp4", "udp6"} {
		t.Run(network, func(t *testing.T) {
			addr := "127.0.0.1:0"
			if network == "udp6" {
				addr = "[::1]:0"
			}
			w, held := holding(t, "plain", network, addr)
			var err error
			if network == "udp6" {
				_, err = reuse.ListenPacketGroup(network, held.String(), 4)
			} else {
				_, err = reuse.ListenGroup(network, held.String(), 4)
			}
			state := map[bool]string{true: "bound", false: "listening"}[network == "udp6"]
			checkHolders(t, inUse(t, err), []shown{{protoOf(network), held.String(), "", state, me, userName(t, me), w.Pid(), false}},
				"bound without SO_REUSEPORT")
		})
	}
}

// TestInUseErrorOtherUser: sockets of uid 65534, with SO_REUSEPORT and
// without, one and a group of 4, refuse root's Listen by the same-user
// rule, and root sees their process; the other way round, uid 65534 is
// told that root's process cannot be known, and why, rather than a guess.
func TestInUseErrorOtherUser(t *testing.T) {
	sockettest.RequireRoot(t, "run a worker as uid 65534")
	requireSockDiag(t)
	nobody := sockettest.AsUser(65534, 65534)
	for _, c := range []struct {
		how, network string
		n            int
	}{
		{"share", "tcp4", 1}, {"plain", "tcp4", 1}, {"share", "udp4", 1}, {"plain", "udp6", 1}, {"group4", "tcp4", 4}, {"group4", "udp4", 4},
	} {
		t.Run(c.how+"/"+c.network, func(t *testing.T) {
			addr := "127.0.0.1:0"
			if strings.HasSuffix(c.network, "6") {
				addr = "[::1]:0"
			}
			w, held := holding(t, c.how, c.network, addr, nobody)
			_, err := listenAny(reuse.Config{}, c.network, held.String())
			ie := inUse(t, err)
			state := "listening"
			if strings.HasPrefix(c.network, "udp") {
				state = "bound"
			}
			var want []shown
			for i := 0; i < c.n; i++ {
				want = append(want, shown{protoOf(c.network), held.String(), "", state, 65534, userName(t, 65534), w.Pid(), false})
			}
			checkHolders(t, ie, want, "another user's (uid 65534)", "SO_REUSEPORT shares a port only among sockets of one user")
			if c.n > 1 && !strings.Contains(ie.Error(), fmt.Sprintf("%d × ", c.n)) {
				t.Errorf("the %d sockets of the group are not on one line: %v", c.n, ie)
			}
		})
	}
	t.Run("seen by uid 65534", func(t *testing.T) {
		w, held := holding(t, "share", "tcp4", "127.0.0.1:0")
		try := sockettest.StartWorker(t, "try-listen", []string{"tcp4", held.String()}, nobody)
		var r tryReport
		if err := json.Unmarshal([]byte(try.Expect("refused", 20*time.Second)), &r); err != nil {
			t.Fatal(err)
		}
		want := []shown{{"tcp", held.String(), "", "listening", 0, userName(t, 0), 0, true}}
		if diff := cmp.Diff(want, show(r.Holders)); diff != "" {
			t.Errorf("holders (-want +got):\n%s\n%s", diff, r.Message)
		}
		if !strings.Contains(r.Message, "pid unknown (another user's process, which only root, with CAP_SYS_PTRACE, may look up)") {
			t.Errorf("the message does not say why the pid is unknown: %s", r.Message)
		}
		if strings.Contains(r.Message, strconv.Itoa(w.Pid())) {
			t.Errorf("the message names pid %d, which uid 65534 cannot know: %s", w.Pid(), r.Message)
		}
		t.Log(r.Message)
	})
	t.Run("300 sockets", func(t *testing.T) {
		w, held := holding(t, "group300", "tcp4", "127.0.0.1:0", nobody)
		_, err := reuse.Listen("tcp4", held.String())
		ie := inUse(t, err)
		if len(ie.Holders) != 300 {
			t.Errorf("%d holders, want 300", len(ie.Holders))
		}
		msg := ie.Error()
		if lines := strings.Count(msg, "\n") + 1; lines > 3 || !strings.Contains(msg, "300 × tcp "+held.String()) || !strings.Contains(msg, "pid "+strconv.Itoa(w.Pid())) {
			t.Errorf("300 sockets of one process, want them on one line; got %d lines:\n%s", lines, msg)
		}
	})
}

// TestInUseErrorAddresses: a wildcard address covers a specific one and the
// reverse, IPv4, IPv6 and dual-stack, in a private network namespace (where
// the test may bind wildcards); the holder is this process, with net's
// plain sockets. Also ListenMulticastUDP, whose wildcard bind a plain
// socket on 127.0.0.1 refuses, and a summary of 20 holders.
func TestInUseErrorAddresses(t *testing.T) {
	if !sockettest.RunInNetNS(t) {
		return
	}
	me := os.Geteuid()
	for _, c := range []struct {
		holdNet, hold, net, addr, held, rule string
	}{
		{"tcp4", "0.0.0.0", "tcp4", "127.0.0.1", "0.0.0.0", "its wildcard 0.0.0.0 covers the 127.0.0.1 asked for"},
		{"tcp4", "127.0.0.1", "tcp4", "0.0.0.0", "127.0.0.1", "the wildcard 0.0.0.0 asked for covers its 127.0.0.1"},
		{"udp4", "0.0.0.0", "udp4", "127.0.0.1", "0.0.0.0", "its wildcard 0.0.0.0 covers the 127.0.0.1 asked for"},
		{"tcp6", "::", "tcp6", "::1", "::", "its wildcard :: covers the ::1 asked for"},
		{"udp6", "::1", "udp6", "::", "::1", "the wildcard :: asked for covers its ::1"},
		{"tcp", "", "tcp4", "127.0.0.1", "::", "its wildcard :: (IPv6 and IPv4) covers the 127.0.0.1 asked for"},
		{"tcp4", "127.0.0.1", "tcp", "", "127.0.0.1", "the wildcard :: (IPv6 and IPv4) asked for covers its 127.0.0.1"},
		{"udp", "", "udp4", "127.0.0.1", "::", "its wildcard :: (IPv6 and IPv4) covers the 127.0.0.1 asked for"},
	} {
		t.Run(c.holdNet+" "+c.hold+" vs "+c.net+" "+c.addr, func(t *testing.T) {
			s, err := holdSockets("plain", c.holdNet, net.JoinHostPort(c.hold, "0"))
			if err != nil {
				t.Fatal(err)
			}
			defer s[0].Close()
			port := netip.MustParseAddrPort(localAddrOf(s[0])).Port()
			_, err = listenAny(reuse.Config{}, c.net, net.JoinHostPort(c.addr, strconv.Itoa(int(port))))
			ie := inUse(t, err)
			state := "listening"
			if strings.HasPrefix(c.net, "udp") {
				state = "bound"
			}
			held := netip.AddrPortFrom(netip.MustParseAddr(c.held), port).String()
			checkHolders(t, ie, []shown{{protoOf(c.net), held, "", state, me, userName(t, me), os.Getpid(), false}}, c.rule)
		})
	}
	t.Run("multicast", func(t *testing.T) {
		s, err := holdSockets("plain", "udp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer s[0].Close()
		held := localAddrOf(s[0])
		port := netip.MustParseAddrPort(held).Port()
		_, err = reuse.ListenMulticastUDP("udp4", nil, &net.UDPAddr{IP: net.IPv4(239, 1, 2, 3), Port: int(port)})
		checkHolders(t, inUse(t, err), []shown{{"udp", held, "", "bound", me, userName(t, me), os.Getpid(), false}},
			"the wildcard 0.0.0.0 asked for covers its 127.0.0.1", "bound without SO_REUSEPORT or SO_REUSEADDR (inferred)")
	})
	t.Run("20 holders", func(t *testing.T) {
		first, err := holdSockets("plain", "udp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer first[0].Close()
		port := netip.MustParseAddrPort(localAddrOf(first[0])).Port()
		for i := 2; i <= 20; i++ {
			s, err := holdSockets("plain", "udp4", fmt.Sprintf("127.0.0.%d:%d", i, port))
			if err != nil {
				t.Fatal(err)
			}
			defer s[0].Close()
		}
		_, err = reuse.ListenPacket("udp4", fmt.Sprintf("0.0.0.0:%d", port))
		ie := inUse(t, err)
		msg := ie.Error()
		if len(ie.Holders) != 20 || strings.Count(msg, "\n") != 9 || !strings.HasSuffix(msg, "\n\tand 12 more sockets (errors.As gives every one as a reuse.Holder)") {
			t.Errorf("%d holders, want 20 and a message of 8 and a summary:\n%s", len(ie.Holders), msg)
		}
	})
}

// TestInUseErrorOtherNetNS: a process in another network namespace holds
// the same address and port; only this namespace's holder is named.
func TestInUseErrorOtherNetNS(t *testing.T) {
	requireSockDiag(t)
	inNS := func(cmd *exec.Cmd) error {
		cmd.SysProcAttr = netns.Attr()
		return nil
	}
	other := sockettest.StartWorker(t, "hold", []string{"plain", "tcp4", "127.0.0.1:0", "netns"}, inNS)
	t.Cleanup(func() { _ = other.Wait() })
	held := other.Expect("holding", 20*time.Second)
	w, _ := holding(t, "plain", "tcp4", held)
	_, err := reuse.Listen("tcp4", held)
	me := os.Geteuid()
	ie := inUse(t, err)
	checkHolders(t, ie, []shown{{"tcp", held, "", "listening", me, userName(t, me), w.Pid(), false}})
	if strings.Contains(ie.Error(), strconv.Itoa(other.Pid())) {
		t.Errorf("the error names pid %d of another network namespace: %v", other.Pid(), ie)
	}
}

// TestInUseErrorTimeWait: a dialer's fixed port whose connection it closed
// first waits in TIME_WAIT, owned by no process, and refuses Listen; the
// repeated 4-tuple of an open connection refuses Dial and is named as the
// same connection (EADDRNOTAVAIL, matched as EADDRINUSE). (A 4-tuple in
// TIME_WAIT does not refuse a connect from a bound port here: with TCP
// timestamps on, tcp_twsk_unique lets the new connection take it.)
func TestInUseErrorTimeWait(t *testing.T) {
	srv, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	t.Run("listen", func(t *testing.T) {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)}}
		c, err := d.Dial("tcp4", srv.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		local := c.LocalAddr().String()
		closeFirst(t, srv, c)
		_, err = reuse.Listen("tcp4", local)
		ie := inUse(t, err)
		checkHolders(t, ie, []shown{{"tcp", local, srv.Addr().String(), "TIME_WAIT", -1, "", 0, true}},
			"a closed connection waits in TIME_WAIT", "bound without SO_REUSEPORT or SO_REUSEADDR (inferred)")
		if left := ie.Holders[0].TimeLeft; left <= 0 || left > time.Minute {
			t.Errorf("TIME_WAIT has %v left, want some of its 60 s", left)
		}
	})
	t.Run("dial from a listener's port", func(t *testing.T) {
		w, held := holding(t, "exclusive", "tcp4", "127.0.0.1:0")
		_, err := reuse.Dial("tcp4", held.String(), srv.Addr().String())
		me := os.Geteuid()
		checkHolders(t, inUse(t, err), []shown{{"tcp", held.String(), "", "listening", me, userName(t, me), w.Pid(), false}},
			"bound without SO_REUSEPORT (inferred")
	})
	t.Run("dial", func(t *testing.T) {
		c, local := dialFromFreePort(t, srv.Addr().String())
		_, err := reuse.Dial("tcp4", local, srv.Addr().String())
		ie := inUse(t, err)
		me := os.Geteuid()
		checkHolders(t, ie, []shown{{"tcp", local, srv.Addr().String(), "connected", me, userName(t, me), os.Getpid(), false}},
			"the same connection (local and remote address and port) exists already")
		c.Close()
	})
}

// closeFirst closes c, a connection to srv, before srv's side does, and
// waits for srv's FIN, so that c's local port waits in TIME_WAIT.
func closeFirst(t *testing.T, srv net.Listener, c net.Conn) {
	t.Helper()
	a, err := srv.Accept()
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	_, _ = a.Read(make([]byte, 1)) // EOF: the client's FIN
	a.Close()
	time.Sleep(50 * time.Millisecond) // the server's FIN reaches the client
}

// TestInUseErrorTupleTimeWait, in a private network namespace: with TCP
// timestamps (the default), a connect from a bound port takes over the
// 4-tuple of a connection in TIME_WAIT at once (tcp_twsk_unique); without
// them it is refused (EADDRNOTAVAIL), and the error names the connection in
// TIME_WAIT as the same connection.
func TestInUseErrorTupleTimeWait(t *testing.T) {
	if !sockettest.RunInNetNS(t) {
		return
	}
	for _, timestamps := range []string{"1", "0"} {
		if err := os.WriteFile("/proc/sys/net/ipv4/tcp_timestamps", []byte(timestamps), 0); err != nil {
			t.Fatalf("setting net.ipv4.tcp_timestamps in the private namespace: %v", err)
		}
		srv, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer srv.Close()
		c, local := dialFromFreePort(t, srv.Addr().String())
		closeFirst(t, srv, c)
		c, err = reuse.Dial("tcp4", local, srv.Addr().String())
		if timestamps == "1" {
			if err != nil {
				t.Errorf("with TCP timestamps, the 4-tuple in TIME_WAIT was refused: %v", err)
			} else {
				c.Close()
			}
			continue
		}
		ie := inUse(t, err)
		checkHolders(t, ie, []shown{{"tcp", local, srv.Addr().String(), "TIME_WAIT", -1, "", 0, true}},
			"the same connection (local and remote address and port) exists already, closed and waiting in TIME_WAIT")
	}
}

// BenchmarkRefusedListen is the cost of a Listen refused with EADDRINUSE:
// net's (no lookup) beside the package's (which looks up the holder and
// its process), with no other sockets, and with 10,000 other UDP sockets
// open in another process or in this one, whose descriptors the look
// through /proc reads (this process's, the holder's, are read in full).
func BenchmarkRefusedListen(b *testing.B) {
	requireSockDiag(b)
	held, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer held.Close()
	addr := held.Addr().String()
	run := func(b *testing.B, others string) {
		b.Run(others+"/impl=net", func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				if _, err := net.Listen("tcp4", addr); err == nil {
					b.Fatal("bound")
				}
			}
		})
		b.Run(others+"/impl=reuse", func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				_, err := reuse.Listen("tcp4", addr)
				var ie *reuse.InUseError
				if !errors.As(err, &ie) {
					b.Fatalf("%v, want an InUseError", err)
				}
			}
		})
	}
	run(b, "others=0")
	w := sockettest.StartWorker(b, "hold-udp", []string{"10000"})
	w.Expect("holding", time.Minute)
	run(b, "others=10000-elsewhere")
	_ = w.Wait()
	var others []net.PacketConn
	defer func() {
		for _, o := range others {
			o.Close()
		}
	}()
	for len(others) < 10000 {
		pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			b.Skipf("cannot open 10,000 sockets: %v", err)
		}
		others = append(others, pc)
	}
	run(b, "others=10000-here")
}

// holdUDPWorker opens args[0] UDP sockets on loopback ports, prints
// "holding", and holds them until its standard input closes.
func holdUDPWorker(args []string) error {
	n, err := strconv.Atoi(args[0])
	if err != nil {
		return err
	}
	var pcs []net.PacketConn
	for i := 0; i < n; i++ {
		pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			return err
		}
		pcs = append(pcs, pc)
	}
	fmt.Println("holding")
	_, _ = io.Copy(io.Discard, os.Stdin)
	for _, pc := range pcs {
		pc.Close()
	}
	return nil
}

// TestInUseErrorAfterRetries: a Listen retried while the port is held
// names the holder once it gives up, whether its attempts ran out or its
// context ended during a wait (the tries before the last look up nothing).
func TestInUseErrorAfterRetries(t *testing.T) {
	requireSockDiag(t)
	held, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	addr := held.Addr().String()
	retry := reuse.RetryPolicy{Attempts: 1000, Initial: 5 * time.Millisecond, Max: 10 * time.Millisecond}
	for _, tc := range []struct {
		name   string
		policy reuse.RetryPolicy
		ctx    func() (context.Context, context.CancelFunc)
	}{
		{"attempts spent", reuse.RetryPolicy{Attempts: 3, Initial: time.Millisecond}, func() (context.Context, context.CancelFunc) {
			return context.WithCancel(context.Background())
		}},
		{"context ended", retry, func() (context.Context, context.CancelFunc) {
			return context.WithTimeout(context.Background(), 50*time.Millisecond)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := tc.ctx()
			defer cancel()
			c := reuse.Config{Retry: tc.policy}
			ln, err := c.Listen(ctx, "tcp4", addr)
			if err == nil {
				ln.Close()
				t.Fatalf("Listen(%s) on a port held throughout succeeded", addr)
			}
			ie := inUse(t, err)
			if len(ie.Holders) != 1 || ie.Holders[0].PID != os.Getpid() || ie.Holders[0].State != "listening" {
				t.Errorf("holders %+v: want this process's listener, once", ie.Holders)
			}
		})
	}
}
