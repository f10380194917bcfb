//go:build linux || windows

package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/sockreuse/reuse"
)

// probeReport is what the probe measured: one row per bind attempt and the
// facts that decide how a server behaves.
type probeReport struct {
	OS     string      `json:"os"`
	Arch   string      `json:"arch"`
	Kernel string      `json:"kernel"`
	Go     string      `json:"go"`
	Where  string      `json:"where"` // where the binds were made
	Binds  []bindRow   `json:"binds"`
	Facts  []probeFact `json:"facts"`
}

// bindRow is one real attempt: a first socket is bound (and, for a
// listening row, listens), then a second socket binds the same port (and
// listens, for TCP).
type bindRow struct {
	Proto      string `json:"proto"`  // "tcp" or "udp"
	Family     string `json:"family"` // "IPv4" or "IPv6"
	Addrs      string `json:"addrs"`  // one of addrCases
	FirstState string `json:"first_state"`
	First      string `json:"first"`  // an option's name
	Second     string `json:"second"` // an option's name
	FirstAddr  string `json:"first_addr"`
	SecondAddr string `json:"second_addr"`
	// Result is "ok", the errno of the step that failed ("EADDRINUSE",
	// "listen: EADDRINUSE", "first bind: EACCES"), or "not measured".
	Result string `json:"result"`
	Why    string `json:"why,omitempty"` // why a row was not measured
}

// probeFact is one fact about the machine. Stable facts depend only on the
// kernel and go into the -markdown output; the rest (versions, sysctls,
// the user running the probe) are in the text and JSON output only.
type probeFact struct {
	Name   string `json:"name"`
	Value  string `json:"value"`
	Detail string `json:"detail,omitempty"`
	Stable bool   `json:"stable"`
}

// The address cases, in table order.
const (
	addrSame             = "same address"
	addrWildcardSpecific = "wildcard, then specific"
	addrSpecificWildcard = "specific, then wildcard"
)

var addrCases = []string{addrSame, addrWildcardSpecific, addrSpecificWildcard}

// The states of the first socket.
const (
	stateListening = "listening"
	stateBound     = "bound only"
)

// Names of facts that the tests look up.
const (
	factBalance  = "the kernel balances connections between two Share listeners (tcp4)"
	factSpecific = "a listener on a specific address beats a wildcard one (tcp4, Share)"
)

// notMeasured is the Result of a row that the probe could not make here.
const notMeasured = "not measured"

// sockOption is one column (and row) of the matrix: what is set on a socket
// before bind, either integer options or the package's Control for a Mode.
type sockOption struct {
	name string
	ints []intOpt
	mode *reuse.Mode
}

// intOpt is an integer socket option set to value.
type intOpt struct{ level, opt, value int }

// The package's modes, as columns.
var (
	modeShare     = reuse.Share
	modeExclusive = reuse.Exclusive
)

// optionByName returns the option of probeOptions called name.
func optionByName(name string) (sockOption, bool) {
	for _, o := range probeOptions {
		if o.name == name {
			return o, true
		}
	}
	return sockOption{}, false
}

// fdConn is a syscall.RawConn over a socket the probe made itself, so that
// the package's Control sets its options on it.
type fdConn struct{ fd uintptr }

func (c fdConn) Control(f func(fd uintptr)) error  { f(c.fd); return nil }
func (c fdConn) Read(func(fd uintptr) bool) error  { return errors.ErrUnsupported }
func (c fdConn) Write(func(fd uintptr) bool) error { return errors.ErrUnsupported }

// prepare makes a socket for proto and family ("tcp" or "udp"; 4 or 6) with
// option o set.
func prepare(proto string, family int, o sockOption) (*sysSocket, error) {
	s, err := openSocket(proto, family)
	if err != nil {
		return nil, err
	}
	for _, i := range o.ints {
		if err := s.setInt(i.level, i.opt, i.value); err != nil {
			s.close()
			return nil, os.NewSyscallError("setsockopt", err)
		}
	}
	if o.mode != nil {
		c := reuse.Config{Mode: *o.mode}
		if err := c.Control(proto+strconv.Itoa(family), "", fdConn{s.fd()}); err != nil {
			s.close()
			return nil, err
		}
	}
	return s, nil
}

// open makes a socket with option o, binds it to ip and port, and listens
// when listen is true. It returns the socket, or "" and the step that failed
// with its errno.
func open(proto string, family int, o sockOption, ip net.IP, port int, listen bool) (*sysSocket, string) {
	s, err := prepare(proto, family, o)
	if err != nil {
		return nil, describe(err)
	}
	if err := s.bind(ip, port); err != nil {
		s.close()
		return nil, errnoName(err)
	}
	if listen {
		if err := s.listen(); err != nil {
			s.close()
			return nil, "listen: " + errnoName(err)
		}
	}
	return s, ""
}

// describe names a failure before bind: the step and its errno.
func describe(err error) string {
	var se *os.SyscallError
	if errors.As(err, &se) {
		return se.Syscall + ": " + errnoName(se.Err)
	}
	return err.Error()
}

// freePort returns a port that no socket holds on ip: a socket without
// options is bound to port 0 and closed. It leaves nothing behind (a bound
// socket that never listened or connected has no TIME_WAIT).
func freePort(proto string, family int, ip net.IP) (int, error) {
	s, err := openSocket(proto, family)
	if err != nil {
		return 0, err
	}
	defer s.close()
	if err := s.bind(ip, 0); err != nil {
		return 0, err
	}
	return s.port()
}

// addrsFor returns the first and second addresses of an address case.
func addrsFor(family int, addrs string) (first, second net.IP) {
	specific, wildcard := net.IPv4(127, 0, 0, 1), net.IPv4zero
	if family == 6 {
		specific, wildcard = net.IPv6loopback, net.IPv6unspecified
	}
	switch addrs {
	case addrWildcardSpecific:
		return wildcard, specific
	case addrSpecificWildcard:
		return specific, wildcard
	}
	return specific, specific
}

// attempt makes one row: first, then second, on a fresh port. The second
// bind is tried a few times on a new port when the first socket cannot bind
// because something else took the port in between.
func attempt(r bindRow) bindRow {
	first, _ := optionByName(r.First)
	second, _ := optionByName(r.Second)
	family := 4
	if r.Family == "IPv6" {
		family = 6
	}
	ip1, ip2 := net.ParseIP(r.FirstAddr), net.ParseIP(r.SecondAddr)
	for try := 0; ; try++ {
		port, err := freePort(r.Proto, family, ip1)
		if err != nil {
			r.Result = "first: " + errnoName(err)
			return r
		}
		s1, fail := open(r.Proto, family, first, ip1, port, r.FirstState == stateListening)
		if fail != "" {
			if fail == "EADDRINUSE" && try < 3 {
				continue // another program took the port since freePort
			}
			r.Result = "first: " + fail
			return r
		}
		s2, fail := open(r.Proto, family, second, ip2, port, r.Proto == "tcp")
		if s2 != nil {
			s2.close()
		}
		s1.close()
		r.Result = "ok"
		if fail != "" {
			r.Result = fail
		}
		return r
	}
}

// matrixRows lists every row of the matrix, in table order.
func matrixRows() []bindRow {
	var rows []bindRow
	for _, proto := range []string{"tcp", "udp"} {
		states := []string{stateListening, stateBound}
		if proto == "udp" {
			states = []string{stateBound}
		}
		for _, state := range states {
			for _, addrs := range addrCases {
				for _, family := range []int{4, 6} {
					ip1, ip2 := addrsFor(family, addrs)
					for _, o1 := range probeOptions {
						for _, o2 := range probeOptions {
							rows = append(rows, bindRow{Proto: proto, Family: "IPv" + strconv.Itoa(family), Addrs: addrs, FirstState: state,
								First: o1.name, Second: o2.name, FirstAddr: ip1.String(), SecondAddr: ip2.String()})
						}
					}
				}
			}
		}
	}
	return rows
}

// runMatrix makes every row; wildcard rows only when wildcard is true (in a
// private network namespace), the others are marked with why.
func runMatrix(wildcard bool, why string) []bindRow {
	rows := matrixRows()
	prog := newProgress("probe: binds", len(rows))
	for i, r := range rows {
		prog.add(1)
		if r.Addrs != addrSame && !wildcard {
			rows[i].Result, rows[i].Why = notMeasured, why
			continue
		}
		rows[i] = attempt(r)
	}
	prog.end()
	return rows
}

// balanceConns is how many connections measure the spread between two
// listeners. With a hash of the 4-tuple each lands on either listener with
// probability about 1/2; fewer than a tenth of them on one listener has a
// probability below 1e-40 (binomial tail), so "no" means the kernel does not
// balance.
const balanceConns = 400

// measureBalance opens two Share listeners on one port of ip and counts
// which accepts each of balanceConns connections, each from a new source
// port. It is bounded by a few seconds.
func measureBalance(ip string) probeFact {
	const network = "tcp4"
	f := probeFact{Name: factBalance, Stable: true}
	l1, err := reuse.Listen(network, net.JoinHostPort(ip, "0"))
	if err != nil {
		f.Value = "not measured: " + errnoName(err)
		return f
	}
	defer l1.Close()
	l2, err := reuse.Listen(network, l1.Addr().String())
	if err != nil {
		f.Value = "no: the second Share listener is refused (" + errnoName(err) + ")"
		return f
	}
	defer l2.Close()
	var counts [2]int
	var mu sync.Mutex
	accepted := make(chan struct{}, balanceConns)
	for i, l := range []net.Listener{l1, l2} {
		i, l := i, l
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				c.Close()
				mu.Lock()
				counts[i]++
				mu.Unlock()
				accepted <- struct{}{}
			}
		}()
	}
	deadline := time.Now().Add(3 * time.Second)
	dialed := 0
	for dialed < balanceConns && time.Now().Before(deadline) {
		c, err := net.DialTimeout(network, l1.Addr().String(), time.Second)
		if err != nil {
			f.Value = "not measured: dial: " + errnoName(err)
			return f
		}
		c.Close()
		dialed++
	}
	for got := 0; got < dialed; got++ {
		select {
		case <-accepted:
		case <-time.After(time.Until(deadline) + time.Second):
			got = dialed
		}
	}
	mu.Lock()
	a, b := counts[0], counts[1]
	mu.Unlock()
	f.Detail = fmt.Sprintf("spread %d/%d of %d connections", a, b, dialed)
	switch {
	case dialed < balanceConns/4:
		f.Value = "not measured: too few connections in time"
	case min(a, b) >= (a+b)/10:
		f.Value = "yes"
	default:
		f.Value = "no"
	}
	return f
}

// runProbe is the probe subcommand.
func runProbe(args []string, stdout io.Writer) error {
	asJSON, asMarkdown, err := probeFlags(args)
	if err != nil {
		return err
	}
	rep, err := probe()
	if err != nil {
		return err
	}
	switch {
	case asJSON:
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	case asMarkdown:
		_, err := io.WriteString(stdout, rep.markdown())
		return err
	}
	_, err = io.WriteString(stdout, rep.text())
	return err
}

// newReport returns a report with what every OS knows of itself.
func newReport() *probeReport {
	return &probeReport{OS: runtime.GOOS, Arch: runtime.GOARCH, Kernel: kernelVersion(), Go: runtime.Version()}
}

// probeBindWorker binds on request and reports: each line of stdin is
// "proto family ip port option", each answer "ok" or the failure; it
// closes the socket at once and ends when stdin closes. The probe runs it
// as another user.
func probeBindWorker(args []string) error {
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 5 {
			return fmt.Errorf("want \"proto family ip port option\", got %q", sc.Text())
		}
		family, err1 := strconv.Atoi(f[1])
		port, err2 := strconv.Atoi(f[3])
		o, ok := optionByName(f[4])
		ip := net.ParseIP(f[2])
		if err1 != nil || err2 != nil || !ok || ip == nil {
			return fmt.Errorf("bad request %q", sc.Text())
		}
		s, fail := open(f[0], family, o, ip, port, f[0] == "tcp")
		if s != nil {
			s.close()
			fail = "ok"
		}
		fmt.Println(fail)
	}
	return sc.Err()
}

// errnoName names the errno inside err ("EADDRINUSE"), or returns its text.
func errnoName(err error) string {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		if n := nameOfErrno(errno); n != "" {
			return n
		}
		return "errno " + strconv.Itoa(int(errno))
	}
	return err.Error()
}
