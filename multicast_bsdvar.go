//go:build unix && !linux

package reuse

import (
	"net"

	"golang.org/x/sys/unix"
)

// joinIPv4 joins the IPv4 group on ifi, which these stacks name by its IPv4
// address.
func joinIPv4(fd uintptr, ifi *net.Interface, group net.IP) error {
	s := int(fd)
	mreq := &unix.IPMreq{}
	copy(mreq.Multiaddr[:], group)
	if ifi != nil {
		ip, err := interfaceIPv4(ifi)
		if err != nil {
			return err
		}
		copy(mreq.Interface[:], ip)
	}
	if err := unix.SetsockoptIPMreq(s, unix.IPPROTO_IP, unix.IP_ADD_MEMBERSHIP, mreq); err != nil {
		return optError("IP_ADD_MEMBERSHIP", err)
	}
	if ifi != nil {
		if err := unix.SetsockoptInet4Addr(s, unix.IPPROTO_IP, unix.IP_MULTICAST_IF, mreq.Interface); err != nil {
			return optError("IP_MULTICAST_IF", err)
		}
	}
	return nil
}

// joinIPv6 joins the IPv6 group on ifi.
func joinIPv6(fd uintptr, ifi *net.Interface, group net.IP) error {
	return joinIPv6Group(int(fd), ifi, group)
}
