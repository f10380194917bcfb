//go:build !linux && !windows

package main

import (
	"fmt"
	"io"
	"runtime"
)

// errProbeOS is the error of the probe where it has no sockets of its own.
var errProbeOS = fmt.Errorf("the probe measures Linux and Windows, not %s", runtime.GOOS)

func runProbe([]string, io.Writer) error { return errProbeOS }

func probeBindWorker([]string) error { return errProbeOS }

func probeNetNSWorker([]string) error { return errProbeOS }
