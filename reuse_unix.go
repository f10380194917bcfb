//go:build unix

package reuse

import (
	"errors"

	"golang.org/x/sys/unix"
)

func setsockoptInt(fd uintptr, level, opt, value int) error {
	return unix.SetsockoptInt(int(fd), level, opt, value)
}

func isAddrInUse(err error) bool { return errors.Is(err, unix.EADDRINUSE) }

// isTupleInUse reports connect's refusal of a 5-tuple that exists already:
// EADDRNOTAVAIL on Linux (measured on 6.18), EADDRINUSE on the BSDs.
func isTupleInUse(err error) bool {
	return errors.Is(err, unix.EADDRINUSE) || errors.Is(err, unix.EADDRNOTAVAIL)
}
