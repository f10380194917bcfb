package reuse_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"github.com/sockreuse/reuse"
	"github.com/sockreuse/reuse/internal/sockettest"
)

// The steering tests ask a group of echoing members which of them received
// each datagram: every member answers with its index. A datagram is sent
// from a socket of its own (a source port of its own), which stays open
// until the test ends, so that no source port repeats.

func init() { sockettest.Register("steer-member", steerMemberWorker) }

// tagCount is how many datagrams a tagged load sends: 1,000 source ports.
// A load left to the hash sends loadCount (4,000) and checkBalanced's
// bound applies: every member within 20% of the mean, 7.3 standard
// deviations for 4 members (7.7 for the 3,000 datagrams over 3 members
// below), which a uniform hash misses with probability below 1e-12.
const tagCount = 1000

// echoMember answers every datagram that pc receives with member, until pc
// is closed.
func echoMember(pc net.PacketConn, member int) {
	buf := make([]byte, 1500)
	for {
		_, from, err := pc.ReadFrom(buf)
		if err != nil {
			return
		}
		pc.WriteTo([]byte{byte(member)}, from)
	}
}

// echoGroup makes every member of pcs answer with its index, and closes
// them at the end of the test.
func echoGroup(t *testing.T, pcs []net.PacketConn) {
	var wg sync.WaitGroup
	for i, pc := range pcs {
		i, pc := i, pc
		wg.Add(1)
		go func() {
			defer wg.Done()
			echoMember(pc, i)
		}()
	}
	t.Cleanup(func() {
		for _, pc := range pcs {
			pc.Close()
		}
		wg.Wait()
	})
}

// steerOrSkip steers the group of pc by s, skipping the test where the
// kernel (or qemu-user, which does not translate the option) lacks
// SO_ATTACH_REUSEPORT_CBPF.
func steerOrSkip(t *testing.T, pc net.PacketConn, s reuse.Steering) {
	t.Helper()
	err := reuse.Steer(pc, s)
	if errors.Is(err, errors.ErrUnsupported) {
		t.Skipf("this kernel or emulator lacks SO_ATTACH_REUSEPORT_CBPF: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
}

// requireSteering skips the test where the kernel (or qemu-user) cannot
// steer: a one-member group it opens cannot be steered.
func requireSteering(t *testing.T) {
	t.Helper()
	pc, err := reuse.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	steerOrSkip(t, pc, reuse.Steering{})
}

// askMembers sends each payload to addr from a socket of its own and returns
// the member that answered each one, -1 where none answered within a
// second. Four goroutines send at once, each waiting for its answer, so
// that no receive buffer overflows.
func askMembers(t *testing.T, addr string, payloads [][]byte) []int {
	t.Helper()
	answers := make([]int, len(payloads))
	conns := make([]net.Conn, len(payloads))
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	}()
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
	)
	const senders = 4
	deadline := time.Now().Add(loadDeadline)
	for s := 0; s < senders; s++ {
		s := s
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 16)
			for i := s; i < len(payloads); i += senders {
				answers[i] = -1
				c, err := net.Dial("udp", addr)
				if err == nil {
					conns[i] = c
					_, err = c.Write(payloads[i])
				}
				if err == nil {
					c.SetReadDeadline(time.Now().Add(time.Second))
					var n int
					if n, err = c.Read(buf); err == nil && n == 1 {
						answers[i] = int(buf[0])
					} else if errors.Is(err, os.ErrDeadlineExceeded) {
						err = nil // counted as unanswered
					}
				}
				if err == nil && time.Now().After(deadline) {
					err = fmt.Errorf("not done after %v", loadDeadline)
				}
				if err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					return
				}
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		t.Fatalf("asking %s: %v", addr, firstErr)
	}
	ports := map[string]bool{}
	for _, c := range conns {
		ports[c.LocalAddr().String()] = true
	}
	if len(ports) != len(payloads) {
		t.Fatalf("%d datagrams left from %d distinct source ports, want all distinct", len(payloads), len(ports))
	}
	return answers
}

// tagged returns count payloads of size bytes, the i-th naming member
// tags[i%len(tags)] at offset.
func tagged(count, size, offset int, tags ...int) [][]byte {
	var p [][]byte
	for i := 0; i < count; i++ {
		b := make([]byte, size)
		b[offset] = byte(tags[i%len(tags)])
		p = append(p, b)
	}
	return p
}

// checkTagged fails unless every payload tagged for member k (at offset) was
// answered by want[k].
func checkTagged(t *testing.T, payloads [][]byte, offset int, answers []int, want map[int]int) {
	t.Helper()
	got := map[string]int{} // "tag→member": datagrams
	wrong := 0
	for i, p := range payloads {
		tag := int(p[offset])
		got[fmt.Sprintf("%d→%d", tag, answers[i])]++
		if answers[i] != want[tag] {
			wrong++
		}
	}
	t.Logf("tag→member: datagrams: %v", got)
	if wrong > 0 {
		t.Errorf("%d of %d datagrams reached another member than their tag's (want tag→member %v); got %v", wrong, len(payloads), want, got)
	}
}

// countMembers counts the answers per member of a group of n; unanswered
// ones fail the test.
func countMembers(t *testing.T, answers []int, n int) []int {
	t.Helper()
	counts := make([]int, n)
	for i, a := range answers {
		if a < 0 || a >= n {
			t.Fatalf("datagram %d: answer %d, want a member of %d", i, a, n)
		}
		counts[a]++
	}
	return counts
}

func identity(n int) map[int]int {
	m := map[int]int{}
	for i := 0; i < n; i++ {
		m[i] = i
	}
	return m
}

// TestSteerByPayloadByte sends 1,000 datagrams, from 1,000 source ports,
// tagged in turn for each member of a group of 4 at payload offset 3, and
// checks that every one reached its member; then that datagrams tagged for
// no member, and datagrams too short to carry a tag, spread by the hash.
func TestSteerByPayloadByte(t *testing.T) {
	pcs, err := reuse.ListenPacketGroup("udp4", "127.0.0.1:0", groupSize)
	if err != nil {
		t.Fatal(err)
	}
	echoGroup(t, pcs)
	const offset = 3
	steerOrSkip(t, pcs[2], reuse.Steering{Offset: offset})
	addr := pcs[0].LocalAddr().String()

	payloads := tagged(tagCount, 8, offset, 0, 1, 2, 3)
	checkTagged(t, payloads, offset, askMembers(t, addr, payloads), identity(groupSize))

	t.Run("no member", func(t *testing.T) {
		checkBalanced(t, "tag 200", countMembers(t, askMembers(t, addr, tagged(loadCount, 8, offset, 200)), groupSize))
	})
	t.Run("too short", func(t *testing.T) {
		// offset+1 bytes would carry the tag; offset bytes do not, and
		// would read as member 0 if the program did not check the length.
		checkBalanced(t, "short", countMembers(t, askMembers(t, addr, tagged(loadCount, offset, 0, 0)), groupSize))
	})
}

// quicShort returns count QUIC short-header packets whose destination
// connection ID comes from QUICConnectionIDs of member tags[i%len(tags)].
func quicShort(t *testing.T, count int, tags ...int) [][]byte {
	t.Helper()
	var p [][]byte
	for i := 0; i < count; i++ {
		id, err := reuse.QUICConnectionIDs{Member: tags[i%len(tags)], Generation: i % 3}.Generate()
		if err != nil {
			t.Fatal(err)
		}
		// 0x40: short header (first bit 0), fixed bit set; then the ID and
		// a protected payload.
		p = append(p, append(append([]byte{0x40 | byte(i&0x3f)}, id...), make([]byte, 24)...))
	}
	return p
}

// TestSteerQUIC checks QUICSteering on a group of 4: every short-header
// packet of 1,000, from 1,000 source ports, reaches the member in its
// connection ID; long-header packets, whose first byte would name member 1
// if read as a tag, spread by the hash.
func TestSteerQUIC(t *testing.T) {
	pcs, err := reuse.ListenPacketGroup("udp4", "127.0.0.1:0", groupSize)
	if err != nil {
		t.Fatal(err)
	}
	echoGroup(t, pcs)
	steerOrSkip(t, pcs[0], reuse.QUICSteering())
	addr := pcs[0].LocalAddr().String()

	short := quicShort(t, tagCount, 0, 1, 2, 3)
	checkTagged(t, short, 1, askMembers(t, addr, short), identity(groupSize))

	t.Run("long header", func(t *testing.T) {
		long := make([][]byte, loadCount)
		for i := range long {
			// An Initial: 0xc0, version 1, DCID length 8, then an ID whose
			// first byte is 1; the packet's offset 1 holds 0 (version).
			long[i] = append([]byte{0xc0, 0, 0, 0, 1, 8, 1, 2, 3, 4, 5, 6, 7, 8}, make([]byte, 24)...)
		}
		checkBalanced(t, "long header", countMembers(t, askMembers(t, addr, long), groupSize))
	})
}

// TestSteerIPv6 checks QUICSteering on a group of 4 on ::1: the program
// reads the UDP payload whatever the IP version.
func TestSteerIPv6(t *testing.T) {
	pcs, err := reuse.ListenPacketGroup("udp6", "[::1]:0", groupSize)
	if err != nil {
		if errors.Is(err, unix.EADDRNOTAVAIL) || errors.Is(err, unix.EAFNOSUPPORT) {
			t.Skipf("no IPv6 loopback here: %v", err)
		}
		t.Fatal(err)
	}
	echoGroup(t, pcs)
	steerOrSkip(t, pcs[1], reuse.QUICSteering())
	short := quicShort(t, tagCount, 3, 2, 1, 0)
	checkTagged(t, short, 1, askMembers(t, pcs[0].LocalAddr().String(), short), identity(groupSize))
}

// TestSteerMembersJoinAndLeave checks what Steering documents about a group
// that changes: a member that joins takes the next index and the others keep
// theirs; when the last member leaves, its tag goes by the hash; when
// another leaves, the last member moves into its index.
func TestSteerMembersJoinAndLeave(t *testing.T) {
	pcs, err := reuse.ListenPacketGroup("udp4", "127.0.0.1:0", groupSize)
	if err != nil {
		t.Fatal(err)
	}
	addr := pcs[0].LocalAddr().String()
	steerOrSkip(t, pcs[0], reuse.Steering{})
	fifth, err := reuse.ListenPacket("udp4", addr)
	if err != nil {
		t.Fatal(err)
	}
	pcs = append(pcs, fifth)
	echoGroup(t, pcs)
	tags := []int{0, 1, 2, 3, 4}
	ask := func(want map[int]int) {
		t.Helper()
		payloads := tagged(tagCount, 4, 0, tags...)
		checkTagged(t, payloads, 0, askMembers(t, addr, payloads), want)
	}

	// A fifth joined after the steering: index 4.
	ask(identity(5))

	// The last leaves: tag 4 goes by the hash, to one of the 4 left.
	pcs[4].Close()
	payloads := tagged(loadCount, 4, 0, 4)
	checkBalanced(t, "tag 4 after the last member left", countMembers(t, askMembers(t, addr, payloads), groupSize))
	tags = tags[:4]
	ask(identity(4))

	// Member 1 leaves: member 3, the last, takes index 1; tag 3 goes by
	// the hash, to one of members 0, 2 and 3.
	pcs[1].Close()
	tags = []int{0, 1, 2}
	ask(map[int]int{0: 0, 1: 3, 2: 2})
	counts := countMembers(t, askMembers(t, addr, tagged(loadCount*3/4, 4, 0, 3)), groupSize)
	if counts[1] != 0 {
		t.Errorf("closed member 1 answered %d datagrams", counts[1])
	}
	checkBalanced(t, "tag 3 after member 1 left", []int{counts[0], counts[2], counts[3]})
}

// TestUnsteer checks that the hash picks again after Unsteer, through
// another member than the one that steered, and that Unsteer of a group
// without steering succeeds.
func TestUnsteer(t *testing.T) {
	pcs, err := reuse.ListenPacketGroup("udp4", "127.0.0.1:0", groupSize)
	if err != nil {
		t.Fatal(err)
	}
	echoGroup(t, pcs)
	addr := pcs[0].LocalAddr().String()
	steerOrSkip(t, pcs[0], reuse.Steering{})
	payloads := tagged(loadCount, 1, 0, 2)
	checkTagged(t, payloads[:tagCount], 0, askMembers(t, addr, payloads[:tagCount]), identity(groupSize))
	if err := reuse.Unsteer(pcs[3]); err != nil {
		t.Fatal(err)
	}
	if hasProgram(t, pcs[1]) {
		t.Fatal("the group still has a program after Unsteer")
	}
	checkBalanced(t, "tag 2 after Unsteer", countMembers(t, askMembers(t, addr, payloads), groupSize))
	if err := reuse.Unsteer(pcs[2]); err != nil {
		t.Errorf("Unsteer of a group without steering: %v", err)
	}
}

// hasProgram reports whether the group of pc has a program, detaching it.
func hasProgram(t *testing.T, pc net.PacketConn) bool {
	t.Helper()
	rc, err := pc.(*net.UDPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_DETACH_REUSEPORT_BPF, 0)
	}); err != nil {
		t.Fatal(err)
	}
	if serr != nil && !errors.Is(serr, unix.ENOENT) {
		t.Fatalf("SO_DETACH_REUSEPORT_BPF: %v", serr)
	}
	return serr == nil
}

// steerMemberWorker joins the group on address args[0] (udp4) as a member
// that answers with index args[1]. With a third argument, it steers the
// group by the payload's byte at offset args[2]. It prints "ready as uid
// N", then
// serves until its standard input closes.
func steerMemberWorker(args []string) error {
	if len(args) < 2 {
		return fmt.Errorf("want address, member [, offset]; got %q", args)
	}
	member, err := strconv.Atoi(args[1])
	if err != nil {
		return err
	}
	pc, err := reuse.ListenPacket("udp4", args[0])
	if err != nil {
		return err
	}
	defer pc.Close()
	if len(args) > 2 {
		offset, err := strconv.Atoi(args[2])
		if err != nil {
			return err
		}
		if err := reuse.Steer(pc, reuse.Steering{Offset: offset}); err != nil {
			return err
		}
	}
	go echoMember(pc, member)
	fmt.Println("ready as uid", os.Geteuid())
	_, _ = os.Stdin.Read(make([]byte, 1)) // until stdin closes
	return nil
}

// TestSteerAcrossProcesses makes a group of 4 members in 4 processes (this
// one holds member 0, workers join in turn as 1, 2 and 3) and steers it
// from worker 2: every datagram of 1,000 reaches the member it names.
func TestSteerAcrossProcesses(t *testing.T) {
	requireSteering(t)
	pc, err := reuse.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	echoGroup(t, []net.PacketConn{pc})
	addr := pc.LocalAddr().String()
	const offset = 5
	var workers []*sockettest.Worker
	for m := 1; m < groupSize; m++ {
		args := []string{addr, strconv.Itoa(m)}
		if m == 2 {
			args = append(args, strconv.Itoa(offset))
		}
		w := sockettest.StartWorker(t, "steer-member", args)
		// Wait for each to join before the next: the index is the order.
		w.Expect("ready", 10*time.Second)
		workers = append(workers, w)
	}
	payloads := tagged(tagCount, 6, offset, 0, 1, 2, 3)
	answers := askMembers(t, addr, payloads)
	checkTagged(t, payloads, offset, answers, identity(groupSize))
	counts := countMembers(t, answers, groupSize)
	if diff := cmp.Diff([]int{tagCount / 4, tagCount / 4, tagCount / 4, tagCount / 4}, counts); diff != "" {
		t.Errorf("datagrams per member (-want +got):\n%s", diff)
	}
	for _, w := range workers {
		if err := w.Wait(); err != nil {
			t.Error(err)
		}
	}
}

// TestSteerBadInput checks that every kind of bad input gets an error that
// names it, a *net.OpError with one "reuse: " prefix and the socket's own
// network, and leaves no program on the group.
func TestSteerBadInput(t *testing.T) {
	requireSteering(t)
	pcs, err := reuse.ListenPacketGroup("udp4", "127.0.0.1:0", 2)
	if err != nil {
		t.Fatal(err)
	}
	defer pcs[0].Close()
	defer pcs[1].Close()
	plain, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	unixgram, err := net.ListenPacket("unixgram", t.TempDir()+"/sock")
	if err != nil {
		t.Fatal(err)
	}
	defer unixgram.Close()
	tcp := tcpPacketConn(t)
	var nilUDP *net.UDPConn

	for _, tc := range []struct {
		name    string
		pc      net.PacketConn
		s       reuse.Steering
		network string // the OpError's Net
		want    string
	}{
		{"negative offset", pcs[0], reuse.Steering{Offset: -1}, "udp", "steering offset -1: want 0 to 65506"},
		{"offset past any IPv4 payload", pcs[0], reuse.Steering{Offset: 65507}, "udp",
			"steering offset 65507: want 0 to 65506, the bytes that a UDP payload over IPv4 (at most 65507 bytes) can reach"},
		{"offset past any payload", pcs[0], reuse.Steering{Offset: 65527}, "udp", "steering offset 65527: want 0 to 65506"},
		{"nil", nil, reuse.QUICSteering(), "", "steer: reuse: a nil net.PacketConn: want a UDP socket of a group"},
		{"nil *net.UDPConn", nilUDP, reuse.QUICSteering(), "", "steer: reuse: a nil *net.UDPConn: want a UDP socket of a group"},
		{"unix socket", unixgram, reuse.QUICSteering(), "unixgram", "steering needs a UDP socket, not a unixgram socket"},
		{"TCP socket", tcp, reuse.QUICSteering(), "tcp", "steering needs a UDP socket, not a TCP socket"},
		{"not shared", plain, reuse.QUICSteering(), "udp", "no SO_REUSEPORT"},
		{"no SyscallConn", struct{ net.PacketConn }{pcs[0]}, reuse.QUICSteering(), "udp",
			"a struct { net.PacketConn }, which has no SyscallConn: want a UDP socket of a group"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := reuse.Steer(tc.pc, tc.s)
			checkSteerError(t, "steer", tc.network, err, tc.want)
			if hasProgram(t, pcs[1]) {
				t.Error("a program was left on the group")
			}
		})
	}
	t.Run("unsteer not shared", func(t *testing.T) {
		checkSteerError(t, "unsteer", "udp", reuse.Unsteer(plain), "no SO_REUSEPORT")
	})
	t.Run("unsteer nil", func(t *testing.T) {
		checkSteerError(t, "unsteer", "", reuse.Unsteer(nil), "unsteer: reuse: a nil net.PacketConn: want a UDP socket of a group")
	})
	t.Run("unsteer nil *net.UDPConn", func(t *testing.T) {
		checkSteerError(t, "unsteer", "", reuse.Unsteer(nilUDP), "unsteer: reuse: a nil *net.UDPConn: want a UDP socket of a group")
	})
	t.Run("unsteer unix socket", func(t *testing.T) {
		checkSteerError(t, "unsteer", "unixgram", reuse.Unsteer(unixgram), "steering needs a UDP socket, not a unixgram socket")
	})
	// net's error for the closed socket (a "raw-control" *net.OpError) is
	// inside the steer's, not in its place.
	t.Run("closed", func(t *testing.T) {
		pc, err := reuse.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		pc.Close()
		err = reuse.Steer(pc, reuse.QUICSteering())
		checkSteerError(t, "steer", "udp", err, "use of closed network connection")
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("%v: want it to wrap net.ErrClosed", err)
		}
	})
}

// tcpPacketConn returns a connected TCP socket posing as a net.PacketConn,
// as a caller's wrapper might.
func tcpPacketConn(t *testing.T) net.PacketConn {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp4", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return tcpAsPacket{c.(*net.TCPConn)}
}

type tcpAsPacket struct{ *net.TCPConn }

func (c tcpAsPacket) ReadFrom(b []byte) (int, net.Addr, error) {
	n, err := c.Read(b)
	return n, c.RemoteAddr(), err
}

func (c tcpAsPacket) WriteTo(b []byte, _ net.Addr) (int, error) { return c.Write(b) }

func checkSteerError(t *testing.T, op, network string, err error, want string) {
	t.Helper()
	var oe *net.OpError
	switch {
	case err == nil:
		t.Fatalf("no error, want one containing %q", want)
	case !errors.As(err, &oe) || oe.Op != op || oe.Net != network:
		t.Errorf("%v: want a *net.OpError with Op %q and Net %q", err, op, network)
	case !strings.Contains(err.Error(), want):
		t.Errorf("%v: want it to contain %q", err, want)
	case strings.Count(err.Error(), "reuse: ") != 1:
		t.Errorf("%v: want \"reuse: \" exactly once", err)
	}
}

// TestSteerRefusedKeepsSteering checks what Steer's documentation says: a
// Steer that fails leaves the group's earlier steering as it was. 1,000
// datagrams tagged at offset 0, after four refused Steers, all reach their
// member.
func TestSteerRefusedKeepsSteering(t *testing.T) {
	pcs, err := reuse.ListenPacketGroup("udp4", "127.0.0.1:0", groupSize)
	if err != nil {
		t.Fatal(err)
	}
	echoGroup(t, pcs)
	steerOrSkip(t, pcs[0], reuse.Steering{Offset: 0})
	for _, s := range []reuse.Steering{{Offset: -1}, {Offset: 65507}, {Offset: 1 << 30}} {
		if err := reuse.Steer(pcs[2], s); err == nil {
			t.Fatalf("Steer(%+v) on an IPv4 group: no error", s)
		}
	}
	if err := reuse.Steer(nil, reuse.Steering{Offset: 1}); err == nil {
		t.Fatal("Steer(nil): no error")
	}
	payloads := tagged(tagCount, 2, 0, 0, 1, 2, 3)
	checkTagged(t, payloads, 0, askMembers(t, pcs[0].LocalAddr().String(), payloads), identity(groupSize))
}

// TestSteerOffsetRange checks Steering.Offset's range against datagrams
// that reach it: on IPv4, offset 65506 is accepted and a datagram of 65,507
// bytes, the largest, reaches its member by its last byte; 65507 is
// refused. On IPv6, 65526 and 65,527 bytes, and 65527 refused.
func TestSteerOffsetRange(t *testing.T) {
	requireSteering(t)
	for _, tc := range []struct {
		network, address string
		last             int // the last offset that a datagram reaches
	}{
		{"udp4", "127.0.0.1:0", 65506},
		{"udp6", "[::1]:0", 65526},
	} {
		t.Run(tc.network, func(t *testing.T) {
			pcs, err := reuse.ListenPacketGroup(tc.network, tc.address, 2)
			if err != nil {
				if errors.Is(err, unix.EADDRNOTAVAIL) || errors.Is(err, unix.EAFNOSUPPORT) {
					t.Skipf("no %s loopback here: %v", tc.network, err)
				}
				t.Fatal(err)
			}
			echoGroup(t, pcs)
			if err := reuse.Steer(pcs[0], reuse.Steering{Offset: tc.last + 1}); err == nil {
				t.Errorf("Steer with offset %d: no error", tc.last+1)
			}
			if err := reuse.Steer(pcs[0], reuse.Steering{Offset: tc.last}); err != nil {
				t.Fatalf("Steer with offset %d: %v", tc.last, err)
			}
			// 20 datagrams of the largest size, 10 tagged for each member.
			payloads := tagged(20, tc.last+1, tc.last, 0, 1)
			checkTagged(t, payloads, tc.last, askMembers(t, pcs[0].LocalAddr().String(), payloads), identity(2))
		})
	}
}

// TestSteerUnprivileged makes a group of two members in two processes of
// uid 65534 and steers it from the second: steering needs no privilege.
func TestSteerUnprivileged(t *testing.T) {
	sockettest.RequireRoot(t, "run workers as uid 65534")
	requireSteering(t)
	// A port nobody holds, for the workers to share.
	free, err := (&reuse.Config{Mode: reuse.Exclusive}).ListenPacket(context.Background(), "udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := free.LocalAddr().String()
	free.Close()
	const offset = 0
	var workers []*sockettest.Worker
	for m := 0; m < 2; m++ {
		args := []string{addr, strconv.Itoa(m)}
		if m == 1 {
			args = append(args, strconv.Itoa(offset))
		}
		w := sockettest.StartWorker(t, "steer-member", args, sockettest.AsUser(65534, 65534))
		if uid := w.Expect("ready as uid", 10*time.Second); uid != "65534" {
			t.Fatalf("worker %d runs as uid %s, want 65534", m, uid)
		}
		workers = append(workers, w)
	}
	payloads := tagged(tagCount/4, 1, offset, 0, 1)
	checkTagged(t, payloads, offset, askMembers(t, addr, payloads), identity(2))
	for _, w := range workers {
		if err := w.Wait(); err != nil {
			t.Error(err)
		}
	}
}

// TestSteerReplacesAndEnds checks that a second Steer replaces the first,
// and that the steering ends with the group: a socket that binds the port
// after the last member closed starts a group without it.
func TestSteerReplacesAndEnds(t *testing.T) {
	pcs, err := reuse.ListenPacketGroup("udp4", "127.0.0.1:0", groupSize)
	if err != nil {
		t.Fatal(err)
	}
	addr := pcs[0].LocalAddr().String()
	echoGroup(t, pcs)
	steerOrSkip(t, pcs[0], reuse.Steering{Offset: 0})
	if err := reuse.Steer(pcs[3], reuse.Steering{Offset: 1}); err != nil {
		t.Fatal(err)
	}
	// Byte 0 names member 0 in every datagram, byte 1 each member in turn.
	payloads := tagged(tagCount, 2, 1, 0, 1, 2, 3)
	checkTagged(t, payloads, 1, askMembers(t, addr, payloads), identity(groupSize))

	for _, pc := range pcs {
		pc.Close()
	}
	again, err := reuse.ListenPacket("udp4", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	if hasProgram(t, again) {
		t.Error("a new group on the port still has the old group's program")
	}
}

// TestConfigSteering opens groups with Config.Steering: they come steered,
// one member or four, with port 0 (where SO_REUSEPORT is set after bind, so
// that a lone socket has no group of its own yet) and with a fixed port.
func TestConfigSteering(t *testing.T) {
	requireSteering(t)
	s := reuse.QUICSteering()
	cfg := reuse.Config{Steering: &s}
	for _, n := range []int{1, groupSize} {
		t.Run(fmt.Sprintf("group of %d", n), func(t *testing.T) {
			pcs, err := cfg.ListenPacketGroup(context.Background(), "udp4", "127.0.0.1:0", n)
			if err != nil {
				t.Fatal(err)
			}
			echoGroup(t, pcs)
			addr := pcs[0].LocalAddr().String()
			tags := make([]int, n)
			for i := range tags {
				tags[i] = i
			}
			short := quicShort(t, tagCount, tags...)
			checkTagged(t, short, 1, askMembers(t, addr, short), identity(n))
		})
	}
	t.Run("ListenPacket, then members join", func(t *testing.T) {
		pc, err := cfg.ListenPacket(context.Background(), "udp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		pcs := []net.PacketConn{pc}
		for i := 1; i < groupSize; i++ {
			more, err := reuse.ListenPacket("udp4", pc.LocalAddr().String())
			if err != nil {
				t.Fatal(err)
			}
			pcs = append(pcs, more)
		}
		echoGroup(t, pcs)
		short := quicShort(t, tagCount, 0, 1, 2, 3)
		checkTagged(t, short, 1, askMembers(t, pc.LocalAddr().String(), short), identity(groupSize))
	})
}

// TestConfigSteeringRefused checks that a Config whose Steering cannot
// apply fails before any socket is opened, naming why.
func TestConfigSteeringRefused(t *testing.T) {
	quic := reuse.QUICSteering()
	bad := reuse.Steering{Offset: -1}
	past4, past6 := reuse.Steering{Offset: 65507}, reuse.Steering{Offset: 65527}
	before := sockettest.OpenFDs(t)
	for _, tc := range []struct {
		name string
		cfg  reuse.Config
		open func(reuse.Config) error
		want string
	}{
		{"Listen", reuse.Config{Steering: &quic}, func(c reuse.Config) error {
			_, err := c.Listen(context.Background(), "tcp4", "127.0.0.1:0")
			return err
		}, "applies to UDP sockets"},
		{"ListenGroup", reuse.Config{Steering: &quic}, func(c reuse.Config) error {
			_, err := c.ListenGroup(context.Background(), "tcp4", "127.0.0.1:0", 2)
			return err
		}, "applies to UDP sockets"},
		{"Exclusive", reuse.Config{Mode: reuse.Exclusive, Steering: &quic}, func(c reuse.Config) error {
			_, err := c.ListenPacket(context.Background(), "udp4", "127.0.0.1:0")
			return err
		}, "needs Share"},
		{"bad offset", reuse.Config{Steering: &bad}, func(c reuse.Config) error {
			_, err := c.ListenPacketGroup(context.Background(), "udp4", "127.0.0.1:0", 4)
			return err
		}, "steering offset -1: want 0 to 65506"},
		{"offset past any IPv4 payload", reuse.Config{Steering: &past4}, func(c reuse.Config) error {
			_, err := c.ListenPacketGroup(context.Background(), "udp4", "127.0.0.1:0", 4)
			return err
		}, "steering offset 65507: want 0 to 65506"},
		// udp may open an IPv6 socket: the offset is checked for IPv4 once
		// the socket is open, and the socket closed.
		{"offset past any IPv4 payload, udp", reuse.Config{Steering: &past4}, func(c reuse.Config) error {
			_, err := c.ListenPacketGroup(context.Background(), "udp", "127.0.0.1:0", 4)
			return err
		}, "steering offset 65507: want 0 to 65506"},
		{"offset past any payload, udp6", reuse.Config{Steering: &past6}, func(c reuse.Config) error {
			_, err := c.ListenPacket(context.Background(), "udp6", "[::1]:0")
			return err
		}, "steering offset 65527: want 0 to 65526"},
	} {
		err := tc.open(tc.cfg)
		var oe *net.OpError
		if err == nil || !errors.As(err, &oe) || oe.Op != "listen" || !strings.Contains(err.Error(), tc.want) || strings.Count(err.Error(), "reuse: ") != 1 {
			t.Errorf("%s: %v, want a *net.OpError of Op listen saying %q, with one \"reuse: \"", tc.name, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "member") {
			t.Errorf("%s: %v names a member: the Config is at fault", tc.name, err)
		}
	}
	if after := sockettest.OpenFDs(t); after != before {
		t.Errorf("%d descriptors open before, %d after", before, after)
	}
}
