package reuse

import "golang.org/x/sys/unix"

// optNumbers maps the options of solarisTable (options.go) to the constants
// of Solaris and illumos.
var optNumbers = map[optName]optNumber{
	soReuseAddr: {unix.SOL_SOCKET, unix.SO_REUSEADDR},
	soExclBind:  {unix.SOL_SOCKET, unix.SO_EXCLBIND},
}
