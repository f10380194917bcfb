package main

import (
	"net"

	"golang.org/x/sys/unix"
)

// protocol names the protocol of a listener: "MPTCP" or "TCP" (the kernel
// gives TCP where MPTCP is asked but disabled).
func protocol(ln net.Listener) string {
	tl, ok := ln.(*net.TCPListener)
	if !ok {
		return "?"
	}
	rc, err := tl.SyscallConn()
	if err != nil {
		return "?"
	}
	proto := 0
	_ = rc.Control(func(fd uintptr) { proto, _ = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_PROTOCOL) })
	if proto == unix.IPPROTO_MPTCP {
		return "MPTCP"
	}
	return "TCP"
}
