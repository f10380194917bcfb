package reuse_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sockreuse/reuse"
	"github.com/sockreuse/reuse/internal/sockettest"
)

// The hijack catalogue: each test tries to take a port that a socket of the
// package holds, from another user (a worker as uid 65534) or from the same
// user, and asserts that it is refused; a contrast in the same test shows an
// attempt that succeeds, so that the test can tell the two apart.

func init() {
	sockettest.Register("bind", bindWorker)
}

// bindWorker binds args[2] on network args[1], with the package under Share
// (args[0] == "reuse") or with plain net and the options named in args[0]
// ("reuseaddr", "reuseaddr+reuseport"). It prints "refused ERRNO: error" or
// "bound"; a bound datagram socket then counts the datagrams it receives
// until none comes for a second, and prints "received N".
func bindWorker(args []string) error {
	if len(args) != 3 {
		return fmt.Errorf("want how, network, address; got %q", args)
	}
	how, network, address := args[0], args[1], args[2]
	var c interface{ Close() error }
	var err error
	if how == "reuse" {
		if strings.HasPrefix(network, "udp") {
			c, err = reuse.ListenPacket(network, address)
		} else {
			c, err = reuse.Listen(network, address)
		}
	} else {
		c, err = listenWithOptions(network, address, strings.Split(how, "+")...)
	}
	if err != nil {
		fmt.Printf("refused %s: %v\n", errnoName(err), err)
		return nil
	}
	defer c.Close()
	fmt.Println("bound")
	if pc, ok := c.(net.PacketConn); ok {
		n := 0
		buf := make([]byte, 64)
		for {
			if err := pc.SetReadDeadline(time.Now().Add(time.Second)); err != nil {
				return err
			}
			if _, _, err := pc.ReadFrom(buf); err != nil {
				break
			}
			n++
		}
		fmt.Printf("received %d\n", n)
	}
	return nil
}

// errnoName names the errno that err wraps, or says there is none.
func errnoName(err error) string {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return unix.ErrnoName(errno)
	}
	return "no-errno"
}

// listenWithOptions listens with plain net after setting each named option
// to 1: what a program that does not use the package might do.
func listenWithOptions(network, address string, names ...string) (interface{ Close() error }, error) {
	lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			for _, name := range names {
				opt := map[string]int{"reuseaddr": unix.SO_REUSEADDR, "reuseport": unix.SO_REUSEPORT}[name]
				if opt == 0 {
					serr = fmt.Errorf("unknown option %q", name)
					return
				}
				if serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, opt, 1); serr != nil {
					serr = os.NewSyscallError("setsockopt", serr)
					return
				}
			}
		})
		if err != nil {
			return err
		}
		return serr
	}}
	if strings.HasPrefix(network, "udp") {
		return lc.ListenPacket(context.Background(), network, address)
	}
	return lc.Listen(context.Background(), network, address)
}

// attempt runs bindWorker as uid (0: this process's user, root) and returns
// the worker and its first line: "bound" or "refused ERRNO: error".
func attempt(t *testing.T, uid uint32, how, network, address string) (*sockettest.Worker, string) {
	t.Helper()
	var opts []sockettest.WorkerOption
	if uid != 0 {
		opts = append(opts, sockettest.AsUser(uid, uid))
	}
	w := sockettest.StartWorker(t, "bind", []string{how, network, address}, opts...)
	return w, w.Expect("", 10*time.Second)
}

// wantRefused fails the test unless line reports a bind refused with EADDRINUSE.
func wantRefused(t *testing.T, what, line string) {
	t.Helper()
	if !strings.HasPrefix(line, "refused EADDRINUSE:") {
		t.Errorf("%s: worker reports %q, want refused with EADDRINUSE", what, line)
		return
	}
	t.Logf("%s: %s", what, line)
}

// TestHijackOtherUserJoinsShare: a process of another user cannot join a
// Share group, TCP or UDP; one of the same user can, which is Share's point
// and what the OS cannot prevent.
func TestHijackOtherUserJoinsShare(t *testing.T) {
	sockettest.RequireRoot(t, "run a worker as uid 65534")
	for _, network := range []string{"tcp4", "udp4"} {
		network := network
		t.Run(network, func(t *testing.T) {
			var held interface{ Close() error }
			var addr string
			if network == "udp4" {
				pc, err := reuse.ListenPacket(network, "127.0.0.1:0")
				if err != nil {
					t.Fatal(err)
				}
				held, addr = pc, pc.LocalAddr().String()
			} else {
				ln, err := reuse.Listen(network, "127.0.0.1:0")
				if err != nil {
					t.Fatal(err)
				}
				held, addr = ln, ln.Addr().String()
			}
			defer held.Close()

			w, line := attempt(t, 65534, "reuse", network, addr)
			wantRefused(t, "uid 65534 joins root's Share "+network+" "+addr, line)
			if err := w.Wait(); err != nil {
				t.Error(err)
			}

			w, line = attempt(t, 0, "reuse", network, addr)
			if line != "bound" {
				t.Errorf("a process of the same user joining the Share group: %q, want bound", line)
			}
			if err := w.Wait(); err != nil {
				t.Error(err)
			}
		})
	}
}

// TestHijackOtherUserReuseAddrUDP: the package's Share datagram socket
// carries no SO_REUSEADDR, so another user's socket with SO_REUSEADDR (and
// SO_REUSEPORT) is refused. Contrast: a plain socket with SO_REUSEADDR, as
// other libraries set it, lets the other user bind and take the datagrams.
func TestHijackOtherUserReuseAddrUDP(t *testing.T) {
	sockettest.RequireRoot(t, "run a worker as uid 65534")
	pc, err := reuse.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	addr := pc.LocalAddr().String()
	for _, how := range []string{"reuseaddr", "reuseaddr+reuseport"} {
		w, line := attempt(t, 65534, how, "udp4", addr)
		wantRefused(t, "uid 65534 binds root's Share udp4 "+addr+" with "+how, line)
		if err := w.Wait(); err != nil {
			t.Error(err)
		}
	}

	victim, err := listenWithOptions("udp4", "127.0.0.1:0", "reuseaddr")
	if err != nil {
		t.Fatal(err)
	}
	defer victim.Close()
	vaddr := victim.(net.PacketConn).LocalAddr().String()
	w, line := attempt(t, 65534, "reuseaddr", "udp4", vaddr)
	if line != "bound" {
		t.Fatalf("contrast: uid 65534 binding a plain SO_REUSEADDR socket's port: %q, want bound", line)
	}
	const sent = 20
	client, err := net.Dial("udp4", vaddr)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	for i := 0; i < sent; i++ {
		if _, err := client.Write([]byte("datagram " + strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
	}
	got, err := strconv.Atoi(w.Expect("received ", 30*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if got == 0 {
		t.Errorf("contrast: uid 65534 received none of %d datagrams sent to root's plain SO_REUSEADDR socket", sent)
	}
	t.Logf("contrast: uid 65534 bound root's plain SO_REUSEADDR port %s and received %d of %d datagrams", vaddr, got, sent)
	if err := w.Wait(); err != nil {
		t.Error(err)
	}
}

// TestHijackSpecificUnderExclusiveWildcard: under an Exclusive wildcard
// socket, no socket of the same user binds a specific address on the port,
// even with SO_REUSEADDR and SO_REUSEPORT. Contrast: under a Share wildcard
// group it can, and takes that address's connections ("specific beats
// wildcard"). Wildcards are bound only in a private network namespace.
func TestHijackSpecificUnderExclusiveWildcard(t *testing.T) {
	if !sockettest.RunInNetNS(t) {
		return
	}
	for _, network := range []string{"tcp4", "udp4"} {
		c := reuse.Config{Mode: reuse.Exclusive}
		var held interface{ Close() error }
		var port int
		if network == "udp4" {
			pc, err := c.ListenPacket(context.Background(), network, "0.0.0.0:0")
			if err != nil {
				t.Fatal(err)
			}
			held, port = pc, pc.LocalAddr().(*net.UDPAddr).Port
		} else {
			ln, err := c.Listen(context.Background(), network, "0.0.0.0:0")
			if err != nil {
				t.Fatal(err)
			}
			held, port = ln, ln.Addr().(*net.TCPAddr).Port
		}
		specific := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		s, err := listenWithOptions(network, specific, "reuseaddr", "reuseport")
		if err == nil {
			s.Close()
			t.Errorf("%s: a same-user socket with SO_REUSEADDR+SO_REUSEPORT bound %s under an Exclusive wildcard", network, specific)
		} else if !errors.Is(err, syscall.EADDRINUSE) {
			t.Errorf("%s: binding %s under an Exclusive wildcard: %v, want EADDRINUSE", network, specific, err)
		} else {
			t.Logf("%s: same user binds %s under Exclusive 0.0.0.0:%d: %v", network, specific, port, err)
		}
		held.Close()
	}

	wild, err := reuse.Listen("tcp4", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	defer wild.Close()
	specific := net.JoinHostPort("127.0.0.1", strconv.Itoa(wild.Addr().(*net.TCPAddr).Port))
	s, err := listenWithOptions("tcp4", specific, "reuseaddr", "reuseport")
	if err != nil {
		t.Fatalf("contrast: a same-user socket binding %s under a Share wildcard: %v, want it bound", specific, err)
	}
	hijacker := s.(net.Listener)
	defer hijacker.Close()
	conn, err := net.Dial("tcp4", specific)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := hijacker.(*net.TCPListener).SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	accepted, err := hijacker.Accept()
	if err != nil {
		t.Fatalf("contrast: the specific socket did not get the connection to %s: %v", specific, err)
	}
	accepted.Close()
	t.Logf("contrast: under Share 0.0.0.0, a same-user socket bound %s and accepted its connection", specific)
}
