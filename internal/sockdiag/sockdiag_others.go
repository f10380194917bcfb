//go:build !linux

package sockdiag

import (
	"errors"
	"fmt"
	"runtime"
)

// OnPort returns an error wrapping errors.ErrUnsupported: the package reads
// sockets on Linux only.
func OnPort(port int) ([]Socket, error) {
	return nil, fmt.Errorf("listing the sockets on a port on %s: %w", runtime.GOOS, errors.ErrUnsupported)
}

// FindOwners returns an error wrapping errors.ErrUnsupported, as OnPort.
func FindOwners([]uint64) (Owners, error) {
	return Owners{}, fmt.Errorf("finding the processes of sockets on %s: %w", runtime.GOOS, errors.ErrUnsupported)
}

// DumpUnix returns an error wrapping errors.ErrUnsupported, as OnPort.
func DumpUnix(string, func(UnixSocket)) error {
	return fmt.Errorf("listing Unix sockets on %s: %w", runtime.GOOS, errors.ErrUnsupported)
}
