package reuse_test

import (
	"context"
	"fmt"
	"log"
	"net"

	"github.com/sockreuse/reuse"
)

// DialerControl fits the Control field of a net.Dialer of the caller's own
// that connects from a fixed local port: here the port of a Share listener,
// which the connection shares.
func ExampleConfig_DialerControl() {
	ln, err := reuse.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	defer ln.Close()
	server, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	defer server.Close()

	var c reuse.Config
	d := net.Dialer{LocalAddr: ln.Addr(), Control: c.DialerControl}
	conn, err := d.DialContext(context.Background(), "tcp", server.Addr().String())
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	fmt.Println(conn.LocalAddr().String() == ln.Addr().String())
	// Output: true
}

// Control fits the Control field of a net.ListenConfig of the caller's own.
// It runs before bind, so it is used with a fixed port: a port 0 that
// Control shares could be one another socket already shares.
func ExampleConfig_Control_fixedPort() {
	first, err := reuse.Listen("tcp", "127.0.0.1:0") // port 0: Listen handles it
	if err != nil {
		log.Fatal(err)
	}
	defer first.Close()

	c := reuse.Config{Mode: reuse.Share}
	lc := net.ListenConfig{Control: c.Control}
	second, err := lc.Listen(context.Background(), "tcp", first.Addr().String())
	if err != nil {
		log.Fatal(err)
	}
	defer second.Close()
	fmt.Println("both listen")
	// Output: both listen
}
