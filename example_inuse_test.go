package reuse_test

import (
	"errors"
	"fmt"
	"log"
	"net"
	"os"

	"github.com/sockreuse/reuse"
)

// On Linux, a refused bind names the sockets in the way, their owners and
// the rule that refused it; errors.As gives the same facts as data.
func ExampleInUseError() {
	// Another program holds the port without sharing it.
	held, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	defer held.Close()

	_, err = reuse.Listen("tcp4", held.Addr().String())
	var inUse *reuse.InUseError
	if errors.As(err, &inUse) {
		for _, h := range inUse.Holders {
			fmt.Printf("%s %v %s, uid %d, pid %d (%s): %s\n", h.Network, h.Local, h.State, h.UID, h.PID, h.Command, h.Rule)
		}
	}
	// The message says it all, on one screen however many hold the port.
	fmt.Println(err)
}

// A Holder is one socket in the way: here a UDP socket of this process,
// bound without sharing, refuses a shared socket on the same port.
func ExampleHolder() {
	held, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	defer held.Close()

	_, err = reuse.ListenPacket("udp4", held.LocalAddr().String())
	var inUse *reuse.InUseError
	if !errors.As(err, &inUse) {
		return // not Linux: the error is the OS's alone
	}
	for _, h := range inUse.Holders {
		if h.PID == os.Getpid() {
			fmt.Printf("held by this process (%s), %s: %s\n", h.Command, h.State, h.Rule)
		}
	}
}
