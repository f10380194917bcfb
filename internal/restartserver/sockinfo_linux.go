package restartserver

import (
	"net"
	"os"
	"strconv"
	"strings"

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

// udpDrops returns how many datagrams the kernel dropped for pc (its
// receive buffer full, or a socket filter's verdict): the last column of
// /proc/net/udp{,6}.
func udpDrops(pc net.PacketConn) int {
	uc, ok := pc.(*net.UDPConn)
	if !ok {
		return 0
	}
	rc, err := uc.SyscallConn()
	if err != nil {
		return 0
	}
	var st unix.Stat_t
	_ = rc.Control(func(fd uintptr) { _ = unix.Fstat(int(fd), &st) })
	ino := strconv.FormatUint(st.Ino, 10)
	for _, file := range []string{"/proc/net/udp", "/proc/net/udp6"} {
		data, _ := os.ReadFile(file)
		for _, line := range strings.Split(string(data), "\n") {
			f := strings.Fields(line)
			if len(f) >= 13 && f[9] == ino {
				n, _ := strconv.Atoi(f[len(f)-1])
				return n
			}
		}
	}
	return 0
}
