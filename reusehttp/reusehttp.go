// Package reusehttp stops a net/http server without dropping a connection
// it accepted: what a server replaced by a [reuse.Handover], or stopped by
// SIGTERM, needs. It is a package of its own so that the reuse package
// does not bring net/http into programs that serve no HTTP.
package reusehttp

import (
	"context"
	"errors"
	"net"
	"net/http"
	"sync"
	"time"
)

// Serving is a net/http server serving some listeners, which Stop stops.
type Serving struct {
	srv    *http.Server
	lns    []net.Listener
	served chan error // each Serve's end

	mu     sync.Mutex
	unread map[net.Conn]bool // accepted connections whose first request is not read yet

	stopOnce sync.Once
	stopErr  error
}

// Serve serves srv on lns, each in a goroutine of its own, until Stop. It
// wraps srv.ConnState (calling the one set before) to know which
// connections have not sent their first request yet; set no other
// ConnState after.
func Serve(srv *http.Server, lns ...net.Listener) *Serving {
	s := &Serving{srv: srv, lns: lns, served: make(chan error, len(lns)), unread: make(map[net.Conn]bool)}
	prev := srv.ConnState
	srv.ConnState = func(c net.Conn, state http.ConnState) {
		s.mu.Lock()
		if state == http.StateNew {
			s.unread[c] = true
		} else {
			delete(s.unread, c)
		}
		s.mu.Unlock()
		if prev != nil {
			prev(c, state)
		}
	}
	for _, ln := range lns {
		go func(ln net.Listener) { s.served <- srv.Serve(ln) }(ln)
	}
	return s
}

// Stop stops the server without dropping a connection it accepted: it
// closes the listeners, waits until every connection that the server
// accepted has had its first request read, then calls Shutdown, which
// lets the requests under way finish and closes the connections. Shutdown
// alone, since Go 1.25, closes unanswered a connection whose first request
// it had not read yet (golang/go#75591): one that a client opened a moment
// before, or that waited in the accept queue. A client that never sends
// its request holds Stop until the server's ReadHeaderTimeout (or
// ReadTimeout) closes it: set one.
//
// When ctx ends first, Stop closes what is left (Server.Close) and returns
// ctx's error. Errors of serving other than the listeners' closing are
// returned too. A second Stop waits for the first, and returns its error.
func (s *Serving) Stop(ctx context.Context) error {
	s.stopOnce.Do(func() { s.stopErr = s.stop(ctx) })
	return s.stopErr
}

func (s *Serving) stop(ctx context.Context) error {
	var errs []error
	for _, ln := range s.lns {
		ln.Close()
	}
	for range s.lns {
		// Once Serve returned, every connection it accepted is known.
		if err := <-s.served; !errors.Is(err, net.ErrClosed) && !errors.Is(err, http.ErrServerClosed) {
			errs = append(errs, err)
		}
	}
	for s.unreadLeft() {
		select {
		case <-ctx.Done():
			return errors.Join(append(errs, ctx.Err(), s.srv.Close())...)
		case <-time.After(time.Millisecond):
		}
	}
	return errors.Join(append(errs, s.srv.Shutdown(ctx))...)
}

func (s *Serving) unreadLeft() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.unread) > 0
}
