package reuse_test

import (
	"bufio"
	crand "crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sockreuse/reuse/internal/sockettest"
	"golang.org/x/sys/unix"
)

// The tests of this file are the handover's attackers and crashes: a
// stranger of another user, peers that break the protocol or go silent, a
// process killed or stopped at any moment, a context cancelled at the
// point of no return. None may leave the port unserved, or a server that
// can no longer start or be replaced.

func init() {
	sockettest.Register("stranger", strangerWorker)
}

// strangerWorker is another user of the network namespace who attacks the
// handovers of uid args[0] on network args[1] and address args[2]: it
// takes the names the package used to meet at (listening at the slot's, a
// bound socket at the steering lock's), binds 64 names of each kind in
// the package's present form (its own, which must not count), prints
// "ready", then, until its standard input closes (or 60 s), connects to
// every name of the package that the namespace lists (/proc/net/unix) as
// fast as it can, holding up to 2,000 connections open.
func strangerWorker(args []string) error {
	base := fmt.Sprintf("reuse/%s/%s/%s", args[0], args[1], args[2])
	old, err := net.ListenUnix("unixpacket", &net.UnixAddr{Name: "@" + base + "/slot/", Net: "unixpacket"})
	if err != nil {
		return err
	}
	defer old.Close()
	lock, err := unix.Socket(unix.AF_UNIX, unix.SOCK_SEQPACKET, 0)
	if err != nil {
		return err
	}
	if err := unix.Bind(lock, &unix.SockaddrUnix{Name: "@" + base + "/steering"}); err != nil {
		return err
	}
	for _, prefix := range []string{base + "/slot//", base + "/steering/"} {
		for i := 0; i < 64; i++ {
			var b [16]byte
			_, _ = crand.Read(b[:])
			ln, err := net.ListenUnix("unixpacket", &net.UnixAddr{Name: "@" + prefix + hex.EncodeToString(b[:]), Net: "unixpacket"})
			if err != nil {
				return err
			}
			defer ln.Close()
		}
	}
	fmt.Println("ready")
	done := make(chan struct{})
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		close(done)
	}()
	var held []int
	defer func() {
		for _, fd := range held {
			unix.Close(fd)
		}
	}()
	for end := time.Now().Add(time.Minute); time.Now().Before(end); {
		select {
		case <-done:
			return nil
		default:
		}
		for _, name := range packageNames("@reuse/") {
			fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_NONBLOCK, 0)
			if err != nil {
				continue
			}
			if unix.Connect(fd, &unix.SockaddrUnix{Name: name}) != nil {
				unix.Close(fd)
				continue
			}
			held = append(held, fd)
			if len(held) > 2000 {
				unix.Close(held[0])
				held = held[1:]
			}
		}
	}
	return nil
}

// packageNames returns the abstract names that /proc/net/unix lists
// starting with prefix, as "@name".
func packageNames(prefix string) []string {
	f, err := os.Open("/proc/net/unix")
	if err != nil {
		return nil
	}
	defer f.Close()
	var names []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if n := fields[len(fields)-1]; len(fields) == 8 && strings.HasPrefix(n, prefix) {
			names = append(names, n)
		}
	}
	return names
}

// freePort returns a loopback address with a port that nobody holds now.
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// TestHandoverStrangers has a process of another user attack a server's
// handovers before it starts and while it serves: it takes the names the
// package used to meet at, binds names in the package's form, and floods
// every rendezvous it can see with connections. The server starts, is
// replaced three times under load, losing nothing.
func TestHandoverStrangers(t *testing.T) {
	requireSteering(t)
	sockettest.RequireRoot(t, "run a process as uid 65534")
	for _, s := range []shape{{1, false}, {2, true}} {
		t.Run(s.String(), func(t *testing.T) {
			addr := freePort(t)
			stranger := sockettest.StartWorker(t, "stranger", []string{strconv.Itoa(os.Geteuid()), "tcp", addr}, sockettest.AsUser(65534, 65534))
			stranger.Expect("ready", 10*time.Second)
			gen, _ := startGeneration(t, s, addr, 20*time.Millisecond)
			gen.Send("takeover")
			gen.Expect("took over", 10*time.Second)
			stop := load(t, addr)
			for i := 0; i < 3; i++ {
				next, _ := startGeneration(t, s, addr, 20*time.Millisecond)
				start := time.Now()
				next.Send("takeover")
				next.Expect("took over", 15*time.Second)
				gen.Expect("closed ", 15*time.Second)
				t.Logf("handover %d under attack: %v", i+1, time.Since(start).Round(time.Millisecond))
				gen = next
			}
			counts := stop()
			if counts.lost() != 0 || counts.served.Load() == 0 {
				t.Errorf("three handovers under attack: %v", counts)
			}
			gen.Send("close")
			gen.Expect("closed ", 10*time.Second)
			if err := stranger.Wait(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// rendezvousOf returns the name ("@...") where the process serving slot ""
// of network and addr waits for its successor, as /proc/net/unix lists it.
func rendezvousOf(t *testing.T, network, addr string) string {
	t.Helper()
	names := packageNames(fmt.Sprintf("@reuse/%d/%s/%s/slot//", os.Geteuid(), network, addr))
	if len(names) != 1 {
		t.Fatalf("rendezvous of %s %s: %q, want one name", network, addr, names)
	}
	return names[0]
}

// brokenPeer connects to the rendezvous at name as a successor that breaks
// the protocol after steps messages: 0, it says nothing; 1, it says
// "takeover" and reads the answer (closing the rendezvous socket it was
// sent); then it sends each of msgs in turn, reading an answer after each
// but the last. It returns the connection, which the caller closes.
func brokenPeer(t *testing.T, name string, msgs ...string) (conn *net.UnixConn, oldInodes []string) {
	t.Helper()
	c, err := net.Dial("unixpacket", name)
	if err != nil {
		t.Fatal(err)
	}
	conn = c.(*net.UnixConn)
	if len(msgs) == 0 {
		return conn, nil
	}
	if _, err := conn.Write([]byte("takeover")); err != nil {
		t.Fatal(err)
	}
	buf, oob := make([]byte, 4096), make([]byte, unix.CmsgSpace(4))
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, oobn, _, _, err := conn.ReadMsgUnix(buf, oob)
	if err != nil {
		t.Fatal(err)
	}
	if cmsgs, err := unix.ParseSocketControlMessage(oob[:oobn]); err == nil {
		for _, m := range cmsgs {
			fds, _ := unix.ParseUnixRights(&m)
			for _, fd := range fds {
				unix.Close(fd)
			}
		}
	}
	fields := strings.Fields(string(buf[:n]))
	if len(fields) < 5 {
		t.Fatalf("the old process said %q", buf[:n])
	}
	for i, m := range msgs[1:] {
		if _, err := conn.Write([]byte(strings.ReplaceAll(m, "OLD", strings.Join(fields[4:], " ")))); err != nil {
			t.Fatal(err)
		}
		if i < len(msgs)-2 {
			if _, err := conn.Read(buf); err != nil {
				t.Fatal(err)
			}
		}
	}
	return conn, fields[4:]
}

// TestHandoverBrokenPeers has successors that go silent or lie at each step
// of the exchange: the old process hangs up on each within its bound (here
// 300 ms), goes on serving every connection, is not replaced, and the next
// real successor takes over.
func TestHandoverBrokenPeers(t *testing.T) {
	requireSteering(t)
	t.Setenv("REUSE_TEST_ANSWER_TIMEOUT", "300ms")
	const bound = 300 * time.Millisecond
	s := shape{1, false}
	old, addr := startGeneration(t, s, "127.0.0.1:0", 20*time.Millisecond)
	old.Send("takeover")
	old.Expect("took over", 10*time.Second)
	name := rendezvousOf(t, "tcp", addr)
	for _, c := range []struct {
		what string
		msgs []string
	}{
		{"silent at once", nil},
		{"silent after takeover", []string{"takeover"}},
		{"steered, naming no socket of the group", []string{"takeover", "steered 1"}},
		{"steered, naming the old process's sockets", []string{"takeover", "steered OLD"}},
		{"not a message of the protocol", []string{"takeover", "hello"}},
	} {
		conn, _ := brokenPeer(t, name, c.msgs...)
		time.Sleep(2 * bound)
		before := served(t, old)
		dialServed(t, addr, 20)
		if got := served(t, old) - before; got != 20 {
			t.Errorf("%s: the old process served %d of 20 connections", c.what, got)
		}
		conn.Close()
	}
	// A successor that steers (its own socket, in the group) and then
	// never answers "quiet": the old process serves on.
	ln := listenGroup(t, addr, 1, false)[0]
	ino := socketInode(t, ln)
	conn, _ := brokenPeer(t, name, "takeover", "steered "+ino)
	time.Sleep(3 * bound)
	ln.Close()
	before := served(t, old)
	dialServed(t, addr, 20)
	if got := served(t, old) - before; got != 20 {
		t.Errorf("a successor that never said go: the old process served %d of 20 connections", got)
	}
	conn.Close()
	next, _ := startGeneration(t, s, addr, 20*time.Millisecond)
	next.Send("takeover")
	next.Expect("took over", 10*time.Second)
	old.Expect("closed ", 10*time.Second)
	dialServed(t, addr, 20)
	next.Send("close")
	next.Expect("closed ", 10*time.Second)
}

// socketInode returns the inode of ln's socket, in decimal.
func socketInode(t *testing.T, ln net.Listener) string {
	t.Helper()
	rc, err := ln.(*net.TCPListener).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = unix.Fstat(int(fd), &st) }); err != nil || serr != nil {
		t.Fatal(err, serr)
	}
	return strconv.FormatUint(st.Ino, 10)
}

// TestHandoverUDPProbeHeld has a successor ask the old UDP process to drop
// its probes, from a port, and go silent: within the bound (300 ms), the
// datagrams from that port reach the old process again.
func TestHandoverUDPProbeHeld(t *testing.T) {
	requireSteering(t)
	t.Setenv("REUSE_TEST_ANSWER_TIMEOUT", "300ms")
	old := sockettest.StartWorker(t, "udp-handover", []string{"127.0.0.1:0", "", "20ms"})
	addr := old.Expect("addr ", 10*time.Second)
	old.Send("takeover")
	old.Expect("took over", 10*time.Second)
	src, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	port := strconv.Itoa(src.LocalAddr().(*net.UDPAddr).Port)
	conn, _ := brokenPeer(t, rendezvousOf(t, "udp", addr), "takeover", "probe "+port, "probe "+port)
	defer conn.Close()
	time.Sleep(time.Second)
	dst, _ := net.ResolveUDPAddr("udp", addr)
	for i := 0; i < 20; i++ {
		if _, err := src.WriteTo([]byte(strconv.Itoa(i)), dst); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(100 * time.Millisecond)
	old.Send("close")
	seen := make(map[int]int)
	readSeqs(t, old, seen)
	if len(seen) != 20 {
		t.Errorf("after a probe request held open past its bound, the old process read %d of 20 datagrams from the probes' port", len(seen))
	}
}

// TestHandoverCancelAtPointOfNoReturn cancels the new process's TakeOver
// once the old process was told it was replaced: TakeOver succeeds, and the
// new process serves once the old one is gone.
func TestHandoverCancelAtPointOfNoReturn(t *testing.T) {
	requireSteering(t)
	for _, s := range []shape{{1, false}, {1, true}} {
		t.Run(s.String(), func(t *testing.T) {
			old, addr := startGeneration(t, s, "127.0.0.1:0", 20*time.Millisecond, "stay")
			old.Send("takeover")
			old.Expect("took over", 10*time.Second)
			next, _ := startGeneration(t, s, addr, 20*time.Millisecond)
			next.Send("takeover")
			old.Expect("replaced", 10*time.Second)
			next.Send("cancel")
			next.Expect("took over", 10*time.Second)
			old.Send("close")
			old.Expect("closed ", 10*time.Second)
			dialServed(t, addr, 20)
			next.Send("close")
			next.Expect("closed ", 10*time.Second)
		})
	}
}

// TestHandoverFailedTakeOverServes gives up a TakeOver after the group was
// steered and before the point of no return, under load: the new process
// serves on beside the old one, as the README's server does, and nothing
// is lost.
func TestHandoverFailedTakeOverServes(t *testing.T) {
	requireSteering(t)
	s := shape{1, true}
	t.Setenv("REUSE_TEST_HOLD_DRAIN", "1")
	old, addr := startGeneration(t, s, "127.0.0.1:0", time.Minute, "stay")
	old.Send("takeover")
	old.Expect("took over", 10*time.Second)
	stop := load(t, addr)
	next, _ := startGeneration(t, s, addr, 20*time.Millisecond, "readme")
	next.Send("takeover")
	waitSteered(t, old, addr)
	next.Send("cancel")
	next.Expect("takeover failed: ", 10*time.Second)
	time.Sleep(200 * time.Millisecond)
	counts := stop()
	if counts.lost() != 0 || counts.served.Load() == 0 {
		t.Errorf("a TakeOver given up under load: %v", counts)
	}
	checkHashed(t, s, old, addr)
}

// TestHandoverOldDiesAnyMoment kills the old process at random moments of
// its successor's TakeOver (from before the successor found it to its
// drain): every TakeOver succeeds and the new process serves. Trials:
// REUSE_TEST_TRIALS, 8 by default.
func TestHandoverOldDiesAnyMoment(t *testing.T) {
	requireSteering(t)
	trials := 8
	if n, err := strconv.Atoi(os.Getenv("REUSE_TEST_TRIALS")); err == nil {
		trials = n
	}
	for _, s := range []shape{{1, false}, {2, true}} {
		t.Run(s.String(), func(t *testing.T) {
			for i := 0; i < trials; i++ {
				old, addr := startGeneration(t, s, "127.0.0.1:0", 30*time.Millisecond)
				old.Send("takeover")
				old.Expect("took over", 10*time.Second)
				next, _ := startGeneration(t, s, addr, 30*time.Millisecond)
				next.Send("takeover")
				time.Sleep(time.Duration(rand.Int63n(int64(60 * time.Millisecond))))
				_ = syscall.Kill(old.Pid(), syscall.SIGKILL)
				_ = old.Wait()
				next.Expect("took over", 15*time.Second)
				dialServed(t, addr, 10)
				next.Send("close")
				next.Expect("closed ", 10*time.Second)
			}
		})
	}
}

// TestHandoverUnprivileged runs the handover as a user without privilege
// (uid 65534, no capabilities), Go's default MPTCP listeners included,
// under load: nothing is lost.
func TestHandoverUnprivileged(t *testing.T) {
	requireSteering(t)
	sockettest.RequireRoot(t, "run a process as uid 65534")
	for _, s := range []shape{{1, true}, {3, true}, {1, false}} {
		t.Run(s.String(), func(t *testing.T) {
			start := func(addr string) (*sockettest.Worker, string) {
				w := sockettest.StartWorker(t, "handover", s.args(addr, 20*time.Millisecond), sockettest.AsUser(65534, 65534))
				addr = w.Expect("addr ", 10*time.Second)
				if proto := w.Expect("proto ", 10*time.Second); s.mptcp && proto != "mptcp" {
					t.Skipf("the kernel gave a plain TCP listener where MPTCP was asked: MPTCP is off here (net.mptcp.enabled)")
				}
				return w, addr
			}
			gen, addr := start("127.0.0.1:0")
			gen.Send("takeover")
			gen.Expect("took over", 10*time.Second)
			stop := load(t, addr)
			for i := 0; i < 3; i++ {
				next, _ := start(addr)
				next.Send("takeover")
				next.Expect("took over", 15*time.Second)
				gen.Expect("closed ", 15*time.Second)
				gen = next
			}
			counts := stop()
			if counts.lost() != 0 || counts.served.Load() == 0 {
				t.Errorf("three handovers as uid 65534: %v", counts)
			}
			gen.Send("close")
			gen.Expect("closed ", 10*time.Second)
		})
	}
}

// TestUDPSuccessorStopped stops a UDP successor at random moments around
// the end of the old process's Quiet, then kills it: the old process is
// replaced only where the successor had said "go" (the point of no
// return) before it was stopped; otherwise it serves on.
func TestUDPSuccessorStopped(t *testing.T) {
	requireSteering(t)
	t.Setenv("REUSE_TEST_ANSWER_TIMEOUT", "300ms")
	t.Setenv("REUSE_TEST_SAY_GO", "1")
	const quiet = 50 * time.Millisecond
	trials := 6
	if n, err := strconv.Atoi(os.Getenv("REUSE_TEST_TRIALS")); err == nil {
		trials = n
	}
	replaced := 0
	for i := 0; i < trials; i++ {
		old := sockettest.StartWorker(t, "udp-handover", []string{"127.0.0.1:0", "", quiet.String()})
		addr := old.Expect("addr ", 10*time.Second)
		old.Send("takeover")
		old.Expect("took over", 10*time.Second)
		next := sockettest.StartWorker(t, "udp-handover", []string{addr, "", quiet.String()})
		next.Expect("addr ", 10*time.Second)
		next.Send("takeover")
		time.Sleep(time.Duration(rand.Int63n(int64(3 * quiet))))
		_ = syscall.Kill(next.Pid(), syscall.SIGSTOP)
		time.Sleep(100 * time.Millisecond)
		_ = syscall.Kill(next.Pid(), syscall.SIGKILL)
		saidGo := false
		for _, l := range next.Rest(10 * time.Second) {
			saidGo = saidGo || l == "saying go"
		}
		// Replaced, the old process prints what it read and exits.
		time.Sleep(4 * 300 * time.Millisecond)
		if old.Exited() {
			if !saidGo {
				t.Fatalf("trial %d: the old process was replaced by a successor stopped before it said go", i+1)
			}
			replaced++
			continue
		}
		sendNumbered(t, addr, 20)
		old.Send("close")
		seen := make(map[int]int)
		readSeqs(t, old, seen)
		if len(seen) != 20 {
			t.Fatalf("trial %d: after its successor was stopped and killed, the old process read %d of 20 datagrams", i+1, len(seen))
		}
	}
	t.Logf("%d of %d successors said go before they were stopped, and replaced the old process", replaced, trials)
}

// sendNumbered sends datagrams numbered 0 to n-1 to addr, and waits a
// moment for them to be read.
func sendNumbered(t *testing.T, addr string, n int) {
	t.Helper()
	c, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i := 0; i < n; i++ {
		if _, err := c.Write([]byte(strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(100 * time.Millisecond)
}

// TestHandoverOwnMountNamespace runs each generation in a mount namespace
// of its own, with a /tmp of its own (as systemd's PrivateTmp does): they
// share only the network namespace and the user, and meet.
func TestHandoverOwnMountNamespace(t *testing.T) {
	requireSteering(t)
	sockettest.RequireRoot(t, "make mount namespaces")
	privateTmp := func(cmd *exec.Cmd) error {
		if cmd.SysProcAttr == nil {
			cmd.SysProcAttr = &syscall.SysProcAttr{}
		}
		cmd.SysProcAttr.Unshareflags |= syscall.CLONE_NEWNS
		// The worker mounts its own /tmp before it serves.
		cmd.Env = append(cmd.Env, "REUSE_TEST_PRIVATE_TMP=1")
		return nil
	}
	s := shape{1, true}
	start := func(addr string) (*sockettest.Worker, string) {
		w := sockettest.StartWorker(t, "handover", s.args(addr, 20*time.Millisecond), privateTmp)
		addr = w.Expect("addr ", 10*time.Second)
		w.Expect("proto ", 10*time.Second)
		return w, addr
	}
	old, addr := start("127.0.0.1:0")
	old.Send("takeover")
	old.Expect("took over", 10*time.Second)
	stop := load(t, addr)
	next, _ := start(addr)
	next.Send("takeover")
	next.Expect("took over", 15*time.Second)
	old.Expect("closed ", 15*time.Second)
	counts := stop()
	if counts.lost() != 0 || counts.served.Load() == 0 {
		t.Errorf("a handover between mount namespaces: %v", counts)
	}
	next.Send("close")
	next.Expect("closed ", 10*time.Second)
}
