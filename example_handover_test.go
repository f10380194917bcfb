//go:build linux && !reuse_crossvet

package reuse_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"time"

	"github.com/sockreuse/reuse"
	"github.com/sockreuse/reuse/reusehttp"
)

// serveUntilReplaced is a net/http server process that restarts without
// losing a request: it serves addr, takes it over from the process serving
// it, if any, and stops once a successor has taken it over. takenOver is
// sent the address once it serves alone.
func serveUntilReplaced(addr string, h http.Handler, takenOver chan<- string) {
	ln, err := reuse.Listen("tcp", addr)
	if err != nil {
		log.Fatal(err)
	}
	serving := reusehttp.Serve(&http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}, ln)
	var ho reuse.Handover
	if err := ho.TakeOver(context.Background(), ln); err != nil {
		log.Fatal(err)
	}
	takenOver <- ln.Addr().String()
	<-ho.Replaced()
	serving.Stop(context.Background()) // answers every connection accepted
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

// A QUIC server's group of 4 UDP sockets restarted with its steering by
// connection ID: during the handover, a packet whose connection ID names
// member 2 of generation 0 still reaches the old member 2, and one that
// names member 2 of generation 1 the new member 2. (With quic-go, each
// member's Transport issues IDs from QUICConnectionIDs{Member: i,
// Generation: ho.Generation()}; see the repository's examples/quic.)
func ExampleHandover_steering() {
	ctx := context.Background()
	s := reuse.QUICSteering()
	generation := func(addr string) ([]net.PacketConn, *reuse.Handover) {
		pcs, err := reuse.ListenPacketGroup("udp4", addr, 4)
		if err != nil {
			log.Fatal(err)
		}
		ho := &reuse.Handover{Steering: &s}
		if err := ho.TakeOver(ctx, pcs[0], pcs[1], pcs[2], pcs[3]); err != nil {
			log.Fatal(err)
		}
		return pcs, ho
	}
	old, oldHo := generation("127.0.0.1:0")
	addr := old[0].LocalAddr().String()
	next, nextHo := generation(addr)
	defer nextHo.Close()
	<-oldHo.Replaced() // no new handshake reaches old; its connections still do
	fmt.Println("generations", oldHo.Generation(), nextHo.Generation())

	c, err := net.Dial("udp4", addr)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, 16)
	for _, gen := range []byte{0, 1} {
		c.Write([]byte{0x40, 2, gen, 0, 0, 0, 0, 0, 0, 0}) // a short header, its connection ID: member 2, generation gen
		for name, pcs := range map[string][]net.PacketConn{"old": old, "new": next} {
			pcs[2].SetReadDeadline(time.Now().Add(100 * time.Millisecond))
			if _, _, err := pcs[2].ReadFrom(buf); err == nil {
				fmt.Printf("generation %d: %s member 2\n", gen, name)
			}
		}
	}
	// The old process closes its sockets from the last one down once its
	// connections ended, then lets go.
	for i := len(old) - 1; i >= 0; i-- {
		old[i].Close()
	}
	oldHo.Close()
	for _, pc := range next {
		pc.Close()
	}
	// Output:
	// generations 0 1
	// generation 0: old member 2
	// generation 1: new member 2
}
