package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/user"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/sockreuse/reuse/internal/sockdiag"
)

// whoSocket is one socket of who's report.
type whoSocket struct {
	Proto    string `json:"proto"` // tcp (MPTCP listeners included), udp
	Local    string `json:"local"`
	Remote   string `json:"remote,omitempty"`
	V6Only   bool   `json:"v6only,omitempty"`
	State    string `json:"state"`
	TimeLeft string `json:"time_left,omitempty"` // TIME_WAIT
	UID      int    `json:"uid"`                 // -1: the kernel's (TIME_WAIT)
	User     string `json:"user,omitempty"`
	PIDs     []int  `json:"pids,omitempty"`
	Command  string `json:"command,omitempty"`
	NoPID    string `json:"no_pid,omitempty"` // why PIDs is empty
	noPID    string // NoPID in a few words, for the table
	// Group numbers the sockets that share one address, user and state:
	// a reuseport group (inferred: the kernel shows no option); 0 if alone.
	Group int `json:"group,omitempty"`
	// Queue and Backlog: a listener's connections waiting to be accepted,
	// and its backlog. RecvBytes and Drops: a UDP socket's.
	Queue     *uint32 `json:"accept_queue,omitempty"`
	Backlog   *uint32 `json:"backlog,omitempty"`
	RecvBytes *uint32 `json:"recv_queue_bytes,omitempty"`
	Drops     *uint32 `json:"drops,omitempty"`
}

// whoReport is what who prints.
type whoReport struct {
	Port      int           `json:"port"`
	Host      string        `json:"host,omitempty"`
	Sockets   []whoSocket   `json:"sockets"`
	Handovers []whoHandover `json:"handovers,omitempty"`
	// HandoversUnknown says why the handovers could not be listed.
	HandoversUnknown string `json:"handovers_unknown,omitempty"`
}

// runWho lists the sockets on a port, with their owners and groups.
func runWho(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("who", flag.ContinueOnError)
	asJSON := fs.Bool("json", false, "print the report as JSON")
	fs.SetOutput(io.Discard) // run prints the usage, on stdout for -h
	if err := fs.Parse(args); err != nil {
		return &usageError{err: err, flags: fs}
	}
	if fs.NArg() != 1 {
		return badFlag(fs, "want one ADDRESS (host:port, :port or port), got %d arguments", fs.NArg())
	}
	host, port, err := parseWhoAddress(fs.Arg(0))
	if err != nil {
		return badFlag(fs, "%v", err)
	}
	r, err := who(host, port)
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	}
	printWho(stdout, r)
	return nil
}

// parseWhoAddress reads "host:port", ":port" or "port"; a host name is
// resolved, and the port may be a service name.
func parseWhoAddress(s string) ([]netip.Addr, int, error) {
	host, portStr, err := net.SplitHostPort(s)
	if err != nil {
		if strings.ContainsAny(s, ":[]") {
			return nil, 0, fmt.Errorf("address %q: %v", s, err)
		}
		host, portStr = "", s
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	port, err := strconv.Atoi(portStr)
	if err != nil {
		if port, err = net.DefaultResolver.LookupPort(ctx, "tcp", portStr); err != nil {
			return nil, 0, fmt.Errorf("port %q: not a number or a known service", portStr)
		}
	}
	if port < 1 || port > 65535 {
		return nil, 0, fmt.Errorf("port %d out of range 1-65535", port)
	}
	if host == "" {
		return nil, port, nil
	}
	if a, err := netip.ParseAddr(host); err == nil {
		return []netip.Addr{a.Unmap()}, port, nil
	}
	addrs, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil || len(addrs) == 0 {
		return nil, 0, fmt.Errorf("host %q does not resolve: %v", host, err)
	}
	for i := range addrs {
		addrs[i] = addrs[i].Unmap()
	}
	return addrs, port, nil
}

// who reads the sockets on port whose address is one of hosts (all if
// none) or a wildcard that covers it, their processes and groups, and the
// port's handovers.
func who(hosts []netip.Addr, port int) (*whoReport, error) {
	socks, err := sockdiag.OnPort(port)
	if err != nil {
		return nil, err
	}
	r := &whoReport{Port: port}
	var names []string
	for _, h := range hosts {
		names = append(names, h.String())
	}
	r.Host = strings.Join(names, " ")
	var kept []sockdiag.Socket
	var inodes []uint64
	for _, s := range socks {
		if covers(s, hosts) {
			kept = append(kept, s)
			inodes = append(inodes, s.Inode)
		}
	}
	sortSockets(kept)
	handovers, err := readHandovers(port)
	if err != nil {
		r.HandoversUnknown = err.Error()
	}
	for _, h := range handovers {
		inodes = append(inodes, h.inode)
	}
	o := newOwnerInfo(inodes)
	groups, counts := map[string]int{}, map[string]int{}
	for _, s := range kept {
		counts[groupKey(s)]++
	}
	for _, s := range kept {
		w := o.describe(s)
		if k := groupKey(s); k != "" && counts[k] > 1 {
			if groups[k] == 0 {
				groups[k] = len(groups) + 1
			}
			w.Group = groups[k]
		}
		r.Sockets = append(r.Sockets, w)
	}
	for i := range handovers {
		h := &handovers[i]
		for _, p := range o.owners.ByInode[h.inode] {
			h.PIDs = append(h.PIDs, p.PID)
			h.Command = p.Command
		}
		if len(h.PIDs) == 0 {
			h.NoPID, _ = o.noPID(sockdiag.Socket{UID: h.UID, Inode: h.inode})
		}
	}
	r.Handovers = matchHashed(withGenerations(handovers), r.Sockets)
	return r, nil
}

// sortSockets orders socks TCP before UDP, by address, listeners first:
// the kernel lists each table in the order of its hash chains.
func sortSockets(socks []sockdiag.Socket) {
	sort.SliceStable(socks, func(i, j int) bool {
		a, b := socks[i], socks[j]
		if (a.Proto == "udp") != (b.Proto == "udp") {
			return b.Proto == "udp"
		}
		if a.Local != b.Local {
			return a.Local.Addr().Less(b.Local.Addr())
		}
		return a.State == sockdiag.Listen && b.State != sockdiag.Listen
	})
}

// ownerInfo is what who knows of the sockets' owners: their processes, as
// far as this user may look, and the users' names.
type ownerInfo struct {
	owners sockdiag.Owners
	err    error // reading /proc
	me     int
	names  map[int]string
}

func newOwnerInfo(inodes []uint64) *ownerInfo {
	owners, err := sockdiag.FindOwners(inodes)
	return &ownerInfo{owners: owners, err: err, me: os.Geteuid(), names: map[int]string{}}
}

// describe is s as who reports it, but for its group.
func (o *ownerInfo) describe(s sockdiag.Socket) whoSocket {
	w := whoSocket{Proto: s.Proto, Local: s.Local.String(), V6Only: s.V6Only, State: stateWord(s), UID: s.UID}
	if s.Remote.IsValid() {
		w.Remote = s.Remote.String()
	}
	if s.TimeWait() {
		w.TimeLeft = s.Expires.Round(time.Second).String()
	}
	if s.UID >= 0 {
		if _, ok := o.names[s.UID]; !ok {
			if u, err := user.LookupId(strconv.Itoa(s.UID)); err == nil {
				o.names[s.UID] = u.Username
			}
		}
		w.User = o.names[s.UID]
	}
	for _, p := range o.owners.ByInode[s.Inode] {
		w.PIDs = append(w.PIDs, p.PID)
		w.Command = p.Command
	}
	if len(w.PIDs) == 0 {
		w.NoPID, w.noPID = o.noPID(s)
	}
	switch {
	case s.State == sockdiag.Listen:
		q, b := s.RecvQ, s.SendQ // sk_ack_backlog, sk_max_ack_backlog
		w.Queue, w.Backlog = &q, &b
	case s.Proto == "udp":
		q, d := s.RecvQ, s.Drops
		w.RecvBytes, w.Drops = &q, &d
	}
	return w
}

// covers reports whether s is on one of hosts, or on a wildcard address
// that covers it; every socket covers when hosts is empty.
func covers(s sockdiag.Socket, hosts []netip.Addr) bool {
	if len(hosts) == 0 {
		return true
	}
	a := s.Local.Addr()
	for _, h := range hosts {
		switch {
		case a.Unmap() == h, h.IsUnspecified():
			return true
		case a.Is4() && a.IsUnspecified() && h.Is4():
			return true
		case a.Is6() && a.IsUnspecified() && (h.Is6() || !s.V6Only):
			return true
		}
	}
	return false
}

// groupKey is what the sockets of one reuseport group share: protocol,
// address, IPV6_V6ONLY, user, and being unconnected; "" for a socket that
// cannot be in one (connected, TIME_WAIT). The kernel shows no socket's
// SO_REUSEPORT, so a group is inferred: two TCP listeners on one address
// must share it; two UDP sockets might also share by SO_REUSEADDR.
func groupKey(s sockdiag.Socket) string {
	if s.Remote.IsValid() || (s.State != sockdiag.Listen && s.State != sockdiag.Close) {
		return ""
	}
	return fmt.Sprint(s.Proto, s.Local, s.V6Only, s.UID, s.State)
}

// stateWord names s's state as the package's errors do.
func stateWord(s sockdiag.Socket) string {
	switch s.State {
	case sockdiag.Listen:
		return "listening"
	case sockdiag.Established:
		return "connected"
	case sockdiag.Close, sockdiag.BoundInactive:
		return "bound"
	}
	return s.State.String()
}

// noPID says why no process of s was found, at length and in a few words.
func (o *ownerInfo) noPID(s sockdiag.Socket) (string, string) {
	why := o.owners.Why(s, o.me, o.err)
	switch {
	case s.TimeWait():
		return why, "none: the kernel's"
	case s.NoProcess() != "":
		return why, "none: not accepted or closed"
	case o.err != nil:
		return why, "? /proc unreadable"
	case s.UID != o.me && o.me != 0 && o.owners.Hidden > 0:
		return why, "? another user's"
	case o.owners.Hidden > 0:
		return why, "? hidden"
	}
	return why, "? not seen"
}

// printWho prints r as a table, then the handovers.
func printWho(w io.Writer, r *whoReport) {
	where := ":" + strconv.Itoa(r.Port)
	if r.Host != "" {
		where = r.Host + " port " + strconv.Itoa(r.Port)
	}
	if len(r.Sockets) == 0 {
		fmt.Fprintf(w, "no socket on %s in this network namespace\n", where)
	} else {
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "PROTO\tLOCAL\tREMOTE\tSTATE\tQUEUE\tUSER\tPROCESS\tGROUP")
		for _, s := range r.Sockets {
			remote, state, queue, owner, proc, group := "-", s.State, "-", "kernel", "-", "-"
			if s.Remote != "" {
				remote = s.Remote
			}
			if s.TimeLeft != "" {
				state += " " + s.TimeLeft
			}
			if s.V6Only {
				state += " v6only"
			}
			switch {
			case s.Queue != nil:
				queue = fmt.Sprintf("%d/%d", *s.Queue, *s.Backlog)
			case s.RecvBytes != nil:
				queue = fmt.Sprintf("%dB drops=%d", *s.RecvBytes, *s.Drops)
			}
			if s.UID >= 0 {
				owner = strconv.Itoa(s.UID)
				if s.User != "" {
					owner += "(" + s.User + ")"
				}
			}
			if len(s.PIDs) > 0 {
				proc = joinInts(s.PIDs) + "(" + s.Command + ")"
			} else if s.noPID != "" {
				proc = s.noPID
			}
			if s.Group > 0 {
				group = "g" + strconv.Itoa(s.Group)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", s.Proto, s.Local, remote, state, queue, owner, proc, group)
		}
		tw.Flush()
		fmt.Fprintln(w, "QUEUE: accept queue/backlog of a listener; bytes queued and drops of a UDP socket.")
		fmt.Fprintln(w, "GROUP: sockets of one address, user and state: a reuseport group (inferred). -json says why a PROCESS is unknown.")
	}
	if r.HandoversUnknown != "" {
		fmt.Fprintf(w, "handovers: cannot list them: %s\n", r.HandoversUnknown)
	}
	for _, h := range r.Handovers {
		if h.Address != "" {
			fmt.Fprintf(w, "handover of %s %s (uid %d): ", h.Network, h.Address, h.UID)
		} else {
			fmt.Fprintf(w, "handover of a process on the port, by a name that hides the address (uid %d): ", h.UID)
		}
		switch {
		case h.UnderWay:
			fmt.Fprint(w, "steering lock")
		case h.SlotHashed:
			fmt.Fprint(w, "a slot whose name is hashed")
		default:
			fmt.Fprintf(w, "slot %q", h.Slot)
		}
		if len(h.PIDs) > 0 {
			fmt.Fprintf(w, " held by pid %s (%s)", joinInts(h.PIDs), h.Command)
		} else {
			fmt.Fprintf(w, " held by a process unknown: %s", h.NoPID)
		}
		for _, g := range h.Generations {
			fmt.Fprintf(w, ", generation %d (pid %d)", g.Generation, g.PID)
		}
		if h.UnderWay {
			fmt.Fprint(w, ": a handover is under way")
		}
		fmt.Fprintln(w)
	}
}

// joinInts writes ns separated by commas.
func joinInts(ns []int) string {
	s := make([]string, len(ns))
	for i, n := range ns {
		s[i] = strconv.Itoa(n)
	}
	return strings.Join(s, ",")
}
