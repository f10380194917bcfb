package reusehttp_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"net/http"

	"github.com/sockreuse/reuse"
	"github.com/sockreuse/reuse/reusehttp"
)

// A server serves until it is told to stop (a Handover's Replaced, or
// SIGTERM), then stops without dropping a connection it accepted.
func ExampleServe() {
	ln, err := reuse.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, "hello")
	})}
	s := reusehttp.Serve(srv, ln)

	resp, err := http.Get("http://" + ln.Addr().String())
	if err != nil {
		log.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	fmt.Println(string(body))

	// Once <-handover.Replaced(), or on SIGTERM:
	if err := s.Stop(context.Background()); err != nil {
		log.Fatal(err)
	}
	fmt.Println("stopped")
	// Output:
	// hello
	// stopped
}
