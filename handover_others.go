//go:build !linux

package reuse

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"time"
)

// errNoHandover is the error of TakeOver here: the package knows no way, on
// this OS, to steer a port's group or read a socket's queue.
var errNoHandover = fmt.Errorf("a handover needs Linux (SO_ATTACH_REUSEPORT_CBPF, TCP_INFO), not %s: %w", runtime.GOOS, errors.ErrUnsupported)

// handoverState is empty here: TakeOver fails.
type handoverState struct{}

func takeOver(context.Context, *sockGroup, string, time.Duration, *Steering) (*handoverState, error) {
	return nil, errNoHandover
}

func (*handoverState) serve(replaced, closing chan struct{}) {}

func (*handoverState) generation() int { return 0 }

func (*handoverState) waitOldExit(stop <-chan struct{}) bool { return false }
