package reuse

import (
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// InUseError is a bind, or a connect from a fixed local port, refused
// because other sockets hold the address and port (EADDRINUSE), or because
// the same connection exists already (EADDRNOTAVAIL on Linux). On Linux,
// once such a call failed, the package looks for the sockets in the way
// (NETLINK_SOCK_DIAG and /proc, at no cost to calls that succeed), and the
// error names each one and the kernel's rule that refused the call. Other
// OSes give no such list: there the error is the OS's alone, as before.
//
// Listen, ListenPacket, ListenGroup, ListenPacketGroup, ListenMulticastUDP
// and Dial return it inside their *[net.OpError]; [errors.As] finds it, and
// [errors.Is] still matches the OS's errno (syscall.EADDRINUSE).
type InUseError struct {
	Err     error    // the refusal, as it reads without the lookup
	Holders []Holder // the sockets in the way, as the kernel listed them just after
}

// Holder is a socket in the way of a refused bind or connect, and the rule
// by which the kernel refused the call.
type Holder struct {
	Network string         // "tcp" (an MPTCP listener's too, which shares TCP's ports) or "udp"
	Local   netip.AddrPort // as the kernel has it: an IPv6 socket's address stays IPv6
	Remote  netip.AddrPort // the zero AddrPort unless it is connected
	// State is "listening", "bound", "connected", "TIME_WAIT", or the
	// kernel's name of a TCP state (FIN_WAIT2, CLOSE_WAIT, ...).
	State    string
	TimeLeft time.Duration // in TIME_WAIT, until the kernel frees the port
	UID      int           // the owner's user id; -1 in TIME_WAIT, where the kernel owns it
	User     string        // the owner's user name, "" where unknown
	PID      int           // the lowest pid of the processes holding it; 0 where unknown
	Command  string        // that process's command name
	NoPID    string        // why PID is 0: another user's process, or none that can be seen
	Rule     string        // why it refused the call, in a sentence; "inferred" marks a guess
}

// maxHolderLines bounds the lines of an InUseError's message: past it,
// the rest is counted, so that hundreds of holders fit on one screen.
const maxHolderLines = 8

// Error is the refusal's message, then the holders, one line for each
// kind (sockets alike but for their process or remote address share one),
// at most maxHolderLines of them.
func (e *InUseError) Error() string {
	var b strings.Builder
	b.WriteString(e.Err.Error())
	if len(e.Holders) == 0 {
		return b.String()
	}
	// Sockets alike but for their pid and remote address (a group, a
	// server's connections) share one line.
	type line struct {
		h     Holder
		n     int
		pids  []int
		maxTW time.Duration
	}
	var lines []*line
	index := map[Holder]*line{}
	for _, h := range e.Holders {
		k := h
		k.PID, k.Remote, k.TimeLeft = 0, netip.AddrPort{}, 0
		l := index[k]
		if l == nil {
			l = &line{h: h}
			index[k] = l
			lines = append(lines, l)
		}
		l.n++
		if h.PID != 0 && (len(l.pids) == 0 || l.pids[len(l.pids)-1] != h.PID) {
			l.pids = append(l.pids, h.PID)
		}
		l.maxTW = max(l.maxTW, h.TimeLeft)
	}
	if len(e.Holders) == 1 {
		b.WriteString("; held by ")
	} else {
		b.WriteString("; held by " + strconv.Itoa(len(e.Holders)) + " sockets:")
	}
	shown := 0
	for i, l := range lines {
		if i == maxHolderLines {
			b.WriteString("\n\tand " + strconv.Itoa(len(e.Holders)-shown) + " more sockets (errors.As gives every one as a reuse.Holder)")
			break
		}
		shown += l.n
		if len(e.Holders) > 1 {
			b.WriteString("\n\t")
		}
		if l.n > 1 {
			b.WriteString(strconv.Itoa(l.n) + " × ")
		}
		l.h.TimeLeft = l.maxTW
		writeHolder(&b, l.h, l.n, l.pids)
	}
	return b.String()
}

// Unwrap returns Err, so that errors.Is sees the OS's errno.
func (e *InUseError) Unwrap() error { return e.Err }

// writeHolder writes one line of an InUseError: n sockets like h, held by
// pids.
func writeHolder(b *strings.Builder, h Holder, n int, pids []int) {
	b.WriteString(h.Network + " " + h.Local.String())
	if h.Remote.IsValid() && n == 1 {
		b.WriteString("->" + h.Remote.String())
	}
	b.WriteString(" (" + h.State)
	if h.State == "TIME_WAIT" {
		b.WriteString(", " + h.TimeLeft.Round(time.Second).String() + " left")
	}
	b.WriteString(")")
	if h.UID >= 0 {
		b.WriteString(" of uid " + strconv.Itoa(h.UID))
		if h.User != "" {
			b.WriteString(" (" + h.User + ")")
		}
	}
	switch {
	case len(pids) > 0:
		if len(pids) == 1 {
			b.WriteString(", pid ")
		} else {
			b.WriteString(", pids ")
		}
		for i, p := range pids {
			if i == 4 && len(pids) > 5 {
				b.WriteString(" and " + strconv.Itoa(len(pids)-4) + " more")
				break
			}
			if i > 0 {
				b.WriteString(" ")
			}
			b.WriteString(strconv.Itoa(p))
		}
		if h.Command != "" {
			b.WriteString(" (" + h.Command + ")")
		}
	case h.NoPID != "":
		b.WriteString(", pid unknown (" + h.NoPID + ")")
	}
	if h.Rule != "" {
		b.WriteString(": " + h.Rule)
	}
}
