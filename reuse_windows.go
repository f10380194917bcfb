package reuse

import (
	"errors"

	"golang.org/x/sys/windows"
)

// optNumbers maps the options of windowsTable (options.go) to Winsock's
// constants. SO_EXCLUSIVEADDRUSE is defined by Winsock as
// ((int)(~SO_REUSEADDR)); golang.org/x/sys/windows lacks it.
var optNumbers = map[optName]optNumber{
	soReuseAddr:        {windows.SOL_SOCKET, windows.SO_REUSEADDR},
	soExclusiveAddrUse: {windows.SOL_SOCKET, ^windows.SO_REUSEADDR},
}

func setsockoptInt(fd uintptr, level, opt, value int) error {
	return windows.SetsockoptInt(windows.Handle(fd), level, opt, value)
}

func isAddrInUse(err error) bool { return errors.Is(err, windows.WSAEADDRINUSE) }

// isTupleInUse reports connect's refusal of a 5-tuple that exists already:
// WSAEADDRINUSE on Windows; Wine, which follows the Linux kernel under it,
// says WSAEADDRNOTAVAIL.
func isTupleInUse(err error) bool {
	return isAddrInUse(err) || errors.Is(err, windows.WSAEADDRNOTAVAIL)
}
