package reuse

import "golang.org/x/sys/unix"

// optNumbers maps the options of freebsdTable (options.go) to FreeBSD's
// constants.
var optNumbers = map[optName]optNumber{
	soReuseAddr:   {unix.SOL_SOCKET, unix.SO_REUSEADDR},
	soReusePort:   {unix.SOL_SOCKET, unix.SO_REUSEPORT},
	soReusePortLB: {unix.SOL_SOCKET, unix.SO_REUSEPORT_LB},
}
