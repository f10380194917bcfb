package reuse

import (
	"fmt"
	"net"
	"slices"
	"time"

	"golang.org/x/sys/unix"
)

// steerAlone steers the group by the Handover's Steering, if any, as Steer
// does: for a process that serves the address alone, or again.
func (st *handoverState) steerAlone() error {
	if st.steering == nil {
		return nil
	}
	err := st.onSteerable(-1, func(fd int) error { return attachProgram(fd, steerProgram(*st.steering)) })
	if err != nil {
		return fmt.Errorf("steering the group of %s %s: %w", st.g.network, st.g.address, err)
	}
	return nil
}

// steerGenerations runs the new process's side of a handover under a
// Steering: it attaches the program of generationsProgram (agree then tells
// the old process so). It leaves st.follow to follow the group while the old members
// leave, attaching the program again after each leave, until none is left;
// then it steers the group by the Steering alone and hangs up on the old
// process.
//
// The kernel keeps the members in an array in join order; when one leaves,
// the last one takes its place. members lists the group in join order (a
// guess that findSlots checks with the kernel), and from then on this
// process applies the kernel's rule to each leave it sees. When the old
// process closes its members from the last one down (the example does),
// each close moves the new member of the same number into the freed place,
// and at the end new member m is at place m, where the Steering alone finds
// it. Between a leave and the next attach (a poll, 2 ms) a datagram named
// for the moved member goes by the kernel's hash, which QUIC retransmits.
func (st *handoverState) steerGenerations(conn *net.UnixConn, old []uint64, oldGen, oldPid int, ask func(string) (string, error)) error {
	sg := &steering{st: st, helper: -1, ask: ask}
	var arr []uint64
	for try := 1; ; try++ {
		members, err := st.stableMembers()
		if err != nil {
			return err
		}
		if !st.listsOwn(members) {
			if try == steerTries {
				return fmt.Errorf("the sockets given to TakeOver are not all in the group of %s %s: closed?", st.g.network, st.g.address)
			}
			continue
		}
		var guess []int
		for i, ino := range members {
			if slices.Contains(old, ino) {
				guess = append(guess, i)
			}
		}
		if len(guess) == 0 {
			return st.steerAlone()
		}
		found, err := sg.findSlots(len(members), guess, old, oldPid)
		if err != nil {
			st.recoverSteering()
			return err
		}
		if !slices.Equal(found, guess) {
			st.recoverSteering()
			return fmt.Errorf("the group of %s %s was reordered (a member left since the new ones joined): the old members are at %v, not where they joined (%v)", st.g.network, st.g.address, found, guess)
		}
		if err := sg.attach(st.generationsProgram(members, old, oldGen)); err != nil {
			st.recoverSteering()
			return err
		}
		again, err := st.stableMembers()
		if err == nil && slices.Equal(again, members) {
			arr = members
			break
		}
		if err == nil && try == steerTries {
			err = fmt.Errorf("the group of %s %s changed during each of %d tries to steer it", st.g.network, st.g.address, steerTries)
		}
		if err != nil {
			st.recoverSteering()
			return err
		}
	}
	if testHookSteered != nil {
		testHookSteered()
	}
	st.follow = func(stop <-chan struct{}) {
		defer conn.Close()
		for slices.ContainsFunc(arr, func(ino uint64) bool { return slices.Contains(old, ino) }) {
			select {
			case <-stop:
				return
			case <-time.After(pollInterval):
			}
			members, err := st.stableMembers()
			if err != nil || !st.listsOwn(members) {
				// EMFILE, a group that kept changing, or a listing that
				// missed this process's own sockets (seen under load):
				// try again.
				continue
			}
			if next := afterLeaves(arr, members); !slices.Equal(next, arr) {
				arr = next
				_ = sg.attach(st.generationsProgram(arr, old, oldGen))
			}
		}
		for m, s := range st.socks {
			if slices.Index(arr, s.ino) != m {
				// Closed in another order: the table stays, for this
				// generation alone.
				return
			}
		}
		_ = st.steerAlone()
	}
	return nil
}

// stableMembers returns the group's members as two reads in a row list
// them: a read while a member leaves may skip another one where the kernel
// resumes its listing by position (/proc, or a dump of a group too large
// for its first buffer; see diagSockets).
func (st *handoverState) stableMembers() ([]uint64, error) {
	prev, err := st.members()
	for try := 0; err == nil && try < steerTries; try++ {
		var cur []uint64
		if cur, err = st.members(); err == nil && slices.Equal(cur, prev) {
			return cur, nil
		}
		prev = cur
	}
	if err == nil {
		err = fmt.Errorf("the group of %s %s changed during each of %d reads", st.g.network, st.g.address, steerTries)
	}
	return nil, err
}

// listsOwn reports whether members lists every socket of this process.
func (st *handoverState) listsOwn(members []uint64) bool {
	for _, s := range st.socks {
		if !slices.Contains(members, s.ino) {
			return false
		}
	}
	return true
}

// recoverSteering puts the Steering alone back after a failed handover.
func (st *handoverState) recoverSteering() { _ = st.steerAlone() }

// afterLeaves returns the kernel's array of members arr after the members
// missing from members left, from the last place down, and those of
// members missing from arr joined.
func afterLeaves(arr, members []uint64) []uint64 {
	next := slices.Clone(arr)
	for i := len(next) - 1; i >= 0; i-- {
		if !slices.Contains(members, next[i]) {
			next[i] = next[len(next)-1]
			next = next[:len(next)-1]
		}
	}
	for _, ino := range members {
		if !slices.Contains(next, ino) {
			next = append(next, ino)
		}
	}
	return next
}

// generationsProgram returns the program of a handover under a Steering,
// for the group whose array of members is arr: the byte at Offset names the
// member, the next one the generation. A datagram of generation oldGen goes
// to the old process's member it names (old[m] is member m), one of this
// process's generation to this process's member it names, and any other one
// (too short, with a bit of HashIf set, of another generation, or naming no
// member left) to one of this process's members, by its source port.
func (st *handoverState) generationsProgram(arr, old []uint64, oldGen int) []unix.SockFilter {
	s := *st.steering
	places := func(inos []uint64) []int {
		p := make([]int, len(inos))
		for m, ino := range inos {
			p[m] = slices.Index(arr, ino)
		}
		return p
	}
	oldPlaces := places(old)
	newInos := make([]uint64, len(st.socks))
	for m, sk := range st.socks {
		newInos[m] = sk.ino
	}
	newPlaces := places(newInos)
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
	a.op(unix.SockFilter{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, K: uint32(st.gen), Jf: 1})
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
