//go:build !linux

package reuse_test

import (
	"context"
	"errors"
	"testing"

	"github.com/sockreuse/reuse"
)

// TestInUseErrorElsewhere: where the package cannot list a port's sockets,
// a refused bind's error is the OS's alone, with no *reuse.InUseError.
func TestInUseErrorElsewhere(t *testing.T) {
	var c reuse.Config
	c.Mode = reuse.Exclusive
	ln, err := reuse.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Skipf("cannot listen here: %v", err)
	}
	defer ln.Close()
	ln2, err := c.Listen(context.Background(), "tcp4", ln.Addr().String())
	if err == nil {
		ln2.Close()
		t.Skip("an Exclusive listener bound beside a Share one here")
	}
	var ie *reuse.InUseError
	if errors.As(err, &ie) {
		t.Errorf("an InUseError where the package cannot look: %v", err)
	}
}
