package reuse

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sockreuse/reuse/internal/cbpf"
	"github.com/sockreuse/reuse/internal/sockettest"
)

// The package's programs run on test packets in cbpf's interpreter, whose
// results the tests check against what each program is for; then the same
// programs run in the kernel, on a real group on loopback, on the same
// packets, and the kernel must pick what the interpreter picks.

// testPacket is a datagram (or a SYN) as the kernel presents it to a
// program.
type testPacket struct {
	src, dst netip.AddrPort
	opts     []byte // IPv4 options, a multiple of 4 bytes
	syn      bool   // a TCP SYN, not a UDP datagram
	payload  []byte
}

// ip returns the packet from its IP header on.
func (p testPacket) ip() []byte {
	var l4 []byte
	if p.syn {
		l4 = make([]byte, 20)
		l4[12] = 5 << 4 // no TCP options: the programs read none
		l4[13] = 0x02   // SYN
	} else {
		l4 = make([]byte, 8)
		binary.BigEndian.PutUint16(l4[4:], uint16(8+len(p.payload)))
	}
	binary.BigEndian.PutUint16(l4[0:], p.src.Port())
	binary.BigEndian.PutUint16(l4[2:], p.dst.Port())
	l4 = append(l4, p.payload...)
	proto := byte(unix.IPPROTO_UDP)
	if p.syn {
		proto = unix.IPPROTO_TCP
	}
	var h []byte
	if p.src.Addr().Is4() {
		h = make([]byte, 20, 20+len(p.opts)+len(l4))
		h[0] = 0x40 | byte((20+len(p.opts))/4)
		binary.BigEndian.PutUint16(h[2:], uint16(20+len(p.opts)+len(l4)))
		h[8], h[9] = 64, proto
		src, dst := p.src.Addr().As4(), p.dst.Addr().As4()
		copy(h[12:], src[:])
		copy(h[16:], dst[:])
		h = append(h, p.opts...)
	} else {
		h = make([]byte, 40, 40+len(l4))
		h[0] = 0x60
		binary.BigEndian.PutUint16(h[4:], uint16(len(l4)))
		h[6], h[7] = proto, 64
		src, dst := p.src.Addr().As16(), p.dst.Addr().As16()
		copy(h[8:], src[:])
		copy(h[24:], dst[:])
	}
	return append(h, l4...)
}

// reuseport returns p as the kernel gives it to a SO_ATTACH_REUSEPORT_CBPF
// program: the payload at offset 0 (for a SYN, none).
func (p testPacket) reuseport(random uint32) cbpf.Packet {
	ip := p.ip()
	return cbpf.Packet{Data: ip[len(ip)-len(p.payload):], Net: ip, Random: random}
}

// filter returns p as the kernel gives it to a socket filter on a UDP
// socket: the UDP header at offset 0.
func (p testPacket) filter() cbpf.Packet {
	ip := p.ip()
	return cbpf.Packet{Data: ip[len(ip)-8-len(p.payload):], Net: ip}
}

// run runs prog on pkt in cbpf's interpreter.
func run(t *testing.T, prog []unix.SockFilter, pkt cbpf.Packet) uint32 {
	t.Helper()
	raw := make([]cbpf.Raw, len(prog))
	for i, f := range prog {
		raw[i] = cbpf.Raw{Op: f.Code, Jt: f.Jt, Jf: f.Jf, K: f.K}
	}
	v, err := cbpf.Run(raw, pkt)
	if err != nil {
		t.Fatalf("the interpreter refuses the program: %v", err)
	}
	return v
}

// results returns the results that prog can give on p as a reuseport
// program, over random numbers that cover every residue of a modulus up
// to the kernel tests' group size (60 is a multiple of 1 to 6).
func results(t *testing.T, prog []unix.SockFilter, p testPacket) []uint32 {
	t.Helper()
	var rs []uint32
	for _, r := range append(upToU32(60), 0xffffffff, 0x80000000) {
		if v := run(t, prog, p.reuseport(r)); !slices.Contains(rs, v) {
			rs = append(rs, v)
		}
	}
	slices.Sort(rs)
	return rs
}

func upToU32(n int) []uint32 {
	s := make([]uint32, n)
	for i := range s {
		s[i] = uint32(i)
	}
	return s
}

// A bpfFamily is how packets reach a group.
type bpfFamily struct {
	name  string
	group string // the group's address; "::" is dual-stack
	from  string // the sender's address
	opts  []byte // IPv4 options that the sender sets (IP_OPTIONS)
}

// recordRoute is a NOP (1) and a record-route option (7) with room for three
// addresses, which the kernel takes from an unprivileged socket: an IPv4
// header of 36 bytes.
var recordRoute = []byte{1, 7, 15, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}

var bpfFamilies = []bpfFamily{
	{"IPv4", "127.0.0.1", "127.0.0.1", nil},
	{"IPv4 options", "127.0.0.1", "127.0.0.1", recordRoute},
	{"IPv6", "::1", "::1", nil},
	{"IPv4 to dual-stack", "::", "127.0.0.1", nil},
	{"IPv4 options to dual-stack", "::", "127.0.0.1", recordRoute},
}

// v6 reports whether the group is IPv6, as the programs' v6 says.
func (f bpfFamily) v6() bool { return strings.Contains(f.group, ":") }

// dst returns where the senders send to reach the group on port.
func (f bpfFamily) dst(port uint16) netip.AddrPort {
	if f.group == "::" {
		return netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port)
	}
	return netip.AddrPortFrom(netip.MustParseAddr(f.group), port)
}

// packet returns the packet from port to the group on dst.
func (f bpfFamily) packet(port int, dst netip.AddrPort, syn bool, payload []byte) testPacket {
	return testPacket{
		src:     netip.AddrPortFrom(netip.MustParseAddr(f.from), uint16(port)),
		dst:     dst,
		opts:    f.opts,
		syn:     syn,
		payload: payload,
	}
}

// testPorts are source ports for the interpreter's tests: odd and even,
// from both ends of the range.
var testPorts = []int{1, 2, 53, 443, 1024, 4242, 32768, 40001, 60999, 65535}

func TestBPFSteerProgram(t *testing.T) {
	quic := QUICSteering()
	for _, c := range []struct {
		s       Steering
		payload []byte
		want    uint32
	}{
		{quic, []byte{0x40, 2}, 2},
		{quic, []byte{0x40, 200, 9}, 200},
		{quic, []byte{0x80, 2}, toHash},
		{quic, []byte{0xc1, 2}, toHash},
		{quic, []byte{0x40}, toHash},
		{quic, nil, toHash},
		{Steering{}, []byte{5}, 5},
		{Steering{}, []byte{0xff, 1}, 0xff},
		{Steering{}, nil, toHash},
		{Steering{Offset: 3}, []byte{1, 2, 3, 4}, 4},
		{Steering{Offset: 3}, []byte{1, 2, 3}, toHash},
		{Steering{Offset: 3, HashIf: 0x01}, []byte{2, 2, 3, 4}, 4},
		{Steering{Offset: 3, HashIf: 0x01}, []byte{3, 2, 3, 4}, toHash},
		{Steering{Offset: 65505}, make([]byte, 65506), 0},
	} {
		for _, f := range bpfFamilies {
			p := f.packet(4242, f.dst(443), false, c.payload)
			if got := run(t, steerProgram(c.s), p.reuseport(0)); got != c.want {
				t.Errorf("%s: steerProgram(%+v) on %x: got %#x, want %#x", f.name, c.s, c.payload, got, c.want)
			}
		}
	}
}

func TestBPFSpreadProgram(t *testing.T) {
	// TCP: at random, each index as often over the random numbers.
	for _, c := range []struct{ indexes, want []int }{
		{[]int{1, 3, 4}, []int{1, 3, 4}},
		{[]int{4, 1, 1, 3}, []int{1, 3, 4}},
		{[]int{0, 1, 2}, []int{0, 1, 2}},
		{[]int{7}, []int{7}},
		{[]int{0, 63}, []int{0, 63}},
	} {
		prog := spreadProgram(false, false, c.indexes)
		p := bpfFamilies[0].packet(4242, bpfFamilies[0].dst(443), true, nil)
		count := make(map[uint32]int)
		for r := uint32(0); r < uint32(60*len(c.want)); r++ {
			count[run(t, prog, p.reuseport(r^0x9c000000))]++
		}
		for _, i := range c.want {
			if count[uint32(i)] != 60 {
				t.Errorf("spreadProgram(tcp, %v): over %d random numbers, index %d %d times, want 60 (all: %v)", c.indexes, 60*len(c.want), i, count[uint32(i)], count)
			}
		}
	}
	if got := run(t, spreadProgram(false, false, nil), cbpf.Packet{}); got != toHash {
		t.Errorf("spreadProgram with no index: got %#x, want toHash", got)
	}
	// UDP: by the source, as often each index, the same for IPv4 with or
	// without options, to an IPv4 or a dual-stack IPv6 group.
	indexes := []int{0, 2, 5}
	dst := netip.MustParseAddrPort("127.0.0.1:443")
	byPort := make(map[int]uint32)
	count := make(map[uint32]int)
	for port := 10000; port < 13000; port++ {
		var got []uint32
		for _, f := range bpfFamilies {
			if f.from != "127.0.0.1" {
				continue
			}
			got = append(got, run(t, spreadProgram(true, f.v6(), indexes), f.packet(port, dst, false, []byte{1, 2, 3}).reuseport(0)))
		}
		if got = slices.Compact(got); len(got) != 1 {
			t.Fatalf("spreadProgram(udp) from port %d: %v by IPv4 family (without, with options, dual-stack ...), want one", port, got)
		}
		byPort[port] = got[0]
		count[got[0]]++
	}
	for _, i := range indexes {
		if n := count[uint32(i)]; n < 800 || n > 1200 {
			t.Errorf("spreadProgram(udp, %v) over 3,000 source ports: index %d %d times, want 1,000 ± 200 (all: %v)", indexes, i, n, count)
		}
	}
	if len(count) != len(indexes) {
		t.Errorf("spreadProgram(udp, %v) over 3,000 source ports: indexes %v", indexes, count)
	}
	// The hash takes in the address: another one moves some ports.
	moved := 0
	for port := 10000; port < 13000; port++ {
		p := testPacket{src: netip.MustParseAddrPort("127.0.0.2:" + strconv.Itoa(port)), dst: dst}
		if run(t, spreadProgram(true, false, indexes), p.reuseport(0)) != byPort[port] {
			moved++
		}
	}
	if moved < 1000 {
		t.Errorf("spreadProgram(udp): from 127.0.0.2, %d of 3,000 ports go elsewhere than from 127.0.0.1, want about 2,000", moved)
	}
	// IPv6: the same spread.
	count = make(map[uint32]int)
	for port := 10000; port < 13000; port++ {
		p := bpfFamilies[2].packet(port, bpfFamilies[2].dst(443), false, nil)
		count[run(t, spreadProgram(true, true, indexes), p.reuseport(0))]++
	}
	for _, i := range indexes {
		if n := count[uint32(i)]; n < 800 || n > 1200 {
			t.Errorf("spreadProgram(udp, IPv6, %v) over 3,000 source ports: index %d %d times, want 1,000 ± 200 (all: %v)", indexes, i, n, count)
		}
	}
}

func TestBPFProbeProgram(t *testing.T) {
	ports, indexes := []int{4242, 53, 65535}, []int{3, 0, 9}
	for _, f := range bpfFamilies {
		for _, syn := range []bool{false, true} {
			rest := steerProgram(Steering{})
			if syn {
				rest = spreadProgram(false, f.v6(), []int{1, 2})
			}
			prog := probeProgram(f.v6(), ports, indexes, rest)
			for _, port := range testPorts {
				p := f.packet(port, f.dst(443), syn, []byte{7})
				want := run(t, rest, p.reuseport(1))
				if i := slices.Index(ports, port); i >= 0 {
					want = uint32(indexes[i])
				}
				if got := run(t, prog, p.reuseport(1)); got != want {
					t.Errorf("%s, SYN %v: probeProgram(%v → %v) from port %d: got %d, want %d", f.name, syn, ports, indexes, port, got, want)
				}
			}
		}
	}
	// Without rest, the others go by the hash.
	p := bpfFamilies[0].packet(80, bpfFamilies[0].dst(443), false, nil)
	if got := run(t, probeProgram(false, ports, indexes, nil), p.reuseport(0)); got != toHash {
		t.Errorf("probeProgram without rest from another port: got %#x, want toHash", got)
	}
}

func TestBPFProbeFilter(t *testing.T) {
	ports := []int{4242, 1}
	for _, f := range bpfFamilies {
		for _, port := range testPorts {
			want := uint32(keepAll)
			if slices.Contains(ports, port) {
				want = 0
			}
			p := f.packet(port, f.dst(443), false, []byte{1, 2})
			if got := run(t, probeFilter(ports), p.filter()); got != want {
				t.Errorf("%s: probeFilter(%v) from port %d: got %#x, want %#x", f.name, ports, port, got, want)
			}
			if got := run(t, dropFilter(), p.filter()); got != 0 {
				t.Errorf("%s: dropFilter from port %d: got %#x, want 0", f.name, port, got)
			}
		}
	}
}

func TestBPFGenerationsProgram(t *testing.T) {
	quic := QUICSteering()
	const oldGen, gen = 7, 8
	for _, c := range []struct {
		name                   string
		oldIndexes, newIndexes []int
		payload                []byte
		want                   int // -1: by the source port
	}{
		{"old member 0", []int{4, -1, 2}, []int{0, 3, 1}, []byte{0x40, 0, oldGen}, 4},
		{"old member 2", []int{4, -1, 2}, []int{0, 3, 1}, []byte{0x40, 2, oldGen, 0}, 2},
		{"old member gone", []int{4, -1, 2}, []int{0, 3, 1}, []byte{0x40, 1, oldGen}, -1},
		{"old member past the end", []int{4, -1, 2}, []int{0, 3, 1}, []byte{0x40, 3, oldGen}, -1},
		{"new member 1", []int{4, -1, 2}, []int{0, 3, 1}, []byte{0x40, 1, gen}, 3},
		{"new member 2", []int{4, -1, 2}, []int{0, 3, 1}, []byte{0x40, 2, gen}, 1},
		{"new member gone", []int{4}, []int{0, -1, 1}, []byte{0x40, 1, gen}, -1},
		{"another generation", []int{4, -1, 2}, []int{0, 3, 1}, []byte{0x40, 0, 9}, -1},
		{"hashIf", []int{4, -1, 2}, []int{0, 3, 1}, []byte{0xc0, 0, oldGen}, -1},
		{"too short", []int{4, -1, 2}, []int{0, 3, 1}, []byte{0x40, 0}, -1},
		{"empty", []int{4, -1, 2}, []int{0, 3, 1}, nil, -1},
		{"no new member left", []int{4}, []int{-1, -1}, []byte{0x40, 1, gen}, -1},
	} {
		present := slices.DeleteFunc(slices.Clone(c.newIndexes), func(i int) bool { return i < 0 })
		prog := generationsProgram(quic, oldGen, gen, c.oldIndexes, c.newIndexes)
		for _, f := range bpfFamilies {
			for _, port := range testPorts {
				want := uint32(c.want)
				switch {
				case c.want < 0 && len(present) == 0:
					want = toHash
				case c.want < 0:
					want = uint32(present[port%len(present)])
				}
				p := f.packet(port, f.dst(443), false, c.payload)
				if got := run(t, prog, p.reuseport(0)); got != want {
					t.Errorf("%s: %s: from port %d: got %#x, want %#x", f.name, c.name, port, got, want)
				}
			}
		}
	}
}

// TestBPFLargeGroups assembles each program for a group of 1,000 members
// (or 1,000 ports), whose tables no conditional jump could span and whose
// labels must not collide.
func TestBPFLargeGroups(t *testing.T) {
	const n = 1000
	all := upTo(n)
	half := all[n/2:]
	p := bpfFamilies[1].packet(4242, bpfFamilies[1].dst(443), false, []byte{0x40, 7, 2})
	if got := run(t, generationsProgram(QUICSteering(), 1, 2, half, all), p.reuseport(0)); got != 7 {
		t.Errorf("generationsProgram for %d members: got %d, want 7", n, got)
	}
	if got := run(t, generationsProgram(QUICSteering(), 2, 1, half, all), p.reuseport(0)); got != uint32(half[7]) {
		t.Errorf("generationsProgram for %d members: got %d, want %d", n, got, half[7])
	}
	if got := run(t, spreadProgram(true, false, half), p.reuseport(0)); got < n/2 || got >= n {
		t.Errorf("spreadProgram over indexes %d to %d: got %d", n/2, n-1, got)
	}
	for _, v6 := range []bool{false, true} {
		if got := run(t, probeProgram(v6, all, all, nil), p.reuseport(0)); got != toHash {
			t.Errorf("probeProgram over %d ports: got %d, want toHash", n, got)
		}
		if got := run(t, probeProgram(v6, all, all, spreadProgram(true, v6, half)), p.reuseport(0)); got < n/2 || got >= n {
			t.Errorf("probeProgram over %d ports, then spreadProgram over indexes %d to %d: got %d", n, n/2, n-1, got)
		}
	}
	if got := run(t, probeFilter(all), p.filter()); got != keepAll {
		t.Errorf("probeFilter of %d ports: got %#x, want keepAll", n, got)
	}
}

// TestBPFShapes assembles each program for every small size of its
// parameters: assemble panics on a label defined twice or a jump too far.
func TestBPFShapes(t *testing.T) {
	for n := 0; n <= 40; n++ {
		all, gone := upTo(n), make([]int, n)
		for i := range gone {
			gone[i] = -1
		}
		for _, v6 := range []bool{false, true} {
			for _, udp := range []bool{false, true} {
				_ = probeProgram(v6, all, all, spreadProgram(udp, v6, all))
			}
			_ = probeProgram(v6, all, all, steerProgram(Steering{HashIf: byte(n)}))
		}
		_ = probeFilter(all)
		_ = generationsProgram(Steering{Offset: n, HashIf: byte(n)}, n, n+1, all, all)
		_ = generationsProgram(QUICSteering(), 1, 2, gone, gone)
	}
}

// The kernel's side.

// kernelGroup is a real group of sockets on loopback, joined in order.
type kernelGroup struct {
	fds []int
	dst netip.AddrPort // where the senders send
}

// openKernelGroup opens a group of k sockets of typ (SOCK_DGRAM or
// SOCK_STREAM) for f, skipping the test where the host has no IPv6.
func openKernelGroup(t *testing.T, f bpfFamily, typ, k int) *kernelGroup {
	t.Helper()
	addr := netip.MustParseAddr(f.group)
	g := &kernelGroup{}
	var port uint16
	for i := 0; i < k; i++ {
		domain, sa := sockaddrOf(netip.AddrPortFrom(addr, port))
		fd, err := unix.Socket(domain, typ|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
		if err != nil && domain == unix.AF_INET6 {
			t.Skipf("this host has no IPv6: %v", err)
		}
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { unix.Close(fd) })
		must(t, unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEPORT, 1))
		if domain == unix.AF_INET6 {
			must(t, unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, boolInt(f.group != "::")))
		}
		if typ == unix.SOCK_DGRAM && f.from == "127.0.0.1" {
			must(t, unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_RECVOPTS, 1))
		}
		if err := unix.Bind(fd, sa); err != nil {
			if i == 0 && domain == unix.AF_INET6 {
				t.Skipf("this host has no IPv6 loopback: bind %s: %v", f.group, err)
			}
			t.Fatalf("bind %s port %d: %v", f.group, port, err)
		}
		if i == 0 {
			port = boundPort(t, fd)
		}
		if typ == unix.SOCK_STREAM {
			must(t, unix.Listen(fd, 16))
		}
		g.fds = append(g.fds, fd)
	}
	g.dst = f.dst(port)
	return g
}

// attach attaches prog to the group, skipping the test where the kernel
// or emulator lacks SO_ATTACH_REUSEPORT_CBPF.
func (g *kernelGroup) attach(t *testing.T, prog []unix.SockFilter) {
	t.Helper()
	if err := attachProgram(g.fds[0], prog); errors.Is(err, errors.ErrUnsupported) {
		t.Skipf("this kernel or emulator lacks SO_ATTACH_REUSEPORT_CBPF: %v", err)
	} else if err != nil {
		t.Fatal(err)
	}
}

// openSender opens a socket of typ on f's sender address, with f's IPv4
// options, and returns it and its port.
func openSender(t *testing.T, f bpfFamily, typ int) (int, int) {
	t.Helper()
	domain, sa := sockaddrOf(netip.AddrPortFrom(netip.MustParseAddr(f.from), 0))
	fd, err := unix.Socket(domain, typ|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if f.opts != nil {
		err := unix.SetsockoptString(fd, unix.IPPROTO_IP, unix.IP_OPTIONS, string(f.opts))
		if errors.Is(err, unix.ENOPROTOOPT) {
			// qemu-user does not translate the option.
			t.Skipf("this kernel or emulator lacks IP_OPTIONS: %v", err)
		}
		if err != nil {
			t.Fatalf("setsockopt IP_OPTIONS %x: %v", f.opts, err)
		}
	}
	must(t, unix.Bind(fd, sa))
	return fd, int(boundPort(t, fd))
}

// receive returns the member that received the datagram from port, and
// checks its payload and IPv4 options.
func (g *kernelGroup) receive(t *testing.T, f bpfFamily, port int, payload []byte) int {
	t.Helper()
	i := g.ready(t, "received the datagram from port "+strconv.Itoa(port))
	buf, oob := make([]byte, 2048), make([]byte, 256)
	n, oobn, _, from, err := unix.Recvmsg(g.fds[i], buf, oob, unix.MSG_DONTWAIT)
	if err != nil {
		t.Fatalf("member %d: recvmsg: %v", i, err)
	}
	if got := portOf(from); got != port || !bytes.Equal(buf[:n], payload) {
		t.Fatalf("member %d received %x from port %d, want %x from port %d", i, buf[:n], got, payload, port)
	}
	if f.opts != nil {
		if got := ipOptions(t, oob[:oobn]); len(got) != len(f.opts) {
			t.Fatalf("member %d received the datagram with IPv4 options %x, want %d bytes of them", i, got, len(f.opts))
		}
	}
	return i
}

// accept returns the member that a connection arrives on, and resets it.
func (g *kernelGroup) accept(t *testing.T) int {
	t.Helper()
	i := g.ready(t, "accepted the connection")
	c, _, err := unix.Accept4(g.fds[i], unix.SOCK_CLOEXEC)
	if err != nil {
		t.Fatalf("member %d: accept: %v", i, err)
	}
	resetClose(c)
	return i
}

// ready returns the first member with something to read, within 5 s; what
// names what was awaited, for the failure.
func (g *kernelGroup) ready(t *testing.T, what string) int {
	t.Helper()
	pfds := make([]unix.PollFd, len(g.fds))
	for i, fd := range g.fds {
		pfds[i] = unix.PollFd{Fd: int32(fd), Events: unix.POLLIN}
	}
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
		if _, err := unix.Poll(pfds, 100); err != nil && err != unix.EINTR {
			t.Fatal(err)
		}
		for i, p := range pfds {
			if p.Revents&unix.POLLIN != 0 {
				return i
			}
		}
	}
	t.Fatalf("no member %s in 5s", what)
	return -1
}

// resetClose closes fd with a reset, which leaves no TIME_WAIT.
func resetClose(fd int) {
	_ = unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1})
	unix.Close(fd)
}

// ipOptions returns the IPv4 options of an IP_RECVOPTS message in oob.
func ipOptions(t *testing.T, oob []byte) []byte {
	t.Helper()
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range msgs {
		if m.Header.Level == unix.IPPROTO_IP && m.Header.Type == unix.IP_RECVOPTS {
			return m.Data
		}
	}
	return nil
}

// agree checks that the kernel's pick, member of a group of k, is one that
// the interpreter's results allow: one of them, or any member where one of
// them names none (the kernel's hash picks).
func agree(member, k int, results []uint32) bool {
	return slices.Contains(results, uint32(member)) || results[len(results)-1] >= uint32(k)
}

// udpCase is a program for a UDP group and the payloads to send to it.
type udpCase struct {
	name     string
	program  func(v6 bool, ports []int) []unix.SockFilter // ports: the senders'
	payloads [][]byte
}

// senders is how many source ports each kernel test sends from.
const senders = 6

// members is the size of the kernel tests' groups.
const members = 6

// TestBPFKernelUDP runs each program for a UDP group in the kernel and in
// the interpreter on the same datagrams, which must go to the same member.
func TestBPFKernelUDP(t *testing.T) {
	requireProgram(t)
	payloads := [][]byte{nil, {0}, {3}, {0x40, 1, 8}, {0x40, 5, 7}, {0xc0, 2, 8}, {0x40, 4, 8, 9}, {0x40, 0, 7}, {0x40, 9, 8}, {0x7f, 2, 3, 4, 5}}
	cases := []udpCase{
		{"steer", func(bool, []int) []unix.SockFilter { return steerProgram(QUICSteering()) }, payloads},
		{"steer offset 0", func(bool, []int) []unix.SockFilter { return steerProgram(Steering{}) }, payloads},
		{"spread", func(v6 bool, _ []int) []unix.SockFilter { return spreadProgram(true, v6, []int{1, 3, 4}) }, payloads[:2]},
		{"spread all", func(v6 bool, _ []int) []unix.SockFilter { return spreadProgram(true, v6, upTo(members)) }, payloads[:2]},
		{"probe", func(v6 bool, ports []int) []unix.SockFilter {
			return probeProgram(v6, ports[1:3], []int{4, 0}, spreadProgram(true, v6, []int{2, 5}))
		}, payloads[:2]},
		{"probe with steering", func(v6 bool, ports []int) []unix.SockFilter {
			return probeProgram(v6, ports[2:3], []int{5}, steerProgram(QUICSteering()))
		}, payloads},
		{"generations", func(_ bool, _ []int) []unix.SockFilter {
			return generationsProgram(QUICSteering(), 7, 8, []int{3, -1, 5}, []int{4, 0, 2})
		}, payloads},
		{"generations, one new left", func(_ bool, _ []int) []unix.SockFilter {
			return generationsProgram(QUICSteering(), 7, 8, []int{3, 1, 5}, []int{-1, 2, -1})
		}, payloads},
		// What the kernel presents: the payload's length, its first byte,
		// and through the network header, its first byte past an IPv4
		// header of any length.
		{"len", func(bool, []int) []unix.SockFilter { return testProgram(cbpf.LoadLen(), cbpf.RetA()) }, payloads},
		{"first byte", func(bool, []int) []unix.SockFilter { return testProgram(cbpf.LoadAbs(cbpf.Byte, 0), cbpf.RetA()) }, payloads},
		{"payload through the network header", func(v6 bool, _ []int) []unix.SockFilter {
			p := byIPVersion(v6, "first",
				[]cbpf.Instruction{cbpf.LoadIPv4HeaderLen(cbpf.NetOff), cbpf.LoadInd(cbpf.Byte, cbpf.NetOff+8)},
				[]cbpf.Instruction{cbpf.LoadAbs(cbpf.Byte, cbpf.NetOff+48)})
			return testProgram(append(p, cbpf.RetA())...)
		}, payloads},
	}
	for _, f := range bpfFamilies {
		for _, c := range cases {
			t.Run(f.name+"/"+c.name, func(t *testing.T) {
				g := openKernelGroup(t, f, unix.SOCK_DGRAM, members)
				fds, ports := make([]int, senders), make([]int, senders)
				for i := range fds {
					fds[i], ports[i] = openSender(t, f, unix.SOCK_DGRAM)
				}
				prog := c.program(f.v6(), ports)
				g.attach(t, prog)
				_, dst := sockaddrOf(g.dst)
				for i, fd := range fds {
					for _, payload := range c.payloads {
						if err := unix.Sendto(fd, payload, 0, dst); err != nil {
							t.Fatal(err)
						}
						member := g.receive(t, f, ports[i], payload)
						want := results(t, prog, f.packet(ports[i], g.dst, false, payload))
						if !agree(member, members, want) {
							t.Errorf("from port %d, payload %x: member %d received it, the interpreter says %v", ports[i], payload, member, want)
						}
					}
				}
			})
		}
	}
}

// tcpCase is a program for a TCP group.
type tcpCase struct {
	name    string
	program func(v6 bool, dst uint16, ports []int) []unix.SockFilter // dst: the group's port; ports: the senders'
}

// tcpProbeCases are the package's programs for a TCP group.
var tcpProbeCases = []tcpCase{
	{"spread", func(v6 bool, _ uint16, _ []int) []unix.SockFilter { return spreadProgram(false, v6, []int{1, 3, 4}) }},
	{"spread to one", func(v6 bool, _ uint16, _ []int) []unix.SockFilter { return spreadProgram(false, v6, []int{2}) }},
	{"probe", func(v6 bool, _ uint16, ports []int) []unix.SockFilter {
		return probeProgram(v6, ports[1:3], []int{5, 0}, spreadProgram(false, v6, []int{2, 3}))
	}},
	// What the kernel presents: the length of the SYN's data, its first
	// byte (or, where none, a load at 0 that ends the program with 0).
	{"len", func(bool, uint16, []int) []unix.SockFilter {
		return testProgram(cbpf.LoadLen(), cbpf.ALU(cbpf.Add, 1), cbpf.RetA())
	}},
	{"first byte", func(bool, uint16, []int) []unix.SockFilter {
		return testProgram(cbpf.LoadAbs(cbpf.Byte, 0), cbpf.ALU(cbpf.Add, 1), cbpf.RetA())
	}},
}

// TestBPFKernelTCP runs each program for a TCP group in the kernel and in
// the interpreter on the same SYNs: the member that accepts the connection
// must be one the interpreter can pick.
func TestBPFKernelTCP(t *testing.T) {
	requireProgram(t)
	// What the kernel presents past the IP header, of any length: the TCP
	// header, with the destination port (1 where it is dst, 2 otherwise)
	// and the SYN flag (3 where set, 4 otherwise).
	dstPort := func(v6 bool, dst uint16, _ []int) []unix.SockFilter {
		p := byIPVersion(v6, "dst",
			[]cbpf.Instruction{cbpf.LoadIPv4HeaderLen(cbpf.NetOff), cbpf.LoadInd(cbpf.Half, cbpf.NetOff+2)},
			[]cbpf.Instruction{cbpf.LoadAbs(cbpf.Half, cbpf.NetOff+42)})
		return testProgram(append(p, cbpf.JumpIf(cbpf.Eq, uint32(dst), "", "no"), cbpf.Ret(1), cbpf.Label("no"), cbpf.Ret(2))...)
	}
	syn := func(v6 bool, _ uint16, _ []int) []unix.SockFilter {
		p := byIPVersion(v6, "flags",
			[]cbpf.Instruction{cbpf.LoadIPv4HeaderLen(cbpf.NetOff), cbpf.LoadInd(cbpf.Byte, cbpf.NetOff+13)},
			[]cbpf.Instruction{cbpf.LoadAbs(cbpf.Byte, cbpf.NetOff+53)})
		return testProgram(append(p, cbpf.JumpIf(cbpf.Set, 0x02, "", "no"), cbpf.Ret(3), cbpf.Label("no"), cbpf.Ret(4))...)
	}
	cases := append(tcpProbeCases, tcpCase{"destination port", dstPort}, tcpCase{"flags", syn})
	for _, f := range bpfFamilies {
		for _, c := range cases {
			t.Run(f.name+"/"+c.name, func(t *testing.T) { checkTCP(t, f, c, nil) })
		}
	}
}

// TestBPFKernelFastOpen runs the programs for a TCP group on SYNs that
// carry TCP Fast Open data, in a private network namespace whose
// tcp_fastopen sysctl lets a client send data in its first SYN: the
// kernel gives the program that data at offset 0.
func TestBPFKernelFastOpen(t *testing.T) {
	requireProgram(t)
	if !sockettest.RunInNetNS(t) {
		return
	}
	// 0x207: a client and a server of Fast Open, without cookies.
	if err := os.WriteFile("/proc/sys/net/ipv4/tcp_fastopen", []byte("519"), 0); err != nil {
		t.Fatal(err)
	}
	for _, f := range bpfFamilies {
		for _, c := range tcpProbeCases {
			t.Run(f.name+"/"+c.name, func(t *testing.T) {
				for _, data := range [][]byte{{4}, {1, 2}, {0, 9, 9, 9}, {2, 0, 0}} {
					checkTCP(t, f, c, data)
				}
			})
		}
	}
}

// checkTCP attaches c's program to a group of TCP listeners for f, opens a
// connection from each sender, with data in its SYN (TCP Fast Open) unless
// nil, and checks that the member that accepts it is one the interpreter
// can pick.
func checkTCP(t *testing.T, f bpfFamily, c tcpCase, data []byte) {
	t.Helper()
	g := openKernelGroup(t, f, unix.SOCK_STREAM, members)
	fds, ports := make([]int, senders), make([]int, senders)
	for i := range fds {
		fds[i], ports[i] = openSender(t, f, unix.SOCK_STREAM)
	}
	prog := c.program(f.v6(), g.dst.Port(), ports)
	g.attach(t, prog)
	_, dst := sockaddrOf(g.dst)
	for i, fd := range fds {
		if data == nil {
			must(t, unix.Connect(fd, dst))
		} else {
			must(t, unix.Sendto(fd, data, unix.MSG_FASTOPEN, dst))
		}
		member := g.accept(t)
		resetClose(fd)
		want := results(t, prog, f.packet(ports[i], g.dst, true, data))
		if !agree(member, members, want) {
			t.Errorf("from port %d, data %x: member %d accepted it, the interpreter says %v", ports[i], data, member, want)
		}
	}
}

// TestBPFKernelFilter runs each socket filter on a UDP socket in the kernel
// and in the interpreter on the same datagrams: those the interpreter drops
// are counted in the socket's drops, the others delivered.
func TestBPFKernelFilter(t *testing.T) {
	payload := []byte{0x40, 1, 2}
	cases := []struct {
		name    string
		program func(ports []int) []unix.SockFilter
	}{
		{"probe", func(ports []int) []unix.SockFilter { return probeFilter(ports[1:3]) }},
		{"probe, one port", func(ports []int) []unix.SockFilter { return probeFilter(ports[5:]) }},
		{"drop", func([]int) []unix.SockFilter { return dropFilter() }},
		// What the kernel presents: the UDP header at offset 0, its
		// source port first, and a length that counts it.
		{"source port", func(ports []int) []unix.SockFilter {
			return testProgram(cbpf.LoadAbs(cbpf.Half, 0), cbpf.JumpIf(cbpf.Eq, uint32(ports[2]), "", "drop"), cbpf.Ret(keepAll), cbpf.Label("drop"), cbpf.Ret(0))
		}},
		{"len", func([]int) []unix.SockFilter {
			return testProgram(cbpf.LoadLen(), cbpf.JumpIf(cbpf.Eq, uint32(8+len(payload)), "", "drop"), cbpf.Ret(keepAll), cbpf.Label("drop"), cbpf.Ret(0))
		}},
	}
	for _, f := range bpfFamilies {
		for _, c := range cases {
			t.Run(f.name+"/"+c.name, func(t *testing.T) {
				g := openKernelGroup(t, f, unix.SOCK_DGRAM, 1)
				// Once bound, the socket lets no other socket join its
				// port, whose datagrams it counts (under emulation, other
				// platforms' tests run beside these).
				must(t, unix.SetsockoptInt(g.fds[0], unix.SOL_SOCKET, unix.SO_REUSEPORT, 0))
				fds, ports := make([]int, senders), make([]int, senders)
				for i := range fds {
					fds[i], ports[i] = openSender(t, f, unix.SOCK_DGRAM)
				}
				prog := c.program(ports)
				err := unix.SetsockoptSockFprog(g.fds[0], unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]})
				if errors.Is(err, unix.ENOPROTOOPT) {
					t.Skipf("this kernel or emulator lacks SO_ATTACH_FILTER: %v", err)
				}
				must(t, err)
				_, dst := sockaddrOf(g.dst)
				for i, fd := range fds {
					drops := udpDrops(t, g.fds[0])
					must(t, unix.Sendto(fd, payload, 0, dst))
					kept := g.receiveOrDrop(t, f, ports[i], payload, drops)
					want := run(t, prog, f.packet(ports[i], g.dst, false, payload).filter()) != 0
					if kept != want {
						t.Errorf("from port %d: the kernel kept it: %v, the interpreter: %v", ports[i], kept, want)
					}
				}
			})
		}
	}
}

// receiveOrDrop reports whether the group's one socket received the
// datagram from port (false: its drops went past drops).
func (g *kernelGroup) receiveOrDrop(t *testing.T, f bpfFamily, port int, payload []byte, drops uint64) bool {
	t.Helper()
	pfd := []unix.PollFd{{Fd: int32(g.fds[0]), Events: unix.POLLIN}}
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
		if n, err := unix.Poll(pfd, 0); err == nil && n > 0 {
			g.receive(t, f, port, payload)
			return true
		}
		if udpDrops(t, g.fds[0]) > drops {
			return false
		}
		_, _ = unix.Poll(pfd, 10) // until it arrives, or 10 ms for a drop
	}
	t.Fatalf("the datagram from port %d was neither received nor dropped in 5s; the sockets of port %d: %s", port, g.dst.Port(), procUDPLines(g.dst.Port()))
	return false
}

// procUDPLines returns the lines of /proc/net/udp{,6} of the sockets whose
// local port is port.
func procUDPLines(port uint16) string {
	var lines []string
	suffix := fmt.Sprintf(":%04X", port)
	for _, file := range []string{"/proc/net/udp", "/proc/net/udp6"} {
		data, _ := os.ReadFile(file)
		for _, line := range strings.Split(string(data), "\n") {
			if fields := strings.Fields(line); len(fields) > 2 && strings.HasSuffix(fields[1], suffix) {
				lines = append(lines, strings.Join(fields, " "))
			}
		}
	}
	return strings.Join(lines, "; ")
}

// udpDrops returns the drops of the UDP socket fd.
func udpDrops(t *testing.T, fd int) uint64 {
	t.Helper()
	n, err := sockettest.UDPDrops(uintptr(fd))
	must(t, err)
	return n
}

// testProgram assembles a program of the tests'.
func testProgram(p ...cbpf.Instruction) []unix.SockFilter { return assemble(p) }

// sockaddrOf returns the domain and address of ap.
func sockaddrOf(ap netip.AddrPort) (int, unix.Sockaddr) {
	if ap.Addr().Is4() {
		return unix.AF_INET, &unix.SockaddrInet4{Addr: ap.Addr().As4(), Port: int(ap.Port())}
	}
	return unix.AF_INET6, &unix.SockaddrInet6{Addr: ap.Addr().As16(), Port: int(ap.Port())}
}

// boundPort returns the port fd is bound to.
func boundPort(t *testing.T, fd int) uint16 {
	t.Helper()
	sa, err := unix.Getsockname(fd)
	must(t, err)
	return uint16(portOf(sa))
}

// portOf returns the port of sa, -1 if none.
func portOf(sa unix.Sockaddr) int {
	switch sa := sa.(type) {
	case *unix.SockaddrInet4:
		return sa.Port
	case *unix.SockaddrInet6:
		return sa.Port
	}
	return -1
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
