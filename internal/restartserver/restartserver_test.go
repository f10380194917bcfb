package restartserver

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/sockreuse/reuse/internal/sockettest"
)

// generation is a Server running in this process, and the events it
// reported.
type generation struct {
	stop   chan struct{}
	events chan string
	done   chan error
}

func start(t *testing.T, o Options) *generation {
	t.Helper()
	r, w := io.Pipe()
	g := &generation{stop: make(chan struct{}), events: make(chan string, 4), done: make(chan error, 1)}
	go func() {
		g.done <- New(o).Run(g.stop, w)
		w.Close()
	}()
	go func() {
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			g.events <- sc.Text()
		}
		close(g.events)
	}()
	return g
}

// next returns the field of the generation's next event, which must be of
// kind.
func (g *generation) next(t *testing.T, kind, field string) string {
	t.Helper()
	select {
	case line, ok := <-g.events:
		words := strings.Fields(line)
		if !ok || words[0] != kind {
			t.Fatalf("want an event %q, got %q (err %v)", kind, line, <-g.done)
		}
		for _, w := range words[1:] {
			if v, ok := strings.CutPrefix(w, field+"="); ok {
				return v
			}
		}
		t.Fatalf("event %q has no %s", line, field)
	case <-time.After(30 * time.Second):
		t.Fatalf("no event %q after 30 s", kind)
	}
	return ""
}

// TestHandover replaces an HTTP server (MPTCP and plain listeners) and a
// UDP receiver by a second generation with reuse.Handover: the first exits
// by itself, once replaced, with the count of what it served; the second
// serves.
func TestHandover(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skipf("reuse.Handover is Linux's; on %s it fails with errors.ErrUnsupported", runtime.GOOS)
	}
	if e := sockettest.Emulator(); e != "" {
		t.Skipf("%s translates neither SO_ATTACH_REUSEPORT_CBPF nor NETLINK_SOCK_DIAG, which reuse.Handover needs", e)
	}
	for _, mptcp := range []bool{true, false} {
		t.Run(fmt.Sprintf("http/mptcp=%v", mptcp), func(t *testing.T) { testHTTPHandover(t, mptcp) })
	}
	t.Run("udp", testUDPHandover)
}

func testHTTPHandover(t *testing.T, mptcp bool) {
	o := Options{Proto: "http", Mode: "reuse", Addr: "127.0.0.1:0", Sockets: 2, MPTCP: mptcp, Quiet: 20 * time.Millisecond}
	first := start(t, o)
	o.Addr = first.next(t, "ready", "addr")
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	get := func() {
		t.Helper()
		resp, err := client.Get("http://" + o.Addr + "/")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET: %s", resp.Status)
		}
	}
	get()
	second := start(t, o)
	second.next(t, "ready", "addr")
	if n := first.next(t, "exit", "n"); n != "1" {
		t.Errorf("the first generation served %s requests, want 1", n)
	}
	get()
	close(second.stop)
	if n := second.next(t, "exit", "n"); n != "1" {
		t.Errorf("the second generation served %s requests, want 1", n)
	}
	for _, g := range []*generation{first, second} {
		if err := <-g.done; err != nil {
			t.Error(err)
		}
	}
}

func testUDPHandover(t *testing.T) {
	dir := t.TempDir()
	o := Options{Proto: "udp", Mode: "reuse", Addr: "127.0.0.1:0", Sockets: 1, Quiet: 20 * time.Millisecond,
		SeqFile: filepath.Join(dir, "first.seq")}
	first := start(t, o)
	o.Addr = first.next(t, "ready", "addr")
	c, err := net.Dial("udp", o.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, 8)
	binary.LittleEndian.PutUint64(buf, 42)
	if _, err := c.Write(buf); err != nil {
		t.Fatal(err)
	}
	o.SeqFile = filepath.Join(dir, "second.seq")
	second := start(t, o)
	second.next(t, "ready", "addr")
	if n := first.next(t, "exit", "n"); n != "1" {
		t.Errorf("the first generation read %s datagrams, want 1", n)
	}
	close(second.stop)
	second.next(t, "exit", "n")
	for _, g := range []*generation{first, second} {
		if err := <-g.done; err != nil {
			t.Error(err)
		}
	}
	seqs, err := os.ReadFile(filepath.Join(dir, "first.seq"))
	if err != nil || len(seqs) != 8 || binary.LittleEndian.Uint64(seqs) != 42 {
		t.Errorf("first.seq holds %x (%v), want 42 in 8 bytes, little-endian", seqs, err)
	}
}
