package restartserver

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// HTTP is the net/http server of a generation: it answers every request
// with its pid and slot, and counts the requests.
type HTTP struct {
	srv     *http.Server
	unread  *firstRequests
	serving sync.WaitGroup
}

// NewHTTP returns the server of slot, counting its requests in served.
func NewHTTP(slot string, served *atomic.Int64) *HTTP {
	unread := newFirstRequests()
	return &HTTP{
		srv: &http.Server{
			Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				served.Add(1)
				fmt.Fprintf(w, "pid %d slot %s\n", os.Getpid(), slot)
			}),
			ConnState:         unread.connState,
			ReadHeaderTimeout: 10 * time.Second,
		},
		unread: unread,
	}
}

// Serve serves lns, each in a goroutine of its own.
func (h *HTTP) Serve(lns []net.Listener) {
	for _, ln := range lns {
		h.serving.Add(1)
		go func(ln net.Listener) {
			defer h.serving.Done()
			_ = h.srv.Serve(ln)
		}(ln)
	}
}

// Drain closes lns, the listeners that Serve serves, and shuts the server
// down once every connection accepted has had its first request read (5 s
// at most). Go 1.26's Shutdown closes, unanswered, a connection whose first
// request it reads only after shutdown began (golang/go#75591); so Drain
// waits until Serve has returned (it may have accepted a connection that it
// has not yet reported as new), then for the first requests, and only then
// calls Shutdown, which waits for the answers.
func (h *HTTP) Drain(lns []net.Listener) {
	for _, ln := range lns {
		ln.Close()
	}
	h.serving.Wait()
	h.unread.wait(5 * time.Second)
	h.Shutdown()
}

// Shutdown calls http.Server.Shutdown at once.
func (h *HTTP) Shutdown() {
	_ = h.srv.Shutdown(context.Background())
	h.serving.Wait()
}

// firstRequests tracks the connections accepted whose first request was not
// read yet.
type firstRequests struct {
	mu     sync.Mutex
	unread map[net.Conn]bool
	empty  *sync.Cond
}

func newFirstRequests() *firstRequests {
	t := &firstRequests{unread: make(map[net.Conn]bool)}
	t.empty = sync.NewCond(&t.mu)
	return t
}

func (t *firstRequests) connState(c net.Conn, s http.ConnState) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if s == http.StateNew {
		t.unread[c] = true
		return
	}
	delete(t.unread, c)
	if len(t.unread) == 0 {
		t.empty.Broadcast()
	}
}

// wait returns once no connection's first request is unread, or after
// limit.
func (t *firstRequests) wait(limit time.Duration) {
	timer := time.AfterFunc(limit, func() {
		t.mu.Lock()
		t.empty.Broadcast()
		t.mu.Unlock()
	})
	defer timer.Stop()
	start := time.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	for len(t.unread) > 0 && time.Since(start) < limit {
		t.empty.Wait()
	}
}
