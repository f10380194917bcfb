//go:build !aix && !darwin && !dragonfly && !freebsd && !linux && !netbsd && !openbsd && !solaris && !windows

package reuse

import (
	"errors"
	"fmt"
	"runtime"
)

// errNoSockets is the error of every call here: this OS has no BSD sockets
// (js and wasip1 simulate net in memory, plan9 opens files), so no option
// can be set.
var errNoSockets = fmt.Errorf("%s%s has no socket options to share or reserve a port: %w", errPrefix, runtime.GOOS, errors.ErrUnsupported)

func osOptions(Mode, sockKind) ([]sockOpt, error) { return nil, errNoSockets }

func setsockoptInt(fd uintptr, level, opt, value int) error { return errNoSockets }

func isAddrInUse(error) bool { return false }

func isTupleInUse(error) bool { return false }
