//go:build linux

package reuse_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/sockreuse/reuse"
)

// The old side of a handover: once the new listener has taken the port
// over, keep accepting until the queue stays empty, then close.
func ExampleWaitDrained() {
	var cfg reuse.Config
	cfg.ListenConfig.SetMultipathTCP(false)
	oldLn, err := cfg.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	newLn, err := cfg.Listen(context.Background(), "tcp", oldLn.Addr().String())
	if err != nil {
		log.Fatal(err)
	}
	defer newLn.Close()
	if _, err := reuse.TakeOver(newLn); err != nil {
		log.Fatal(err)
	}
	go func() { // the old accept loop, still serving
		for {
			c, err := oldLn.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := reuse.WaitDrained(ctx, oldLn, 50*time.Millisecond); err != nil {
		log.Fatal(err)
	}
	fmt.Println("drained; closing:", oldLn.Close())
	// Output: drained; closing: <nil>
}

// Release, once the old listener has closed, lets the kernel spread new
// connections by its hash again.
func ExampleTakeover_Release() {
	var cfg reuse.Config
	cfg.ListenConfig.SetMultipathTCP(false)
	oldLn, err := cfg.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	newLn, err := cfg.Listen(context.Background(), "tcp", oldLn.Addr().String())
	if err != nil {
		log.Fatal(err)
	}
	defer newLn.Close()
	takeover, err := reuse.TakeOver(newLn)
	if err != nil {
		log.Fatal(err)
	}
	if err := oldLn.Close(); err != nil { // nothing was queued
		log.Fatal(err)
	}
	fmt.Println(takeover.Release())
	// Output: <nil>
}

// Whether connections still queued on a closing listener would be handed
// to another listener of its port (Linux tcp_migrate_req) or reset.
func ExampleMigratesQueue() {
	migrates, err := reuse.MigratesQueue()
	if err != nil {
		log.Fatal(err)
	}
	if !migrates {
		fmt.Println("closing a shared listener resets its queue: hand over with TakeOver and WaitDrained")
	}
}
