package reuse

import (
	"errors"
	"net"

	"golang.org/x/sys/unix"
)

// joinIPv4 joins the IPv4 group on ifi. IP_MULTICAST_ALL is cleared first:
// Linux otherwise gives a socket bound to the wildcard the datagrams of every
// group that any socket of the host joined on its port.
func joinIPv4(fd uintptr, ifi *net.Interface, group net.IP) error {
	s := int(fd)
	if err := unix.SetsockoptInt(s, unix.IPPROTO_IP, unix.IP_MULTICAST_ALL, 0); err != nil {
		return optError("IP_MULTICAST_ALL", err)
	}
	mreq := &unix.IPMreqn{}
	copy(mreq.Multiaddr[:], group)
	if ifi != nil {
		mreq.Ifindex = int32(ifi.Index)
	}
	if err := unix.SetsockoptIPMreqn(s, unix.IPPROTO_IP, unix.IP_ADD_MEMBERSHIP, mreq); err != nil {
		return optError("IP_ADD_MEMBERSHIP", err)
	}
	if ifi != nil {
		if err := unix.SetsockoptIPMreqn(s, unix.IPPROTO_IP, unix.IP_MULTICAST_IF, &unix.IPMreqn{Ifindex: mreq.Ifindex}); err != nil {
			return optError("IP_MULTICAST_IF", err)
		}
	}
	return nil
}

// joinIPv6 joins the IPv6 group on ifi. IPV6_MULTICAST_ALL is cleared first,
// as in joinIPv4; kernels before 4.20 lack it (ENOPROTOOPT) and deliver
// every group joined on the port.
func joinIPv6(fd uintptr, ifi *net.Interface, group net.IP) error {
	s := int(fd)
	if err := unix.SetsockoptInt(s, unix.IPPROTO_IPV6, unix.IPV6_MULTICAST_ALL, 0); err != nil && !errors.Is(err, unix.ENOPROTOOPT) {
		return optError("IPV6_MULTICAST_ALL", err)
	}
	return joinIPv6Group(s, ifi, group)
}
