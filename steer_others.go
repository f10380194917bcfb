//go:build !linux

package reuse

import (
	"errors"
	"fmt"
	"runtime"
	"syscall"
)

// errNoSteering is the error of Steer and Unsteer here: no other OS lets a
// process pick the member of a group that receives a datagram.
var errNoSteering = fmt.Errorf("steering a UDP group needs Linux (SO_ATTACH_REUSEPORT_CBPF), not %s: %w", runtime.GOOS, errors.ErrUnsupported)

func canSteer() error { return errNoSteering }

func steer(syscall.RawConn, Steering) error { return errNoSteering }

func unsteer(syscall.RawConn) error { return errNoSteering }
