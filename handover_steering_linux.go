package reuse

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"time"

	"golang.org/x/sys/unix"
)

// This file steers a group during a handover: one loop attaches a program
// that keeps new connections or datagrams off the old process's sockets,
// with or without a Steering; a plain-TCP helper attaches it where all
// the process's sockets are MPTCP.

// How often a waiter polls the kernel, and how many times a read of the
// group that keeps changing is tried.
const (
	pollInterval = 2 * time.Millisecond
	steerTries   = 5
)

// steering is a program attached to the group during a handover.
type steering struct {
	st     *handoverState
	helper int                          // the plain-TCP helper's descriptor, or -1
	ask    func(string) (string, error) // sends the old process a message, returns its answer
	hint   []int                        // where the old process believes its sockets sit (oldSockets.at)
}

// programFor builds the program for a group whose array is members (in join
// order, the helper left out), of which the old process's sockets are at
// the indexes oldAt (in the kernel's array, found by probes).
type programFor func(members []uint64, oldAt []int) ([]unix.SockFilter, error)

// steerAround attaches to the group the program that build returns, and
// returns the members it was built for; nil, attaching nothing, when no old
// member is left. The members are read again after the attach: a member
// that joined or left meanwhile moved the indexes, and the loop tries
// again, steerTries times at most. On an error, the caller rolls back.
func (sg *steering) steerAround(old []uint64, build programFor) ([]uint64, error) {
	st := sg.st
	for try := 1; ; try++ {
		members, err := st.stableMembers()
		if err == nil && sg.helper < 0 && !st.canAttach() {
			// Opened after reading the members, so that it joins
			// microseconds before the program is attached.
			if sg.helper, err = st.openHelper(); err != nil {
				err = fmt.Errorf("opening a plain-TCP member to steer the group of %s %s: %w", st.g.network, st.g.address, err)
			}
		}
		if err != nil {
			return nil, err
		}
		members = sg.withoutHelper(members)
		// A read that lacks this process's own sockets skipped entries
		// (see stableMembers), and may lack old ones too.
		if !st.listsOwn(members) {
			if try == steerTries {
				return nil, fmt.Errorf("the sockets given to TakeOver are not all in the group of %s %s: closed?", st.g.network, st.g.address)
			}
			time.Sleep(pollInterval)
			continue
		}
		if !containsAny(members, old) {
			return nil, nil
		}
		guess := sg.guess(members, old)
		oldAt, err := sg.locate(len(members), guess, old)
		if err != nil {
			return nil, err
		}
		if testHookLocated != nil {
			testHookLocated(guess, oldAt)
		}
		prog, err := build(members, oldAt)
		if err == nil {
			err = sg.attach(prog)
		}
		if err != nil {
			return nil, err
		}
		if testHookSteered != nil {
			testHookSteered()
		}
		again, err := st.stableMembers()
		if err == nil && slices.Equal(sg.withoutHelper(again), members) {
			return members, nil
		}
		if err == nil && try == steerTries {
			err = fmt.Errorf("the group of %s %s changed during each of %d tries to steer it", st.g.network, st.g.address, steerTries)
		}
		if err != nil {
			return nil, err
		}
	}
}

// guess returns the indexes of the group's array, members, where the old
// process's sockets old may be, the likeliest first: where it says they
// sit (where they joined, or its predecessor's were), then where they
// joined (right until a member leaves: each leave moves the last member
// into the freed index).
func (sg *steering) guess(members, old []uint64) []int {
	var guess []int
	for _, i := range sg.hint {
		if i < len(members) && !slices.Contains(guess, i) {
			guess = append(guess, i)
		}
	}
	for i, ino := range members {
		if slices.Contains(old, ino) && !slices.Contains(guess, i) {
			guess = append(guess, i)
		}
	}
	return guess
}

// testHookLocated, if set, is told each guess of steerAround and where
// the probes found the old sockets.
var testHookLocated func(guess, found []int)

// testHookSteered, if set, runs after each attach of steerAround.
var testHookSteered func()

// withoutHelper returns members without the helper.
func (sg *steering) withoutHelper(members []uint64) []uint64 {
	ino := sg.helperIno()
	return slices.DeleteFunc(members, func(m uint64) bool { return m == ino })
}

// steer steers the group away from the old process's sockets old, for a
// handover without a Steering. It returns nil, and attaches nothing, when
// no old member is left.
//
// Of n members (the helper not counted), e of them old, the program picks
// among the indexes 0..n-e that are not old ones: while the old members
// close one by one, only members past those indexes move (the helper,
// which joined last, first), so a pick never falls on an old, moved or
// missing member until the last old one is gone; then a pick past the end
// falls back to the kernel's hash among members that are all new.
//
// Once the old members are gone, this process's sockets hold their
// indexes (each leave moves the member that joined last), which st.at
// keeps for this process's own successor.
func (st *handoverState) steer(old []uint64, hint []int, ask func(string) (string, error)) (*steering, error) {
	sg := &steering{st: st, helper: -1, ask: ask, hint: hint}
	var at []int
	members, err := sg.steerAround(old, func(members []uint64, oldAt []int) ([]unix.SockFilter, error) {
		at = oldAt
		picks := picksAround(len(members), oldAt)
		if len(picks) == 0 {
			return nil, fmt.Errorf("every member of the group of %s %s belongs to the old process: none to steer to", st.g.network, st.g.address)
		}
		return spreadProgram(st.g.network == "udp", st.v6Family(), picks), nil
	})
	if err != nil || members == nil {
		if rerr := sg.release(); err == nil {
			err = rerr
		}
		return nil, err
	}
	if len(at) == len(st.socks) {
		st.at = at
	}
	return sg, nil
}

// picksAround returns the indexes 0..n-len(oldAt) that are not in oldAt,
// or, where the old members outnumber the others, every index not in oldAt:
// while the old ones close, a pick may then fall past the end, and the
// hash pick an old one.
func picksAround(n int, oldAt []int) []int {
	var picks []int
	for i := 0; i <= n-len(oldAt); i++ {
		if !slices.Contains(oldAt, i) {
			picks = append(picks, i)
		}
	}
	if len(picks) > 0 {
		return picks
	}
	for i := 0; i < n; i++ {
		if !slices.Contains(oldAt, i) {
			picks = append(picks, i)
		}
	}
	return picks
}

// steerGenerations steers the group for a handover under a Steering: the
// program of generationsProgram (agree then tells the old process so). It
// leaves st.follow to follow the group while the old members leave,
// attaching the program again after each leave, until none is left; then it
// steers the group by the Steering alone and hangs up on the old process.
//
// The program needs the old members where they joined: from then on this
// process applies the kernel's rule to each leave it sees. When the old
// process closes its members from the last one down (the example does),
// each close moves the new member of the same number into the freed index,
// and at the end new member m is at index m, where the Steering alone finds
// it. Between a leave and the next attach (a poll, 2 ms) a datagram named
// for the moved member goes by the kernel's hash, which QUIC retransmits.
func (st *handoverState) steerGenerations(conn *net.UnixConn, old []uint64, oldGen int, ask func(string) (string, error)) error {
	sg := &steering{st: st, helper: -1, ask: ask}
	arr, err := sg.steerAround(old, func(members []uint64, oldAt []int) ([]unix.SockFilter, error) {
		joinedAt := indexesOf(members, old)
		if !slices.Equal(oldAt, joinedAt) {
			return nil, fmt.Errorf("the group of %s %s was reordered (a member left since the new ones joined): the old members are at %v, not where they joined (%v)", st.g.network, st.g.address, oldAt, joinedAt)
		}
		return st.generationsFor(members, old, oldGen), nil
	})
	if err != nil || arr == nil {
		st.recoverSteering()
		return err
	}
	st.follow = func(stop <-chan struct{}) {
		defer conn.Close()
		sg.followLeaves(arr, old, oldGen, stop)
	}
	return nil
}

// indexesOf returns the index in arr of each of inos, -1 where missing.
func indexesOf(arr, inos []uint64) []int {
	at := make([]int, len(inos))
	for m, ino := range inos {
		at[m] = slices.Index(arr, ino)
	}
	return at
}

// generationsFor returns the program of a handover under a Steering for
// the group whose array of members is arr.
func (st *handoverState) generationsFor(arr, old []uint64, oldGen int) []unix.SockFilter {
	return generationsProgram(*st.steering, oldGen, st.gen, indexesOf(arr, old), indexesOf(arr, st.inodes()))
}

// followLeaves attaches the program again after each leave of an old
// member, until none is left or stop; then, if the new members ended at
// their own numbers, the Steering alone steers the group.
func (sg *steering) followLeaves(arr, old []uint64, oldGen int, stop <-chan struct{}) {
	st := sg.st
	for containsAny(arr, old) {
		select {
		case <-stop:
			return
		case <-time.After(pollInterval):
		}
		members, err := st.stableMembers()
		if err != nil || !st.listsOwn(members) {
			// EMFILE, a group that kept changing, or a listing that
			// missed this process's own sockets (seen under load): try
			// again.
			continue
		}
		if next := afterLeaves(arr, members); !slices.Equal(next, arr) {
			arr = next
			_ = sg.attach(st.generationsFor(arr, old, oldGen))
		}
	}
	st.markReleased()
	if slices.Equal(indexesOf(arr, st.inodes()), indexes(len(st.socks))) {
		_ = st.steerAlone()
	} // else closed in another order: the table stays, for this generation alone
}

// afterLeaves returns the kernel's array of members arr after the members
// missing from members left, from the last index down, and those of
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

// steerAlone steers the group by the Handover's Steering, if any, as Steer
// does: for a process that serves the address alone, or again.
func (st *handoverState) steerAlone() error {
	if st.steering == nil {
		return nil
	}
	err := st.onAttachable(-1, func(fd int) error { return attachProgram(fd, steerProgram(*st.steering)) })
	if err != nil {
		return fmt.Errorf("steering the group of %s %s: %w", st.g.network, st.g.address, err)
	}
	return nil
}

// recoverSteering puts back how the group is steered without a handover:
// by the Steering alone, or by the kernel's hash.
func (st *handoverState) recoverSteering() {
	if st.steering != nil {
		_ = st.steerAlone()
		return
	}
	_ = st.detachAny()
}

// canAttach reports whether one of the process's own sockets can attach a
// program: MPTCP listeners refuse with EOPNOTSUPP.
func (st *handoverState) canAttach() bool {
	return slices.ContainsFunc(st.socks, func(s sockInfo) bool { return s.proto != unix.IPPROTO_MPTCP })
}

// helperIno returns the helper's inode, or 0.
func (sg *steering) helperIno() uint64 {
	var stat unix.Stat_t
	if sg.helper < 0 || unix.Fstat(sg.helper, &stat) != nil {
		return 0
	}
	return stat.Ino
}

// attach sets prog as the group's program.
func (sg *steering) attach(prog []unix.SockFilter) error {
	err := sg.st.onAttachable(sg.helper, func(fd int) error { return attachProgram(fd, prog) })
	if err != nil {
		return fmt.Errorf("steering the group of %s %s: %w", sg.st.g.network, sg.st.g.address, err)
	}
	return nil
}

// release ends the steering, once the old members are gone or on a
// failure: it detaches the program, so that the kernel's hash spreads the
// load again, and closes the helper.
func (sg *steering) release() error {
	err := sg.st.detach(sg.helper)
	if sg.helper >= 0 {
		unix.Close(sg.helper)
		sg.helper = -1
	}
	return err
}

// detachAny detaches the group's program, through a helper where all the
// process's sockets are MPTCP.
func (st *handoverState) detachAny() error {
	helper := -1
	if !st.canAttach() {
		var err error
		if helper, err = st.openHelper(); err != nil {
			return fmt.Errorf("opening a plain-TCP member to restore the hash of the group of %s %s: %w", st.g.network, st.g.address, err)
		}
		defer unix.Close(helper)
	}
	return st.detach(helper)
}

// detach detaches the group's program through helper, or, if -1, one of the
// process's own sockets.
func (st *handoverState) detach(helper int) error {
	err := st.onAttachable(helper, detachProgram)
	if errors.Is(err, errors.ErrUnsupported) {
		// Linux before 5.3, which cannot detach a program: it stays, and
		// its picks past the end of the group fall back to the hash (all
		// of them once the new process has as many sockets as the old one
		// had).
		return nil
	}
	if err != nil {
		return fmt.Errorf("restoring the hash of the group of %s %s: %w", st.g.network, st.g.address, err)
	}
	return nil
}

// onAttachable runs fn on helper, if not -1, else on one of the process's
// own sockets that can attach a program.
func (st *handoverState) onAttachable(helper int, fn func(fd int) error) error {
	if helper >= 0 {
		return fn(helper)
	}
	for _, s := range st.socks {
		if s.proto != unix.IPPROTO_MPTCP {
			return withFD(s.rc, func(fd uintptr) error { return fn(int(fd)) })
		}
	}
	return errors.New("no socket can steer the group")
}

// openHelper opens a plain-TCP listener that joins the group last, with
// raw system calls. It drops every SYN (IP_MINTTL): one that the kernel's
// hash gives it before the program is attached, or after it is detached,
// is dropped, not answered, and the client sends it again a second later,
// when the helper is gone.
func (st *handoverState) openHelper() (int, error) {
	return joinHelper(st.sa, unix.SOCK_STREAM, st.v6, st.dev)
}
