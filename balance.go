package reuse

import (
	"errors"
	"fmt"
	"runtime"
	"sync"
)

// Balancing says what sharing a port under Share gives on this OS: whether
// several sockets can bind one address and port at all, and whether the OS
// spreads new connections and datagrams across them or hands them all to one.
type Balancing struct {
	// Shares reports whether Listen and ListenPacket under Share can bind
	// several sockets to one address and port here.
	Shares bool

	// Balances reports whether the OS spreads new connections and datagrams
	// across the sockets of a group, so that one accept or read loop per
	// socket shares the work.
	Balances bool

	// Option is the socket option that makes a listening group here:
	// "SO_REUSEPORT", "SO_REUSEPORT_LB" or "SO_REUSEADDR"; "" where Shares is
	// false.
	Option string

	// By says how the OS picks the socket of a group that receives a new
	// connection or datagram, such as "hash of the 4-tuple" or "the last
	// socket bound"; where Shares is false, it says why not.
	By string
}

// BalancingHere reports what sharing gives on this OS. Where a probe can
// tell, it does not go by the OS's name alone: on Linux (before 3.9) and
// FreeBSD (before 12) the option that Share sets may be missing, and then
// Shares and Balances are false. The probe sets the options of Share on an
// unbound socket, once; later calls return the same answer.
func BalancingHere() Balancing { return balancingHere() }

// balancingHere is the cached probe; a white-box test may replace it with
// the answer of another OS.
var balancingHere = sync.OnceValue(func() Balancing {
	return balanceFor(runtime.GOOS, shareOptionsWork())
})

// hash4 is how the OSes that balance pick a member.
const hash4 = "hash of the 4-tuple"

// balanceFor decides what sharing gives on goos, given whether the options
// that Share sets on listening and datagram sockets can be set there. The
// answers for OSes other than Linux come from their documentation and
// sources: FreeBSD's sys/netinet/in_pcb.c (SO_REUSEPORT_LB), DragonFly's
// sys/netinet/in_pcb.c, IBM's AIX 7.2.5 notes, Apple's and the BSDs'
// setsockopt(2) and Microsoft's "Using SO_REUSEADDR and SO_EXCLUSIVEADDRUSE".
func balanceFor(goos string, optionsWork bool) Balancing {
	var b Balancing
	switch goos {
	case "linux", "android":
		b = Balancing{true, true, "SO_REUSEPORT", hash4}
	case "freebsd":
		b = Balancing{true, true, "SO_REUSEPORT_LB", hash4}
	case "dragonfly":
		b = Balancing{true, true, "SO_REUSEPORT", hash4}
	case "aix":
		b = Balancing{true, true, "SO_REUSEPORT", hash4 + " (AIX 7.2.5 and later)"}
	case "darwin", "ios":
		b = Balancing{true, false, "SO_REUSEPORT", "the last socket bound"}
	case "netbsd", "openbsd":
		b = Balancing{true, false, "SO_REUSEPORT", "one socket of the group"}
	case "windows":
		b = Balancing{true, false, "SO_REUSEADDR", "undefined: one socket of the group"}
	case "solaris", "illumos":
		return Balancing{By: "Share is not supported: no SO_REUSEPORT in golang.org/x/sys"}
	default:
		return Balancing{By: "Share is not supported: no socket options on " + goos}
	}
	if !optionsWork {
		return Balancing{By: b.Option + " cannot be set on this kernel"}
	}
	return b
}

// errNoBalancing is the error of a Config with RequireBalancing where b, the
// answer of BalancingHere, does not balance.
func errNoBalancing(goos string, b Balancing) error {
	if !b.Shares {
		return fmt.Errorf("RequireBalancing: %s cannot share a port (%s): %w", goos, b.By, errors.ErrUnsupported)
	}
	return fmt.Errorf("RequireBalancing: %s shares a port with %s without balancing (%s gets the traffic): %w", goos, b.Option, b.By, errors.ErrUnsupported)
}

// checkBalancing returns the error of a listen call by c, before any socket
// is opened, where c demands balancing that this OS does not give.
func (c *Config) checkBalancing() error {
	if !c.RequireBalancing || c.Mode != Share {
		return nil
	}
	if b := BalancingHere(); !b.Balances {
		return errNoBalancing(runtime.GOOS, b)
	}
	return nil
}
