package reuse

import (
	"slices"
	"strconv"

	"golang.org/x/sys/unix"

	"github.com/sockreuse/reuse/internal/cbpf"
)

// The package's classic BPF programs, each a function of its parameters
// alone; bpf_linux_test.go runs each on test packets in cbpf's interpreter
// and in the kernel, and checks that they agree.
//
// What the kernel presents to a program (measured on Linux 6.18; pinned by
// the "what the kernel presents" cases of TestBPFKernelUDP, TestBPFKernelTCP,
// TestBPFKernelFastOpen and TestBPFKernelFilter):
//   - a SO_ATTACH_REUSEPORT_CBPF program of a UDP group: the UDP payload at
//     offset 0, whose length LoadLen loads;
//   - one of a TCP group: the SYN's TCP payload: usually none, so that
//     LoadLen loads 0 and a load at offset 0 or more ends the program with
//     0, member 0; a SYN that carries TCP Fast Open data, that data;
//   - a socket filter (SO_ATTACH_FILTER) on a UDP socket: the UDP header
//     at offset 0, and LoadLen the header's 8 bytes and the payload;
//   - to each, loads at cbpf.NetOff read the IP header, with its IPv4
//     options if any, and on to the end of the packet. An IPv6 group's
//     programs also get IPv4 packets, unless the group is IPV6_V6ONLY.
//
// A reuseport program's result is the index of the member that gets the
// packet, in the kernel's array of the group's members (join order until
// one leaves: then the last one takes its place); one at or past the
// group's size (toHash) leaves the pick to the kernel's hash. A socket
// filter's result is how many bytes of the packet to keep: 0 drops it.

// toHash is a reuseport program's result that names no member: the
// kernel's hash picks.
const toHash = 0xffffffff

// keepAll is a socket filter's result that keeps the whole packet.
const keepAll = 0xffffffff

// steerProgram returns the program of s for a UDP group: the byte of the
// payload at s.Offset is the index of the member, unless the payload is too
// short to have it or has a bit of s.HashIf set in its first byte: then
// toHash. The length is checked first, as a load past the end would end the
// program with 0, member 0.
func steerProgram(s Steering) []unix.SockFilter {
	p := []cbpf.Instruction{
		cbpf.LoadLen(),
		cbpf.JumpIf(cbpf.Gt, uint32(s.Offset), "", "hash"),
	}
	if s.HashIf != 0 {
		p = append(p,
			cbpf.LoadAbs(cbpf.Byte, 0),
			cbpf.JumpIf(cbpf.Set, uint32(s.HashIf), "hash", ""),
		)
	}
	return assemble(append(p,
		cbpf.LoadAbs(cbpf.Byte, int32(s.Offset)),
		cbpf.RetA(),
		cbpf.Label("hash"),
		cbpf.Ret(toHash),
	))
}

// spreadProgram returns a program that spreads new connections (udp
// false) or datagrams over indexes: at random for TCP, where a SYN's choice
// is final; by a hash of the source address and port for UDP, so that a
// flow stays on one member. v6 says the group is IPv6 (and may get IPv4
// datagrams too). With no indexes it returns toHash.
func spreadProgram(udp, v6 bool, indexes []int) []unix.SockFilter {
	picks := slices.Clone(indexes)
	slices.Sort(picks)
	picks = slices.Compact(picks)
	switch len(picks) {
	case 0:
		return assemble([]cbpf.Instruction{cbpf.Ret(toHash)})
	case 1:
		return assemble([]cbpf.Instruction{cbpf.Ret(uint32(picks[0]))})
	}
	var p []cbpf.Instruction
	if udp {
		// The last word of the source address: all of IPv4's.
		addr := byIPVersion(v6, "addr",
			[]cbpf.Instruction{cbpf.LoadAbs(cbpf.Word, cbpf.NetOff+12)},
			[]cbpf.Instruction{cbpf.LoadAbs(cbpf.Word, cbpf.NetOff+20)})
		p = append(loadSourcePort(v6), cbpf.TAX())
		p = append(p, addr...)
		p = append(p,
			cbpf.ALUX(cbpf.Xor),
			cbpf.ALU(cbpf.Mul, 0x9e3779b1), // Fibonacci hashing: the high bits mix all of the key
			cbpf.ALU(cbpf.Rsh, 16),
		)
	} else {
		p = append(p, cbpf.LoadAbs(cbpf.Word, cbpf.RandomOff))
	}
	p = append(p, cbpf.ALU(cbpf.Mod, uint32(len(picks))))
	// Map 0..len(picks)-1 onto picks: step over each index left out, in
	// ascending order.
	for i := 0; i < picks[len(picks)-1]; i++ {
		if _, found := slices.BinarySearch(picks, i); !found {
			next := "skip/" + strconv.Itoa(i)
			p = append(p,
				cbpf.JumpIf(cbpf.Ge, uint32(i), "", next),
				cbpf.ALU(cbpf.Add, 1),
				cbpf.Label(next),
			)
		}
	}
	return assemble(append(p, cbpf.RetA()))
}

// probeProgram returns a program that gives a SYN or datagram from source
// port ports[i] to indexes[i], and runs rest (a whole program) on any
// other: the probes that find where a member sits in the group.
func probeProgram(v6 bool, ports, indexes []int, rest []unix.SockFilter) []unix.SockFilter {
	p := append(loadSourcePort(v6), table("probe", ports, indexes)...)
	if len(rest) == 0 {
		return assemble(append(p, cbpf.Ret(toHash)))
	}
	for _, f := range rest {
		p = append(p, cbpf.Raw{Op: f.Code, Jt: f.Jt, Jf: f.Jf, K: f.K}.Instruction())
	}
	return assemble(p)
}

// probeFilter returns a socket filter for a UDP socket that drops the
// datagrams from the source ports ports, the successor's probes, and
// keeps all others.
func probeFilter(ports []int) []unix.SockFilter {
	drop := make([]int, len(ports))
	// The port is read as everywhere else (a filter also has it at offset
	// 0, in the UDP header), on an IPv4 or IPv6 datagram: the socket may be
	// a dual-stack one.
	p := append(loadSourcePort(true), table("drop", ports, drop)...)
	return assemble(append(p, cbpf.Ret(keepAll)))
}

// dropFilter returns a socket filter that drops every packet: the
// helpers' (joinHelper).
func dropFilter() []unix.SockFilter {
	return assemble([]cbpf.Instruction{cbpf.Ret(0)})
}

// generationsProgram returns the program of a handover under the Steering
// s: the payload's byte at s.Offset names the member m, the next one the
// generation. A datagram of generation oldGen goes to oldIndexes[m], the
// old process's member m, one of generation gen to newIndexes[m], this
// process's member m; any other one (too short, with a bit of s.HashIf
// set, of another generation, or naming a member that is gone, -1) to one
// of this process's members, by its source port, so that a flow stays on
// one; toHash where none is left.
func generationsProgram(s Steering, oldGen, gen int, oldIndexes, newIndexes []int) []unix.SockFilter {
	off := int32(s.Offset)
	p := []cbpf.Instruction{
		cbpf.LoadLen(),
		cbpf.JumpIf(cbpf.Gt, uint32(off+1), "", "toPort"),
	}
	if s.HashIf != 0 {
		p = append(p,
			cbpf.LoadAbs(cbpf.Byte, 0),
			cbpf.JumpIf(cbpf.Set, uint32(s.HashIf), "toPort", ""),
		)
	}
	// The tables are too long for a conditional jump over them: each
	// branch jumps to a Jump.
	p = append(p,
		cbpf.LoadAbs(cbpf.Byte, off+1),
		cbpf.JumpIf(cbpf.Eq, uint32(oldGen), "", "notOld"),
		cbpf.Jump("old"),
		cbpf.Label("notOld"),
		cbpf.JumpIf(cbpf.Eq, uint32(gen), "", "toPort"),
		cbpf.Jump("new"),
		cbpf.Label("toPort"),
		cbpf.Jump("byPort"),
		cbpf.Label("old"),
		cbpf.LoadAbs(cbpf.Byte, off),
	)
	p = append(p, table("old", upTo(len(oldIndexes)), oldIndexes)...)
	p = append(p,
		cbpf.Jump("byPort"),
		cbpf.Label("new"),
		cbpf.LoadAbs(cbpf.Byte, off),
	)
	p = append(p, table("new", upTo(len(newIndexes)), newIndexes)...)
	p = append(p, cbpf.Label("byPort"))
	p = append(p, loadSourcePort(true)...)
	present := slices.DeleteFunc(slices.Clone(newIndexes), func(i int) bool { return i < 0 })
	if len(present) > 0 {
		p = append(p, cbpf.ALU(cbpf.Mod, uint32(len(present))))
		p = append(p, table("present", upTo(len(present)), present)...)
	}
	return assemble(append(p, cbpf.Ret(toHash)))
}

// loadSourcePort loads A with the source port of a UDP datagram or TCP
// segment, past an IPv4 header of any length or a 40-byte IPv6 header (an
// extension header is not followed: there the port read is wrong, which
// only changes which member a hash or table picks). It is the one way the
// package's programs read the port.
func loadSourcePort(v6 bool) []cbpf.Instruction {
	return byIPVersion(v6, "port",
		[]cbpf.Instruction{
			cbpf.LoadIPv4HeaderLen(cbpf.NetOff),
			cbpf.LoadInd(cbpf.Half, cbpf.NetOff),
		},
		[]cbpf.Instruction{cbpf.LoadAbs(cbpf.Half, cbpf.NetOff+40)})
}

// byIPVersion runs ip4 on an IPv4 packet, ip6 on an IPv6 one, and goes on
// after both, its labels starting with name and a slash, as table's do. A program of an IPv4 group
// (v6 false) gets IPv4 alone, and runs ip4 alone.
func byIPVersion(v6 bool, name string, ip4, ip6 []cbpf.Instruction) []cbpf.Instruction {
	if !v6 {
		return ip4
	}
	p := []cbpf.Instruction{
		cbpf.LoadAbs(cbpf.Byte, cbpf.NetOff),
		cbpf.ALU(cbpf.Rsh, 4),
		cbpf.JumpIf(cbpf.Eq, 6, name+"/ip6", ""),
	}
	p = append(p, ip4...)
	p = append(p, cbpf.Jump(name+"/end"), cbpf.Label(name+"/ip6"))
	p = append(p, ip6...)
	return append(p, cbpf.Label(name+"/end"))
}

// table returns values[i] where A is keys[i] (values[i] at or past 0), and
// goes on otherwise; its labels are name, a slash and a number, which no
// other label of a program may start with.
func table(name string, keys, values []int) []cbpf.Instruction {
	var p []cbpf.Instruction
	for i, v := range values {
		if v < 0 {
			continue
		}
		next := name + "/" + strconv.Itoa(i)
		p = append(p,
			cbpf.JumpIf(cbpf.Eq, uint32(keys[i]), "", next),
			cbpf.Ret(uint32(v)),
			cbpf.Label(next),
		)
	}
	return p
}

// upTo returns 0, 1, ..., n-1.
func upTo(n int) []int {
	s := make([]int, n)
	for i := range s {
		s[i] = i
	}
	return s
}

// assemble returns p in the kernel's form. The programs' labels and jumps
// are fixed by this file, whatever the parameters (a far target is reached
// with a Jump): an error here is a bug of this file, which its tests show.
func assemble(p []cbpf.Instruction) []unix.SockFilter {
	raw, err := cbpf.Assemble(p)
	if err != nil {
		panic("reuse: " + err.Error())
	}
	f := make([]unix.SockFilter, len(raw))
	for i, r := range raw {
		f[i] = unix.SockFilter{Code: r.Op, Jt: r.Jt, Jf: r.Jf, K: r.K}
	}
	return f
}
