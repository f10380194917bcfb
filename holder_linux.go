package reuse

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"os/user"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sockreuse/reuse/internal/sockdiag"
)

// binder is the socket of a refused call, as the kernel compares it with
// the sockets on its port (inet_bind_conflict, udp_lib_lport_inuse,
// inet_rcv_saddr_equal).
type binder struct {
	udp       bool
	local     netip.AddrPort // IPv4 for an AF_INET socket, IPv6 for an AF_INET6 one
	v6only    bool
	reuseAddr bool
	reusePort bool
	uid       int
	remote    netip.AddrPort // connect: the remote address; else invalid
}

// explainInUse returns err, the error of a bind or connect of the package
// that failed as e (a *net.OpError of net), as an *InUseError that names
// the sockets in the way, if err is a refusal for an address in use and
// any are found; else err itself.
func explainInUse(e *net.OpError, err error, opts []sockOpt) error {
	var errno unix.Errno
	if !errors.As(err, &errno) || (errno != unix.EADDRINUSE && errno != unix.EADDRNOTAVAIL) {
		return err
	}
	var se *os.SyscallError
	connect := errors.As(err, &se) && strings.HasPrefix(se.Syscall, "connect")
	if connect != (errno == unix.EADDRNOTAVAIL) {
		return err // a bind's EADDRNOTAVAIL is an address not on this host
	}
	b, ok := binderOf(e, opts, connect)
	if !ok {
		return err
	}
	socks, err2 := sockdiag.OnPort(int(b.local.Port()))
	if err2 != nil {
		return err
	}
	hs := holders(b, socks)
	if len(hs) == 0 {
		return err
	}
	return &InUseError{Err: err, Holders: hs}
}

// binderOf describes the socket that net made for e's call, as Go's net
// chooses its family (favoriteAddrFamily): IPv6 for a wildcard listen on
// "tcp" or "udp", dual-stack; IPV6_V6ONLY for "tcp6" and "udp6".
func binderOf(e *net.OpError, opts []sockOpt, connect bool) (binder, bool) {
	local, remote := e.Addr, net.Addr(nil)
	if e.Op == "dial" {
		local, remote = e.Source, e.Addr
	}
	b := binder{udp: strings.HasPrefix(e.Net, "udp"), uid: os.Geteuid()}
	var ok bool
	if b.local, ok = addrPort(local); !ok {
		return b, false
	}
	if connect {
		if b.remote, ok = addrPort(remote); !ok {
			return b, false
		}
	}
	// Go's listeners set SO_REUSEADDR themselves; the options may clear it.
	b.reuseAddr = !b.udp && e.Op == "listen"
	for _, o := range opts {
		switch o.name {
		case soReuseAddr:
			b.reuseAddr = o.value == 1
		case soReusePort:
			b.reusePort = o.value == 1
		}
	}
	a := b.local.Addr().Unmap()
	r := b.remote.Addr().Unmap()
	switch last := e.Net[len(e.Net)-1]; {
	case last == '4':
	case last == '6':
		b.v6only = true
		a = netip.AddrFrom16(a.As16())
	case e.Op == "listen" && a.IsUnspecified(), a.Is6() || (remote != nil && r.Is6()):
		a = netip.AddrFrom16(a.As16()) // dual-stack, v4-mapped where IPv4
		if a.Unmap().IsUnspecified() {
			a = netip.IPv6Unspecified()
		}
	}
	b.local = netip.AddrPortFrom(a, b.local.Port())
	return b, true
}

// addrPort returns the address and port of a *net.TCPAddr or *net.UDPAddr.
func addrPort(a net.Addr) (netip.AddrPort, bool) {
	var ap netip.AddrPort
	switch a := a.(type) {
	case *net.TCPAddr:
		if a == nil {
			return ap, false
		}
		ap = a.AddrPort()
	case *net.UDPAddr:
		if a == nil {
			return ap, false
		}
		ap = a.AddrPort()
	default:
		return ap, false
	}
	if !ap.Addr().IsValid() {
		ap = netip.AddrPortFrom(netip.IPv4Unspecified(), ap.Port())
	}
	return ap, ap.Port() != 0
}

// holders returns the sockets of socks in the way of b, with their owners
// and rules. Where the kernel's rules, as the package knows them, find none
// in the way, it returns every socket whose address overlaps, with a rule
// that says so, rather than nothing.
func holders(b binder, socks []sockdiag.Socket) []Holder {
	var hs []Holder
	var in, maybe, overlapping []sockdiag.Socket
	var maybeRules []string
	for _, s := range socks {
		if (s.Proto == "udp") != b.udp {
			continue
		}
		var rule string
		if b.remote.IsValid() {
			if s.Remote.Addr().Unmap() != b.remote.Addr().Unmap() || s.Remote.Port() != b.remote.Port() || s.Local.Addr().Unmap() != b.local.Addr().Unmap() {
				continue
			}
			rule = "the same connection (local and remote address and port) exists already"
			if s.State == sockdiag.TimeWait {
				rule += ", closed and waiting in TIME_WAIT"
			}
		} else {
			if !overlap(b, s) {
				continue
			}
			var certain bool
			if rule, certain = conflictRule(b, s); rule == "" {
				overlapping = append(overlapping, s)
				continue
			} else if !certain {
				maybe = append(maybe, s)
				maybeRules = append(maybeRules, rule)
				continue
			}
		}
		hs = append(hs, holderOf(s, rule))
		in = append(in, s)
	}
	// A socket in the way whatever options it set explains the refusal;
	// one in the way only without an option is named only where none is
	// certain, and the rule says what it is inferred to lack.
	if len(hs) == 0 {
		for i, s := range maybe {
			hs = append(hs, holderOf(s, maybeRules[i]))
			in = append(in, s)
		}
	}
	if len(hs) == 0 {
		for _, s := range overlapping {
			hs = append(hs, holderOf(s, "its address overlaps, but by the kernel's rules as the package knows them it should not be in the way"))
			in = append(in, s)
		}
	}
	if len(hs) > 0 {
		findOwners(hs, in)
	}
	return hs
}

// holderOf is s as a Holder, but for its processes and user name.
func holderOf(s sockdiag.Socket, rule string) Holder {
	h := Holder{Network: s.Proto, Local: s.Local, Remote: s.Remote, State: stateName(s), UID: s.UID, Rule: rule}
	if s.State == sockdiag.TimeWait {
		h.TimeLeft = s.Expires
	}
	return h
}

// stateName names s's state as a Holder does.
func stateName(s sockdiag.Socket) string {
	switch {
	case s.State == sockdiag.Listen:
		return "listening"
	case s.State == sockdiag.Established:
		return "connected"
	case s.State == sockdiag.Close || s.State == sockdiag.BoundInactive:
		return "bound"
	}
	return s.State.String()
}

// findOwners fills in the processes holding hs, which are socks,
// and their users' names, or why the process cannot be known.
func findOwners(hs []Holder, socks []sockdiag.Socket) {
	inodes := make([]uint64, len(socks))
	for i, s := range socks {
		inodes[i] = s.Inode
	}
	owners, err := sockdiag.FindOwners(inodes)
	me := os.Geteuid()
	names := map[int]string{}
	for i := range hs {
		h := &hs[i]
		if h.UID >= 0 {
			name, ok := names[h.UID]
			if !ok {
				if u, err := user.LookupId(strconv.Itoa(h.UID)); err == nil {
					name = u.Username
				}
				names[h.UID] = name
			}
			h.User = name
		}
		if ps := owners.ByInode[inodes[i]]; len(ps) > 0 {
			h.PID, h.Command = ps[0].PID, ps[0].Command
		} else {
			h.NoPID = owners.Why(socks[i], me, err)
		}
	}
}

// loopback4IPv6 is what the kernel keeps as the IPv4 address of an IPv6 socket
// bound to a specific IPv6 address (LOOPBACK4_IPV6): it matches only the
// IPv4 wildcard.
var loopback4IPv6 = netip.AddrFrom4([4]byte{127, 0, 0, 6})

// v4Part returns the IPv4 address the kernel keeps for a socket on a
// (sk_rcv_saddr): a itself, the mapped one, 0.0.0.0 for ::, else
// LOOPBACK4_IPV6.
func v4Part(a netip.Addr) netip.Addr {
	switch {
	case a.Is4():
		return a
	case a.Is4In6():
		return a.Unmap()
	case a.IsUnspecified():
		return netip.IPv4Unspecified()
	}
	return loopback4IPv6
}

// overlap reports whether the kernel sees b's address and s's as the same
// for a bind (inet_rcv_saddr_equal, wildcards matching).
func overlap(b binder, s sockdiag.Socket) bool {
	a1, a2 := b.local.Addr(), s.Local.Addr()
	s2v6only := a2.Is6() && s.V6Only
	if a1.Is4() {
		if s2v6only {
			return false
		}
		x, y := a1, v4Part(a2)
		return x == y || x.IsUnspecified() || y.IsUnspecified()
	}
	mapped1, mapped2 := a1.Is4In6(), a2.Is4() || a2.Is4In6()
	any1, any2 := a1.IsUnspecified(), a2.Is6() && a2.IsUnspecified()
	switch {
	case mapped1 && mapped2:
		x, y := a1.Unmap(), v4Part(a2)
		return !s2v6only && (x == y || x.IsUnspecified() || y.IsUnspecified())
	case any1 && any2:
		return true
	case any2 && !(s2v6only && mapped1):
		return true
	case any1 && !(b.v6only && mapped2):
		return true
	}
	return a2.Is6() && a1 == a2
}

// conflicts applies the kernel's rule to b and s, given whether s set
// SO_REUSEADDR and SO_REUSEPORT, which cannot be read from outside.
func conflicts(b binder, s sockdiag.Socket, reuseAddr, reusePort bool) bool {
	sameGroup := b.reusePort && reusePort && (s.UID == b.uid || (!b.udp && s.TimeWait()))
	if b.udp {
		return !(b.reuseAddr && reuseAddr) && !sameGroup
	}
	return !(b.reuseAddr && reuseAddr && s.State != sockdiag.Listen) && !sameGroup
}

// conflictRule returns why s refuses b's bind, in a sentence, or "" if by
// the kernel's rules it does not, whatever options s set; certain if it
// refuses whatever options s set. Where it refuses only without an option,
// the sentence says that s lacks it, inferred.
func conflictRule(b binder, s sockdiag.Socket) (rule string, certain bool) {
	var why []string
	without := func(reuseAddr, reusePort bool) bool { return conflicts(b, s, reuseAddr, reusePort) }
	if !without(false, false) && !without(true, false) && !without(false, true) && !without(true, true) {
		return "", false
	}
	certain = without(true, true)
	needsNoReusePort := !without(false, true) && !without(true, true)
	needsNoReuseAddr := !without(true, false) && !without(true, true)
	if s.State == sockdiag.TimeWait {
		why = append(why, "a closed connection waits in TIME_WAIT ("+s.Expires.Round(time.Second).String()+" left) on the port")
	}
	switch {
	case !b.reusePort:
		why = append(why, "this socket does not share the port (no SO_REUSEPORT: Exclusive, or a dialer without a fixed group)")
	case s.UID != b.uid && s.UID >= 0:
		why = append(why, "it is another user's (uid "+strconv.Itoa(s.UID)+"), and SO_REUSEPORT shares a port only among sockets of one user")
	case needsNoReusePort && needsNoReuseAddr:
		why = append(why, "it does not share the port: it was bound without SO_REUSEPORT or SO_REUSEADDR (inferred)")
	case needsNoReusePort:
		why = append(why, "it does not share the port: it was bound without SO_REUSEPORT (inferred: Exclusive, or a program that does not set it)")
	case needsNoReuseAddr:
		why = append(why, "it was bound without SO_REUSEADDR (inferred)")
	}
	if w := coverage(b, s); w != "" {
		why = append(why, w)
	}
	return strings.Join(why, "; "), certain
}

// coverage says how s's address overlaps b's when they differ: a
// wildcard covering a specific address, or dual-stack covering IPv4.
func coverage(b binder, s sockdiag.Socket) string {
	a1, a2 := b.local.Addr(), s.Local.Addr()
	if a1.Unmap() == a2.Unmap() {
		return ""
	}
	name := func(a netip.Addr, v6only bool) string {
		switch {
		case a.Is6() && a.IsUnspecified() && !v6only:
			return "wildcard :: (IPv6 and IPv4)"
		case a.Unmap().IsUnspecified():
			return "wildcard " + a.String()
		}
		return a.Unmap().String()
	}
	mine, theirs := name(a1, b.v6only), name(a2, s.V6Only)
	if a2.Unmap().IsUnspecified() {
		return "its " + theirs + " covers the " + mine + " asked for"
	}
	if a1.Unmap().IsUnspecified() {
		return "the " + mine + " asked for covers its " + theirs
	}
	return "its " + theirs + " and the " + mine + " asked for are one to the kernel"
}
