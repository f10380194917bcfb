//go:build linux

package reuse_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net"
	"os"
	"time"

	"github.com/sockreuse/reuse"
)

// A UDP server written as a TCP one: a Conn per client, which reads that
// client's datagrams only.
func ExampleListenFlows() {
	l, err := reuse.ListenFlows("udp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err) // not Linux: wraps errors.ErrUnsupported
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return // closed
			}
			go func() {
				defer c.Close()
				b := make([]byte, 1500)
				n, err := c.Read(b)
				if err != nil {
					return
				}
				fmt.Fprintf(c, "%s from %s", b[:n], c.RemoteAddr().(*net.UDPAddr).IP)
			}()
		}
	}()
	client, err := net.Dial("udp", l.Addr().String())
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	client.Write([]byte("hello"))
	client.SetReadDeadline(time.Now().Add(5 * time.Second))
	b := make([]byte, 1500)
	n, err := client.Read(b)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(string(b[:n]))
	// Output: hello from 127.0.0.1
}

// Idle flows end by a read deadline: UDP has no end of a flow.
func ExampleFlowListener() {
	l, err := reuse.ListenFlows("udp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	defer l.Close()
	client, err := net.Dial("udp", l.Addr().String())
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	client.Write([]byte("one"))
	c, err := l.Accept()
	if err != nil {
		log.Fatal(err)
	}
	b := make([]byte, 1500)
	for {
		c.SetReadDeadline(time.Now().Add(100 * time.Millisecond)) // the idle time allowed
		n, err := c.Read(b)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			fmt.Println("idle: closing the flow")
			c.Close()
			break
		}
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println("read", string(b[:n]))
	}
	// Output:
	// read one
	// idle: closing the flow
}

// A restart that keeps every flow: the new process takes the listener's
// address over; the old one, once replaced, closes its listener and its
// Handover and serves its flows until they end. Here both processes are one.
func ExampleConfig_ListenFlows() {
	ctx := context.Background()
	var cfg reuse.Config
	old, err := cfg.ListenFlows(ctx, "udp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	oldHo := new(reuse.Handover)
	if err := oldHo.TakeOver(ctx, old); err != nil { // nobody served it: at once
		log.Fatal(err)
	}
	next, err := cfg.ListenFlows(ctx, "udp", old.Addr().String())
	if err != nil {
		log.Fatal(err)
	}
	defer next.Close()
	go func() {
		<-oldHo.Replaced() // no new flow comes to old any more
		old.Close()
		oldHo.Close()
	}()
	nextHo := new(reuse.Handover)
	if err := nextHo.TakeOver(ctx, next); err != nil {
		log.Fatal(err)
	}
	defer nextHo.Close()
	client, err := net.Dial("udp", next.Addr().String())
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	client.Write([]byte("hi"))
	c, err := next.Accept()
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	fmt.Println("the new process got the new flow")
	// Output: the new process got the new flow
}
