// Command dtls restarts a DTLS server (pion/dtls) under live sessions, two
// ways, side by side in one run:
//
//   - flows: the server accepts flows with reuse.ListenFlows and runs
//     dtls.Server on each flow's Conn; a reuse.Handover of the listener
//     gives new sessions to the new process, and the old sessions stay with
//     the old process, which keeps serving them;
//   - plain: the server runs pion's own demultiplexing listener (dtls.Listen,
//     pion/transport's udp listener) on one socket from reuse.ListenPacket,
//     handed over with a reuse.Handover: every datagram goes to the new
//     process, which knows none of the old sessions.
//
// Each run starts a server process, opens -sessions DTLS sessions that
// exchange numbered messages (one in flight each, 3 s to answer), starts a
// second server process that takes over, opens -new sessions more, and
// reports which process answered and how many sessions broke.
//
//	go run . -sessions 100 -new 10 -after 2s
package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"

	"github.com/pion/dtls/v4"
	"github.com/pion/dtls/v4/pkg/crypto/selfsign"

	"github.com/sockreuse/reuse"
)

func main() {
	serve := flag.String("serve", "", "run as a server: flows or plain (internal)")
	addr := flag.String("addr", "127.0.0.1:0", "the server's address")
	sessions := flag.Int("sessions", 100, "live sessions through the restart")
	newSessions := flag.Int("new", 10, "sessions opened after the restart")
	after := flag.Duration("after", 2*time.Second, "how long the sessions go on after the restart")
	only := flag.String("only", "", "run one mode only: flows or plain")
	flag.Parse()
	if *serve != "" {
		if err := server(*serve, *addr); err != nil {
			log.Fatal(err)
		}
		return
	}
	ok := true
	for _, mode := range []string{"flows", "plain"} {
		if *only != "" && mode != *only {
			continue
		}
		r, err := restart(mode, *addr, *sessions, *newSessions, *after)
		if err != nil {
			log.Fatalf("%s: %v", mode, err)
		}
		fmt.Println(r)
		if mode == "flows" && (r.broken != 0 || r.newOnNew != *newSessions) {
			ok = false
		}
		if mode == "plain" && r.broken == 0 {
			ok = false // the contrast is gone: say so
		}
	}
	if !ok {
		fmt.Println("FAIL: flows must keep every session and give every new one to the new process; plain must break some")
		os.Exit(1)
	}
}

// result is what one restart showed.
type result struct {
	mode               string
	sessions, broken   int
	oldAnswers, moved  int // answers after the restart by the old process; sessions answered by the new one
	newSessions        int
	newOnNew, newOnOld int
	newFailed          int
	takeover           time.Duration
	firstBreak         string
}

func (r result) String() string {
	s := fmt.Sprintf("%-5s %d live sessions through a restart (takeover %v): %d broken, %d answers from the old process after it, %d sessions answered by the new process; %d new sessions: %d on the new process, %d on the old, %d failed",
		r.mode, r.sessions, r.takeover.Round(time.Millisecond), r.broken, r.oldAnswers, r.moved, r.newSessions, r.newOnNew, r.newOnOld, r.newFailed)
	if r.firstBreak != "" {
		s += "\n      first break: " + r.firstBreak
	}
	return s
}

// restart runs one restart of a server in mode under live sessions.
func restart(mode, addr string, sessions, newSessions int, after time.Duration) (result, error) {
	r := result{mode: mode, sessions: sessions, newSessions: newSessions}
	old, err := startServer(mode, addr)
	if err != nil {
		return r, err
	}
	defer old.kill()
	addr = old.addr
	old.send("takeover") // nobody serves addr: at once, and a successor finds it
	if _, err := old.expect("took over", 30*time.Second); err != nil {
		return r, err
	}
	var clients []*client
	for i := 0; i < sessions; i++ {
		c, err := dial(addr)
		if err != nil {
			return r, fmt.Errorf("session %d: %w", i, err)
		}
		defer c.Close()
		if pid, err := c.exchange(0); err != nil || pid != old.pid {
			return r, fmt.Errorf("session %d: first answer from %q (old %s): %v", i, pid, old.pid, err)
		}
		clients = append(clients, c)
	}
	// The sessions exchange messages, one in flight each, all through.
	done := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	for _, c := range clients {
		wg.Add(1)
		go func(c *client) {
			defer wg.Done()
			for seq := 1; ; seq++ {
				select {
				case <-done:
					return
				default:
				}
				pid, err := c.exchange(seq)
				mu.Lock()
				if err != nil && !c.broken {
					c.broken = true
					r.broken++
					if r.firstBreak == "" {
						r.firstBreak = err.Error()
					}
				}
				c.answers[pid]++
				mu.Unlock()
				if err != nil {
					return
				}
				time.Sleep(5 * time.Millisecond)
			}
		}(c)
	}
	time.Sleep(200 * time.Millisecond)
	next, err := startServer(mode, addr)
	if err != nil {
		close(done)
		wg.Wait()
		return r, err
	}
	defer next.kill()
	start := time.Now()
	next.send("takeover")
	if _, err := next.expect("took over", 30*time.Second); err != nil {
		close(done)
		wg.Wait()
		return r, err
	}
	r.takeover = time.Since(start)
	if _, err := old.expect("replaced", 30*time.Second); err != nil {
		close(done)
		wg.Wait()
		return r, err
	}
	mu.Lock()
	before := map[*client]int{}
	for _, c := range clients {
		before[c] = c.answers[old.pid]
	}
	mu.Unlock()
	for i := 0; i < newSessions; i++ {
		c, err := dial(addr)
		if err != nil {
			r.newFailed++
			continue
		}
		switch pid, err := c.exchange(0); {
		case err != nil:
			r.newFailed++
		case pid == next.pid:
			r.newOnNew++
		case pid == old.pid:
			r.newOnOld++
		}
		c.Close()
	}
	time.Sleep(after)
	close(done)
	wg.Wait()
	for _, c := range clients {
		r.oldAnswers += c.answers[old.pid] - before[c]
		if c.answers[next.pid] > 0 {
			r.moved++
		}
	}
	old.send("close")
	next.send("close")
	return r, nil
}

// client is one DTLS session.
type client struct {
	*dtls.Conn
	answers map[string]int // by pid
	broken  bool
}

func dial(addr string) (*client, error) {
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, err
	}
	c, err := dtls.Dial("udp", ua, dtls.WithInsecureSkipVerify(true))
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.HandshakeContext(ctx); err != nil {
		c.Close()
		return nil, fmt.Errorf("handshake: %w", err)
	}
	return &client{Conn: c, answers: map[string]int{}}, nil
}

// exchange sends message seq and returns the pid of the process that
// answered it.
func (c *client) exchange(seq int) (string, error) {
	msg := fmt.Sprintf("seq %d", seq)
	c.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := c.Write([]byte(msg)); err != nil {
		return "", err
	}
	b := make([]byte, 256)
	n, err := c.Read(b)
	if err != nil {
		return "", fmt.Errorf("no answer to %q: %w", msg, err)
	}
	pid, rest, _ := strings.Cut(string(b[:n]), " ")
	if rest != msg {
		return "", fmt.Errorf("answer %q to %q", b[:n], msg)
	}
	return pid, nil
}

// serverProc is a server process.
type serverProc struct {
	cmd   *exec.Cmd
	stdin interface{ Write([]byte) (int, error) }
	lines chan string
	addr  string
	pid   string
}

func startServer(mode, addr string) (*serverProc, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe, "-serve", mode, "-addr", addr)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &serverProc{cmd: cmd, stdin: stdin, lines: make(chan string, 16), pid: fmt.Sprint(cmd.Process.Pid)}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			p.lines <- sc.Text()
		}
		close(p.lines)
	}()
	line, err := p.expect("addr ", 10*time.Second)
	if err != nil {
		p.kill()
		return nil, err
	}
	p.addr = strings.TrimPrefix(line, "addr ")
	return p, nil
}

func (p *serverProc) send(cmd string) { fmt.Fprintln(p.stdin, cmd) }

func (p *serverProc) expect(prefix string, timeout time.Duration) (string, error) {
	deadline := time.After(timeout)
	for {
		select {
		case line, ok := <-p.lines:
			if !ok {
				return "", fmt.Errorf("server %s exited before %q", p.pid, prefix)
			}
			if strings.HasPrefix(line, prefix) {
				return line, nil
			}
		case <-deadline:
			return "", fmt.Errorf("server %s printed no %q in %v", p.pid, prefix, timeout)
		}
	}
}

func (p *serverProc) kill() {
	done := make(chan struct{})
	go func() { p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		p.cmd.Process.Kill()
		<-done
	}
}

// server serves DTLS on addr in mode until told "close" on stdin. It
// prints "addr A"; "takeover" makes it take the address over, print "took
// over", and, once replaced, stop accepting (its sessions go on).
func server(mode, addr string) error {
	cert, err := selfsign.GenerateSelfSigned()
	if err != nil {
		return err
	}
	pid := fmt.Sprint(os.Getpid())
	var sock any // what the Handover takes
	var ln net.Listener
	switch mode {
	case "flows":
		fl, err := reuse.ListenFlows("udp", addr)
		if err != nil {
			return err
		}
		sock, ln = fl, &dtlsFlows{fl, cert}
	case "plain":
		pc, err := reuse.ListenPacket("udp", addr)
		if err != nil {
			return err
		}
		if ln, err = dtls.Listen(pc, dtls.WithCertificates(cert)); err != nil {
			return err
		}
		sock = pc
	default:
		return fmt.Errorf("mode %q: want flows or plain", mode)
	}
	fmt.Println("addr", ln.Addr())
	var mu sync.Mutex
	conns := map[net.Conn]bool{}
	go func() {
		for {
			c, err := ln.Accept()
			if errors.Is(err, net.ErrClosed) {
				return
			}
			if err != nil {
				continue // a failed handshake
			}
			mu.Lock()
			conns[c] = true
			mu.Unlock()
			go func() {
				b := make([]byte, 1500)
				for {
					n, err := c.Read(b)
					if err != nil {
						return
					}
					c.Write([]byte(pid + " " + string(b[:n])))
				}
			}()
		}
	}()
	ho := new(reuse.Handover)
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		switch sc.Text() {
		case "takeover":
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			err := ho.TakeOver(ctx, sock)
			cancel()
			if err != nil {
				return err
			}
			fmt.Println("took over")
			go func() {
				<-ho.Replaced()
				if mode == "flows" {
					ln.Close() // the sessions accepted go on
				} else {
					// No datagram reaches the socket any more, and
					// the new process gets its sessions' datagrams:
					// let go of it (pion's listener would hold it
					// until every session closed), sending nothing.
					sock.(net.PacketConn).Close()
				}
				ho.Close()
				fmt.Println("replaced")
			}()
		case "close":
			ln.Close()
			mu.Lock()
			for c := range conns {
				c.Close()
			}
			mu.Unlock()
			return ho.Close()
		}
	}
	return sc.Err()
}

// dtlsFlows is a net.Listener of DTLS sessions, one on each flow of a
// reuse.FlowListener.
type dtlsFlows struct {
	*reuse.FlowListener
	cert tls.Certificate
}

func (l *dtlsFlows) Accept() (net.Conn, error) {
	c, err := l.FlowListener.Accept()
	if err != nil {
		return nil, err
	}
	// The handshake runs on the session's first Read.
	dc, err := dtls.Server(flowPacketConn{c}, c.RemoteAddr(), dtls.WithCertificates(l.cert))
	if err != nil {
		c.Close()
		return nil, err
	}
	return dc, nil
}

// flowPacketConn is a flow's Conn as the net.PacketConn that dtls.Server
// takes: every datagram from, and to, the flow's remote address.
type flowPacketConn struct{ net.Conn }

func (c flowPacketConn) ReadFrom(b []byte) (int, net.Addr, error) {
	n, err := c.Read(b)
	return n, c.RemoteAddr(), err
}

func (c flowPacketConn) WriteTo(b []byte, _ net.Addr) (int, error) { return c.Write(b) }
