package cbpf

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestAssembleLabels(t *testing.T) {
	prog := []Instruction{
		LoadLen(),
		JumpIf(Gt, 3, "", "short"), // 0: jt 0, jf 2
		LoadAbs(Byte, 3),
		Jump("end"), // 3: K 2
		Label("short"),
		Label("also short"),
		Ret(7),
		TAX(),
		Label("end"),
		RetA(),
	}
	got, err := Assemble(prog)
	if err != nil {
		t.Fatal(err)
	}
	want := []Raw{
		{Op: 0x80},
		{Op: 0x25, Jt: 0, Jf: 2, K: 3},
		{Op: 0x30, K: 3},
		{Op: 0x05, K: 2},
		{Op: 0x06, K: 7},
		{Op: 0x07},
		{Op: 0x16},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Assemble (-want +got):\n%s", diff)
	}
}

// TestAssembleFar checks the reach of the jumps: a conditional one's 255
// instructions, and a Jump's any distance.
func TestAssembleFar(t *testing.T) {
	prog := func(jump Instruction, between int) []Instruction {
		p := []Instruction{LoadLen(), jump}
		for i := 0; i < between; i++ {
			p = append(p, ALU(Add, 1))
		}
		return append(p, Label("far"), RetA())
	}
	for _, c := range []struct {
		jump    Instruction
		between int
		ok      bool
	}{
		{JumpIf(Eq, 0, "far", ""), 255, true},
		{JumpIf(Eq, 0, "far", ""), 256, false},
		{JumpIf(Eq, 0, "", "far"), 256, false},
		{Jump("far"), 5000, true},
	} {
		got, err := Assemble(prog(c.jump, c.between))
		if !c.ok {
			if err == nil || !strings.Contains(err.Error(), "255") {
				t.Errorf("a jump over %d instructions: got error %v, want one naming the reach of 255", c.between, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("a jump over %d instructions: %v", c.between, err)
			continue
		}
		if skip := uint32(got[1].Jt) + got[1].K; skip != uint32(c.between) {
			t.Errorf("a jump over %d instructions skips %d", c.between, skip)
		}
	}
}

func TestAssembleErrors(t *testing.T) {
	for _, c := range []struct {
		name string
		prog []Instruction
		want string
	}{
		{"unknown label", []Instruction{Jump("nowhere"), Ret(0)}, `unknown label "nowhere"`},
		{"unknown false label", []Instruction{JumpIf(Eq, 1, "", "nowhere"), Ret(0)}, `unknown label "nowhere"`},
		{"backward", []Instruction{Label("top"), LoadLen(), Jump("top"), Ret(0)}, "back"},
		{"to itself", []Instruction{Label("here"), JumpIf(Eq, 1, "here", ""), Ret(0)}, "back"},
		{"past the end", []Instruction{Jump("end"), Ret(0), Label("end")}, "past the last"},
		{"twice", []Instruction{Label("a"), Label("a"), Ret(0)}, "twice"},
		{"no name", []Instruction{Label(""), Ret(0)}, "without a name"},
		{"empty", nil, "does not end with a return"},
		{"no return", []Instruction{LoadLen()}, "does not end with a return"},
	} {
		_, err := Assemble(c.prog)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got error %v, want one saying %q", c.name, err, c.want)
		}
	}
}

// ipv4 is an IPv4 header of ihl words (options of NOPs), protocol UDP,
// from 10.1.2.3, followed by a UDP header from port 0x1234 and a payload
// of 0xaa, 0xbb.
func ipv4(ihl int) []byte {
	h := make([]byte, 4*ihl)
	h[0] = 0x40 | byte(ihl)
	h[9] = 17
	copy(h[12:], []byte{10, 1, 2, 3})
	for i := 20; i < len(h); i++ {
		h[i] = 1
	}
	return append(h, 0x12, 0x34, 0x56, 0x78, 0, 10, 0, 0, 0xaa, 0xbb)
}

func TestRun(t *testing.T) {
	udp := Packet{Data: []byte{0xaa, 0xbb}, Net: ipv4(5), Random: 0xdeadbeef}
	withOptions := Packet{Data: []byte{0xaa, 0xbb}, Net: ipv4(7)}
	port := []Instruction{LoadIPv4HeaderLen(NetOff), LoadInd(Half, NetOff), RetA()}
	for _, c := range []struct {
		name string
		prog []Instruction
		p    Packet
		want uint32
	}{
		{"ret k", []Instruction{Ret(42)}, udp, 42},
		{"len", []Instruction{LoadLen(), RetA()}, udp, 2},
		{"len of nothing", []Instruction{LoadLen(), RetA()}, Packet{}, 0},
		{"byte", []Instruction{LoadAbs(Byte, 1), RetA()}, udp, 0xbb},
		{"half", []Instruction{LoadAbs(Half, 0), RetA()}, udp, 0xaabb},
		{"word", []Instruction{LoadAbs(Word, NetOff+12), RetA()}, udp, 0x0a010203},
		{"byte past the end", []Instruction{LoadAbs(Byte, 2), Ret(9)}, udp, 0},
		{"half past the end", []Instruction{LoadAbs(Half, 1), Ret(9)}, udp, 0},
		{"word past the end", []Instruction{LoadAbs(Word, 0), Ret(9)}, udp, 0},
		{"net byte", []Instruction{LoadAbs(Byte, NetOff+9), RetA()}, udp, 17},
		{"net to the payload", []Instruction{LoadAbs(Half, NetOff+28), RetA()}, udp, 0xaabb},
		{"net past the end", []Instruction{LoadAbs(Byte, NetOff+30), Ret(9)}, udp, 0},
		{"below the network header", []Instruction{LoadAbs(Byte, NetOff-1), Ret(9)}, udp, 0},
		{"random", []Instruction{LoadAbs(Word, RandomOff), RetA()}, udp, 0xdeadbeef},
		{"ipv4 header length", []Instruction{LoadIPv4HeaderLen(NetOff), LoadLen(), ALUX(Add), RetA()}, withOptions, 28 + 2},
		{"header length past the end", []Instruction{LoadIPv4HeaderLen(NetOff + 100), Ret(9)}, udp, 0},
		{"source port", port, udp, 0x1234},
		{"source port past options", port, withOptions, 0x1234},
		{"indirect past the end", []Instruction{LoadIPv4HeaderLen(NetOff), LoadInd(Word, NetOff+8), Ret(9)}, udp, 0},
		{"indirect at 0", []Instruction{LoadLen(), TAX(), LoadInd(Byte, -1), RetA()}, udp, 0xbb},
		{"indirect below 0", []Instruction{LoadLen(), TAX(), LoadInd(Byte, -3), Ret(9)}, udp, 0},
		{"add", []Instruction{LoadLen(), ALU(Add, 0xffffffff), RetA()}, udp, 1},
		{"mul", []Instruction{LoadAbs(Byte, 0), ALU(Mul, 0x01000001), RetA()}, udp, 0xaa0000aa},
		{"rsh", []Instruction{LoadAbs(Half, 0), ALU(Rsh, 4), RetA()}, udp, 0xaab},
		{"mod", []Instruction{LoadAbs(Byte, 0), ALU(Mod, 7), RetA()}, udp, 0xaa % 7},
		{"xor x", []Instruction{LoadAbs(Byte, 1), TAX(), LoadAbs(Byte, 0), ALUX(Xor), RetA()}, udp, 0xaa ^ 0xbb},
		{"mod x", []Instruction{LoadLen(), TAX(), LoadAbs(Byte, 0), ALUX(Mod), RetA()}, udp, 0xaa % 2},
		{"mod x of 0", []Instruction{LoadLen(), TAX(), ALUX(Mod), Ret(9)}, Packet{}, 0},
		{"eq taken", eqProg(2), udp, 1},
		{"eq not taken", eqProg(3), udp, 2},
		{"gt", []Instruction{LoadLen(), JumpIf(Gt, 1, "yes", "no"), Label("yes"), Ret(1), Label("no"), Ret(2)}, udp, 1},
		{"gt not", []Instruction{LoadLen(), JumpIf(Gt, 2, "yes", "no"), Label("yes"), Ret(1), Label("no"), Ret(2)}, udp, 2},
		{"ge", []Instruction{LoadLen(), JumpIf(Ge, 2, "", "no"), Ret(1), Label("no"), Ret(2)}, udp, 1},
		{"ge not", []Instruction{LoadLen(), JumpIf(Ge, 3, "", "no"), Ret(1), Label("no"), Ret(2)}, udp, 2},
		{"set", []Instruction{LoadAbs(Byte, 0), JumpIf(Set, 0x80, "", "no"), Ret(1), Label("no"), Ret(2)}, udp, 1},
		{"set not", []Instruction{LoadAbs(Byte, 0), JumpIf(Set, 0x41, "", "no"), Ret(1), Label("no"), Ret(2)}, udp, 2},
		{"jump", []Instruction{Jump("end"), Ret(1), Label("end"), Ret(2)}, udp, 2},
	} {
		raw, err := Assemble(c.prog)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		got, err := Run(raw, c.p)
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
		} else if got != c.want {
			t.Errorf("%s: got %#x, want %#x", c.name, got, c.want)
		}
	}
}

// eqProg returns 1 where the length is n, 2 otherwise.
func eqProg(n uint32) []Instruction {
	return []Instruction{LoadLen(), JumpIf(Eq, n, "", "no"), Ret(1), Label("no"), Ret(2)}
}

// TestRunRefuses checks that Run refuses, as the kernel's checker does, a
// program it cannot run as the kernel would.
func TestRunRefuses(t *testing.T) {
	for _, c := range []struct {
		name string
		prog []Raw
		want string
	}{
		{"no return", []Raw{{Op: 0x80}}, "without a return"},
		{"jump past the end", []Raw{{Op: 0x05, K: 1}, {Op: 0x06}}, "past the end"},
		{"conditional past the end", []Raw{{Op: 0x15, Jt: 0, Jf: 5}, {Op: 0x06}}, "past the end"},
		{"shift of 32", []Raw{{Op: 0x74, K: 32}, {Op: 0x16}}, "shift"},
		{"modulus of 0", []Raw{{Op: 0x94}, {Op: 0x16}}, "modulus of 0"},
		{"sub", []Raw{{Op: 0x14, K: 1}, {Op: 0x16}}, "unknown arithmetic"},
		{"jump on x", []Raw{{Op: 0x1d}, {Op: 0x06}, {Op: 0x06}}, "unknown jump"},
		{"store", []Raw{{Op: 0x02}, {Op: 0x06}}, "unknown instruction"},
		{"txa", []Raw{{Op: 0x87}, {Op: 0x06}}, "unknown instruction"},
		{"load immediate", []Raw{{Op: 0x00, K: 1}, {Op: 0x16}}, "unknown load"},
		{"other ancillary data", []Raw{LoadAbs(Word, adOff+4).raw, {Op: 0x16}}, "ancillary"},
		{"random byte", []Raw{LoadAbs(Byte, RandomOff).raw, {Op: 0x16}}, "ancillary"},
	} {
		_, err := Run(c.prog, Packet{Data: make([]byte, 64), Net: make([]byte, 64)})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got error %v, want one saying %q", c.name, err, c.want)
		}
	}
}
