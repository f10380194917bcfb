package reuse_test

import (
	"context"
	"errors"
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

// An Exclusive receiver keeps a group's port to itself: a second receiver
// is refused. It joins on the loopback interface. (Not run as a test: the
// host's loopback interface may not carry multicast.)
func ExampleConfig_ListenMulticastUDP() {
	ifaces, err := net.Interfaces()
	if err != nil {
		log.Fatal(err)
	}
	var lo *net.Interface
	for i := range ifaces {
		if ifaces[i].Flags&net.FlagLoopback != 0 {
			lo = &ifaces[i]
		}
	}
	if lo == nil {
		log.Fatal(errors.New("no loopback interface"))
	}
	group := &net.UDPAddr{IP: net.IPv4(239, 1, 2, 3), Port: 5001}
	excl := reuse.Config{Mode: reuse.Exclusive}
	conn, err := excl.ListenMulticastUDP(context.Background(), "udp4", lo, group)
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	if _, err := reuse.ListenMulticastUDP("udp4", lo, group); err != nil {
		fmt.Println("second receiver refused")
	}
}
