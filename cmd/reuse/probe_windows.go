package main

import (
	"fmt"
	"net"
	"os"
	"syscall"

	"golang.org/x/sys/windows"
)

// soExclusiveAddrUse is SO_EXCLUSIVEADDRUSE, defined by Winsock as
// ((int)(~SO_REUSEADDR)); golang.org/x/sys/windows lacks it.
const soExclusiveAddrUse = ^windows.SO_REUSEADDR

// probeOptions are the matrix's rows and columns on Windows, which has no
// SO_REUSEPORT. Both options on one socket fail with WSAEINVAL.
var probeOptions = []sockOption{
	{name: "none"},
	{name: "REUSEADDR", ints: []intOpt{{windows.SOL_SOCKET, windows.SO_REUSEADDR, 1}}},
	{name: "EXCLUSIVEADDRUSE", ints: []intOpt{{windows.SOL_SOCKET, soExclusiveAddrUse, 1}}},
	{name: "Share", mode: &modeShare},
	{name: "Exclusive", mode: &modeExclusive},
}

// sysSocket is a socket the probe makes itself, so that it can bind without
// listening and set exactly the options of a row.
type sysSocket struct{ h windows.Handle }

// openSocket makes a TCP or UDP socket of family 4 or 6; IPv6 sockets are
// IPV6_V6ONLY, as Go's tcp6 and udp6 sockets are.
func openSocket(proto string, family int) (*sysSocket, error) {
	domain, typ, p := windows.AF_INET, windows.SOCK_STREAM, windows.IPPROTO_TCP
	if family == 6 {
		domain = windows.AF_INET6
	}
	if proto == "udp" {
		typ, p = windows.SOCK_DGRAM, windows.IPPROTO_UDP
	}
	h, err := windows.Socket(domain, typ, p)
	if err != nil {
		return nil, os.NewSyscallError("socket", err)
	}
	s := &sysSocket{h}
	if family == 6 {
		if err := windows.SetsockoptInt(h, windows.IPPROTO_IPV6, windows.IPV6_V6ONLY, 1); err != nil {
			s.close()
			return nil, os.NewSyscallError("setsockopt", err)
		}
	}
	return s, nil
}

func (s *sysSocket) fd() uintptr { return uintptr(s.h) }

func (s *sysSocket) setInt(level, opt, value int) error {
	return windows.SetsockoptInt(s.h, level, opt, value)
}

func (s *sysSocket) bind(ip net.IP, port int) error {
	var sa windows.Sockaddr
	if ip4 := ip.To4(); ip4 != nil {
		a := &windows.SockaddrInet4{Port: port}
		copy(a.Addr[:], ip4)
		sa = a
	} else {
		a := &windows.SockaddrInet6{Port: port}
		copy(a.Addr[:], ip.To16())
		sa = a
	}
	return os.NewSyscallError("bind", windows.Bind(s.h, sa))
}

func (s *sysSocket) listen() error { return os.NewSyscallError("listen", windows.Listen(s.h, 16)) }

func (s *sysSocket) port() (int, error) {
	sa, err := windows.Getsockname(s.h)
	if err != nil {
		return 0, os.NewSyscallError("getsockname", err)
	}
	switch a := sa.(type) {
	case *windows.SockaddrInet4:
		return a.Port, nil
	case *windows.SockaddrInet6:
		return a.Port, nil
	}
	return 0, fmt.Errorf("unexpected local address %T", sa)
}

func (s *sysSocket) close() { windows.Closesocket(s.h) }

// winsockErrors names the Winsock errors a bind can meet.
var winsockErrors = map[syscall.Errno]string{
	windows.WSAEACCES:          "WSAEACCES",
	windows.WSAEADDRINUSE:      "WSAEADDRINUSE",
	windows.WSAEADDRNOTAVAIL:   "WSAEADDRNOTAVAIL",
	windows.WSAEAFNOSUPPORT:    "WSAEAFNOSUPPORT",
	windows.WSAEINVAL:          "WSAEINVAL",
	windows.WSAENOPROTOOPT:     "WSAENOPROTOOPT",
	windows.WSAEOPNOTSUPP:      "WSAEOPNOTSUPP",
	windows.WSAEPROTONOSUPPORT: "WSAEPROTONOSUPPORT",
}

func nameOfErrno(e syscall.Errno) string { return winsockErrors[e] }

func kernelVersion() string {
	v := windows.RtlGetVersion()
	return fmt.Sprintf("Windows %d.%d.%d", v.MajorVersion, v.MinorVersion, v.BuildNumber)
}

// probeNetNSWorker is never started on Windows, which has no network
// namespaces.
func probeNetNSWorker([]string) error {
	return fmt.Errorf("network namespaces exist on Linux only")
}

func probe() (*probeReport, error) {
	rep := newReport()
	why := "no wildcard bind outside a private network namespace, which Windows does not have"
	rep.Where = "on this machine's loopback only: " + why
	rep.Binds = runMatrix(false, why)
	rep.Facts = append(rep.Facts,
		measureBalance("127.0.0.1"),
		probeFact{Name: factSpecific, Value: notMeasured + ": " + why, Stable: true},
		probeFact{Name: "kernel", Value: rep.Kernel},
		probeFact{Name: "Go", Value: rep.Go})
	return rep, nil
}
