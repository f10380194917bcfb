package reuse

import (
	"errors"
	"net"

	"golang.org/x/sys/unix"
)

// ipv4JoinByIndex: Linux names the interface of an IPv4 group by its index
// (ip_mreqn).
const ipv4JoinByIndex = true

// onlyJoinedGroups clears IP_MULTICAST_ALL (IPV6_MULTICAST_ALL): Linux
// otherwise gives a socket bound to the wildcard the datagrams of every
// group that any socket of the host joined on its port. Kernels before
// 4.20 lack the IPv6 one (ENOPROTOOPT) and deliver every group joined on
// the port.
func onlyJoinedGroups(fd uintptr, ipv6 bool) error {
	if ipv6 {
		err := unix.SetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_MULTICAST_ALL, 0)
		if errors.Is(err, unix.ENOPROTOOPT) {
			return nil
		}
		return optError("IPV6_MULTICAST_ALL", err)
	}
	return optError("IP_MULTICAST_ALL", unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_MULTICAST_ALL, 0))
}

func setIPv4Group(fd uintptr, ifi *net.Interface, _, group net.IP) error {
	mreq := &unix.IPMreqn{}
	copy(mreq.Multiaddr[:], group)
	if ifi != nil {
		mreq.Ifindex = int32(ifi.Index)
	}
	return unix.SetsockoptIPMreqn(int(fd), unix.IPPROTO_IP, unix.IP_ADD_MEMBERSHIP, mreq)
}

func setIPv4Interface(fd uintptr, ifi *net.Interface, _ net.IP) error {
	return unix.SetsockoptIPMreqn(int(fd), unix.IPPROTO_IP, unix.IP_MULTICAST_IF, &unix.IPMreqn{Ifindex: int32(ifi.Index)})
}
