package reuse_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net"
	"runtime"
	"sync"

	"github.com/sockreuse/reuse"
)

// A server runs one read loop per core, each on its own socket of one port;
// where the OS balances, it spreads the datagrams across them. With
// [Config.RequireBalancing], an OS that would not balance is told apart by
// an error wrapping [errors.ErrUnsupported].
func ExampleConfig_ListenPacketGroup() {
	c := &reuse.Config{RequireBalancing: true}
	conns, err := c.ListenPacketGroup(context.Background(), "udp", "127.0.0.1:0", runtime.NumCPU())
	if errors.Is(err, errors.ErrUnsupported) {
		// This OS would hand every datagram to one socket: one is enough.
		conns, err = reuse.ListenPacketGroup("udp", "127.0.0.1:0", 1)
	}
	if err != nil {
		log.Fatal(err)
	}
	echoed := make(chan error, 1)
	var wg sync.WaitGroup
	for _, pc := range conns {
		pc := pc
		wg.Add(1)
		go func() { // one read loop per socket
			defer wg.Done()
			buf := make([]byte, 1500)
			for {
				n, from, err := pc.ReadFrom(buf)
				if err != nil {
					return // closed
				}
				_, err = pc.WriteTo(buf[:n], from)
				echoed <- err
			}
		}()
	}

	client, err := net.Dial("udp", conns[0].LocalAddr().String())
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	if _, err := client.Write([]byte("ping")); err != nil {
		log.Fatal(err)
	}
	if err := <-echoed; err != nil {
		log.Fatal(err)
	}
	buf := make([]byte, 1500)
	n, err := client.Read(buf)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s\n", buf[:n])

	for _, pc := range conns {
		pc.Close()
	}
	wg.Wait()
	// Output: ping
}

// Four listeners share one port, opened in one call: all or none.
func ExampleListenGroup() {
	lns, err := reuse.ListenGroup("tcp", "127.0.0.1:0", 4)
	if err != nil {
		log.Fatal(err)
	}
	for _, ln := range lns {
		defer ln.Close()
	}
	same := true
	for _, ln := range lns {
		same = same && ln.Addr().String() == lns[0].Addr().String()
	}
	fmt.Println(len(lns), "listeners on one address:", same)
	// Output: 4 listeners on one address: true
}

// Four datagram sockets share one port, opened in one call: all or none.
func ExampleListenPacketGroup() {
	conns, err := reuse.ListenPacketGroup("udp", "127.0.0.1:0", 4)
	if err != nil {
		log.Fatal(err)
	}
	for _, pc := range conns {
		defer pc.Close()
	}
	same := true
	for _, pc := range conns {
		same = same && pc.LocalAddr().String() == conns[0].LocalAddr().String()
	}
	fmt.Println(len(conns), "sockets on one address:", same)
	// Output: 4 sockets on one address: true
}

// A server decides how many sockets to open on its port.
func ExampleBalancingHere() {
	n := 1
	if b := reuse.BalancingHere(); b.Balances {
		n = runtime.NumCPU() // the OS spreads the work: one socket per core
	} else {
		log.Printf("%s does not balance (%s): one socket", runtime.GOOS, b.By)
	}
	lns, err := reuse.ListenGroup("tcp", "127.0.0.1:0", n)
	if err != nil {
		log.Fatal(err)
	}
	for _, ln := range lns {
		defer ln.Close()
	}
	fmt.Println(len(lns) == n)
	// Output: true
}

// What sharing a port gives on the OS that runs the example. (Not run as a
// test: the answer is the OS's.)
func ExampleBalancing() {
	b := reuse.BalancingHere()
	if !b.Shares {
		fmt.Printf("%s cannot share a port: %s\n", runtime.GOOS, b.By)
		return
	}
	fmt.Printf("%s shares a port with %s; balances: %v; picked by: %s\n", runtime.GOOS, b.Option, b.Balances, b.By)
}
