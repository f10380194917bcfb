//go:build unix && !linux

package reuse

import (
	"net"

	"golang.org/x/sys/unix"
)

// ipv4JoinByIndex: these stacks name the interface of an IPv4 group by an
// IPv4 address of it (ip_mreq).
const ipv4JoinByIndex = false

// onlyJoinedGroups does nothing here: a socket receives the groups it
// joined.
func onlyJoinedGroups(uintptr, bool) error { return nil }

func setIPv4Group(fd uintptr, _ *net.Interface, ifaddr, group net.IP) error {
	mreq := &unix.IPMreq{}
	copy(mreq.Multiaddr[:], group)
	copy(mreq.Interface[:], ifaddr)
	return unix.SetsockoptIPMreq(int(fd), unix.IPPROTO_IP, unix.IP_ADD_MEMBERSHIP, mreq)
}

func setIPv4Interface(fd uintptr, _ *net.Interface, ifaddr net.IP) error {
	var a [4]byte
	copy(a[:], ifaddr)
	return unix.SetsockoptInet4Addr(int(fd), unix.IPPROTO_IP, unix.IP_MULTICAST_IF, a)
}
