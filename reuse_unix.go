//go:build aix || darwin || dragonfly || freebsd || linux || netbsd || openbsd || solaris

package reuse

import (
	"errors"

	"golang.org/x/sys/unix"
)

// The options the Unix tables are made of.
var (
	reuseAddrOn  = sockOpt{"SO_REUSEADDR", unix.SOL_SOCKET, unix.SO_REUSEADDR, 1}
	reuseAddrOff = sockOpt{"SO_REUSEADDR", unix.SOL_SOCKET, unix.SO_REUSEADDR, 0}
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
