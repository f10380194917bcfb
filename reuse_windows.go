package reuse

import (
	"errors"

	"golang.org/x/sys/windows"
)

// soExclusiveAddrUse is SO_EXCLUSIVEADDRUSE, defined by Winsock as
// ((int)(~SO_REUSEADDR)); golang.org/x/sys/windows lacks it.
const soExclusiveAddrUse = ^windows.SO_REUSEADDR

var (
	reuseAddrOn        = sockOpt{"SO_REUSEADDR", windows.SOL_SOCKET, windows.SO_REUSEADDR, 1}
	exclusiveAddrUseOn = sockOpt{"SO_EXCLUSIVEADDRUSE", windows.SOL_SOCKET, soExclusiveAddrUse, 1}
)

// sockOpts is what each Mode sets on each kind of socket on Windows.
// SO_REUSEADDR shares without balancing and lets any process, of any user,
// bind the port over it; SO_EXCLUSIVEADDRUSE forbids every other bind of the
// address. Setting both on one socket fails with WSAEINVAL.
var sockOpts = [...][numKinds][]sockOpt{
	Share: {
		streamListener: {reuseAddrOn},
		streamDialer:   {reuseAddrOn},
		datagram:       {reuseAddrOn},

		multicastDatagram: {reuseAddrOn},
	},
	Exclusive: {
		streamListener: {exclusiveAddrUseOn},
		streamDialer:   {exclusiveAddrUseOn},
		datagram:       {exclusiveAddrUseOn},

		multicastDatagram: {exclusiveAddrUseOn},
	},
}

func osOptions(m Mode, k sockKind) ([]sockOpt, error) { return sockOpts[m][k], nil }

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
