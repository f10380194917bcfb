//go:build linux

// Command restartload restarts servers under load and counts what the
// restarts cost: the requests that failed (for HTTP, measured by hey, a
// client nobody here wrote) or the datagrams lost (UDP, numbered), and the
// time from starting the new process to the old one being gone. It compares
// reuse.Handover with a naive replacement and, for one listener, with
// github.com/cloudflare/tableflip, in one run, and prints Markdown. The idle
// shapes time restarts without load: one process beside tableflip, each
// slot of a group of worker processes, and rolling restarts of every slot
// of groups of growing size.
//
// Usage (from bench/; hey from `go install github.com/rakyll/hey@v0.1.5`):
//
//	go run ./cmd/restartload [-hey PATH] [-restarts 20] [-quick] [-check]
//
// It runs in a private network namespace of its own (a user namespace too,
// so no privilege is needed), where it sets net.ipv4.tcp_migrate_req, and
// talks only to 127.0.0.1 there. Every load is bounded: -restarts per case,
// and each wait has a time limit.
package main

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/sockreuse/reuse/internal/netns"
	"golang.org/x/sys/unix"
)

var (
	heyPath   = flag.String("hey", "hey", "the hey binary (github.com/rakyll/hey v0.1.5)")
	server    = flag.String("server", "", "the restartserver binary (default: built from ./cmd/restartserver)")
	restarts  = flag.Int("restarts", 20, "restarts per case: for 4 worker processes, 5 rounds of 4")
	shapes    = flag.String("shapes", "one,group,workers,rolling-hey,udp-group,udp-workers,idle-one,idle-workers,rolling", "shapes to run, comma-separated")
	mptcpList = flag.String("mptcp", "true,false", "MPTCP settings of the listeners, comma-separated")
	migrates  = flag.String("migrate", "0,1", "values of net.ipv4.tcp_migrate_req, comma-separated")
	idleMig   = flag.String("idlemigrate", "", "values of net.ipv4.tcp_migrate_req for the idle shapes (default: the first of -migrate)")
	rolling   = flag.String("rolling", "4,8,16", "rolling: the sizes of the groups of worker processes, comma-separated (rolling-hey: the largest)")
	rolls     = flag.Int("rolls", 3, "rolling: rolling restarts of each group (rolling-hey: 1)")
	groupK    = flag.Int("k", 4, "sockets of the group shapes")
	conc      = flag.Int("c", 8, "hey's concurrent workers")
	udpRate   = flag.Int("udprate", 10000, "UDP datagrams per second")
	srcPorts  = flag.Int("srcports", 1000, "UDP source ports")
	gap       = flag.Duration("gap", 100*time.Millisecond, "pause between two restarts")
	warm      = flag.Duration("warm", 300*time.Millisecond, "load before the first restart")
	afterLoad = flag.Duration("after", time.Second, "workers: load after the last restart, for the shares after")
	limit     = flag.Duration("limit", 30*time.Second, "time limit of each wait for a server")
	quiet     = flag.Duration("quiet", 0, "the reuse.Handover's Quiet (0: the package's default)")
	quick     = flag.Bool("quick", false, "a short run for CI: 4 restarts of one listener, 4 workers and a UDP group, under load and idle, and 1 rolling restart of 4 workers; MPTCP, tcp_migrate_req 0")
	check     = flag.Bool("check", false, "exit with status 1 if a reuse case failed to restart, failed a request, or lost a datagram other than to a full receive buffer")
)

// modesOf lists the replacement modes run for each shape.
var modesOf = map[string][]string{
	"one":          {"reuse", "reuse-plain", "naive", "tableflip-readme", "tableflip"},
	"group":        {"reuse", "naive"},
	"workers":      {"reuse", "naive"},
	"udp-group":    {"reuse", "naive"},
	"udp-workers":  {"reuse", "naive"},
	"idle-one":     {"reuse", "tableflip"},
	"idle-workers": {"reuse"},
	"rolling":      {"reuse"},
	"rolling-hey":  {"reuse"},
}

const inNetNS = "RESTARTLOAD_IN_NETNS"

func main() {
	flag.Parse()
	if *quick {
		*restarts, *shapes, *mptcpList, *migrates = 4, "one,workers,udp-group,idle-one,idle-workers,rolling", "true", "0"
		*idleMig, *rolling, *rolls = "", "4", 1
	}
	var err error
	if os.Getenv(inNetNS) == "" {
		err = reexec()
	} else {
		err = run()
	}
	var status statusError
	if errors.As(err, &status) {
		os.Exit(int(status))
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "restartload:", err)
		os.Exit(1)
	}
}

// statusError is the exit status of the driver in the namespace, which has
// reported its error already.
type statusError int

func (s statusError) Error() string { return fmt.Sprintf("exit status %d", int(s)) }

// reexec runs this command again in a user and network namespace of its own.
func reexec() error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	if *server == "" {
		dir, err := os.MkdirTemp("", "restartload")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		*server = filepath.Join(dir, "restartserver")
		build := exec.Command("go", "build", "-o", *server, "./cmd/restartserver")
		build.Stdout, build.Stderr = os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			return fmt.Errorf("building the server (run from bench/, or give -server): %w", err)
		}
	}
	if *server, err = filepath.Abs(*server); err != nil {
		return err
	}
	if *heyPath, err = exec.LookPath(*heyPath); err != nil {
		return fmt.Errorf("%w (install it: GOBIN=DIR go install github.com/rakyll/hey@v0.1.5)", err)
	}
	args := []string{"-server", *server, "-hey", *heyPath}
	flag.Visit(func(f *flag.Flag) {
		if f.Name != "server" && f.Name != "hey" {
			args = append(args, "-"+f.Name+"="+f.Value.String())
		}
	})
	cmd := exec.Command(self, args...)
	cmd.Env = append(os.Environ(), inNetNS+"=1")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.SysProcAttr = netns.Attr()
	err = cmd.Run()
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		return statusError(exit.ExitCode()) // the driver in the namespace said why
	case netns.IsRefusal(err):
		return fmt.Errorf("no private network namespace here (%w): this driver needs one to set net.ipv4.tcp_migrate_req", err)
	}
	return err
}

// A spec is one case: a shape, a replacement mode and the settings.
type spec struct {
	shape, mode string
	mptcp       bool
	migrate     string
	procs, k    int // server processes and sockets per process
}

func (s spec) udp() bool { return strings.HasPrefix(s.shape, "udp") }

// idle reports whether the case restarts without load.
func (s spec) idle() bool {
	return s.shape == "idle-one" || s.shape == "idle-workers" || s.shape == "rolling"
}

// A result is what one case measured.
type result struct {
	spec
	restarts   []time.Duration  // from starting the new process to the old one gone
	slots      []int            // the slot of each restart (0 for one process)
	rolls      []time.Duration  // rolling: each rolling restart, start of the first to the last old process gone
	err        error            // the case could not complete
	ok, failed int              // HTTP: answered 200; non-200 and errors
	errs       map[string]int   // HTTP: hey's errors, by their last part
	slowest    time.Duration    // HTTP: hey's slowest request
	tcpSocks   int              // HTTP: TCP sockets in the namespace after the last restart
	during     map[string]int64 // workers: requests per slot during the restarts
	after      map[string]int64 // workers: requests per slot after them
	sent, recv int              // UDP: datagrams sent, distinct ones received
	sendErrs   int              // UDP: sends that failed
	dups       int              // UDP: datagrams received twice
	rcvbuf     int              // UDP: RcvbufErrors, drops for a full receive buffer
}

func (r *result) lost() int { return r.sent - r.recv }

func run() error {
	if err := netns.SetUpLoopback(); err != nil {
		return err
	}
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return os.NewSyscallError("prctl PR_SET_CHILD_SUBREAPER", err)
	}
	var mptcps []bool
	for _, m := range strings.Split(*mptcpList, ",") {
		b, err := strconv.ParseBool(m)
		if err != nil {
			return fmt.Errorf("-mptcp %q: %w", *mptcpList, err)
		}
		mptcps = append(mptcps, b)
	}
	var notes []string
	if _, err := os.Stat("/proc/sys/net/mptcp/enabled"); err != nil && contains(mptcps, true) {
		notes = append(notes, "MPTCP cases skipped: the kernel has no MPTCP (/proc/sys/net/mptcp missing)")
		mptcps = without(mptcps, true)
	}
	shapeList := strings.Split(*shapes, ",")
	for _, shape := range shapeList {
		if _, ok := modesOf[shape]; !ok {
			return fmt.Errorf("-shapes: unknown shape %q", shape)
		}
	}
	// The idle cases run first: hey's connections leave thousands of
	// TIME_WAIT sockets in the namespace for a minute, which every listing
	// of its TCP sockets then reads.
	specs, err := idleSpecsOf(shapeList, mptcps)
	if err != nil {
		return err
	}
	for _, migrate := range strings.Split(*migrates, ",") {
		for _, m := range mptcps {
			for _, shape := range shapeList {
				if s := (spec{shape: shape}); s.udp() || s.idle() {
					continue
				}
				specs = append(specs, specsOf(shape, m, migrate)...)
			}
		}
	}
	for _, shape := range shapeList {
		if strings.HasPrefix(shape, "udp") {
			specs = append(specs, specsOf(shape, false, "")...)
		}
	}
	var results []*result
	port := 20000
	for _, s := range specs {
		port++
		fmt.Fprintf(os.Stderr, "%s %s mptcp=%v migrate=%s ... ", s.shape, s.mode, s.mptcp, s.migrate)
		r := runCase(s, fmt.Sprintf("127.0.0.1:%d", port))
		fmt.Fprintln(os.Stderr, summary(r))
		results = append(results, r)
	}
	report(os.Stdout, results, notes)
	if *check {
		for _, r := range results {
			// A datagram dropped for a full receive buffer is a matter of
			// capacity, reported in the table; a restart must lose no other.
			if r.mode == "reuse" && (r.err != nil || r.failed > 0 || r.lost() > r.rcvbuf || r.sendErrs > 0) {
				return fmt.Errorf("-check: %s %s mptcp=%v migrate=%s: %s", r.shape, r.mode, r.mptcp, r.migrate, summary(r))
			}
		}
	}
	return nil
}

// idleSpecsOf returns the cases of the idle shapes in shapes: idle-one and
// idle-workers for each MPTCP setting, rolling for the first one (Go's
// default where the list is the default), each at every value of
// -idlemigrate.
func idleSpecsOf(shapes []string, mptcps []bool) ([]spec, error) {
	mig := *idleMig
	if mig == "" {
		mig = strings.Split(*migrates, ",")[0]
	}
	var sizes []int
	for _, f := range strings.Split(*rolling, ",") {
		n, err := strconv.Atoi(f)
		if err != nil || n < 1 {
			return nil, fmt.Errorf("-rolling %q: want sizes of at least 1 worker", *rolling)
		}
		sizes = append(sizes, n)
	}
	var out []spec
	for _, migrate := range strings.Split(mig, ",") {
		for i, m := range mptcps {
			for _, shape := range shapes {
				switch {
				case shape == "rolling" && i == 0:
					for _, n := range sizes {
						out = append(out, spec{shape: shape, mode: "reuse", mptcp: m, migrate: migrate, procs: n, k: 1})
					}
				case shape == "idle-one" || shape == "idle-workers":
					out = append(out, specsOf(shape, m, migrate)...)
				}
			}
		}
	}
	return out, nil
}

func specsOf(shape string, mptcp bool, migrate string) []spec {
	var out []spec
	for _, mode := range modesOf[shape] {
		s := spec{shape: shape, mode: mode, mptcp: mptcp, migrate: migrate, procs: 1, k: 1}
		switch shape {
		case "group", "udp-group":
			s.k = *groupK
		case "workers", "udp-workers", "idle-workers":
			s.procs = *groupK
		case "rolling-hey":
			for _, f := range strings.Split(*rolling, ",") {
				n, _ := strconv.Atoi(f)
				s.procs = max(s.procs, n)
			}
		}
		out = append(out, s)
	}
	return out
}

func summary(r *result) string {
	med, max := medianMax(r.restarts)
	var s string
	switch {
	case r.shape == "rolling":
		rmed, rmax := medianMax(r.rolls)
		s = fmt.Sprintf("%d rolling restarts of %d workers, total median %v max %v; restart median %v max %v", len(r.rolls), r.procs, rmed, rmax, med, max)
	case r.shape == "rolling-hey":
		rmed, _ := medianMax(r.rolls)
		s = fmt.Sprintf("%d rolling restart of %d workers, %d ok, %d failed, total %v; restart median %v max %v", len(r.rolls), r.procs, r.ok, r.failed, rmed, med, max)
	case r.idle():
		s = fmt.Sprintf("%d restarts, restart median %v max %v", len(r.restarts), med, max)
	case r.udp():
		s = fmt.Sprintf("%d restarts, %d datagrams sent, %d lost (%d receive-buffer drops), restart median %v max %v", len(r.restarts), r.sent, r.lost(), r.rcvbuf, med, max)
	default:
		s = fmt.Sprintf("%d restarts, %d ok, %d failed, restart median %v max %v", len(r.restarts), r.ok, r.failed, med, max)
	}
	if r.err != nil {
		s += ", ERROR: " + r.err.Error()
	}
	return s
}

// runCase runs one case and cleans up after it, whatever happens.
func runCase(s spec, addr string) *result {
	r := &result{spec: s, errs: map[string]int{}}
	if s.migrate != "" {
		if err := os.WriteFile("/proc/sys/net/ipv4/tcp_migrate_req", []byte(s.migrate), 0); err != nil {
			r.err = err
			return r
		}
	}
	g, err := newGroup(s, addr)
	if err != nil {
		r.err = err
		return r
	}
	defer g.cleanup()
	switch {
	case s.idle():
		r.err = g.runIdle(r)
	case s.udp():
		r.err = g.runUDP(r)
	default:
		r.err = g.runHTTP(r)
	}
	return r
}

// An event is one line a server reported.
type event struct {
	kind, slot string
	pid        int
	n          int64
	line       string
}

var eventRE = regexp.MustCompile(`^(\S+) pid=(\d+) slot=(\S*)(?: n=(\d+))?`)

// A proc is a server process.
type proc struct {
	pid  int
	slot string
	gone chan struct{} // closed once the process has exited
}

// A group is the servers of one case, and the pipe they all report on.
type group struct {
	spec
	addr     string
	dir      string
	w        *os.File
	events   chan event // ready and error lines
	counts   chan event
	mu       sync.Mutex
	exits    map[int]event
	live     []*proc // by slot
	all      []*proc
	readDone chan struct{}
}

func newGroup(s spec, addr string) (*group, error) {
	dir, err := os.MkdirTemp("", "restartcase")
	if err != nil {
		return nil, err
	}
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	g := &group{spec: s, addr: addr, dir: dir, w: w, events: make(chan event, 64), counts: make(chan event, 64),
		exits: map[int]event{}, live: make([]*proc, s.procs), readDone: make(chan struct{})}
	go g.read(r)
	return g, nil
}

func (g *group) read(r *os.File) {
	defer close(g.readDone)
	defer r.Close()
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		m := eventRE.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		e := event{kind: m[1], slot: m[3], line: sc.Text()}
		e.pid, _ = strconv.Atoi(m[2])
		e.n, _ = strconv.ParseInt(m[4], 10, 64)
		switch e.kind {
		case "exit":
			g.mu.Lock()
			g.exits[e.pid] = e
			g.mu.Unlock()
		case "count":
			g.counts <- e
		default: // ready, error
			g.events <- e
		}
	}
}

// cleanup kills what is left of the case's servers.
func (g *group) cleanup() {
	for _, p := range g.all {
		select {
		case <-p.gone:
		default:
			unix.Kill(p.pid, unix.SIGKILL)
			<-p.gone
		}
	}
	g.w.Close()
	<-g.readDone
	os.RemoveAll(g.dir)
}

func (g *group) slotName(i int) string {
	if g.procs == 1 {
		return ""
	}
	return fmt.Sprintf("w%d", i)
}

// start starts a server process for slot i.
func (g *group) start(i int) (*proc, error) {
	proto := "http"
	if g.udp() {
		proto = "udp"
	}
	cmd := exec.Command(*server, "-proto", proto, "-mode", g.mode, "-addr", g.addr, "-k", strconv.Itoa(g.k),
		"-slot", g.slotName(i), "-mptcp="+strconv.FormatBool(g.mptcp), "-quiet", quiet.String(),
		"-seqfile", filepath.Join(g.dir, strconv.Itoa(len(g.all))+".seq"))
	cmd.Stdout, cmd.Stderr = g.w, os.Stderr
	cmd.SysProcAttr = orphanKill()
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &proc{pid: cmd.Process.Pid, slot: g.slotName(i), gone: make(chan struct{})}
	go func() {
		cmd.Wait()
		close(p.gone)
	}()
	g.all = append(g.all, p)
	return p, nil
}

// orphanKill makes a child die with the driver, so that no load or server
// outlives a driver that crashed. (The servers that tableflip starts
// end by themselves, at their -deadline.)
func orphanKill() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

// adopt watches a server process that another one started (tableflip's).
func (g *group) adopt(pid int, slot string) (*proc, error) {
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return nil, os.NewSyscallError("pidfd_open", err)
	}
	p := &proc{pid: pid, slot: slot, gone: make(chan struct{})}
	go func() {
		defer close(p.gone)
		defer unix.Close(fd)
		for {
			fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
			if _, err := unix.Poll(fds, -1); err == nil || !errors.Is(err, unix.EINTR) {
				break
			}
		}
		// This process is its subreaper once its parent has exited.
		var ws unix.WaitStatus
		unix.Wait4(pid, &ws, 0, nil)
	}()
	g.all = append(g.all, p)
	return p, nil
}

// ready waits for the next ready line, from pid if pid > 0.
func (g *group) ready(pid int) (event, error) {
	t := time.NewTimer(*limit)
	defer t.Stop()
	for {
		select {
		case e := <-g.events:
			if e.kind != "ready" {
				return e, fmt.Errorf("server: %s", e.line)
			}
			if pid > 0 && e.pid != pid {
				return e, fmt.Errorf("ready from pid %d, want %d", e.pid, pid)
			}
			return e, nil
		case <-t.C:
			return event{}, fmt.Errorf("no server ready after %v", *limit)
		}
	}
}

func (g *group) waitGone(p *proc) error {
	select {
	case <-p.gone:
		return nil
	case <-time.After(*limit):
		return fmt.Errorf("pid %d still running %v after it was replaced", p.pid, *limit)
	}
}

// startAll starts the first server of every slot.
func (g *group) startAll() error {
	for i := range g.live {
		p, err := g.start(i)
		if err != nil {
			return err
		}
		if _, err := g.ready(p.pid); err != nil {
			return err
		}
		g.live[i] = p
	}
	return nil
}

// replace replaces the server of slot i and returns the time from starting
// the new process (for tableflip: from asking for the upgrade) to the old
// one gone.
func (g *group) replace(i int) (time.Duration, error) {
	old := g.live[i]
	t0 := time.Now()
	var nw *proc
	var err error
	switch g.mode {
	case "reuse", "reuse-plain", "naive":
		if nw, err = g.start(i); err != nil {
			return 0, err
		}
		if _, err := g.ready(nw.pid); err != nil {
			return 0, err
		}
		if g.mode == "naive" {
			unix.Kill(old.pid, unix.SIGTERM)
		}
	case "tableflip", "tableflip-readme":
		unix.Kill(old.pid, unix.SIGHUP)
		e, err := g.ready(0)
		if err != nil {
			return 0, err
		}
		if e.pid == old.pid {
			return 0, fmt.Errorf("pid %d said ready again", old.pid)
		}
		if nw, err = g.adopt(e.pid, old.slot); err != nil {
			return 0, err
		}
	default:
		return 0, fmt.Errorf("unknown replacement mode %q", g.mode)
	}
	g.live[i] = nw
	if err := g.waitGone(old); err != nil {
		return 0, err
	}
	return time.Since(t0), nil
}

// stopAll stops every live server and waits until they are gone.
func (g *group) stopAll() error {
	for _, p := range g.live {
		if p != nil {
			unix.Kill(p.pid, unix.SIGTERM)
		}
	}
	for _, p := range g.live {
		if p != nil {
			if err := g.waitGone(p); err != nil {
				return err
			}
		}
	}
	return nil
}

// snapshot asks every live server for its count.
func (g *group) snapshot() (map[string]int64, error) {
	for _, p := range g.live {
		unix.Kill(p.pid, unix.SIGUSR1)
	}
	m := map[string]int64{}
	for range g.live {
		select {
		case e := <-g.counts:
			m[e.slot] = e.n
		case <-time.After(*limit):
			return nil, errors.New("a server did not report its count")
		}
	}
	return m, nil
}

func (g *group) restartAll(r *result) error {
	time.Sleep(*warm)
	if g.shape == "rolling" || g.shape == "rolling-hey" {
		return g.roll(r)
	}
	for i := 0; i < *restarts; i++ {
		if err := g.restart(r, i%g.procs); err != nil {
			return fmt.Errorf("restart %d: %w", i+1, err)
		}
		time.Sleep(*gap)
	}
	return nil
}

// restart replaces the server of slot i and records the time it took.
func (g *group) restart(r *result, i int) error {
	d, err := g.replace(i)
	if err != nil {
		return err
	}
	r.restarts = append(r.restarts, d)
	r.slots = append(r.slots, i)
	return nil
}

// roll restarts every slot in turn, each restart starting once the
// previous old process is gone: -rolls times (rolling-hey: once), -gap
// apart.
func (g *group) roll(r *result) error {
	n := *rolls
	if g.shape == "rolling-hey" {
		n = 1
	}
	for j := 0; j < n; j++ {
		if j > 0 {
			time.Sleep(*gap)
		}
		start := time.Now()
		for i := 0; i < g.procs; i++ {
			if err := g.restart(r, i); err != nil {
				return fmt.Errorf("rolling restart %d, slot %d: %w", j+1, i+1, err)
			}
		}
		r.rolls = append(r.rolls, time.Since(start))
	}
	return nil
}

// runIdle restarts the servers without load: -restarts times, one slot
// after the other, -gap apart; or rolling restarts.
func (g *group) runIdle(r *result) error {
	if err := g.startAll(); err != nil {
		return err
	}
	if err := g.restartAll(r); err != nil {
		return err
	}
	return g.stopAll()
}

func (g *group) runHTTP(r *result) error {
	if err := g.startAll(); err != nil {
		return err
	}
	var out bytes.Buffer
	hey := exec.Command(*heyPath, "-z", "10m", "-c", strconv.Itoa(*conc), "-disable-keepalive", "http://"+g.addr+"/")
	hey.Stdout, hey.Stderr = &out, &out
	hey.SysProcAttr = orphanKill()
	if err := hey.Start(); err != nil {
		return err
	}
	heyDone := make(chan error, 1)
	go func() { heyDone <- hey.Wait() }()
	stopHey := func() error {
		hey.Process.Signal(os.Interrupt)
		select {
		case err := <-heyDone:
			return err
		case <-time.After(*limit):
			hey.Process.Kill()
			return errors.New("hey did not stop")
		}
	}
	if err := g.restartAll(r); err != nil {
		stopHey()
		return err
	}
	// Every listing of the namespace's sockets passes what hey's
	// connections left in TIME_WAIT.
	r.tcpSocks, _ = tcpSockets()
	var snapA, snapB map[string]int64
	var err error
	if g.procs > 1 {
		if snapA, err = g.snapshot(); err != nil {
			stopHey()
			return err
		}
		time.Sleep(*afterLoad)
		if snapB, err = g.snapshot(); err != nil {
			stopHey()
			return err
		}
	}
	if err := stopHey(); err != nil {
		return fmt.Errorf("hey: %v\n%s", err, out.String())
	}
	if err := parseHey(out.String(), r); err != nil {
		return err
	}
	if err := g.stopAll(); err != nil {
		return err
	}
	if g.procs > 1 {
		// During: everything the replaced servers served, and what the live
		// ones had served when the last restart was done.
		r.during = map[string]int64{}
		live := map[int]bool{}
		for _, p := range g.live {
			live[p.pid] = true
			r.during[p.slot] += snapA[p.slot]
		}
		g.mu.Lock()
		for pid, e := range g.exits {
			if !live[pid] {
				r.during[e.slot] += e.n
			}
		}
		g.mu.Unlock()
		r.after = map[string]int64{}
		for s, n := range snapB {
			r.after[s] = n - snapA[s]
		}
	}
	return nil
}

var (
	slowestRE = regexp.MustCompile(`(?m)^\s*Slowest:\s+([0-9.]+) secs`)
	statusRE  = regexp.MustCompile(`(?m)^\s*\[(\d+)\]\s+(\d+) responses`)
	errorRE   = regexp.MustCompile(`(?m)^\s*\[(\d+)\]\t(.*)$`)
)

// parseHey reads hey's summary: the status code distribution, and the error
// distribution grouped by the last part of each message (its addresses and
// ports differ from one connection to the next).
func parseHey(out string, r *result) error {
	i := strings.Index(out, "Status code distribution:")
	if i < 0 {
		return fmt.Errorf("no status code distribution in hey's output:\n%s", out)
	}
	if m := slowestRE.FindStringSubmatch(out); m != nil {
		secs, _ := strconv.ParseFloat(m[1], 64)
		r.slowest = time.Duration(secs * float64(time.Second)).Round(time.Millisecond)
	}
	tail := out[i:]
	statuses := tail
	if j := strings.Index(tail, "Error distribution:"); j >= 0 {
		statuses = tail[:j]
		for _, m := range errorRE.FindAllStringSubmatch(tail[j:], -1) {
			n, _ := strconv.Atoi(m[1])
			msg := m[2]
			if k := strings.LastIndex(msg, ": "); k >= 0 {
				msg = msg[k+2:]
			}
			r.errs[msg] += n
			r.failed += n
		}
	}
	for _, m := range statusRE.FindAllStringSubmatch(statuses, -1) {
		code, _ := strconv.Atoi(m[1])
		n, _ := strconv.Atoi(m[2])
		if code == 200 {
			r.ok += n
		} else {
			r.failed += n
			r.errs[fmt.Sprintf("status %d", code)] += n
		}
	}
	// hey keeps at most 1,000,000 status codes.
	if r.ok+r.failed >= 1_000_000 {
		return fmt.Errorf("hey counted %d requests, at its cap of 1,000,000: shorten the run", r.ok+r.failed)
	}
	return nil
}

func (g *group) runUDP(r *result) error {
	if err := g.startAll(); err != nil {
		return err
	}
	raddr, err := net.ResolveUDPAddr("udp", g.addr)
	if err != nil {
		return err
	}
	conns := make([]*net.UDPConn, *srcPorts)
	for i := range conns {
		if conns[i], err = net.DialUDP("udp", nil, raddr); err != nil {
			return err
		}
		defer conns[i].Close()
	}
	before, err := rcvbufErrors()
	if err != nil {
		return err
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	var failedSeqs []uint64
	var seq uint64
	go func() {
		defer close(done)
		// Paced in 1 ms steps; the sequence number is the datagram's first 8
		// bytes, in a 64-byte payload. After a stall (the machine is shared),
		// the schedule moves on rather than sending a burst that would fill
		// the receivers' buffers: at most 2 ms of datagrams at once.
		buf := make([]byte, 64)
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		rate := float64(*udpRate)
		burst := uint64(max(1, *udpRate/500))
		start := time.Now()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			due := uint64(time.Since(start).Seconds() * rate)
			if due > seq+burst {
				start = start.Add(time.Duration(float64(due-seq-burst) / rate * float64(time.Second)))
				due = seq + burst
			}
			for ; seq < due; seq++ {
				putSeq(buf, seq)
				if _, err := conns[seq%uint64(len(conns))].Write(buf); err != nil {
					failedSeqs = append(failedSeqs, seq)
				}
			}
		}
	}()
	err = g.restartAll(r)
	time.Sleep(*gap)
	close(stop)
	<-done
	if err != nil {
		return err
	}
	// Let the servers read what is queued before they close.
	time.Sleep(500 * time.Millisecond)
	if err := g.stopAll(); err != nil {
		return err
	}
	afterErrs, err := rcvbufErrors()
	if err != nil {
		return err
	}
	r.rcvbuf = afterErrs - before
	r.sent = int(seq) - len(failedSeqs)
	r.sendErrs = len(failedSeqs)
	got := make([]bool, seq)
	for _, s := range failedSeqs {
		got[s] = true // not sent: neither lost nor received
	}
	files, err := filepath.Glob(filepath.Join(g.dir, "*.seq"))
	if err != nil {
		return err
	}
	if len(files) != len(g.all) {
		return fmt.Errorf("%d sequence files for %d servers", len(files), len(g.all))
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		for ; len(b) >= 8; b = b[8:] {
			s := getSeq(b)
			if s >= seq {
				return fmt.Errorf("%s: sequence number %d never sent", f, s)
			}
			if got[s] {
				r.dups++
			} else {
				got[s] = true
				r.recv++
			}
		}
	}
	return nil
}

func putSeq(b []byte, v uint64) {
	for i := 0; i < 8; i++ {
		b[i] = byte(v >> (8 * i))
	}
}

func getSeq(b []byte) uint64 {
	var v uint64
	for i := 0; i < 8; i++ {
		v |= uint64(b[i]) << (8 * i)
	}
	return v
}

// tcpSockets counts the TCP sockets of the network namespace, as
// /proc/net/tcp and tcp6 list them (a header line each).
func tcpSockets() (int, error) {
	n := 0
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, err := os.ReadFile(f)
		if err != nil {
			return 0, err
		}
		n += bytes.Count(b, []byte("\n")) - 1
	}
	return n, nil
}

// rcvbufErrors reads the network namespace's count of UDP datagrams dropped
// for a full receive buffer.
func rcvbufErrors() (int, error) {
	b, err := os.ReadFile("/proc/net/snmp")
	if err != nil {
		return 0, err
	}
	var names []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] != "Udp:" {
			continue
		}
		if names == nil {
			names = f
			continue
		}
		for i, n := range names {
			if n == "RcvbufErrors" && i < len(f) {
				return strconv.Atoi(f[i])
			}
		}
	}
	return 0, errors.New("no Udp RcvbufErrors in /proc/net/snmp")
}

func medianMax(ds []time.Duration) (med, max time.Duration) {
	if len(ds) == 0 {
		return 0, 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	if len(s)%2 == 1 {
		med = s[len(s)/2]
	} else {
		med = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return med.Round(time.Millisecond), s[len(s)-1].Round(time.Millisecond)
}

var modeNames = map[string]string{
	"reuse":            "reuse.Handover",
	"reuse-plain":      "reuse.Handover, Shutdown at once after Replaced",
	"naive":            "naive (Share, old shuts down at once)",
	"tableflip-readme": "tableflip v1.2.3, its net/http example",
	"tableflip":        "tableflip v1.2.3, first requests read before Shutdown",
}

func shapeName(s spec) string {
	switch s.shape {
	case "one":
		return "(a) 1 listener → 1"
	case "group":
		return fmt.Sprintf("(b) group of %d listeners → %d", s.k, s.k)
	case "workers":
		return fmt.Sprintf("(c) %d worker processes, one at a time", s.procs)
	case "udp-group":
		return fmt.Sprintf("(d) UDP, 1 process with %d sockets → %d", s.k, s.k)
	case "udp-workers":
		return fmt.Sprintf("(d) UDP, %d processes of 1 socket, one at a time", s.procs)
	case "idle-one":
		return "(e) idle, 1 listener → 1"
	case "idle-workers":
		return fmt.Sprintf("(f) idle, %d worker processes, one at a time", s.procs)
	case "rolling":
		return fmt.Sprintf("(g) idle, rolling restart of %d worker processes", s.procs)
	case "rolling-hey":
		return fmt.Sprintf("(h) rolling restart of %d worker processes", s.procs)
	}
	return s.shape
}

// stats are the order statistics of a set of durations.
type stats struct {
	n                     int
	min, q1, med, q3, max time.Duration
}

// statsOf returns the order statistics of ds; the quartiles interpolate
// between the two nearest samples (R's type 7, as numpy's default).
func statsOf(ds []time.Duration) stats {
	if len(ds) == 0 {
		return stats{}
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	q := func(p float64) time.Duration {
		x := p * float64(len(s)-1)
		i := int(x)
		if i+1 >= len(s) {
			return s[i]
		}
		return s[i] + time.Duration((x-float64(i))*float64(s[i+1]-s[i]))
	}
	ms := func(d time.Duration) time.Duration { return d.Round(time.Millisecond) }
	return stats{n: len(s), min: ms(s[0]), q1: ms(q(0.25)), med: ms(q(0.5)), q3: ms(q(0.75)), max: ms(s[len(s)-1])}
}

// String writes "median (quartiles Q1–Q3, min–max)".
func (s stats) String() string {
	if s.n == 0 {
		return "-"
	}
	return fmt.Sprintf("**%v** (%v–%v; %v–%v)", s.med, s.q1, s.q3, s.min, s.max)
}

// ratio writes a ÷ b with two decimals.
func ratio(a, b time.Duration) string {
	if a == 0 || b == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f", float64(a)/float64(b))
}

// bySlot returns the restarts of r by slot.
func bySlot(r *result) [][]time.Duration {
	out := make([][]time.Duration, r.procs)
	for i, d := range r.restarts {
		out[r.slots[i]] = append(out[r.slots[i]], d)
	}
	return out
}

// find returns the result of the case like s but of shape and mode, or nil.
func find(results []*result, s spec, shape, mode string) *result {
	for _, r := range results {
		if r.shape == shape && r.mode == mode && r.mptcp == s.mptcp && r.migrate == s.migrate {
			return r
		}
	}
	return nil
}

// restartTables writes the tables of restart times: one process beside
// tableflip (idle, then under hey), each worker slot, and rolling restarts.
func restartTables(w io.Writer, results []*result) {
	var idleOne, heyOne, slotted, rolled []*result
	for _, r := range results {
		switch {
		case r.mode == "reuse" && r.shape == "idle-one":
			idleOne = append(idleOne, r)
		case r.mode == "reuse" && r.shape == "one":
			heyOne = append(heyOne, r)
		case r.mode == "reuse" && r.procs > 1 && !strings.HasPrefix(r.shape, "rolling"):
			slotted = append(slotted, r)
		case strings.HasPrefix(r.shape, "rolling"):
			rolled = append(rolled, r)
		}
	}
	if len(idleOne) > 0 {
		fmt.Fprintln(w, "### Restart time, idle: one process beside tableflip")
		fmt.Fprintln(w)
		fmt.Fprintln(w, "Start new → old gone, no load: **median** (quartiles; min–max).")
		besideTableflip(w, results, idleOne, false)
	}
	if len(heyOne) > 0 {
		fmt.Fprintln(w, "### Restart time under hey: one process beside tableflip")
		fmt.Fprintln(w)
		fmt.Fprintln(w, "Start new → old gone, from the cases (a) above: **median** (quartiles; min–max).")
		besideTableflip(w, results, heyOne, true)
	}
	if len(slotted) > 0 {
		slotTable(w, slotted)
	}
	if len(rolled) > 0 {
		rollingTable(w, rolled)
	}
}

// besideTableflip writes a table of the restart times of reuse's cases rs
// beside those of tableflip's cases of the same shape and settings, and
// their ratio; readme adds the median of tableflip's net/http example.
func besideTableflip(w io.Writer, results, rs []*result, readme bool) {
	fmt.Fprintln(w)
	head := "| MPTCP | tcp_migrate_req | restarts | reuse.Handover | " + modeNames["tableflip"] + " | reuse ÷ tableflip (medians) |"
	if readme {
		head += " " + modeNames["tableflip-readme"] + ", median |"
	}
	fmt.Fprintln(w, head)
	fmt.Fprintln(w, "|"+strings.Repeat("---|", strings.Count(head, "|")-1))
	for _, r := range rs {
		a, b := statsOf(r.restarts), stats{}
		if t := find(results, r.spec, r.shape, "tableflip"); t != nil {
			b = statsOf(t.restarts)
		}
		fmt.Fprintf(w, "| %s | %s | %d | %v | %v | **%s** |", onOff(r.mptcp), r.migrate, a.n, a, b, ratio(a.med, b.med))
		if readme {
			c := stats{}
			if t := find(results, r.spec, r.shape, "tableflip-readme"); t != nil {
				c = statsOf(t.restarts)
			}
			fmt.Fprintf(w, " %v |", c.med)
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintln(w)
}

// slotTable writes the median restart time of each worker slot of rs.
func slotTable(w io.Writer, rs []*result) {
	fmt.Fprintln(w, "### Restart time of each worker slot")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "reuse.Handover, start new → old gone: the **median** of each slot's restarts (slot 1 is the first worker started), and over all slots the median (min–max).")
	fmt.Fprintln(w)
	n := 0
	for _, r := range rs {
		n = max(n, r.procs)
	}
	fmt.Fprint(w, "| shape | MPTCP | tcp_migrate_req | restarts per slot |")
	for i := 1; i <= n; i++ {
		fmt.Fprintf(w, " slot %d |", i)
	}
	fmt.Fprintln(w, " all slots | last slot ÷ first |")
	fmt.Fprintln(w, "|---|---|---|---|"+strings.Repeat("---|", n)+"---|---|")
	for _, r := range rs {
		slots := bySlot(r)
		fmt.Fprintf(w, "| %s | %s | %s | %d |", shapeName(r.spec), onOff(r.mptcp), orNA(r.migrate), len(slots[0]))
		for i := 0; i < n; i++ {
			if i < len(slots) {
				fmt.Fprintf(w, " **%v** |", statsOf(slots[i]).med)
			} else {
				fmt.Fprint(w, " |")
			}
		}
		all := statsOf(r.restarts)
		fmt.Fprintf(w, " %v (%v–%v) | %s |\n", all.med, all.min, all.max,
			ratio(statsOf(slots[len(slots)-1]).med, statsOf(slots[0]).med))
	}
	fmt.Fprintln(w)
}

// rollingTable writes the total times of the rolling restarts rs, and how
// they grow with the number of workers.
func rollingTable(w io.Writer, rs []*result) {
	fmt.Fprintln(w, "### Rolling restarts")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "reuse.Handover: every worker slot restarted in turn, each restart starting once the previous slot's old process is gone; idle (g), or under hey (h, whose failed requests are in the first table). *Total*: from starting the first new process to the last old one gone, **median** (min–max) of the rolling restarts; *per worker*: the median total ÷ the workers; the next column divides that by the first row's of the same load and settings (at most about 1: the total grows at most linearly with the workers).")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| load | MPTCP | tcp_migrate_req | workers | rolling restarts | total | per worker | per worker ÷ first row's | each restart: median (min–max) |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|")
	var base time.Duration
	for i, r := range rs {
		t := statsOf(r.rolls)
		per := (t.med / time.Duration(r.procs)).Round(time.Millisecond)
		if i == 0 || rs[i-1].shape != r.shape || rs[i-1].mptcp != r.mptcp || rs[i-1].migrate != r.migrate {
			base = per
		}
		load := "idle"
		if r.shape == "rolling-hey" {
			load = fmt.Sprintf("hey -c %d", *conc)
		}
		total := fmt.Sprintf("**%v** (%v–%v)", t.med, t.min, t.max)
		if r.err != nil {
			total = "ERROR: " + strings.ReplaceAll(r.err.Error(), "\n", " ")
		}
		all := statsOf(r.restarts)
		fmt.Fprintf(w, "| %s | %s | %s | %d | %d | %s | %v | %s | %v (%v–%v) |\n", load, onOff(r.mptcp), r.migrate, r.procs, t.n, total, per, ratio(per, base), all.med, all.min, all.max)
	}
	fmt.Fprintln(w)
}

func orNA(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func report(w io.Writer, results []*result, notes []string) {
	for _, n := range notes {
		fmt.Fprintf(w, "Note: %s.\n\n", n)
	}
	q := "the package's default"
	if *quiet != 0 {
		q = quiet.String()
	}
	fmt.Fprintf(w, "reuse.Handover's Quiet: %s. Restarts per case: %d, %v apart, after %v of load.\n\n", q, *restarts, *gap, *warm)
	var http, udp, workers []*result
	for _, r := range results {
		switch {
		case r.idle():
		case r.udp():
			udp = append(udp, r)
		default:
			http = append(http, r)
		}
		if r.after != nil {
			workers = append(workers, r)
		}
	}
	if len(http) > 0 {
		fmt.Fprintf(w, "### HTTP: failed requests (hey -disable-keepalive -c %d)\n\n", *conc)
		fmt.Fprintln(w, "| shape | replacement | MPTCP | tcp_migrate_req | restarts | requests answered 200 | failed | hey's errors | slowest request | start new → old gone, median | max | TCP sockets in the namespace |")
		fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|---|---|---|")
		for _, r := range http {
			med, max := medianMax(r.restarts)
			fmt.Fprintf(w, "| %s | %s | %v | %s | %d | %d | **%d** | %s | %v | %v | %v | %d |\n",
				shapeName(r.spec), modeNames[r.mode], onOff(r.mptcp), r.migrate, len(r.restarts), r.ok, r.failed, errText(r), r.slowest, med, max, r.tcpSocks)
		}
		fmt.Fprintln(w)
	}
	if len(workers) > 0 {
		fmt.Fprintln(w, "### Worker processes: each slot's share of the requests")
		fmt.Fprintln(w)
		fmt.Fprintf(w, "During: from the start to the last restart (every process that held the slot). After: the %v of load that followed.\n\n", *afterLoad)
		fmt.Fprintln(w, "| shape | replacement | MPTCP | tcp_migrate_req | during | after |")
		fmt.Fprintln(w, "|---|---|---|---|---|---|")
		for _, r := range workers {
			fmt.Fprintf(w, "| %s | %s | %v | %s | %s | %s |\n", shapeName(r.spec), modeNames[r.mode], onOff(r.mptcp), r.migrate, shares(r.during), shares(r.after))
		}
		fmt.Fprintln(w)
	}
	if len(udp) > 0 {
		fmt.Fprintf(w, "### UDP: lost datagrams (%d datagrams/s from %d source ports, numbered)\n\n", *udpRate, *srcPorts)
		fmt.Fprintln(w, "| shape | replacement | restarts | sent | received | **lost** | of which receive-buffer drops | duplicates | start new → old gone, median | max |")
		fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|---|")
		for _, r := range udp {
			med, max := medianMax(r.restarts)
			lost := strconv.Itoa(r.lost())
			if r.err != nil {
				lost = "ERROR: " + r.err.Error()
			}
			fmt.Fprintf(w, "| %s | %s | %d | %d | %d | **%s** | %d | %d | %v | %v |\n",
				shapeName(r.spec), modeNames[r.mode], len(r.restarts), r.sent, r.recv, lost, r.rcvbuf, r.dups, med, max)
		}
		fmt.Fprintln(w)
	}
	restartTables(w, results)
	for _, r := range results {
		if r.idle() && r.err != nil {
			fmt.Fprintf(w, "**Failed**: %s, %s, MPTCP %s, tcp_migrate_req %s: %s\n\n", shapeName(r.spec), modeNames[r.mode], onOff(r.mptcp), r.migrate, strings.ReplaceAll(r.err.Error(), "\n", " "))
		}
	}
}

func onOff(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func errText(r *result) string {
	if r.err != nil {
		return "ERROR: " + strings.ReplaceAll(r.err.Error(), "\n", " ")
	}
	var keys []string
	for k := range r.errs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%d × %s", r.errs[k], k))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, "; ")
}

// shares formats the requests of each slot as percentages of their sum.
func shares(m map[string]int64) string {
	var keys []string
	var sum int64
	for k, n := range m {
		keys = append(keys, k)
		sum += n
	}
	// w2 before w10
	sort.Slice(keys, func(i, j int) bool {
		return len(keys[i]) < len(keys[j]) || len(keys[i]) == len(keys[j]) && keys[i] < keys[j]
	})
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s %.1f%%", k, 100*float64(m[k])/math.Max(1, float64(sum))))
	}
	return fmt.Sprintf("%s (of %d)", strings.Join(parts, ", "), sum)
}

func contains(bs []bool, b bool) bool {
	for _, x := range bs {
		if x == b {
			return true
		}
	}
	return false
}

func without(bs []bool, b bool) []bool {
	var out []bool
	for _, x := range bs {
		if x != b {
			out = append(out, x)
		}
	}
	return out
}
