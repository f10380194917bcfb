//go:build unix

package reuse

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// shareOptionsWork reports whether the options that Share sets on listening
// and datagram sockets can be set on a fresh, unbound socket of each. Old
// kernels refuse them with ENOPROTOOPT: Linux before 3.9 has no SO_REUSEPORT,
// FreeBSD before 12 no SO_REUSEPORT_LB.
func shareOptionsWork() bool {
	for _, k := range []struct {
		kind     sockKind
		sockType int
	}{{streamListener, unix.SOCK_STREAM}, {datagram, unix.SOCK_DGRAM}} {
		opts, err := options(Share, k.kind)
		if err != nil || !optionsSettable(k.sockType, opts) {
			return false
		}
	}
	return true
}

// optionsSettable opens an unbound socket of sockType, IPv4 or else IPv6,
// sets opts on it and closes it.
func optionsSettable(sockType int, opts []sockOpt) bool {
	for _, family := range []int{unix.AF_INET, unix.AF_INET6} {
		// Like package net where SOCK_CLOEXEC is missing (darwin), hold
		// ForkLock so that no child process inherits the descriptor.
		syscall.ForkLock.RLock()
		fd, err := unix.Socket(family, sockType, 0)
		if err == nil {
			unix.CloseOnExec(fd)
		}
		syscall.ForkLock.RUnlock()
		if err != nil {
			continue
		}
		err = setOptionsFD(uintptr(fd), opts)
		unix.Close(fd)
		return err == nil
	}
	return false
}
