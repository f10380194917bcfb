//go:build linux

package reuse_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/sockreuse/reuse"
)

// serveUntilReplaced is a net/http server process that restarts without
// losing a request: it serves addr, takes it over from the process serving
// it, if any, and shuts down once a successor has taken it over.
// takenOver is closed once it serves alone.
func serveUntilReplaced(addr string, h http.Handler, takenOver chan<- string) {
	ln, err := reuse.Listen("tcp", addr)
	if err != nil {
		log.Fatal(err)
	}
	var unread sync.Map // connections whose first request is not read yet
	srv := &http.Server{Handler: h, ConnState: func(c net.Conn, s http.ConnState) {
		if s == http.StateNew {
			unread.Store(c, true)
		} else {
			unread.Delete(c)
		}
	}}
	go srv.Serve(ln)
	var ho reuse.Handover
	if err := ho.TakeOver(context.Background(), ln); err != nil {
		log.Fatal(err)
	}
	takenOver <- ln.Addr().String()
	<-ho.Replaced()
	// Shutdown would close, unanswered, a connection whose first request
	// it has not read yet (golang/go#75591): stop accepting, let every
	// accepted connection's first request in, then shut down.
	ln.Close()
	for start := time.Now(); time.Since(start) < 5*time.Second; time.Sleep(time.Millisecond) {
		n := 0
		unread.Range(func(any, any) bool { n++; return false })
		if n == 0 {
			break
		}
	}
	srv.Shutdown(context.Background())
	ho.Close()
}

// A net/http server restarted without losing a request: each generation
// takes the address over from the one before, which then shuts down. Here
// the generations run in one process; in a real restart, each is a process
// of its own (the new binary, started beside the old one).
func ExampleHandover() {
	handler := func(gen string) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, gen) })
	}
	ready := make(chan string)
	go serveUntilReplaced("127.0.0.1:0", handler("first"), ready)
	addr := <-ready
	go serveUntilReplaced(addr, handler("second"), ready)
	<-ready // the first generation has let go
	resp, err := http.Get("http://" + addr)
	if err != nil {
		log.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(string(body))
	// Output: second
}
