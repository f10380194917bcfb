package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/sockreuse/reuse"
	"github.com/sockreuse/reuse/internal/sockdiag"
	"github.com/sockreuse/reuse/internal/sockettest"
)

// TestWho: a group of 4 TCP listeners (one with a connection in its accept
// queue) serving a Handover's slot, a UDP group of 2 with a datagram
// queued serving a slot whose name is hashed, and a plain listener on
// another address of the port: who -json lists each socket with its
// process, group and queue, and the handovers' slots with the generation
// of their process. Then a successor takes the TCP slot over and stalls
// (the connection queued, which nobody accepts, keeps the old process
// draining for its Quiet, an hour): who shows its steering lock, a
// handover under way. Run as root and as uid 65534 alike.
func TestWho(t *testing.T) {
	ctx := context.Background()
	lns, pcs := tcpAndUDPGroups(t, 4, 2)
	addr := lns[0].Addr().String()
	_, portStr, _ := net.SplitHostPort(addr)
	port, _ := strconv.Atoi(portStr)
	h := &reuse.Handover{Slot: "7", Quiet: time.Hour}
	if err := h.TakeOver(ctx, anys(lns)...); err != nil {
		t.Skipf("no Handover here: %v", err)
	}
	defer h.Close()
	hu := &reuse.Handover{Slot: strings.Repeat("a long slot name ", 3)}
	if err := hu.TakeOver(ctx, anys(pcs)...); err != nil {
		t.Fatal(err)
	}
	defer hu.Close()
	other, err := net.Listen("tcp4", "127.0.0.2:"+portStr)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	c, err := net.Dial("tcp4", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	u, err := net.Dial("udp4", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	if _, err := u.Write([]byte("queued")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond) // the handshake and the datagram land

	if _, err := sockdiag.OnPort(port); err != nil && sockettest.Emulator() != "" {
		t.Skipf("%s answers no NETLINK_SOCK_DIAG dump: %v", sockettest.Emulator(), err)
	}
	r, out := whoJSON(t, portStr)
	me, pid := os.Geteuid(), os.Getpid()
	type row struct {
		Proto, Local, State string
		UID, PID, Group     int
	}
	var got []row
	queued, udpBytes := uint32(0), uint32(0)
	for _, s := range r.Sockets {
		if s.Remote != "" {
			continue // the test's own client side is on another port; accepted ones are not yet
		}
		p := 0
		if len(s.PIDs) > 0 {
			p = s.PIDs[0]
		}
		got = append(got, row{s.Proto, s.Local, s.State, s.UID, p, s.Group})
		if s.Queue != nil {
			queued += *s.Queue
		}
		if s.RecvBytes != nil {
			udpBytes += *s.RecvBytes
		}
	}
	want := []row{
		{"tcp", addr, "listening", me, pid, 1}, {"tcp", addr, "listening", me, pid, 1}, {"tcp", addr, "listening", me, pid, 1}, {"tcp", addr, "listening", me, pid, 1},
		{"tcp", "127.0.0.2:" + portStr, "listening", me, pid, 0},
		{"udp", addr, "bound", me, pid, 2}, {"udp", addr, "bound", me, pid, 2},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("sockets (-want +got):\n%s\n%s", diff, out)
	}
	if queued != 1 || udpBytes == 0 {
		t.Errorf("%d connections queued, want 1; %d bytes queued to UDP, want some\n%s", queued, udpBytes, out)
	}
	ignore := cmp.Options{cmpopts.IgnoreFields(whoHandover{}, "Command"), cmpopts.IgnoreUnexported(whoHandover{})}
	first := []whoGeneration{{pid, 0}} // both Handovers served first
	slot := whoHandover{Network: "tcp", Address: addr, UID: me, Slot: "7", PIDs: []int{pid}, Generations: first}
	hashed := whoHandover{UID: me, SlotHashed: true, PIDs: []int{pid}, Generations: first}
	if diff := cmp.Diff([]whoHandover{slot, hashed}, r.Handovers, ignore); diff != "" {
		t.Errorf("handovers (-want +got):\n%s", diff)
	}

	// A successor of slot 7 steers the group, holding the steering lock,
	// and waits for the old process's quiet hour.
	next, err := reuse.ListenGroup("tcp4", addr, 4)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		for _, ln := range next {
			ln.Close()
		}
	}()
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	took := make(chan error, 1)
	go func() { took <- (&reuse.Handover{Slot: "7"}).TakeOver(sctx, anys(next)...) }()
	lock := whoHandover{Network: "tcp", Address: addr, UID: me, PIDs: []int{pid}, UnderWay: true}
	for deadline := time.Now().Add(10 * time.Second); ; {
		r, out = whoJSON(t, portStr)
		if len(r.Handovers) == 3 || time.Now().After(deadline) {
			break
		}
		select {
		case err := <-took:
			t.Fatalf("the successor's TakeOver returned %v before the old process's Quiet", err)
		case <-time.After(10 * time.Millisecond):
		}
	}
	if diff := cmp.Diff([]whoHandover{slot, lock, hashed}, r.Handovers, ignore); diff != "" {
		t.Errorf("handovers under way (-want +got):\n%s\n%s", diff, out)
	}
	var text, errb bytes.Buffer
	if code := run([]string{"who", portStr}, &text, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	for _, s := range []string{"127.0.0.2:" + portStr, "g1", "g2", `slot "7"`, fmt.Sprintf("generation 0 (pid %d)", pid), "steering lock held by pid", "a handover is under way", "a slot whose name is hashed", fmt.Sprintf("%d(", pid)} {
		if !strings.Contains(text.String(), s) {
			t.Errorf("who %d does not show %q:\n%s", port, s, text.String())
		}
	}
	t.Log("\n" + text.String())
	cancel()
	select {
	case err := <-took:
		if err == nil {
			t.Errorf("the successor's TakeOver, cancelled before the old process's quiet, succeeded")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the successor's TakeOver did not return 10 s after its context was cancelled")
	}
}

// whoJSON runs who -json on port and returns its report and output.
func whoJSON(t *testing.T, port string) (whoReport, string) {
	t.Helper()
	var out, errb bytes.Buffer
	if code := run([]string{"who", "-json", port}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	var r whoReport
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	return r, out.String()
}

// anys returns socks as TakeOver's arguments.
func anys[T any](socks []T) []any {
	a := make([]any, len(socks))
	for i, s := range socks {
		a[i] = s
	}
	return a
}

// tcpAndUDPGroups opens a group of n TCP listeners and one of m UDP
// sockets on one port of 127.0.0.1, trying other ports while the TCP
// port's UDP twin is taken.
func tcpAndUDPGroups(t *testing.T, n, m int) ([]net.Listener, []net.PacketConn) {
	for try := 0; ; try++ {
		lns, err := reuse.ListenGroup("tcp4", "127.0.0.1:0", n)
		if err != nil {
			t.Fatal(err)
		}
		pcs, err := reuse.ListenPacketGroup("udp4", lns[0].Addr().String(), m)
		if err == nil {
			return lns, pcs
		}
		for _, ln := range lns {
			ln.Close()
		}
		if !errors.Is(err, syscall.EADDRINUSE) || try == 10 {
			t.Fatal(err)
		}
	}
}

// TestWhoBadInput: an unparsable address, a port out of range, an unknown
// service: exit status 2 with a message naming what was wrong. (A host
// name that does not resolve is refused the same way, but resolving it
// would query a DNS server, beyond loopback.)
func TestWhoBadInput(t *testing.T) {
	for _, c := range []struct {
		args []string
		say  string
	}{
		{[]string{"who"}, "want one ADDRESS"},
		{[]string{"who", "1", "2"}, "want one ADDRESS"},
		{[]string{"who", "127.0.0.1:70000"}, "port 70000 out of range 1-65535"},
		{[]string{"who", "0"}, "port 0 out of range 1-65535"},
		{[]string{"who", "[::1:80"}, `address "[::1:80"`},
		{[]string{"who", "127.0.0.1:nosuchservice"}, `port "nosuchservice": not a number or a known service`},
		{[]string{"who", "-bogus", "80"}, "flag provided but not defined"},
	} {
		var out, errb bytes.Buffer
		if code := run(c.args, &out, &errb); code != 2 || !strings.Contains(errb.String(), c.say) || out.Len() != 0 {
			t.Errorf("%q: exit %d, stderr %q, stdout %q; want 2 and %q", c.args, code, errb.String(), out.String(), c.say)
		}
	}
}

// envWhoChild asks the test binary, run again as another user, to print
// who -json of the port it names (TestWhoChild).
const envWhoChild = "REUSE_TEST_WHO_PORT"

// TestWhoChild prints who -json of the port in envWhoChild: TestWhoAsNobody's
// child. It does nothing in a normal run.
func TestWhoChild(t *testing.T) {
	port := os.Getenv(envWhoChild)
	if port == "" {
		return
	}
	if code := run([]string{"who", "-json", port}, os.Stdout, os.Stderr); code != 0 {
		t.Fatalf("exit %d", code)
	}
}

// TestWhoAsNobody: uid 65534 runs who on a port where root holds a group of
// 2 and a UDP socket; it is told the processes cannot be known, and why,
// and no pid is guessed.
func TestWhoAsNobody(t *testing.T) {
	requireSelfExec(t)
	if os.Geteuid() != 0 {
		t.Skipf("needs root to run who as uid 65534; running as uid %d", os.Geteuid())
	}
	lns, pcs := tcpAndUDPGroups(t, 2, 1)
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
		pcs[0].Close()
	}()
	_, port, _ := net.SplitHostPort(lns[0].Addr().String())
	dir, err := os.MkdirTemp("", "who")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	bin, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dir+"/test.bin", bin, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(dir+"/test.bin", "-test.run=^TestWhoChild$", "-test.count=1")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), envWhoChild+"="+port)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("who as uid 65534: %v\n%s", err, out)
	}
	var r whoReport
	if err := json.Unmarshal(out[:bytes.LastIndexByte(out, '}')+1], &r); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	n := 0
	for _, s := range r.Sockets {
		if s.Remote != "" || s.UID != 0 {
			continue
		}
		n++
		if len(s.PIDs) != 0 || s.NoPID != "another user's process, which only root, with CAP_SYS_PTRACE, may look up" {
			t.Errorf("root's socket %s %s seen by uid 65534: pids %v, why none %q", s.Proto, s.Local, s.PIDs, s.NoPID)
		}
	}
	if n != 3 {
		t.Errorf("uid 65534 saw %d of root's 3 sockets:\n%s", n, out)
	}
}
