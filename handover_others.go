//go:build !linux

package reuse

import (
	"errors"
	"fmt"
	"net"
	"runtime"
)

// errNoHandover is the error of TakeOver and WaitDrained here: the package
// knows no way, on this OS, to steer a port's group or read a listener's
// accept queue.
var errNoHandover = fmt.Errorf("%sa handover needs Linux (SO_ATTACH_REUSEPORT_CBPF and TCP_INFO), not %s: %w", errPrefix, runtime.GOOS, errors.ErrUnsupported)

func migratesQueue() (bool, error) { return false, nil }

func takeOver(*net.TCPListener) error { return errNoHandover }

func release(*net.TCPListener) error { return errNoHandover }

func queueLen(*net.TCPListener) (int, error) { return 0, errNoHandover }
