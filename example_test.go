package reuse_test

import (
	"context"
	"fmt"
	"log"
	"net"

	"github.com/sockreuse/reuse"
)

// Two listeners share one port; a plain listener cannot join them.
func ExampleListen() {
	first, err := reuse.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	defer first.Close()
	second, err := reuse.Listen("tcp", first.Addr().String())
	if err != nil {
		log.Fatal(err)
	}
	defer second.Close()
	fmt.Println("same address:", first.Addr().String() == second.Addr().String())

	if _, err := net.Listen("tcp", first.Addr().String()); err != nil {
		fmt.Println("a plain listener is refused")
	}
	// Output:
	// same address: true
	// a plain listener is refused
}

// Two datagram sockets share one port. Without a connected peer, each
// datagram goes to one of them.
func ExampleListenPacket() {
	first, err := reuse.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	defer first.Close()
	second, err := reuse.ListenPacket("udp", first.LocalAddr().String())
	if err != nil {
		log.Fatal(err)
	}
	defer second.Close()
	fmt.Println("both bound:", first.LocalAddr().String() == second.LocalAddr().String())
	// Output: both bound: true
}

// Two connections leave from one local port, to two servers.
func ExampleDial() {
	a, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	defer a.Close()
	b, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	defer b.Close()

	// A free local port to share: the port a listener got, once closed.
	probe, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	laddr := probe.Addr().String()
	if err := probe.Close(); err != nil {
		log.Fatal(err)
	}
	toA, err := reuse.Dial("tcp", laddr, a.Addr().String())
	if err != nil {
		log.Fatal(err)
	}
	defer toA.Close()
	toB, err := reuse.Dial("tcp", laddr, b.Addr().String())
	if err != nil {
		log.Fatal(err)
	}
	defer toB.Close()
	fmt.Println(toA.LocalAddr().String() == toB.LocalAddr().String())
	// Output: true
}

// [Control] fits the Control field of a [net.ListenConfig] of the caller's
// own.
func ExampleControl() {
	lc := net.ListenConfig{Control: reuse.Control}
	first, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	defer first.Close()
	second, err := lc.Listen(context.Background(), "tcp", first.Addr().String())
	if err != nil {
		log.Fatal(err)
	}
	defer second.Close()
	fmt.Println("both listen")
	// Output: both listen
}

// Exclusive refuses every other socket, even one that asks to share.
func ExampleMode() {
	excl := reuse.Config{Mode: reuse.Exclusive}
	ln, err := excl.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	defer ln.Close()
	if _, err := reuse.Listen("tcp", ln.Addr().String()); err != nil {
		fmt.Println(reuse.Share, "is refused by", excl.Mode)
	}
	// Output: Share is refused by Exclusive
}

// A Mode prints as its name.
func ExampleMode_String() {
	fmt.Println(reuse.Share, reuse.Exclusive)
	// Output: Share Exclusive
}

// A Config carries the mode with the caller's own ListenConfig and Dialer.
func ExampleConfig() {
	cfg := reuse.Config{Mode: reuse.Share}
	cfg.ListenConfig.KeepAlive = -1 // no TCP keep-alives on accepted connections
	ln, err := cfg.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	defer ln.Close()
	fmt.Println(ln.Addr().Network())
	// Output: tcp
}

// [Config.Control] sets the mode's options in a [net.ListenConfig] of the
// caller's own.
func ExampleConfig_Control() {
	cfg := reuse.Config{Mode: reuse.Exclusive}
	lc := net.ListenConfig{Control: cfg.Control}
	ln, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	defer ln.Close()
	_, err = lc.Listen(context.Background(), "tcp", ln.Addr().String())
	fmt.Println("second listener refused:", err != nil)
	// Output: second listener refused: true
}

// Config.Listen with a context: a worker of a server joins the port of the
// others.
func ExampleConfig_Listen() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var cfg reuse.Config
	ln, err := cfg.Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	defer ln.Close()
	worker, err := cfg.Listen(ctx, "tcp", ln.Addr().String())
	if err != nil {
		log.Fatal(err)
	}
	defer worker.Close()
	fmt.Println("the worker joined the port")
	// Output: the worker joined the port
}

// Config.ListenPacket in Exclusive mode keeps the port to itself.
func ExampleConfig_ListenPacket() {
	cfg := reuse.Config{Mode: reuse.Exclusive}
	pc, err := cfg.ListenPacket(context.Background(), "udp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	defer pc.Close()
	if _, err := reuse.ListenPacket("udp", pc.LocalAddr().String()); err != nil {
		fmt.Println("a Share socket is refused")
	}
	// Output: a Share socket is refused
}

// Config.Dial with the caller's own Dialer settings.
func ExampleConfig_Dial() {
	srv, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()
	var cfg reuse.Config
	cfg.Dialer.KeepAlive = -1
	conn, err := cfg.Dial(context.Background(), "tcp", "127.0.0.1:0", srv.Addr().String())
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	fmt.Println("connected")
	// Output: connected
}
