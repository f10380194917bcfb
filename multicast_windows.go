package reuse

import (
	"net"

	"golang.org/x/sys/windows"
)

// ipv4JoinByIndex: Winsock names the interface of an IPv4 group by an IPv4
// address of it (ip_mreq), of an IPv6 group by its index.
const ipv4JoinByIndex = false

// onlyJoinedGroups does nothing here: a socket receives the groups it
// joined.
func onlyJoinedGroups(uintptr, bool) error { return nil }

func setIPv4Group(fd uintptr, _ *net.Interface, ifaddr, group net.IP) error {
	mreq := &windows.IPMreq{}
	copy(mreq.Multiaddr[:], group)
	copy(mreq.Interface[:], ifaddr)
	return windows.SetsockoptIPMreq(windows.Handle(fd), windows.IPPROTO_IP, windows.IP_ADD_MEMBERSHIP, mreq)
}

func setIPv4Interface(fd uintptr, _ *net.Interface, ifaddr net.IP) error {
	var a [4]byte
	copy(a[:], ifaddr)
	return windows.SetsockoptInet4Addr(windows.Handle(fd), windows.IPPROTO_IP, windows.IP_MULTICAST_IF, a)
}

func setIPv6Group(fd uintptr, ifi *net.Interface, group net.IP) error {
	mreq := &windows.IPv6Mreq{}
	copy(mreq.Multiaddr[:], group)
	if ifi != nil {
		mreq.Interface = uint32(ifi.Index)
	}
	return windows.SetsockoptIPv6Mreq(windows.Handle(fd), windows.IPPROTO_IPV6, windows.IPV6_JOIN_GROUP, mreq)
}

func setIPv6Interface(fd uintptr, ifi *net.Interface) error {
	return windows.SetsockoptInt(windows.Handle(fd), windows.IPPROTO_IPV6, windows.IPV6_MULTICAST_IF, ifi.Index)
}
