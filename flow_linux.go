package reuse

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

func canListenFlows() error { return nil }

// newFlowListener makes a FlowListener of the group member uc: its reads
// learn each datagram's local address and interface (IP_PKTINFO), where
// the flow's socket is bound.
func newFlowListener(uc *net.UDPConn) (*FlowListener, error) {
	rc, err := uc.SyscallConn()
	if err != nil {
		return nil, err
	}
	l := &FlowListener{conn: uc, flowState: flowState{network: "udp4", done: make(chan struct{}), signal: make(chan struct{}), flows: make(map[netip.AddrPort]*flowConn)}}
	var serr error
	err = rc.Control(func(fd uintptr) {
		sa, err := unix.Getsockname(int(fd))
		if err != nil {
			serr = os.NewSyscallError("getsockname", err)
			return
		}
		// IP_PKTINFO also on an IPv6 socket, for its IPv4 datagrams.
		if serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_PKTINFO, 1); serr != nil {
			serr = os.NewSyscallError("setsockopt IP_PKTINFO", serr)
		}
		switch sa := sa.(type) {
		case *unix.SockaddrInet4:
			l.port = sa.Port
		case *unix.SockaddrInet6:
			l.port, l.network = sa.Port, "udp6"
			if serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_RECVPKTINFO, 1); serr != nil {
				serr = os.NewSyscallError("setsockopt IPV6_RECVPKTINFO", serr)
			}
		}
		if serr == nil {
			serr = stampArrivals(int(fd))
		}
		l.ifindex, _ = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_BINDTOIFINDEX)
	})
	if err == nil {
		err = serr
	}
	if err != nil {
		return nil, err
	}
	waitStamps()
	go l.serve()
	return l, nil
}

// waitStamps waits until the kernel stamps datagrams as they arrive, 1 s
// at most. When no socket of the system has asked for stamps, the first
// one that does turns them on a moment later (net_enable_timestamp defers
// it to a workqueue), and meanwhile a datagram is stamped when it is read,
// which would put a new flow's first datagrams out of order. It sends a
// datagram to a socket of its own and reads it a millisecond later, until
// the stamp is older than the read.
func waitStamps() {
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return // no IPv4 loopback: flows' order may suffer for a moment
	}
	defer c.Close()
	rc, err := c.SyscallConn()
	if err != nil {
		return
	}
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = stampArrivals(int(fd)) }); err != nil || serr != nil {
		return
	}
	b, oob := make([]byte, 1), make([]byte, oobSize)
	for start := time.Now(); time.Since(start) < time.Second; {
		if _, err := c.WriteTo(b, c.LocalAddr()); err != nil {
			return
		}
		time.Sleep(time.Millisecond)
		read := time.Now().UnixNano()
		c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		_, oobn, _, _, err := c.ReadMsgUDP(b, oob)
		if err != nil {
			continue
		}
		if _, _, ts := control(oob[:oobn]); ts != 0 && ts < read {
			return
		}
	}
}

// serve reads the group's datagrams until the listener's socket closes.
func (l *FlowListener) serve() {
	defer close(l.done)
	rc, err := l.conn.SyscallConn()
	if err != nil {
		return
	}
	buf := make([]byte, 1<<16)
	oob := make([]byte, oobSize)
	for {
		err := rc.Read(func(fd uintptr) bool {
			for {
				n, oobn, _, from, err := unix.Recvmsg(int(fd), buf, oob, unix.MSG_DONTWAIT)
				switch {
				case err == unix.EINTR:
					continue
				case err == unix.EAGAIN:
					l.mu.Lock()
					l.settle(true)
					l.mu.Unlock()
					return false // wait
				case err == unix.ECONNREFUSED || err == unix.EHOSTUNREACH || err == unix.ENETUNREACH:
					continue // an ICMP error of an earlier send: read on
				case err != nil:
					return true // closed, or read again
				}
				d := flowDatagram{data: append([]byte(nil), buf[:n]...), from: sockaddrPort(from)}
				d.to, d.ifindex, d.ts = control(oob[:oobn])
				l.mu.Lock()
				for work := []flowDatagram{d}; len(work) > 0; {
					d := work[0]
					work = append(work[1:], l.dispatch(d)...)
				}
				l.reads++
				l.settle(false)
				l.mu.Unlock()
			}
		})
		if err != nil {
			return // closed
		}
	}
}

// sockaddrPort returns a datagram's source address, unmapped.
func sockaddrPort(sa unix.Sockaddr) netip.AddrPort {
	switch sa := sa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), uint16(sa.Port))
	case *unix.SockaddrInet6:
		a := netip.AddrFrom16(sa.Addr).Unmap()
		if sa.ZoneId != 0 && a.Is6() {
			a = a.WithZone(strconv.Itoa(int(sa.ZoneId)))
		}
		return netip.AddrPortFrom(a, uint16(sa.Port))
	}
	return netip.AddrPort{}
}

// oobSize holds a datagram's control messages: its IP_PKTINFO or
// IPV6_PKTINFO, and its SO_TIMESTAMPNS.
var oobSize = unix.CmsgSpace(unix.SizeofInet6Pktinfo) + unix.CmsgSpace(16)

// stampArrivals makes the kernel tell the time each datagram of fd arrived
// (SO_TIMESTAMPNS): a flow's datagrams read from two sockets are put in
// order by it.
func stampArrivals(fd int) error {
	return os.NewSyscallError("setsockopt SO_TIMESTAMPNS", unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1))
}

// control returns the local address and interface of a datagram, from its
// IP_PKTINFO or IPV6_PKTINFO message (in_pktinfo: ifindex, spec_dst, addr;
// in6_pktinfo: addr, ifindex), and its time of arrival in ns, from its
// SCM_TIMESTAMPNS (a timespec of two C longs).
func control(oob []byte) (to netip.Addr, ifindex int, ts int64) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return
	}
	for _, m := range msgs {
		switch {
		case m.Header.Level == unix.IPPROTO_IP && m.Header.Type == unix.IP_PKTINFO && len(m.Data) >= unix.SizeofInet4Pktinfo:
			to, ifindex = netip.AddrFrom4([4]byte(m.Data[8:12])), int(int32(binary.NativeEndian.Uint32(m.Data[0:4])))
		case m.Header.Level == unix.IPPROTO_IPV6 && m.Header.Type == unix.IPV6_PKTINFO && len(m.Data) >= unix.SizeofInet6Pktinfo:
			to, ifindex = netip.AddrFrom16([16]byte(m.Data[0:16])).Unmap(), int(int32(binary.NativeEndian.Uint32(m.Data[16:20])))
		case m.Header.Level == unix.SOL_SOCKET && m.Header.Type == unix.SCM_TIMESTAMPNS && len(m.Data) == 16:
			ts = int64(binary.NativeEndian.Uint64(m.Data[0:8]))*1e9 + int64(binary.NativeEndian.Uint64(m.Data[8:16]))
		case m.Header.Level == unix.SOL_SOCKET && m.Header.Type == unix.SCM_TIMESTAMPNS && len(m.Data) == 8:
			ts = int64(int32(binary.NativeEndian.Uint32(m.Data[0:4])))*1e9 + int64(int32(binary.NativeEndian.Uint32(m.Data[4:8])))
		}
	}
	return
}

// open opens f's socket: bound to the local address and port that f's
// first datagram was sent to and connected to its remote, with SO_REUSEPORT
// to join the address. It returns the datagrams of other flows that the
// socket received before it was connected; l.mu is held.
//
// The socket is bound to the interface the datagram arrived on
// (SO_BINDTOIFINDEX, unprivileged on a socket bound to none), for the
// group's sake: on connect, a UDP socket leaves its reuseport group (Linux
// 6.13+ rehashes it for the 4-tuple hash), and a socket that binds the
// address later would otherwise take the connected one for its group's
// first member (the newest socket of the address on IPv4, the oldest on
// IPv6) and start a group of its own around it, whose steering program
// could then pick the connected socket for another remote's datagrams
// (TestFlowKernelGroups). Sockets bound to different interfaces never share
// a group.
func (l *FlowListener) open(f *flowConn) ([]flowDatagram, error) {
	network, local := l.network, f.local
	if f.remote.Addr().Is4() {
		network = "udp4"
	}
	if !local.IsValid() {
		local = l.conn.LocalAddr().(*net.UDPAddr).AddrPort().Addr()
	}
	if network == "udp4" {
		local = local.Unmap()
	} else if local.Is4() {
		local = netip.AddrFrom16(local.As16())
	}
	ifindex := l.ifindex
	if ifindex == 0 {
		ifindex = f.ifindex
	}
	d := net.Dialer{
		LocalAddr: net.UDPAddrFromAddrPort(netip.AddrPortFrom(local, uint16(l.port))),
		Control: func(_, _ string, rc syscall.RawConn) error {
			var serr error
			err := rc.Control(func(fd uintptr) {
				if serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1); serr != nil {
					serr = os.NewSyscallError("setsockopt SO_REUSEPORT", serr)
					return
				}
				if serr = stampArrivals(int(fd)); serr != nil {
					return
				}
				if ifindex != 0 {
					if serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_BINDTOIFINDEX, ifindex); serr != nil {
						serr = os.NewSyscallError("setsockopt SO_BINDTOIFINDEX", serr)
					}
				}
			})
			if err != nil {
				return err
			}
			return serr
		},
	}
	c, err := d.Dial(network, f.remote.String())
	if err != nil {
		if isFDLimit(err) {
			var lim unix.Rlimit
			_ = unix.Getrlimit(unix.RLIMIT_NOFILE, &lim)
			return nil, fmt.Errorf("new flow from %v waits: one file descriptor a flow, and the process is at its limit (RLIMIT_NOFILE %d): %w", f.remote, lim.Cur, err)
		}
		return nil, fmt.Errorf("new flow from %v: its datagram is lost: %w", f.remote, err)
	}
	uc := c.(*net.UDPConn)
	others, err := drain(uc, f)
	if err != nil {
		uc.Close()
		return nil, fmt.Errorf("new flow from %v: its datagram is lost: %w", f.remote, err)
	}
	f.mu.Lock()
	f.conn = uc
	f.mu.Unlock()
	return others, nil
}

// drain reads what f's new socket received before it was connected: f's
// datagrams go to f.pending, after those read from the group; the others
// are returned.
func drain(uc *net.UDPConn, f *flowConn) ([]flowDatagram, error) {
	rc, err := uc.SyscallConn()
	if err != nil {
		return nil, err
	}
	var others []flowDatagram
	buf := make([]byte, 1<<16)
	oob := make([]byte, oobSize)
	err = rc.Control(func(fd uintptr) {
		for {
			n, oobn, _, from, err := unix.Recvmsg(int(fd), buf, oob, unix.MSG_DONTWAIT)
			if err == unix.EINTR {
				continue
			}
			if err != nil {
				return
			}
			d := flowDatagram{data: append([]byte(nil), buf[:n]...), from: sockaddrPort(from), to: f.local, ifindex: f.ifindex}
			_, _, d.ts = control(oob[:oobn])
			if d.from == f.remote {
				f.pending = inOrder(f.pending, d)
			} else {
				others = append(others, d)
			}
		}
	})
	return others, err
}

// isFDLimit reports whether err is the process's or the system's limit on
// open files.
func isFDLimit(err error) bool {
	return errors.Is(err, unix.EMFILE) || errors.Is(err, unix.ENFILE)
}
