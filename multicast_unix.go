//go:build unix

package reuse

import (
	"net"

	"golang.org/x/sys/unix"
)

// joinIPv6Group joins the IPv6 group on ifi (nil: the system's choice), and
// sends on ifi too; every Unix names the interface by its index.
func joinIPv6Group(s int, ifi *net.Interface, group net.IP) error {
	mreq := &unix.IPv6Mreq{}
	copy(mreq.Multiaddr[:], group)
	if ifi != nil {
		mreq.Interface = uint32(ifi.Index)
	}
	if err := unix.SetsockoptIPv6Mreq(s, unix.IPPROTO_IPV6, unix.IPV6_JOIN_GROUP, mreq); err != nil {
		return optError("IPV6_JOIN_GROUP", err)
	}
	if ifi != nil {
		if err := unix.SetsockoptInt(s, unix.IPPROTO_IPV6, unix.IPV6_MULTICAST_IF, ifi.Index); err != nil {
			return optError("IPV6_MULTICAST_IF", err)
		}
	}
	return nil
}
