package cbpf

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"
)

// TestOpcodes checks the constructors' opcodes against Linux's, as x/sys
// has them.
func TestOpcodes(t *testing.T) {
	prog := []Instruction{
		LoadAbs(Word, 1), LoadAbs(Half, 2), LoadAbs(Byte, 3),
		LoadInd(Half, 4), LoadLen(), LoadIPv4HeaderLen(5), TAX(),
		ALU(Add, 6), ALU(Mul, 7), ALU(Rsh, 8), ALU(Mod, 9), ALU(Xor, 10), ALUX(Xor), ALUX(Mod),
		JumpIf(Eq, 11, "", ""), JumpIf(Gt, 12, "", ""), JumpIf(Ge, 13, "", ""), JumpIf(Set, 14, "", ""),
		Jump("end"), Label("end"), Ret(15), RetA(),
	}
	want := []Raw{
		{Op: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: 1},
		{Op: unix.BPF_LD | unix.BPF_H | unix.BPF_ABS, K: 2},
		{Op: unix.BPF_LD | unix.BPF_B | unix.BPF_ABS, K: 3},
		{Op: unix.BPF_LD | unix.BPF_H | unix.BPF_IND, K: 4},
		{Op: unix.BPF_LD | unix.BPF_W | unix.BPF_LEN},
		{Op: unix.BPF_LDX | unix.BPF_B | unix.BPF_MSH, K: 5},
		{Op: unix.BPF_MISC | unix.BPF_TAX},
		{Op: unix.BPF_ALU | unix.BPF_ADD | unix.BPF_K, K: 6},
		{Op: unix.BPF_ALU | unix.BPF_MUL | unix.BPF_K, K: 7},
		{Op: unix.BPF_ALU | unix.BPF_RSH | unix.BPF_K, K: 8},
		{Op: unix.BPF_ALU | unix.BPF_MOD | unix.BPF_K, K: 9},
		{Op: unix.BPF_ALU | unix.BPF_XOR | unix.BPF_K, K: 10},
		{Op: unix.BPF_ALU | unix.BPF_XOR | unix.BPF_X},
		{Op: unix.BPF_ALU | unix.BPF_MOD | unix.BPF_X},
		{Op: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, K: 11},
		{Op: unix.BPF_JMP | unix.BPF_JGT | unix.BPF_K, K: 12},
		{Op: unix.BPF_JMP | unix.BPF_JGE | unix.BPF_K, K: 13},
		{Op: unix.BPF_JMP | unix.BPF_JSET | unix.BPF_K, K: 14},
		{Op: unix.BPF_JMP | unix.BPF_JA},
		{Op: unix.BPF_RET | unix.BPF_K, K: 15},
		{Op: unix.BPF_RET | unix.BPF_A},
	}
	got, err := Assemble(prog)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("opcodes (-want +got):\n%s", diff)
	}
}
