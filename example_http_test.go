//go:build !reuse_crossvet

// The examples that serve net/http. .ci/run leaves them out (-tags
// reuse_crossvet) when it vets the other targets, since net/http is most
// of what each target compiles and they hold no code of any one OS; they are
// vetted and run natively, and vetted on every platform the tests run on.

package reuse_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"

	"github.com/sockreuse/reuse"
)

// Two [net/http.Server] values serve one port; on Linux the kernel spreads
// the connections across them. When one closes, the other goes on serving
// the port, as when one process of a server is restarted.
func ExampleListen_httpServe() {
	hello := func(name string) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprint(w, "hello from ", name)
		})
	}
	first, err := reuse.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	second, err := reuse.Listen("tcp", first.Addr().String())
	if err != nil {
		log.Fatal(err)
	}
	firstSrv := &http.Server{Handler: hello("the first server")}
	secondSrv := &http.Server{Handler: hello("the second server")}
	go firstSrv.Serve(first)
	go secondSrv.Serve(second)
	defer secondSrv.Close()

	// A new connection for each request, so that each is placed anew.
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	get := func() string {
		resp, err := client.Get("http://" + first.Addr().String())
		if err != nil {
			log.Fatal(err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			log.Fatal(err)
		}
		return resp.Status + ", " + string(body)
	}
	get() // one of the two answers
	if err := firstSrv.Close(); err != nil {
		log.Fatal(err)
	}
	fmt.Println(get())
	// Output: 200 OK, hello from the second server
}

// A web server runs one http.Server per listener of a group on one port.
func ExampleConfig_ListenGroup() {
	var c reuse.Config
	lns, err := c.ListenGroup(context.Background(), "tcp", "127.0.0.1:0", 2)
	if err != nil {
		log.Fatal(err)
	}
	hello := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "hello from one port")
	})
	var servers []*http.Server
	served := make(chan error, len(lns))
	for _, ln := range lns {
		srv := &http.Server{Handler: hello}
		servers = append(servers, srv)
		go func(ln net.Listener) { served <- srv.Serve(ln) }(ln)
	}

	resp, err := http.Get("http://" + lns[0].Addr().String() + "/")
	if err != nil {
		log.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Print(string(body))

	for _, srv := range servers {
		if err := srv.Shutdown(context.Background()); err != nil {
			log.Fatal(err)
		}
	}
	for range servers {
		if err := <-served; err != http.ErrServerClosed {
			log.Fatal(err)
		}
	}
	// Output: hello from one port
}
