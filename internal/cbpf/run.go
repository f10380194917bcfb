package cbpf

import (
	"encoding/binary"
	"fmt"
)

// Packet is a packet as Linux presents it to a program.
type Packet struct {
	// Data is what loads at offset 0 and up read, to the end of the
	// packet; LoadLen loads its length. What it starts with depends on
	// the program (see package reuse's bpf_linux.go): the UDP payload for
	// a SO_ATTACH_REUSEPORT_CBPF program of a UDP group, the SYN's TCP
	// payload (usually none) for one of a TCP group, the UDP header for a
	// socket filter (SO_ATTACH_FILTER) on a UDP socket.
	Data []byte

	// Net is what loads at NetOff and up read: the IP header, and on to
	// the end of the packet.
	Net []byte

	// Random is what a word load at RandomOff reads.
	Random uint32
}

// Run runs prog on p as Linux does, and returns the program's result. A
// load past the end of Data or Net ends the program with 0, as in the
// kernel; so does a modulus by an X of 0.
//
// It returns an error for an instruction that it does not know (the
// instructions that Assemble makes, and no more), and for a program that
// the kernel's checker would refuse: a jump past the end, a shift of 32 or
// more, a modulus of 0, or no return at the end.
func Run(prog []Raw, p Packet) (uint32, error) {
	if err := check(prog); err != nil {
		return 0, err
	}
	var a, x uint32
	for pc := 0; ; pc++ {
		in := prog[pc] // check saw a return at the end, and no jump past it
		switch class := in.Op & 0x07; class {
		case classLD, classLDX:
			v, ok, err := p.load(in, x)
			if err != nil {
				return 0, fmt.Errorf("cbpf: instruction %d: %w", pc, err)
			}
			if !ok {
				return 0, nil
			}
			if class == classLDX {
				x = v
			} else {
				a = v
			}
		case classALU:
			v, ok, err := alu(in, a, x)
			if err != nil {
				return 0, fmt.Errorf("cbpf: instruction %d: %w", pc, err)
			}
			if !ok {
				return 0, nil
			}
			a = v
		case classJMP:
			skip, err := jumpBy(in, a)
			if err != nil {
				return 0, fmt.Errorf("cbpf: instruction %d: %w", pc, err)
			}
			pc += skip
		case classRET:
			switch in.Op {
			case classRET:
				return in.K, nil
			case classRET | retA:
				return a, nil
			}
			return 0, fmt.Errorf("cbpf: instruction %d: unknown return %#x", pc, in.Op)
		case classMISC:
			if in.Op != classMISC|miscTAX {
				return 0, fmt.Errorf("cbpf: instruction %d: unknown instruction %#x", pc, in.Op)
			}
			x = a
		default:
			return 0, fmt.Errorf("cbpf: instruction %d: unknown instruction %#x", pc, in.Op)
		}
	}
}

// check refuses, as the kernel's checker does, a program that does not end
// with a return or has a jump past the end, taken or not.
func check(prog []Raw) error {
	if len(prog) == 0 || prog[len(prog)-1].Op&0x07 != classRET {
		return fmt.Errorf("cbpf: the program ends without a return")
	}
	for pc, in := range prog {
		if in.Op&0x07 != classJMP {
			continue
		}
		far := uint32(max(in.Jt, in.Jf))
		if in.Op == classJMP|jumpJA {
			far = in.K
		}
		if uint64(pc)+1+uint64(far) >= uint64(len(prog)) {
			return fmt.Errorf("cbpf: instruction %d jumps past the end", pc)
		}
	}
	return nil
}

// load runs a load instruction: its value, or false where it reads past
// the end.
func (p Packet) load(in Raw, x uint32) (uint32, bool, error) {
	size, mode := Size(in.Op&0x18), in.Op&0xe0
	off := int32(in.K)
	switch {
	case in.Op == classLD|uint16(Word)|modeLEN:
		return uint32(len(p.Data)), true, nil
	case in.Op == classLDX|uint16(Byte)|modeMSH:
		v, ok := p.read(off, 1)
		return 4 * (v & 0xf), ok, nil
	case in.Op&0x07 != classLD || size == 0x18 || (mode != modeABS && mode != modeIND):
		return 0, false, fmt.Errorf("unknown load %#x", in.Op)
	case mode == modeIND:
		// The kernel adds X and K in 32 bits and takes the sum as signed;
		// it reads no ancillary data there.
		off = int32(x + in.K)
	case off == RandomOff && size == Word:
		return p.Random, true, nil
	case off < 0 && off >= adOff:
		return 0, false, fmt.Errorf("ancillary data at %d: only a word at RandomOff is known", off-adOff)
	}
	v, ok := p.read(off, size.bytes())
	return v, ok, nil
}

// read reads n bytes (big-endian) at off: Data at 0 and up, Net at NetOff
// and up. Anything else, or past the end, reads nothing.
func (p Packet) read(off int32, n int) (uint32, bool) {
	var b []byte
	switch {
	case off >= 0:
		b = p.Data
	case off >= NetOff:
		b, off = p.Net, off-NetOff
	default:
		return 0, false
	}
	if int64(off)+int64(n) > int64(len(b)) {
		return 0, false
	}
	b = b[off : int(off)+n]
	switch n {
	case 1:
		return uint32(b[0]), true
	case 2:
		return uint32(binary.BigEndian.Uint16(b)), true
	}
	return binary.BigEndian.Uint32(b), true
}

// alu runs an arithmetic instruction: A's new value, or false for a
// modulus by an X of 0, which ends the program with 0.
func alu(in Raw, a, x uint32) (uint32, bool, error) {
	v := in.K
	if in.Op&srcX != 0 {
		v = x
	}
	switch ALUOp(in.Op & 0xf0) {
	case Add:
		return a + v, true, nil
	case Mul:
		return a * v, true, nil
	case Xor:
		return a ^ v, true, nil
	case Rsh:
		if v >= 32 {
			return 0, false, fmt.Errorf("a shift by %d", v)
		}
		return a >> v, true, nil
	case Mod:
		if v == 0 && in.Op&srcX == 0 {
			return 0, false, fmt.Errorf("a modulus of 0")
		}
		if v == 0 {
			return 0, false, nil
		}
		return a % v, true, nil
	}
	return 0, false, fmt.Errorf("unknown arithmetic %#x", in.Op)
}

// jumpBy returns how many instructions a jump skips.
func jumpBy(in Raw, a uint32) (int, error) {
	var yes bool
	switch Cond(in.Op &^ 0x07) {
	case jumpJA:
		return int(in.K), nil
	case Eq:
		yes = a == in.K
	case Gt:
		yes = a > in.K
	case Ge:
		yes = a >= in.K
	case Set:
		yes = a&in.K != 0
	default:
		return 0, fmt.Errorf("unknown jump %#x", in.Op)
	}
	if yes {
		return int(in.Jt), nil
	}
	return int(in.Jf), nil
}
