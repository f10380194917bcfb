package reuse_test

import (
	"errors"
	"testing"
)

// checkAddrInUse fails the test unless err matches this OS's EADDRINUSE.
func checkAddrInUse(t *testing.T, err error) {
	t.Helper()
	if !errors.Is(err, errAddrInUse) {
		t.Errorf("%v: want an error matching %v (errors.Is)", err, errAddrInUse)
	}
}
