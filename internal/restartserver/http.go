package restartserver

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"sync/atomic"
	"time"

	"github.com/sockreuse/reuse/reusehttp"
)

// HTTP is the net/http server of a generation: it answers every request
// with its pid and slot, and counts the requests.
type HTTP struct {
	srv     *http.Server
	serving *reusehttp.Serving
}

// NewHTTP returns the server of slot, counting its requests in served.
func NewHTTP(slot string, served *atomic.Int64) *HTTP {
	return &HTTP{srv: &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			served.Add(1)
			fmt.Fprintf(w, "pid %d slot %s\n", os.Getpid(), slot)
		}),
		ReadHeaderTimeout: 10 * time.Second,
	}}
}

// Serve serves lns, each in a goroutine of its own.
func (h *HTTP) Serve(lns []net.Listener) { h.serving = reusehttp.Serve(h.srv, lns...) }

// Drain stops the server as the README's does, without dropping a
// connection it accepted (reusehttp's Serving.Stop), 15 s at most.
func (h *HTTP) Drain() {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	_ = h.serving.Stop(ctx)
}

// Shutdown calls http.Server.Shutdown at once.
func (h *HTTP) Shutdown() { _ = h.srv.Shutdown(context.Background()) }
