package reuse

import (
	"errors"
	"fmt"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

func canSteer() error { return nil }

func steer(rc syscall.RawConn, s Steering) error {
	domain, err := checkGroupMember(rc)
	if err != nil {
		return err
	}
	if err := s.checkFor(domain == unix.AF_INET6); err != nil {
		return err
	}
	if err := withFD(rc, func(fd uintptr) error { return attachProgram(int(fd), steerProgram(s)) }); err != nil {
		return fmt.Errorf("steering the group: %w", err)
	}
	return nil
}

func unsteer(rc syscall.RawConn) error {
	if _, err := checkGroupMember(rc); err != nil {
		return err
	}
	if err := withFD(rc, func(fd uintptr) error { return detachProgram(int(fd)) }); err != nil {
		return fmt.Errorf("unsteering the group: %w", err)
	}
	return nil
}

// attachProgram makes prog the program of fd's group: the one place where
// the package sets SO_ATTACH_REUSEPORT_CBPF (Steer, TakeOver).
func attachProgram(fd int, prog []unix.SockFilter) error {
	attach := func() error {
		return unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_REUSEPORT_CBPF, &unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]})
	}
	err := attach()
	if errors.Is(err, unix.EINVAL) {
		// A socket that set SO_REUSEPORT after its bind (Share with port 0,
		// listen.go) has no group until a second socket joins: the kernel
		// makes the group then. A helper joins for that moment and leaves
		// as the last member, so that nobody moves.
		if helper, herr := joinHelperLike(fd); herr == nil {
			err = attach()
			unix.Close(helper)
		}
	}
	return programError("setsockopt SO_ATTACH_REUSEPORT_CBPF", err)
}

// joinHelperLike opens a helper (see joinHelper) for the group of fd, a
// socket with SO_REUSEPORT: same address, kind, IPV6_V6ONLY and device.
func joinHelperLike(fd int) (int, error) {
	if on, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEPORT); err != nil || on == 0 {
		return -1, errors.New("no SO_REUSEPORT")
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return -1, os.NewSyscallError("getsockname", err)
	}
	typ, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TYPE)
	if err != nil {
		return -1, os.NewSyscallError("getsockopt SO_TYPE", err)
	}
	var v6only bool
	if _, ok := sa.(*unix.SockaddrInet6); ok {
		v, err := unix.GetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY)
		if err != nil {
			return -1, os.NewSyscallError("getsockopt IPV6_V6ONLY", err)
		}
		v6only = v != 0
	}
	dev, err := unix.GetsockoptString(fd, unix.SOL_SOCKET, unix.SO_BINDTODEVICE)
	if err != nil {
		dev = ""
	}
	return joinHelper(sa, typ, v6only, dev)
}

// joinHelper opens a socket of this process's that joins the group on sa
// (a plain TCP listener for a stream group, MPTCP members included, since
// the kernel refuses programs on MPTCP sockets), to attach or detach the
// group's program through it. It drops whatever the kernel's hash gives it
// (dropAll), so that a client sends again instead of being reset.
// The caller closes it; it joined last, so its leaving moves no member.
func joinHelper(sa unix.Sockaddr, sockType int, v6only bool, dev string) (int, error) {
	family := unix.AF_INET
	if _, ok := sa.(*unix.SockaddrInet6); ok {
		family = unix.AF_INET6
	}
	fd, err := unix.Socket(family, sockType|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, os.NewSyscallError("socket", err)
	}
	err = func() error {
		// SO_REUSEADDR, as the package's listeners carry it; UDP members
		// never do (options.go).
		reuseAddr := boolInt(sockType == unix.SOCK_STREAM)
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, reuseAddr); err != nil {
			return os.NewSyscallError("setsockopt SO_REUSEADDR", err)
		}
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEPORT, 1); err != nil {
			return os.NewSyscallError("setsockopt SO_REUSEPORT", err)
		}
		if family == unix.AF_INET6 {
			if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, boolInt(v6only)); err != nil {
				return os.NewSyscallError("setsockopt IPV6_V6ONLY", err)
			}
		}
		if err := dropAll(fd, sockType, family); err != nil {
			return err
		}
		if dev != "" {
			if err := unix.SetsockoptString(fd, unix.SOL_SOCKET, unix.SO_BINDTODEVICE, dev); err != nil {
				return os.NewSyscallError("setsockopt SO_BINDTODEVICE", err)
			}
		}
		if err := unix.Bind(fd, sa); err != nil {
			return os.NewSyscallError("bind", err)
		}
		if sockType == unix.SOCK_STREAM {
			return os.NewSyscallError("listen", unix.Listen(fd, 1))
		}
		return nil
	}()
	if err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

// dropAll makes the helper fd drop every packet, before it joins the group,
// without privilege: a socket filter on a UDP socket; on a TCP listener,
// where a socket filter needs CAP_NET_ADMIN (since Linux commit
// 5d39580f68e6), IP_MINTTL and IPV6_MINHOPCOUNT of 255, which the kernel
// checks after it picked the listener and before it answers the SYN. A
// client whose packets arrive with 255 hops left (one that sets IP_TTL 255
// on this host) would still reach it.
func dropAll(fd, sockType, family int) error {
	if sockType != unix.SOCK_STREAM {
		drop := dropFilter()
		return os.NewSyscallError("setsockopt SO_ATTACH_FILTER", unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &unix.SockFprog{Len: uint16(len(drop)), Filter: &drop[0]}))
	}
	if err := unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_MINTTL, 255); err != nil {
		return fmt.Errorf("steering a group of MPTCP listeners needs a plain-TCP helper that drops every SYN (IP_MINTTL), which this kernel refuses (listen with plain TCP, ListenConfig.SetMultipathTCP(false), to hand over without it): %w", os.NewSyscallError("setsockopt IP_MINTTL", err))
	}
	if family == unix.AF_INET6 {
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_MINHOPCOUNT, 255); err != nil {
			return fmt.Errorf("steering a group of MPTCP listeners needs a plain-TCP helper that drops every SYN (IPV6_MINHOPCOUNT), which this kernel refuses (listen with plain TCP, ListenConfig.SetMultipathTCP(false), to hand over without it): %w", os.NewSyscallError("setsockopt IPV6_MINHOPCOUNT", err))
		}
	}
	return nil
}

// detachProgram removes the program of fd's group, if it has one; like
// attachProgram, the one place for SO_DETACH_REUSEPORT_BPF.
func detachProgram(fd int) error {
	err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_DETACH_REUSEPORT_BPF, 0)
	if errors.Is(err, unix.ENOENT) { // the group had no program
		return nil
	}
	return programError("setsockopt SO_DETACH_REUSEPORT_BPF", err)
}

// programError wraps err, if any, from call: ENOPROTOOPT, from a kernel
// without the option (attach before Linux 4.5, detach before 5.3, and
// qemu-user's translation of setsockopt), also wraps errors.ErrUnsupported.
func programError(call string, err error) error {
	if err == nil {
		return nil
	}
	err = os.NewSyscallError(call, err)
	if errors.Is(err, unix.ENOPROTOOPT) {
		return fmt.Errorf("%w: %w", err, errors.ErrUnsupported)
	}
	return err
}

// checkGroupMember returns the domain of rc's socket (AF_INET or
// AF_INET6), or an error naming what is wrong unless it is an IPv4 or IPv6
// UDP socket with SO_REUSEPORT, so that the kernel's EINVAL for a socket
// outside any group, or its acceptance of a TCP socket, does not stand for
// the reason.
func checkGroupMember(rc syscall.RawConn) (int, error) {
	var domain, typ, proto, reusePort int
	err := withFD(rc, func(fd uintptr) (err error) {
		for _, o := range []struct {
			opt int
			v   *int
		}{{unix.SO_DOMAIN, &domain}, {unix.SO_TYPE, &typ}, {unix.SO_PROTOCOL, &proto}, {unix.SO_REUSEPORT, &reusePort}} {
			if *o.v, err = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, o.opt); err != nil {
				return os.NewSyscallError("getsockopt", err)
			}
		}
		return nil
	})
	switch {
	case err != nil:
		return 0, err
	case (domain != unix.AF_INET && domain != unix.AF_INET6) || typ != unix.SOCK_DGRAM || proto != unix.IPPROTO_UDP:
		return 0, fmt.Errorf("steering needs a UDP socket, not %s", socketName(domain, typ, proto))
	case reusePort == 0:
		return 0, errors.New("steering needs a socket of a group: this one has no SO_REUSEPORT (open it under Share)")
	}
	return domain, nil
}

// socketName names a socket that is not a UDP socket by its domain, type
// and protocol.
func socketName(domain, typ, proto int) string {
	switch {
	case domain == unix.AF_UNIX && typ == unix.SOCK_DGRAM:
		return "a unixgram socket"
	case domain == unix.AF_UNIX:
		return "a unix socket"
	case proto == unix.IPPROTO_TCP:
		return "a TCP socket"
	case proto == unix.IPPROTO_MPTCP:
		return "an MPTCP socket"
	}
	return fmt.Sprintf("a socket of domain %d, type %d, protocol %d", domain, typ, proto)
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
