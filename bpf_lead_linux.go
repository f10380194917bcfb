package reuse

// TEMPORARY (lead): stand-ins with the signatures of branch bpf's
// bpf_linux.go, removed at its merge.

import (
	"slices"

	"golang.org/x/sys/unix"
)

func spreadProgram(udp, v6 bool, indexes []int) []unix.SockFilter {
	if len(indexes) == 1 {
		return []unix.SockFilter{{Code: unix.BPF_RET | unix.BPF_K, K: uint32(indexes[0])}}
	}
	var p []unix.SockFilter
	if udp {
		srcAddr, srcPort := bpfOff(skfNetOff+12), bpfOff(skfNetOff+20)
		if v6 {
			srcAddr, srcPort = bpfOff(skfNetOff+20), bpfOff(skfNetOff+40)
		}
		p = append(p,
			unix.SockFilter{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: srcAddr},
			unix.SockFilter{Code: unix.BPF_MISC | unix.BPF_TAX},
			unix.SockFilter{Code: unix.BPF_LD | unix.BPF_H | unix.BPF_ABS, K: srcPort},
			unix.SockFilter{Code: unix.BPF_ALU | unix.BPF_XOR | unix.BPF_X},
			unix.SockFilter{Code: unix.BPF_ALU | unix.BPF_MUL | unix.BPF_K, K: 0x9e3779b1},
			unix.SockFilter{Code: unix.BPF_ALU | unix.BPF_RSH | unix.BPF_K, K: 16},
		)
	} else {
		p = append(p, unix.SockFilter{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: bpfOff(skfAdOff + skfAdRandom)})
	}
	p = append(p, unix.SockFilter{Code: unix.BPF_ALU | unix.BPF_MOD | unix.BPF_K, K: uint32(len(indexes))})
	for i := 0; i < indexes[len(indexes)-1]; i++ {
		if !slices.Contains(indexes, i) {
			p = append(p,
				unix.SockFilter{Code: unix.BPF_JMP | unix.BPF_JGE | unix.BPF_K, K: uint32(i), Jt: 0, Jf: 1},
				unix.SockFilter{Code: unix.BPF_ALU | unix.BPF_ADD | unix.BPF_K, K: 1},
			)
		}
	}
	return append(p, unix.SockFilter{Code: unix.BPF_RET | unix.BPF_A})
}

func probeProgram(v6 bool, ports, indexes []int, rest []unix.SockFilter) []unix.SockFilter {
	srcPort := bpfOff(skfNetOff + 20)
	if v6 {
		srcPort = bpfOff(skfNetOff + 40)
	}
	p := []unix.SockFilter{{Code: unix.BPF_LD | unix.BPF_H | unix.BPF_ABS, K: srcPort}}
	for i, port := range ports {
		p = append(p,
			unix.SockFilter{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, K: uint32(port), Jt: 0, Jf: 1},
			unix.SockFilter{Code: unix.BPF_RET | unix.BPF_K, K: uint32(indexes[i])})
	}
	return append(p, rest...)
}

func probeFilter(ports []int) []unix.SockFilter {
	p := []unix.SockFilter{{Code: unix.BPF_LD | unix.BPF_H | unix.BPF_ABS, K: 0}}
	for _, port := range ports {
		p = append(p, unix.SockFilter{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, K: uint32(port), Jt: 0, Jf: 1},
			unix.SockFilter{Code: unix.BPF_RET | unix.BPF_K, K: 0})
	}
	return append(p, unix.SockFilter{Code: unix.BPF_RET | unix.BPF_K, K: 0xffffffff})
}

// process's generation to this process's member it names, and any other one
// (too short, with a bit of HashIf set, of another generation, or naming no
// member left) to one of this process's members, by its source port.
func generationsProgram(s Steering, oldGen, gen int, oldPlaces, newPlaces []int) []unix.SockFilter {
	var a bpfAsm
	a.op(unix.SockFilter{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_LEN})
	a.op(unix.SockFilter{Code: unix.BPF_JMP | unix.BPF_JGT | unix.BPF_K, K: uint32(s.Offset + 1), Jt: 1})
	a.ja("byPort")
	if s.HashIf != 0 {
		a.op(unix.SockFilter{Code: unix.BPF_LD | unix.BPF_B | unix.BPF_ABS, K: 0})
		a.op(unix.SockFilter{Code: unix.BPF_JMP | unix.BPF_JSET | unix.BPF_K, K: uint32(s.HashIf), Jf: 1})
		a.ja("byPort")
	}
	a.op(unix.SockFilter{Code: unix.BPF_LD | unix.BPF_B | unix.BPF_ABS, K: uint32(s.Offset + 1)})
	a.op(unix.SockFilter{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, K: uint32(oldGen), Jf: 1})
	a.ja("old")
	a.op(unix.SockFilter{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, K: uint32(gen), Jf: 1})
	a.ja("new")
	a.ja("byPort")
	for _, t := range []struct {
		label  string
		places []int
	}{{"old", oldPlaces}, {"new", newPlaces}} {
		a.label(t.label)
		a.op(unix.SockFilter{Code: unix.BPF_LD | unix.BPF_B | unix.BPF_ABS, K: uint32(s.Offset)})
		a.table(t.places)
		a.ja("byPort")
	}
	// The source port: past an IPv4 header of any length (ldx msh), or past
	// a 40-byte IPv6 header (extension headers are not followed: a wrong
	// port only changes which new member is picked).
	a.label("byPort")
	a.op(unix.SockFilter{Code: unix.BPF_LD | unix.BPF_B | unix.BPF_ABS, K: bpfOff(skfNetOff)})
	a.op(unix.SockFilter{Code: unix.BPF_ALU | unix.BPF_RSH | unix.BPF_K, K: 4})
	a.op(unix.SockFilter{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, K: 6, Jt: 3})
	a.op(unix.SockFilter{Code: unix.BPF_LDX | unix.BPF_B | unix.BPF_MSH, K: bpfOff(skfNetOff)})
	a.op(unix.SockFilter{Code: unix.BPF_LD | unix.BPF_H | unix.BPF_IND, K: bpfOff(skfNetOff)})
	a.ja("mod")
	a.op(unix.SockFilter{Code: unix.BPF_LD | unix.BPF_H | unix.BPF_ABS, K: bpfOff(skfNetOff + 40)})
	a.label("mod")
	var present []int
	for _, p := range newPlaces {
		if p >= 0 {
			present = append(present, p)
		}
	}
	if len(present) == 0 {
		a.op(unix.SockFilter{Code: unix.BPF_RET | unix.BPF_K, K: toHash})
		return a.done()
	}
	a.op(unix.SockFilter{Code: unix.BPF_ALU | unix.BPF_MOD | unix.BPF_K, K: uint32(len(present))})
	a.table(present)
	a.op(unix.SockFilter{Code: unix.BPF_RET | unix.BPF_K, K: toHash})
	return a.done()
}

// toHash is a program's result that names no member: the kernel's hash
// picks.
const toHash = 0xffffffff

// bpfAsm assembles a classic BPF program whose long jumps (ja) go to labels.
type bpfAsm struct {
	p      []unix.SockFilter
	labels map[string]int
	jumps  map[int]string // a ja's index → its label
}

func (a *bpfAsm) op(f unix.SockFilter) { a.p = append(a.p, f) }

func (a *bpfAsm) ja(label string) {
	if a.jumps == nil {
		a.jumps = make(map[int]string)
	}
	a.jumps[len(a.p)] = label
	a.op(unix.SockFilter{Code: unix.BPF_JMP | unix.BPF_JA})
}

func (a *bpfAsm) label(name string) {
	if a.labels == nil {
		a.labels = make(map[string]int)
	}
	a.labels[name] = len(a.p)
}

// table returns places[A], for each A that names a place at or past 0, and
// falls through otherwise.
func (a *bpfAsm) table(places []int) {
	for m, p := range places {
		if p >= 0 {
			a.op(unix.SockFilter{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, K: uint32(m), Jf: 1})
			a.op(unix.SockFilter{Code: unix.BPF_RET | unix.BPF_K, K: uint32(p)})
		}
	}
}

// done resolves the jumps.
func (a *bpfAsm) done() []unix.SockFilter {
	for i, l := range a.jumps {
		a.p[i].K = uint32(a.labels[l] - i - 1)
	}
	return a.p
}

const (
	skfAdOff    = -0x1000   // SKF_AD_OFF: ancillary data
	skfAdRandom = 56        // SKF_AD_RANDOM: a random 32-bit number
	skfNetOff   = -0x100000 // SKF_NET_OFF: the network header
)

func bpfOff(off int32) uint32 { return uint32(off) }
