// Package cbpf writes classic BPF programs with typed constructors and
// labels, and runs them on a packet as Linux would (Run), for tests.
//
// It knows only the instructions that the package reuse's programs use. A
// program is a list of Instructions, where a jump names a Label; Assemble
// resolves the labels into the kernel's raw form. It compiles on every
// GOOS: the raw form is its own type, not x/sys's unix.SockFilter.
package cbpf

import "fmt"

// Raw is one instruction as the kernel takes it (struct sock_filter).
type Raw struct {
	Op     uint16
	Jt, Jf uint8
	K      uint32
}

// Negative load offsets of Linux's classic BPF ABI (linux/filter.h), the
// same on every architecture.
const (
	// NetOff (SKF_NET_OFF) is where loads from the network header start:
	// a load at NetOff+n reads byte n of the IP header, and on past it to
	// the end of the packet.
	NetOff int32 = -0x100000

	// RandomOff (SKF_AD_OFF + SKF_AD_RANDOM) is where a word load reads a
	// random number.
	RandomOff = adOff + 56

	adOff int32 = -0x1000 // SKF_AD_OFF: where the ancillary data start
)

// Size is the width of a load.
type Size uint16

// The sizes of a load.
const (
	Word Size = 0x00 // 32 bits
	Half Size = 0x08 // 16 bits
	Byte Size = 0x10 // 8 bits
)

// bytes returns the width of a load of size s, in bytes.
func (s Size) bytes() int {
	switch s {
	case Half:
		return 2
	case Byte:
		return 1
	}
	return 4
}

// ALUOp is an arithmetic operation on A.
type ALUOp uint16

// The arithmetic operations: A = A op K, or A op X.
const (
	Add ALUOp = 0x00
	Mul ALUOp = 0x20
	Rsh ALUOp = 0x70
	Mod ALUOp = 0x90
	Xor ALUOp = 0xa0
)

// Cond is the comparison of a conditional jump, of A with a constant.
type Cond uint16

// The comparisons.
const (
	Eq  Cond = 0x10 // A == K
	Gt  Cond = 0x20 // A > K
	Ge  Cond = 0x30 // A >= K
	Set Cond = 0x40 // A & K != 0
)

// The parts of an opcode (linux/bpf_common.h).
const (
	classLD   = 0x00
	classLDX  = 0x01
	classALU  = 0x04
	classJMP  = 0x05
	classRET  = 0x06
	classMISC = 0x07

	modeABS = 0x20
	modeIND = 0x40
	modeLEN = 0x80
	modeMSH = 0xa0

	srcX    = 0x08 // ALU: the operand is X, not K
	retA    = 0x10 // RET: return A, not K
	jumpJA  = 0x00
	miscTAX = 0x00
)

// kind tells Assemble what an Instruction is.
type kind uint8

const (
	plain kind = iota // an instruction with no label
	label             // a Label: no instruction
	jump              // an unconditional jump to yes
	cond              // a conditional jump to yes or no
)

// Instruction is one instruction of a program, or a Label.
type Instruction struct {
	kind    kind
	raw     Raw
	yes, no string // a jump's targets: labels, "" for the next instruction
}

// LoadAbs loads A with the Size bytes at off (big-endian): from the data
// the kernel gives the program at 0 and up, from the network header at
// NetOff and up, or the random number at RandomOff.
func LoadAbs(s Size, off int32) Instruction {
	return Instruction{raw: Raw{Op: classLD | uint16(s) | modeABS, K: uint32(off)}}
}

// LoadInd loads A with the Size bytes at X+off, like LoadAbs.
func LoadInd(s Size, off int32) Instruction {
	return Instruction{raw: Raw{Op: classLD | uint16(s) | modeIND, K: uint32(off)}}
}

// LoadLen loads A with the length of the data at offset 0 and up.
func LoadLen() Instruction {
	return Instruction{raw: Raw{Op: classLD | uint16(Word) | modeLEN}}
}

// LoadIPv4HeaderLen loads X with the length in bytes of the IPv4 header
// whose first byte is at off: 4 times its low four bits (ldx msh).
func LoadIPv4HeaderLen(off int32) Instruction {
	return Instruction{raw: Raw{Op: classLDX | uint16(Byte) | modeMSH, K: uint32(off)}}
}

// TAX copies A into X.
func TAX() Instruction { return Instruction{raw: Raw{Op: classMISC | miscTAX}} }

// ALU sets A to A op k.
func ALU(op ALUOp, k uint32) Instruction {
	return Instruction{raw: Raw{Op: classALU | uint16(op), K: k}}
}

// ALUX sets A to A op X.
func ALUX(op ALUOp) Instruction {
	return Instruction{raw: Raw{Op: classALU | uint16(op) | srcX}}
}

// Jump jumps to the label to, which may be any distance ahead.
func Jump(to string) Instruction {
	return Instruction{kind: jump, raw: Raw{Op: classJMP | jumpJA}, yes: to}
}

// JumpIf jumps to the label yes if A compares with k as c says, to no
// otherwise; "" names the next instruction. Each label must be at most
// 255 instructions ahead: a farther one takes a Jump.
func JumpIf(c Cond, k uint32, yes, no string) Instruction {
	return Instruction{kind: cond, raw: Raw{Op: classJMP | uint16(c), K: k}, yes: yes, no: no}
}

// Ret ends the program with k.
func Ret(k uint32) Instruction { return Instruction{raw: Raw{Op: classRET, K: k}} }

// RetA ends the program with A.
func RetA() Instruction { return Instruction{raw: Raw{Op: classRET | retA}} }

// Instruction returns r as an Instruction, its jumps as they are: a whole
// program appended to another one keeps its jumps within itself.
func (r Raw) Instruction() Instruction { return Instruction{raw: r} }

// Label names the next instruction, for jumps.
func Label(name string) Instruction { return Instruction{kind: label, yes: name} }

// Assemble returns prog in the kernel's form, its jumps resolved. It
// refuses an empty or duplicate label, a jump to a label that is unknown or
// not ahead, a conditional jump farther than 255 instructions, and a
// program whose last instruction is not a return (the kernel refuses one).
func Assemble(prog []Instruction) ([]Raw, error) {
	at := make(map[string]int) // label → index of its instruction
	n := 0
	for _, in := range prog {
		if in.kind != label {
			n++
			continue
		}
		if in.yes == "" {
			return nil, fmt.Errorf("cbpf: a label without a name before instruction %d", n)
		}
		if _, dup := at[in.yes]; dup {
			return nil, fmt.Errorf("cbpf: label %q defined twice", in.yes)
		}
		at[in.yes] = n
	}
	out := make([]Raw, 0, n)
	for _, in := range prog {
		i := len(out)
		skip := func(to string) (uint32, error) {
			if to == "" {
				return 0, nil
			}
			t, ok := at[to]
			switch {
			case !ok:
				return 0, fmt.Errorf("cbpf: instruction %d jumps to unknown label %q", i, to)
			case t <= i:
				return 0, fmt.Errorf("cbpf: instruction %d jumps back to label %q (instruction %d): classic BPF jumps only ahead", i, to, t)
			case t >= n:
				return 0, fmt.Errorf("cbpf: instruction %d jumps to label %q past the last instruction", i, to)
			}
			return uint32(t - i - 1), nil
		}
		r := in.raw
		switch in.kind {
		case label:
			continue
		case jump:
			k, err := skip(in.yes)
			if err != nil {
				return nil, err
			}
			r.K = k
		case cond:
			jt, err := skip(in.yes)
			if err != nil {
				return nil, err
			}
			jf, err := skip(in.no)
			if err != nil {
				return nil, err
			}
			if jt > 255 || jf > 255 {
				return nil, fmt.Errorf("cbpf: instruction %d jumps %d instructions ahead, past a conditional jump's 255: jump to a Jump", i, max(jt, jf))
			}
			r.Jt, r.Jf = uint8(jt), uint8(jf)
		}
		out = append(out, r)
	}
	if n == 0 || out[n-1].Op&0x07 != classRET {
		return nil, fmt.Errorf("cbpf: the program does not end with a return")
	}
	return out, nil
}
