//go:build linux && !reuse_crossvet

package reuse_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"net/http"
	"time"

	"github.com/sockreuse/reuse"
)

// A rolling restart of a net/http server: the new server joins the port and
// takes it over, the old one serves what is queued and shuts down. Here both
// run in one process; in a real restart, each step runs in its own process
// and they tell each other when (a pipe, a signal).
func ExampleTakeOver() {
	ctx := context.Background()
	var cfg reuse.Config
	cfg.ListenConfig.SetMultipathTCP(false) // TakeOver needs plain TCP

	// The old process serves the port.
	oldLn, err := cfg.Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	oldSrv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "old")
	})}
	go oldSrv.Serve(oldLn)
	addr := oldLn.Addr().String()

	// The new process joins the port, serves it, and takes it over.
	newLn, err := cfg.Listen(ctx, "tcp", addr)
	if err != nil {
		log.Fatal(err)
	}
	newSrv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "new")
	})}
	go newSrv.Serve(newLn)
	takeover, err := reuse.TakeOver(newLn)
	if err != nil {
		log.Fatal(err)
	}

	// The old process serves what its queue still holds, then shuts down.
	if err := reuse.WaitDrained(ctx, oldLn, 50*time.Millisecond); err != nil {
		log.Fatal(err)
	}
	if err := oldSrv.Shutdown(ctx); err != nil {
		log.Fatal(err)
	}

	// The new process lets the kernel balance again, for the next restart.
	if err := takeover.Release(); err != nil {
		log.Fatal(err)
	}
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
	if err := newSrv.Shutdown(ctx); err != nil {
		log.Fatal(err)
	}
	// Output: new
}
