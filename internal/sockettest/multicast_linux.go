package sockettest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"

	"golang.org/x/sys/unix"
)

// EnableLoopbackMulticast lets multicast run on the loopback interface of a
// private network namespace: it sets lo's MULTICAST flag and routes
// 224.0.0.0/4 and ff00::/8 through lo, so that a group joined on the default
// interface is joined on lo and nothing leaves the namespace. Call it only
// inside RunInNetNS. Routing ff00::/8 through lo is skipped when IPv6 is
// disabled in the namespace.
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
	if v6, err := os.ReadFile("/proc/sys/net/ipv6/conf/lo/disable_ipv6"); err != nil || string(v6) != "0\n" {
		return nil
	}
	if err := addRoute(unix.AF_INET6, net.ParseIP("ff00::"), 8, lo.Index); err != nil {
		return fmt.Errorf("route ff00::/8 via lo: %w", err)
	}
	return nil
}

// addRoute adds or replaces a route to dst/bits through the interface
// ifindex in the main table, with an rtnetlink RTM_NEWROUTE message.
func addRoute(family int, dst net.IP, bits, ifindex int) error {
	s, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
	if err != nil {
		return os.NewSyscallError("socket", err)
	}
	defer unix.Close(s)

	attr := func(typ int, data []byte) []byte {
		b := make([]byte, unix.SizeofRtAttr, (unix.SizeofRtAttr+len(data)+3)&^3)
		binary.NativeEndian.PutUint16(b[0:], uint16(unix.SizeofRtAttr+len(data)))
		binary.NativeEndian.PutUint16(b[2:], uint16(typ))
		b = append(b, data...)
		return b[:cap(b)]
	}
	oif := make([]byte, 4)
	binary.NativeEndian.PutUint32(oif, uint32(ifindex))
	msg := make([]byte, unix.SizeofNlMsghdr+unix.SizeofRtMsg)
	rtm := msg[unix.SizeofNlMsghdr:]
	rtm[0] = byte(family)
	rtm[1] = byte(bits) // dst_len
	rtm[4] = unix.RT_TABLE_MAIN
	rtm[5] = unix.RTPROT_BOOT
	rtm[6] = unix.RT_SCOPE_LINK
	rtm[7] = unix.RTN_UNICAST
	msg = append(msg, attr(unix.RTA_DST, dst)...)
	msg = append(msg, attr(unix.RTA_OIF, oif)...)
	binary.NativeEndian.PutUint32(msg[0:], uint32(len(msg)))
	binary.NativeEndian.PutUint16(msg[4:], unix.RTM_NEWROUTE)
	binary.NativeEndian.PutUint16(msg[6:], unix.NLM_F_REQUEST|unix.NLM_F_ACK|unix.NLM_F_CREATE|unix.NLM_F_REPLACE)
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
		return os.NewSyscallError("RTM_NEWROUTE", unix.Errno(-errno))
	}
	return nil
}
