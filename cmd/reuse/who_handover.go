package main

import (
	"encoding/hex"
	"net"
	"sort"
	"strconv"
	"strings"

	"github.com/sockreuse/reuse/internal/sockdiag"
)

// whoHandover is a process of a reuse.Handover on the port: one serving a
// slot, or one holding the address's steering lock, which it holds while a
// handover is under way. The rendezvous socket of a slot passes from each
// process to its successor; each serving process also binds a name that
// tells its generation.
type whoHandover struct {
	// Network and Address: "" where the name is hashed.
	Network string `json:"network,omitempty"`
	Address string `json:"address,omitempty"`
	UID     int    `json:"uid"`
	// Slot is the slot served, unknown where SlotHashed: the Handover
	// hashed the name (a long address or slot name).
	Slot       string `json:"slot,omitempty"`
	SlotHashed bool   `json:"slot_hashed,omitempty"`
	PIDs       []int  `json:"pids,omitempty"`
	Command    string `json:"command,omitempty"`
	NoPID      string `json:"no_pid,omitempty"`
	// UnderWay: the steering lock is held, a handover is under way.
	UnderWay bool `json:"under_way,omitempty"`
	// Generations: the generation of each process serving the slot.
	Generations []whoGeneration `json:"generations,omitempty"`

	inode  uint64
	hashed bool // the name is hashed: the port's unknown until its process is
	gen    int  // a generation's tag: the generation, else -1
}

// whoGeneration is the generation of a process serving a slot: 0 for the
// first process, one more for each successor (after 255, 0).
type whoGeneration struct {
	PID        int `json:"pid"`
	Generation int `json:"generation"`
}

// handoverPrefix starts the abstract Unix socket names of a Handover
// (rendezvous_linux.go): "reuse/UID/NETWORK/ADDRESS/slot/HEXSLOT/" for a
// slot's rendezvous, a listener, and ".../steering/" for the steering lock,
// a bound socket; or, where that prefix is long, "reuse/UID/#HASH/"; then
// 32 random hexadecimal digits.
const handoverPrefix = "reuse/"

// readHandovers lists the Handovers of port, and of hashed names that may
// be the port's (see matchHashed), from the kernel's listing of abstract
// Unix sockets with their owners, the one a Handover reads to meet its
// peers. As the Handover does, it trusts a name only where the socket's
// owner is the user the name names: another user may bind any name.
func readHandovers(port int) ([]whoHandover, error) {
	var hs []whoHandover
	err := sockdiag.DumpUnix(handoverPrefix, func(s sockdiag.UnixSocket) {
		h, ok := parseHandoverName(s.Name)
		if !ok || h.UID != s.UID {
			return
		}
		switch {
		case h.gen >= 0 && s.State != sockdiag.Close, h.gen >= 0 && !h.hashed && !onPort(h.Address, port):
			return
		case h.gen >= 0:
		case h.hashed && s.State == sockdiag.Listen:
			h.SlotHashed = true
		case h.hashed && s.State == sockdiag.Close:
			h.UnderWay = true
		case h.hashed, h.UnderWay && s.State != sockdiag.Close, !h.UnderWay && s.State != sockdiag.Listen:
			return // a rendezvous listens, the lock is bound; accepted sockets repeat their listener's name
		case !onPort(h.Address, port):
			return
		}
		h.inode = s.Inode
		hs = append(hs, h)
	})
	return hs, err
}

// parseHandoverName reads a Handover's name: the user it names, and its
// network, address and slot, or its hash.
func parseHandoverName(name string) (whoHandover, bool) {
	name = strings.TrimPrefix(name, handoverPrefix)
	i := strings.LastIndexByte(name, '/')
	if i < 0 || !isRandomPart(name[i+1:]) {
		return whoHandover{}, false
	}
	parts := strings.SplitN(name[:i], "/", 4)
	uid, err := strconv.Atoi(parts[0])
	if err != nil || len(parts) < 2 {
		return whoHandover{}, false
	}
	h := whoHandover{UID: uid, gen: -1}
	if strings.HasPrefix(parts[1], "#") {
		// "#HASH", then a generation's "/N"
		h.hashed = true
		if len(parts) == 3 {
			h.gen, err = strconv.Atoi(parts[2])
		}
		return h, len(parts) <= 3 && err == nil
	}
	if len(parts) != 4 {
		return whoHandover{}, false
	}
	h.Network, h.Address = parts[1], parts[2]
	switch tail := parts[3]; {
	case tail == "steering":
		h.UnderWay = true
	case strings.HasPrefix(tail, "gen/"):
		hexSlot, gen, ok := strings.Cut(strings.TrimPrefix(tail, "gen/"), "/")
		slot, herr := hex.DecodeString(hexSlot)
		var gerr error
		if h.gen, gerr = strconv.Atoi(gen); !ok || herr != nil || gerr != nil || h.gen < 0 {
			return whoHandover{}, false
		}
		h.Slot = string(slot)
	case strings.HasPrefix(tail, "slot/"):
		slot, err := hex.DecodeString(strings.TrimPrefix(tail, "slot/"))
		if err != nil {
			return whoHandover{}, false
		}
		h.Slot = string(slot)
	default:
		return whoHandover{}, false
	}
	return h, true
}

// isRandomPart reports whether s is 16 random bytes in hexadecimal, the
// end of a Handover's names.
func isRandomPart(s string) bool {
	if len(s) != 32 {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil
}

// withGenerations gives each slot of hs the generations of its processes,
// from the tags of hs, which it leaves out.
func withGenerations(hs []whoHandover) []whoHandover {
	var slots, tags []whoHandover
	for _, h := range hs {
		if h.gen >= 0 {
			tags = append(tags, h)
		} else {
			slots = append(slots, h)
		}
	}
	for i := range slots {
		h := &slots[i]
		for _, g := range tags {
			sameSlot := g.hashed && h.SlotHashed || !g.hashed && g.Network == h.Network && g.Address == h.Address && g.Slot == h.Slot
			if !h.UnderWay && sameSlot && len(g.PIDs) == 1 && sharePID(g.PIDs, h.PIDs) {
				h.Generations = append(h.Generations, whoGeneration{g.PIDs[0], g.gen})
			}
		}
	}
	return slots
}

// matchHashed keeps of hs the names whose address is known, and the
// hashed ones held by a process that also holds an unconnected socket of
// the port (of socks), whose address they leave unnamed: that process may
// serve other addresses too.
func matchHashed(hs []whoHandover, socks []whoSocket) []whoHandover {
	kept := hs[:0]
	for _, h := range hs {
		onPort := !h.hashed
		for _, s := range socks {
			onPort = onPort || s.Remote == "" && s.UID == h.UID && sharePID(s.PIDs, h.PIDs)
		}
		if onPort {
			kept = append(kept, h)
		}
	}
	sort.SliceStable(kept, func(i, j int) bool {
		a, b := kept[i], kept[j]
		if a.hashed != b.hashed {
			return b.hashed
		}
		if a.Network+a.Address != b.Network+b.Address {
			return a.Network+a.Address < b.Network+b.Address
		}
		return !a.UnderWay && (b.UnderWay || a.Slot < b.Slot)
	})
	return kept
}

// onPort reports whether address, host:port, has port.
func onPort(address string, port int) bool {
	_, p, err := net.SplitHostPort(address)
	return err == nil && p == strconv.Itoa(port)
}

// sharePID reports whether a and b have a pid in common.
func sharePID(a, b []int) bool {
	for _, p := range a {
		for _, q := range b {
			if p == q {
				return true
			}
		}
	}
	return false
}
