package reuse_test

import (
	"fmt"
	"log"
	"net"
	"time"

	"github.com/sockreuse/reuse"
)

// Two receivers join one group on one port; each gets its own copy of what
// is sent to the group. (Not run as a test: it joins a group on the host's
// default interface.)
func ExampleListenMulticastUDP() {
	group := &net.UDPAddr{IP: net.IPv4(239, 1, 2, 3), Port: 5000}
	var receivers []*net.UDPConn
	for i := 0; i < 2; i++ {
		conn, err := reuse.ListenMulticastUDP("udp4", nil, group)
		if err != nil {
			log.Fatal(err)
		}
		defer conn.Close()
		receivers = append(receivers, conn)
	}
	sender, err := net.DialUDP("udp4", nil, group)
	if err != nil {
		log.Fatal(err)
	}
	defer sender.Close()
	if _, err := sender.Write([]byte("hello, group")); err != nil {
		log.Fatal(err)
	}
	for i, conn := range receivers {
		if err := conn.SetReadDeadline(time.Now().Add(time.Second)); err != nil {
			log.Fatal(err)
		}
		buf := make([]byte, 64)
		n, _, err := conn.ReadFromUDP(buf)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("receiver %d: %s\n", i+1, buf[:n])
	}
}
