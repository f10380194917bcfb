package reuse

import (
	"net"

	"golang.org/x/sys/windows"
)

// joinIPv4 joins the IPv4 group on ifi, which Winsock names by its IPv4
// address.
func joinIPv4(fd uintptr, ifi *net.Interface, group net.IP) error {
	h := windows.Handle(fd)
	mreq := &windows.IPMreq{}
	copy(mreq.Multiaddr[:], group)
	if ifi != nil {
		ip, err := interfaceIPv4(ifi)
		if err != nil {
			return err
		}
		copy(mreq.Interface[:], ip)
	}
	if err := windows.SetsockoptIPMreq(h, windows.IPPROTO_IP, windows.IP_ADD_MEMBERSHIP, mreq); err != nil {
		return optError("IP_ADD_MEMBERSHIP", err)
	}
	if ifi != nil {
		if err := windows.SetsockoptInet4Addr(h, windows.IPPROTO_IP, windows.IP_MULTICAST_IF, mreq.Interface); err != nil {
			return optError("IP_MULTICAST_IF", err)
		}
	}
	return nil
}

// joinIPv6 joins the IPv6 group on ifi.
func joinIPv6(fd uintptr, ifi *net.Interface, group net.IP) error {
	h := windows.Handle(fd)
	mreq := &windows.IPv6Mreq{}
	copy(mreq.Multiaddr[:], group)
	if ifi != nil {
		mreq.Interface = uint32(ifi.Index)
	}
	if err := windows.SetsockoptIPv6Mreq(h, windows.IPPROTO_IPV6, windows.IPV6_JOIN_GROUP, mreq); err != nil {
		return optError("IPV6_JOIN_GROUP", err)
	}
	if ifi != nil {
		if err := windows.SetsockoptInt(h, windows.IPPROTO_IPV6, windows.IPV6_MULTICAST_IF, ifi.Index); err != nil {
			return optError("IPV6_MULTICAST_IF", err)
		}
	}
	return nil
}
