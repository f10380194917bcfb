package sockettest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"

	"golang.org/x/sys/unix"
)

// EnableLoopbackMulticast lets IPv4 multicast run on the loopback interface
// of a private network namespace: it sets lo's MULTICAST flag and routes
// 224.0.0.0/4 through lo, so that a group joined on the default interface is
// joined on lo and nothing leaves the namespace. Call it only inside
// RunInNetNS.
//
// IPv6 multicast cannot run on lo: Linux turns a route through lo to
// anything but ::1 into a reject route, and drops datagrams from ::1 that it
// loops back on another interface. See AddIPv6MulticastInterface.
func EnableLoopbackMulticast() error {
	if !InNetNS() {
		return errors.New("sockettest: EnableLoopbackMulticast outside a private network namespace")
	}
	lo, err := net.InterfaceByName("lo")
	if err != nil {
		return err
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return os.NewSyscallError("socket", err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return os.NewSyscallError("ioctl SIOCGIFFLAGS", err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP | unix.IFF_MULTICAST)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return os.NewSyscallError("ioctl SIOCSIFFLAGS", err)
	}
	if err := addRoute(unix.AF_INET, net.IPv4(224, 0, 0, 0).To4(), 4, lo.Index); err != nil {
		return fmt.Errorf("route 224.0.0.0/4 via lo: %w", err)
	}
	return nil
}

// MulticastSource6 is the address that AddIPv6MulticastInterface gives its
// interface, a unique local address, from which IPv6 multicast is sent.
var MulticastSource6 = net.ParseIP("fd00:6d63::1")

// AddIPv6MulticastInterface creates, in a private network namespace, an
// interface for IPv6 multicast called name: a bridge without ports, which
// transmits to nothing. The kernel routes ff00::/8 through it and loops each
// datagram sent to a group back to the namespace's own members, so nothing
// leaves the namespace. Its address is MulticastSource6, usable at once
// as the source of what is sent. Call it only inside RunInNetNS.
func AddIPv6MulticastInterface(name string) (*net.Interface, error) {
	if !InNetNS() {
		return nil, errors.New("sockettest: AddIPv6MulticastInterface outside a private network namespace")
	}
	linkinfo := attr(unix.IFLA_INFO_KIND, []byte("bridge"))
	body := make([]byte, unix.SizeofIfInfomsg)
	body[0] = unix.AF_UNSPEC
	body = append(body, attr(unix.IFLA_IFNAME, append([]byte(name), 0))...)
	body = append(body, attr(unix.IFLA_LINKINFO|unix.NLA_F_NESTED, linkinfo)...)
	if err := netlinkRequest(unix.RTM_NEWLINK, unix.NLM_F_CREATE|unix.NLM_F_EXCL, body); err != nil {
		return nil, fmt.Errorf("creating bridge %s: %w", name, err)
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, os.NewSyscallError("socket", err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return nil, err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return nil, os.NewSyscallError("ioctl SIOCGIFFLAGS", err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return nil, os.NewSyscallError("ioctl SIOCSIFFLAGS", err)
	}
	ifi, err := net.InterfaceByName(name)
	if err != nil {
		return nil, err
	}
	// The kernel gives an interface a link-local address and routes
	// ff00::/8 through it only once it has a carrier, which a bridge
	// without ports never has: give it both.
	ifa := make([]byte, unix.SizeofIfAddrmsg)
	ifa[0] = unix.AF_INET6
	ifa[1] = 64 // prefix length
	ifa[2] = unix.IFA_F_NODAD
	binary.NativeEndian.PutUint32(ifa[4:], uint32(ifi.Index))
	ifa = append(ifa, attr(unix.IFA_LOCAL, MulticastSource6)...)
	ifa = append(ifa, attr(unix.IFA_ADDRESS, MulticastSource6)...)
	if err := netlinkRequest(unix.RTM_NEWADDR, unix.NLM_F_CREATE|unix.NLM_F_REPLACE, ifa); err != nil {
		return nil, fmt.Errorf("address %v on %s: %w", MulticastSource6, name, err)
	}
	if err := addRoute(unix.AF_INET6, net.ParseIP("ff00::"), 8, ifi.Index); err != nil {
		return nil, fmt.Errorf("route ff00::/8 via %s: %w", name, err)
	}
	return ifi, nil
}

// addRoute adds or replaces a route to dst/bits through the interface
// ifindex in the main table.
func addRoute(family int, dst net.IP, bits, ifindex int) error {
	oif := make([]byte, 4)
	binary.NativeEndian.PutUint32(oif, uint32(ifindex))
	rtm := make([]byte, unix.SizeofRtMsg)
	rtm[0] = byte(family)
	rtm[1] = byte(bits) // dst_len
	rtm[4] = unix.RT_TABLE_MAIN
	rtm[5] = unix.RTPROT_BOOT
	rtm[6] = unix.RT_SCOPE_LINK
	rtm[7] = unix.RTN_UNICAST
	rtm = append(rtm, attr(unix.RTA_DST, dst)...)
	rtm = append(rtm, attr(unix.RTA_OIF, oif)...)
	return netlinkRequest(unix.RTM_NEWROUTE, unix.NLM_F_CREATE|unix.NLM_F_REPLACE, rtm)
}

// attr encodes one rtnetlink attribute, padded to 4 bytes.
func attr(typ int, data []byte) []byte {
	b := make([]byte, unix.SizeofRtAttr, (unix.SizeofRtAttr+len(data)+3)&^3)
	binary.NativeEndian.PutUint16(b[0:], uint16(unix.SizeofRtAttr+len(data)))
	binary.NativeEndian.PutUint16(b[2:], uint16(typ))
	b = append(b, data...)
	return b[:cap(b)]
}

// netlinkRequest sends one rtnetlink request and waits for its
// acknowledgement.
func netlinkRequest(typ uint16, flags uint16, body []byte) error {
	s, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
	if err != nil {
		return os.NewSyscallError("socket", err)
	}
	defer unix.Close(s)
	msg := make([]byte, unix.SizeofNlMsghdr, unix.SizeofNlMsghdr+len(body))
	msg = append(msg, body...)
	binary.NativeEndian.PutUint32(msg[0:], uint32(len(msg)))
	binary.NativeEndian.PutUint16(msg[4:], typ)
	binary.NativeEndian.PutUint16(msg[6:], unix.NLM_F_REQUEST|unix.NLM_F_ACK|flags)
	binary.NativeEndian.PutUint32(msg[8:], 1) // sequence number
	if err := unix.Sendto(s, msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return os.NewSyscallError("sendto", err)
	}
	buf := make([]byte, 4096)
	n, _, err := unix.Recvfrom(s, buf, 0)
	if err != nil {
		return os.NewSyscallError("recvfrom", err)
	}
	// The acknowledgement is an NLMSG_ERROR message whose errno is 0.
	if n < unix.SizeofNlMsghdr+4 || binary.NativeEndian.Uint16(buf[4:]) != unix.NLMSG_ERROR {
		return errors.New("no acknowledgement from rtnetlink")
	}
	if errno := int32(binary.NativeEndian.Uint32(buf[unix.SizeofNlMsghdr:])); errno != 0 {
		return os.NewSyscallError("rtnetlink", unix.Errno(-errno))
	}
	return nil
}
