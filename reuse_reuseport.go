//go:build unix && !freebsd && !solaris

package reuse

import "golang.org/x/sys/unix"

// optNumbers maps the options of reusePortTable (options.go) to this OS's
// constants, which differ between OSes and architectures.
var optNumbers = map[optName]optNumber{
	soReuseAddr: {unix.SOL_SOCKET, unix.SO_REUSEADDR},
	soReusePort: {unix.SOL_SOCKET, unix.SO_REUSEPORT},
}
