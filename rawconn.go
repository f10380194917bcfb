package reuse

import "syscall"

// withFD runs fn on the descriptor of rc and returns the error of either:
// the package's one way into a socket's descriptor.
func withFD(rc syscall.RawConn, fn func(fd uintptr) error) error {
	var ferr error
	if err := rc.Control(func(fd uintptr) { ferr = fn(fd) }); err != nil {
		return err
	}
	return ferr
}
