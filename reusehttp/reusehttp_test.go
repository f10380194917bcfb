package reusehttp_test

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sockreuse/reuse/reusehttp"
)

// unreadClients starts srv's connections from n clients that have not sent
// their request yet, and returns them once the server accepted them all.
func unreadClients(t *testing.T, n int, start func(*http.Server, net.Listener)) []net.Conn {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0") // Stop needs no reuse socket
	if err != nil {
		t.Skipf("no TCP listener here: %v", err)
	}
	var accepted atomic.Int64
	srv := &http.Server{
		Handler:           http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok") }),
		ReadHeaderTimeout: 10 * time.Second,
		ConnState: func(_ net.Conn, s http.ConnState) {
			if s == http.StateNew {
				accepted.Add(1)
			}
		},
	}
	start(srv, ln)
	var cs []net.Conn
	for i := 0; i < n; i++ {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		cs = append(cs, c)
	}
	for deadline := time.Now().Add(10 * time.Second); accepted.Load() < int64(n); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the server accepted %d of %d connections in 10s", accepted.Load(), n)
		}
	}
	return cs
}

// answered sends each client's request and counts the answers "ok".
func answered(t *testing.T, cs []net.Conn) int {
	t.Helper()
	ok := 0
	for _, c := range cs {
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
			continue
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode == 200 && string(body) == "ok" {
				ok++
			}
		}
	}
	return ok
}

// TestStop stops a server whose 20 accepted connections have not sent
// their request yet: each is answered, and Stop returns once they were.
func TestStop(t *testing.T) {
	var s *reusehttp.Serving
	cs := unreadClients(t, 20, func(srv *http.Server, ln net.Listener) { s = reusehttp.Serve(srv, ln) })
	stopped := make(chan error, 1)
	go func() { stopped <- s.Stop(context.Background()) }()
	select {
	case err := <-stopped:
		t.Fatalf("Stop returned (%v) before the accepted connections sent their request", err)
	case <-time.After(50 * time.Millisecond):
	}
	if got := answered(t, cs); got != len(cs) {
		t.Errorf("Stop: %d of %d accepted connections answered", got, len(cs))
	}
	if err := <-stopped; err != nil {
		t.Errorf("Stop: %v", err)
	}
	if err := s.Stop(context.Background()); err != nil {
		t.Errorf("a second Stop: %v, want the first's nil", err)
	}
}

// TestShutdownAloneDrops pins what Stop is for: since Go 1.25,
// http.Server.Shutdown alone leaves accepted connections whose request it
// had not read unanswered (golang/go#75591); before, it answered them.
func TestShutdownAloneDrops(t *testing.T) {
	var srv *http.Server
	cs := unreadClients(t, 20, func(s *http.Server, ln net.Listener) {
		srv = s
		go s.Serve(ln)
	})
	stopped := make(chan error, 1)
	go func() { stopped <- srv.Shutdown(context.Background()) }()
	time.Sleep(50 * time.Millisecond)
	got := answered(t, cs)
	<-stopped
	t.Logf("%s: Shutdown alone answered %d of %d", runtime.Version(), got, len(cs))
	if drops := goMinor() >= 25; drops && got == len(cs) {
		t.Errorf("%s: Shutdown alone answered all %d accepted connections whose request it had not read", runtime.Version(), len(cs))
	} else if !drops && got != len(cs) {
		t.Errorf("%s: Shutdown alone answered %d of %d accepted connections whose request it had not read, want all before Go 1.25", runtime.Version(), got, len(cs))
	}
}

// goMinor returns the minor version of the Go that built the test (26 for
// go1.26.8), or 1000 for a development version.
func goMinor() int {
	v, ok := strings.CutPrefix(runtime.Version(), "go1.")
	if !ok {
		return 1000
	}
	minor, _, _ := strings.Cut(v, ".")
	n, err := strconv.Atoi(minor)
	if err != nil {
		return 1000
	}
	return n
}

// TestStopContext ends Stop's context while a client holds its request:
// Stop closes the rest and returns the context's error.
func TestStopContext(t *testing.T) {
	var s *reusehttp.Serving
	unreadClients(t, 1, func(srv *http.Server, ln net.Listener) { s = reusehttp.Serve(srv, ln) })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := s.Stop(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Stop with a client that never sends, until its context ends: %v, want %v", err, context.DeadlineExceeded)
	}
}
