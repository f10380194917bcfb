package main

import (
	"bufio"
	"encoding/hex"
	"net"
	"os"
	"sort"
	"strconv"
	"strings"
)

// whoHandover is a process of a reuse.Handover on the port: one serving a
// slot, or one holding the address's steering lock, which it holds while a
// handover is under way.
type whoHandover struct {
	Network string `json:"network"`
	Address string `json:"address"`
	UID     int    `json:"uid"`
	Slot    string `json:"slot,omitempty"` // "" for the steering lock; "#..." where the name was hashed
	PIDs    []int  `json:"pids,omitempty"`
	Command string `json:"command,omitempty"`
	NoPID   string `json:"no_pid,omitempty"`
	// UnderWay: the steering lock is held, a handover is under way.
	UnderWay bool `json:"under_way,omitempty"`

	inodes []uint64
}

// handoverPrefix starts the abstract Unix socket names of a Handover's
// rendezvous: "@reuse/UID/NETWORK/ADDRESS/slot/SLOT" and
// ".../steering" (handover_linux.go), each followed by "/" and 32 random
// hexadecimal digits once issue 19's unpredictable names land. A name
// whose prefix was hashed (a long address) names no address, and is left
// out. The uid is the name's, not the socket's owner's, whom
// /proc/net/unix does not give: a stranger may bind such a name.
const handoverPrefix = "@reuse/"

// readHandovers lists the Handovers of port from the listening abstract
// Unix sockets of /proc/net/unix, and the inodes of their sockets. A
// handover publishes no generation there.
func readHandovers(port int) ([]whoHandover, []uint64) {
	f, err := os.Open("/proc/net/unix")
	if err != nil {
		return nil, nil
	}
	defer f.Close()
	var hs []whoHandover
	var inodes []uint64
	seen := map[string]bool{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// Num RefCount Protocol Flags Type St Inode Path
		fields := strings.Fields(sc.Text())
		if len(fields) < 8 || !strings.HasPrefix(fields[7], handoverPrefix) {
			continue
		}
		ino, err := strconv.ParseUint(fields[6], 10, 64)
		name := strings.Join(fields[7:], " ")
		if err != nil || seen[name] { // a listener's accepted sockets repeat its name
			continue
		}
		seen[name] = true
		h, ok := parseHandoverName(name)
		if !ok {
			continue
		}
		if _, p, err := net.SplitHostPort(h.Address); err != nil || p != strconv.Itoa(port) {
			continue
		}
		h.inodes = []uint64{ino}
		hs = append(hs, h)
		inodes = append(inodes, ino)
	}
	sort.SliceStable(hs, func(i, j int) bool {
		a, b := hs[i], hs[j]
		if a.Network+a.Address != b.Network+b.Address {
			return a.Network+a.Address < b.Network+b.Address
		}
		return a.Slot != "" && b.Slot == "" || a.Slot != "" && a.Slot < b.Slot
	})
	return hs, inodes
}

// parseHandoverName reads a rendezvous name.
func parseHandoverName(name string) (whoHandover, bool) {
	parts := strings.SplitN(strings.TrimPrefix(name, handoverPrefix), "/", 4)
	if len(parts) != 4 {
		return whoHandover{}, false
	}
	uid, err := strconv.Atoi(parts[0])
	if err != nil {
		return whoHandover{}, false
	}
	h := whoHandover{UID: uid, Network: parts[1], Address: parts[2]}
	tail := parts[3]
	if i := strings.LastIndexByte(tail, '/'); i >= 0 && isRandomPart(tail[i+1:]) {
		tail = tail[:i] // the random part of an unpredictable name (issue 19)
	}
	switch {
	case tail == "steering":
		h.UnderWay = true
	case strings.HasPrefix(tail, "slot/"):
		h.Slot = strings.TrimPrefix(tail, "slot/")
	case strings.HasPrefix(tail, "slot#"):
		h.Slot = strings.TrimPrefix(tail, "slot")
	default:
		return whoHandover{}, false
	}
	return h, true
}

// isRandomPart reports whether s is 16 random bytes in hexadecimal, the
// end of the names that issue 19 makes unpredictable.
func isRandomPart(s string) bool {
	if len(s) != 32 {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil
}
