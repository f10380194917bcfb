package reuse

import (
	"fmt"
	"net"
	"slices"
	"time"
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
		if err := sg.attach(generationsProgram(*st.steering, oldGen, st.gen, indexesIn(members, old), indexesIn(members, st.inodes()))); err != nil {
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
				_ = sg.attach(generationsProgram(*st.steering, oldGen, st.gen, indexesIn(arr, old), indexesIn(arr, st.inodes())))
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

// indexesIn returns the index of each of inos in arr, -1 where missing.
func indexesIn(arr, inos []uint64) []int {
	indexes := make([]int, len(inos))
	for m, ino := range inos {
		indexes[m] = slices.Index(arr, ino)
	}
	return indexes
}

// inodes returns the inodes of this process's sockets.
func (st *handoverState) inodes() []uint64 {
	inos := make([]uint64, len(st.socks))
	for m, s := range st.socks {
		inos[m] = s.ino
	}
	return inos
}
