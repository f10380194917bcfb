//go:build unix

package reuse

import (
	"net"

	"golang.org/x/sys/unix"
)

// Every Unix names the interface of an IPv6 group by its index.

func setIPv6Group(fd uintptr, ifi *net.Interface, group net.IP) error {
	mreq := &unix.IPv6Mreq{}
	copy(mreq.Multiaddr[:], group)
	if ifi != nil {
		mreq.Interface = uint32(ifi.Index)
	}
	return unix.SetsockoptIPv6Mreq(int(fd), unix.IPPROTO_IPV6, unix.IPV6_JOIN_GROUP, mreq)
}

func setIPv6Interface(fd uintptr, ifi *net.Interface) error {
	return unix.SetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_MULTICAST_IF, ifi.Index)
}
