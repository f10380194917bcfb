package reuse_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/sockreuse/reuse"
)

// A server restarted on its port waits, up to about two seconds, for the old
// process to let go of it, then falls back to a second port.
func ExampleRetryPolicy() {
	c := reuse.Config{
		Mode:     reuse.Exclusive,
		Retry:    reuse.RetryPolicy{Attempts: 8, Initial: 20 * time.Millisecond, Max: 500 * time.Millisecond},
		Fallback: []string{"127.0.0.1:0"},
	}
	ln, err := c.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	defer ln.Close()
	fmt.Println("listening on", ln.Addr().Network())
	// Output: listening on tcp
}
