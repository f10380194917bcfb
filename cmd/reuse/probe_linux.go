package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sockreuse/reuse"
	"github.com/sockreuse/reuse/internal/netns"
	"github.com/sockreuse/reuse/internal/sockdiag"
)

// probeOptions are the matrix's rows and columns on Linux.
var probeOptions = []sockOption{
	{name: "none"},
	{name: "REUSEADDR", ints: []intOpt{{unix.SOL_SOCKET, unix.SO_REUSEADDR, 1}}},
	{name: "REUSEPORT", ints: []intOpt{{unix.SOL_SOCKET, unix.SO_REUSEPORT, 1}}},
	{name: "both", ints: []intOpt{{unix.SOL_SOCKET, unix.SO_REUSEADDR, 1}, {unix.SOL_SOCKET, unix.SO_REUSEPORT, 1}}},
	{name: "Share", mode: &modeShare},
	{name: "Exclusive", mode: &modeExclusive},
}

// sysSocket is a socket the probe makes itself, so that it can bind without
// listening and set exactly the options of a row.
type sysSocket struct{ h int }

// openSocket makes a TCP or UDP socket of family 4 or 6; IPv6 sockets are
// IPV6_V6ONLY, as Go's tcp6 and udp6 sockets are.
func openSocket(proto string, family int) (*sysSocket, error) {
	domain, typ := unix.AF_INET, unix.SOCK_STREAM
	if family == 6 {
		domain = unix.AF_INET6
	}
	if proto == "udp" {
		typ = unix.SOCK_DGRAM
	}
	h, err := unix.Socket(domain, typ|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, os.NewSyscallError("socket", err)
	}
	s := &sysSocket{h}
	if family == 6 {
		if err := unix.SetsockoptInt(h, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 1); err != nil {
			s.close()
			return nil, os.NewSyscallError("setsockopt", err)
		}
	}
	return s, nil
}

func (s *sysSocket) fd() uintptr { return uintptr(s.h) }

func (s *sysSocket) setInt(level, opt, value int) error {
	return unix.SetsockoptInt(s.h, level, opt, value)
}

func (s *sysSocket) bind(ip net.IP, port int) error {
	var sa unix.Sockaddr
	if ip4 := ip.To4(); ip4 != nil {
		a := &unix.SockaddrInet4{Port: port}
		copy(a.Addr[:], ip4)
		sa = a
	} else {
		a := &unix.SockaddrInet6{Port: port}
		copy(a.Addr[:], ip.To16())
		sa = a
	}
	return os.NewSyscallError("bind", unix.Bind(s.h, sa))
}

func (s *sysSocket) listen() error { return os.NewSyscallError("listen", unix.Listen(s.h, 16)) }

func (s *sysSocket) port() (int, error) {
	sa, err := unix.Getsockname(s.h)
	if err != nil {
		return 0, os.NewSyscallError("getsockname", err)
	}
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		return a.Port, nil
	case *unix.SockaddrInet6:
		return a.Port, nil
	}
	return 0, fmt.Errorf("unexpected local address %T", sa)
}

func (s *sysSocket) close() { unix.Close(s.h) }

func nameOfErrno(e syscall.Errno) string { return unix.ErrnoName(e) }

func kernelVersion() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "unknown (" + err.Error() + ")"
	}
	return unix.ByteSliceToString(u.Release[:])
}

// nsResult is what the probe measures inside a private network namespace.
type nsResult struct {
	Binds []bindRow   `json:"binds"`
	Facts []probeFact `json:"facts"`
}

// exitNoNetNS is the exit status of a namespaced child that could not set
// up its namespace: the probe then measures on the machine's loopback.
const exitNoNetNS = 3

// probeNetNSWorker runs in a private network namespace: it makes every row
// of the matrix, wildcard rows included, measures the namespace's facts,
// and prints them as JSON.
func probeNetNSWorker([]string) error {
	if err := netns.SetUpLoopback(); err != nil {
		fmt.Fprintf(os.Stderr, "setting up the network namespace: %v\n", err)
		os.Exit(exitNoNetNS)
	}
	res := nsResult{Binds: runMatrix(true, "")}
	res.Facts = append(res.Facts, measureBalance("127.0.0.1"), measureSpecific())
	res.Facts = append(res.Facts, measureSteering()...)
	return json.NewEncoder(os.Stdout).Encode(res)
}

// inNetNS runs probeNetNSWorker in a child in a private network namespace.
// It returns ok == false, with the reason, where no namespace can be made.
func inNetNS() (res nsResult, why string, ok bool, err error) {
	w, err := startWorker("probe-netns", nil, func(cmd *exec.Cmd) (func(), error) {
		cmd.SysProcAttr = netns.Attr()
		return nil, nil
	})
	if err != nil {
		if netns.IsRefusal(err) {
			return res, fmt.Sprintf("the kernel or a sandbox refuses a private user and network namespace (%v)", err), false, nil
		}
		return res, "", false, err
	}
	line, err := w.ask("")
	serr := w.stop()
	switch {
	case err != nil && w.cmd.ProcessState != nil && w.cmd.ProcessState.ExitCode() == exitNoNetNS:
		return res, "the private network namespace cannot be set up (its error is above)", false, nil
	case err != nil:
		return res, "", false, fmt.Errorf("in the private network namespace: %v", err)
	case serr != nil:
		return res, "", false, fmt.Errorf("in the private network namespace: %v", serr)
	}
	if err := json.Unmarshal([]byte(line), &res); err != nil {
		return res, "", false, fmt.Errorf("reading the namespace's results: %v", err)
	}
	return res, "", true, nil
}

func probe() (*probeReport, error) {
	rep := newReport()
	res, why, ok, err := inNetNS()
	if err != nil {
		return nil, err
	}
	if ok {
		rep.Where = "in a private network namespace (loopback and wildcard addresses)"
		rep.Binds, rep.Facts = res.Binds, res.Facts
	} else {
		why = "no wildcard bind outside a private network namespace, and " + why
		rep.Where = "on this machine's loopback only: " + why
		rep.Binds = runMatrix(false, why)
		rep.Facts = append(rep.Facts, measureBalance("127.0.0.1"), probeFact{Name: factSpecific, Value: notMeasured + ": " + why, Stable: true})
		rep.Facts = append(rep.Facts, measureSteering()...)
	}
	other, err := otherUserFacts()
	if err != nil {
		return nil, err
	}
	rep.Facts = append(rep.Facts, other...)
	rep.Facts = append(rep.Facts, migrateFact(), mptcpFact(),
		probeFact{Name: "kernel", Value: rep.Kernel}, probeFact{Name: "Go", Value: rep.Go})
	return rep, nil
}

// measureSteering attaches a classic BPF program that picks the group's
// first socket to a TCP and a UDP socket with SO_REUSEPORT.
func measureSteering() []probeFact {
	var facts []probeFact
	for _, proto := range []string{"tcp", "udp"} {
		f := probeFact{Name: "a steering program attaches (SO_ATTACH_REUSEPORT_CBPF, " + proto + "4)", Stable: true}
		o, _ := optionByName("REUSEPORT")
		s, err := prepare(proto, 4, o)
		if err != nil {
			f.Value = "not measured: " + describe(err)
			facts = append(facts, f)
			continue
		}
		prog := []unix.SockFilter{{Code: unix.BPF_RET | unix.BPF_K, K: 0}}
		err = unix.SetsockoptSockFprog(s.h, unix.SOL_SOCKET, unix.SO_ATTACH_REUSEPORT_CBPF, &unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]})
		s.close()
		f.Value = "yes"
		if err != nil {
			f.Value = "no: " + errnoName(err)
		}
		facts = append(facts, f)
	}
	return append(facts, measureSYNDrop(), measureUnixDiag(), measureMSSMark())
}

// Two facts that a handover needs: where its processes meet, and how the
// new one tells the old listeners in a group.
const (
	factUnixDiag = "the kernel lists abstract Unix names with their owners (unix_diag), where a handover's processes meet"
	factMSSMark  = "a listener's TCP_MAXSEG lowers the MSS a client may send (tcp4), as a handover's probes find the old listeners"
)

// measureUnixDiag binds a fresh abstract name and looks for it, with this
// user as its owner, in the kernel's listing (sockdiag.DumpUnix).
func measureUnixDiag() probeFact {
	f := probeFact{Name: factUnixDiag, Stable: true}
	name := fmt.Sprintf("reuse-probe/%d/%d", os.Getpid(), time.Now().UnixNano())
	ln, err := net.ListenUnix("unixpacket", &net.UnixAddr{Name: "@" + name, Net: "unixpacket"})
	if err != nil {
		f.Value = "not measured: " + describe(err)
		return f
	}
	defer ln.Close()
	found := false
	err = sockdiag.DumpUnix(name, func(s sockdiag.UnixSocket) { found = found || s.Name == name && s.UID == os.Geteuid() })
	switch {
	case err != nil:
		f.Value = "no: " + describe(err)
	case !found:
		f.Value = "no: the name is not listed with its owner"
	default:
		f.Value = "yes"
	}
	return f
}

// measureMSSMark sets TCP_MAXSEG 16384 on a listener and reads the largest
// segment that a loopback client may then send (TCP_INFO), which a listener
// without it lets be larger.
func measureMSSMark() probeFact {
	f := probeFact{Name: factMSSMark, Stable: true}
	mss := func(mark bool) (int, error) {
		ln, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		defer ln.Close()
		if mark {
			rc, _ := ln.(*net.TCPListener).SyscallConn()
			var serr error
			if err := rc.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_MAXSEG, 16384) }); err != nil || serr != nil {
				return 0, errors.Join(err, serr)
			}
		}
		c, err := net.DialTimeout("tcp4", ln.Addr().String(), time.Second)
		if err != nil {
			return 0, err
		}
		defer c.Close()
		rc, _ := c.(*net.TCPConn).SyscallConn()
		var info *unix.TCPInfo
		var ierr error
		_ = rc.Control(func(fd uintptr) { info, ierr = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO) })
		if ierr != nil {
			return 0, ierr
		}
		return int(info.Snd_mss), nil
	}
	marked, err := mss(true)
	plain, perr := mss(false)
	switch {
	case err != nil || perr != nil:
		f.Value = "not measured: " + describe(errors.Join(err, perr))
	case marked <= 16384 && plain > 16384:
		f.Value = "yes"
	default:
		f.Value = fmt.Sprintf("no: %d bytes with it, %d without", marked, plain)
	}
	return f
}

// measureSYNDrop reports whether a TCP listener with IP_MINTTL 255 drops a
// loopback client's SYN (sent with 64 hops left): what the handover's
// plain-TCP helper in a group of MPTCP listeners relies on, without
// privilege (a socket filter on a TCP socket needs CAP_NET_ADMIN).
func measureSYNDrop() probeFact {
	f := probeFact{Name: "a TCP listener drops every SYN by IP_MINTTL 255, as the MPTCP handover's helper does (tcp4)", Stable: true}
	lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		if err := rc.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_MINTTL, 255) }); err != nil {
			return err
		}
		return serr
	}}
	ln, err := lc.Listen(context.Background(), "tcp4", "127.0.0.1:0")
	if err != nil {
		f.Value = "no: " + errnoName(err)
		return f
	}
	defer ln.Close()
	c, err := net.DialTimeout("tcp4", ln.Addr().String(), 300*time.Millisecond)
	if err == nil {
		c.Close()
		f.Value = "no: a loopback client connected"
		return f
	}
	f.Value = "yes"
	return f
}

// otherUserFacts binds, as uid 65534, ports that root holds on loopback;
// it needs root.
func otherUserFacts() ([]probeFact, error) {
	cases := []struct{ proto, option string }{{"tcp", "Share"}, {"udp", "Share"}, {"udp", "REUSEADDR"}}
	name := func(proto, option string) string {
		return "uid 65534 binds a " + proto + "4 port root holds, both with " + option
	}
	var facts []probeFact
	if os.Geteuid() != 0 {
		for _, c := range cases {
			facts = append(facts, probeFact{Name: name(c.proto, c.option), Value: notMeasured + ": needs root, to run as uid 65534"})
		}
		return facts, nil
	}
	w, err := startWorker("probe-bind", nil, asNobody)
	if err != nil {
		return nil, err
	}
	defer func() { _ = w.stop() }()
	loopback := net.IPv4(127, 0, 0, 1)
	for _, c := range cases {
		f := probeFact{Name: name(c.proto, c.option)}
		o, _ := optionByName(c.option)
		port, err := freePort(c.proto, 4, loopback)
		if err != nil {
			return nil, err
		}
		s, fail := open(c.proto, 4, o, loopback, port, c.proto == "tcp")
		if fail != "" {
			f.Value = notMeasured + ": root's socket: " + fail
			facts = append(facts, f)
			continue
		}
		answer, err := w.ask(fmt.Sprintf("%s 4 127.0.0.1 %d %s", c.proto, port, c.option))
		s.close()
		if err != nil {
			return nil, err
		}
		f.Value = "allowed"
		if answer != "ok" {
			f.Value = "refused: " + answer
		}
		facts = append(facts, f)
	}
	return facts, nil
}

// asNobody runs a worker as uid and gid 65534, from a copy of this program
// in a directory every user may read: go run builds in one only its owner
// may. The copy is removed after the worker exits.
func asNobody(cmd *exec.Cmd) (func(), error) {
	data, err := os.ReadFile(cmd.Path)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "reuse-probe")
	if err != nil {
		return nil, err
	}
	cleanup := func() { _ = os.RemoveAll(dir) }
	path := filepath.Join(dir, "reuse")
	if err := os.Chmod(dir, 0o755); err != nil {
		cleanup()
		return nil, err
	}
	if err := os.WriteFile(path, data, 0o755); err != nil {
		cleanup()
		return nil, err
	}
	cmd.Path, cmd.Args[0], cmd.Dir = path, path, dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}, Pdeathsig: syscall.SIGKILL}
	return cleanup, nil
}

// migrateFact reads the machine's net.ipv4.tcp_migrate_req.
func migrateFact() probeFact {
	f := probeFact{Name: "net.ipv4.tcp_migrate_req (closing a listener hands its queue to the group)"}
	data, err := os.ReadFile("/proc/sys/net/ipv4/tcp_migrate_req")
	switch v := strings.TrimSpace(string(data)); {
	case errors.Is(err, os.ErrNotExist):
		f.Value = "absent (Linux before 5.14): a closed listener resets its queue"
	case err != nil:
		f.Value = notMeasured + ": " + err.Error()
	case v == "0":
		f.Value = "0: off, a closed listener resets its queued connections"
	default:
		f.Value = v + ": on"
	}
	return f
}

// mptcpFact says whether net.Listen gives an MPTCP socket here, and under
// which GODEBUG multipathtcp setting: Go 1.24+ asks for one where the
// kernel allows it in modules whose go line is 1.24 or later.
func mptcpFact() probeFact {
	value, source := multipathTCPSetting()
	f := probeFact{Name: "net.Listen(\"tcp\") makes an MPTCP listener", Detail: "GODEBUG multipathtcp=" + value + ": " + source}
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		f.Value = notMeasured + ": " + errnoName(err)
		return f
	}
	defer ln.Close()
	rc, err := ln.(*net.TCPListener).SyscallConn()
	if err != nil {
		f.Value = notMeasured + ": " + err.Error()
		return f
	}
	var proto int
	var gerr error
	if err := rc.Control(func(fd uintptr) { proto, gerr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_PROTOCOL) }); err != nil {
		gerr = err
	}
	switch {
	case gerr != nil:
		f.Value = notMeasured + ": " + errnoName(gerr)
	case proto == unix.IPPROTO_MPTCP:
		f.Value = "yes (IPPROTO_MPTCP)"
	default:
		f.Value = "no (protocol " + strconv.Itoa(proto) + ")"
	}
	return f
}

// multipathTCPSetting returns the GODEBUG multipathtcp setting in force in
// this program, and where it comes from: the environment, or the default
// built in (this command's //go:debug line).
func multipathTCPSetting() (value, source string) {
	if v, ok := godebugValue(os.Getenv("GODEBUG"), "multipathtcp"); ok {
		return v, "set by the GODEBUG environment variable"
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key != "DefaultGODEBUG" {
				continue
			}
			if v, ok := godebugValue(s.Value, "multipathtcp"); ok {
				if v == "2" {
					return v, "the default of a module whose go line is 1.24 or later, which this command's //go:debug line sets"
				}
				return v, "built into this command"
			}
		}
	}
	return "", "the toolchain's default"
}

// godebugValue returns the value of key in a GODEBUG list; the last one wins.
func godebugValue(list, key string) (value string, ok bool) {
	for _, kv := range strings.Split(list, ",") {
		if v, found := strings.CutPrefix(strings.TrimSpace(kv), key+"="); found {
			value, ok = v, true
		}
	}
	return value, ok
}

// measureSpecific listens with Share on the IPv4 wildcard and on 127.0.0.1
// at one port, and checks where connections to 127.0.0.1 and 127.0.0.2 go.
// It binds a wildcard, so it runs only in a private network namespace.
func measureSpecific() probeFact {
	f := probeFact{Name: factSpecific, Stable: true}
	wild, err := reuse.Listen("tcp4", "0.0.0.0:0")
	if err != nil {
		f.Value = "not measured: " + errnoName(err)
		return f
	}
	defer wild.Close()
	port := strconv.Itoa(wild.Addr().(*net.TCPAddr).Port)
	spec, err := reuse.Listen("tcp4", "127.0.0.1:"+port)
	if err != nil {
		f.Value = "not measured: the specific listener is refused (" + errnoName(err) + ")"
		return f
	}
	defer spec.Close()
	const n = 20
	toSpecific, err := countAccepts(spec, wild, "127.0.0.1:"+port, n)
	if err != nil {
		f.Value = "not measured: " + err.Error()
		return f
	}
	toWildcard, err := countAccepts(wild, spec, "127.0.0.2:"+port, n)
	if err != nil {
		f.Value = "not measured: " + err.Error()
		return f
	}
	f.Detail = fmt.Sprintf("%d/%d to 127.0.0.1 reached the specific listener, %d/%d to 127.0.0.2 the wildcard one", toSpecific, n, toWildcard, n)
	f.Value = "no"
	if toSpecific == n && toWildcard == n {
		f.Value = "yes"
	}
	return f
}

// countAccepts dials addr n times and returns how many connections want
// accepted; the others must have gone to other.
func countAccepts(want, other net.Listener, addr string, n int) (int, error) {
	got := 0
	for i := 0; i < n; i++ {
		c, err := net.DialTimeout("tcp4", addr, time.Second)
		if err != nil {
			return 0, err
		}
		c.Close()
		which, err := acceptEither(want, other)
		if err != nil {
			return 0, err
		}
		if which == 0 {
			got++
		}
	}
	return got, nil
}

// acceptEither accepts one connection from whichever of two listeners has
// it, within a second, and says which (0 or 1).
func acceptEither(ls ...net.Listener) (int, error) {
	deadline := time.Now().Add(time.Second)
	for time.Now().Before(deadline) {
		for i, l := range ls {
			tl := l.(*net.TCPListener)
			if err := tl.SetDeadline(time.Now().Add(5 * time.Millisecond)); err != nil {
				return 0, err
			}
			c, err := tl.Accept()
			if err == nil {
				c.Close()
				return i, nil
			}
			if !errors.Is(err, os.ErrDeadlineExceeded) {
				return 0, err
			}
		}
	}
	return 0, errors.New("no listener accepted the connection within a second")
}
