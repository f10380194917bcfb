//go:build !linux && !windows

package main

import (
	"fmt"
	"io"
	"runtime"
)

// errProbeOS is the error of the probe where it has no sockets of its own.
var errProbeOS = fmt.Errorf("the probe measures Linux and Windows, not %s", runtime.GOOS)

func runProbe(args []string, _ io.Writer) error {
	if _, _, err := probeFlags(args); err != nil {
		return err
	}
	return errProbeOS
}

func probeBindWorker([]string) error { return errProbeOS }

func probeNetNSWorker([]string) error { return errProbeOS }
