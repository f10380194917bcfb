package reuse

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
)

// ListenMulticastUDP joins the group address gaddr on the interface ifi and
// receives its datagrams on gaddr's port, with the options of c.Mode, like
// [net.ListenMulticastUDP]. The network must be "udp", "udp4" or "udp6", of
// the group's family; ifi nil means the interface the system picks for the
// group (the one its route goes through).
//
// Under Share, every socket and process that joins a group on the port gets
// its own copy of each datagram sent to the group. Unicast datagrams to the
// port still go to one receiver. Under Exclusive, no other socket can bind
// the port while this one is open.
//
// The socket is bound to the wildcard address of the port (0.0.0.0 or ::),
// as [net.ListenMulticastUDP] does, so that an Exclusive receiver holds the
// port on every address. On Linux it receives only the groups it joined,
// not those that other sockets of the host joined on the same port: it
// clears IP_MULTICAST_ALL and IPV6_MULTICAST_ALL (Linux 4.20+; older
// kernels deliver every group joined on the port).
// Unlike [net.ListenMulticastUDP], it leaves IP_MULTICAST_LOOP on, so that
// what one receiver sends to the group also reaches the others on the host.
//
// Closing the connection leaves the group and releases the port.
// c.ListenConfig's Control, if any, runs after the options are set.
func (c *Config) ListenMulticastUDP(ctx context.Context, network string, ifi *net.Interface, gaddr *net.UDPAddr) (*net.UDPConn, error) {
	conn, err := c.listenMulticast(ctx, network, ifi, gaddr)
	if err != nil {
		var address string
		if gaddr != nil {
			address = gaddr.String()
		}
		return nil, edgeError("listen", network, address, err)
	}
	return conn, nil
}

func (c *Config) listenMulticast(ctx context.Context, network string, ifi *net.Interface, gaddr *net.UDPAddr) (*net.UDPConn, error) {
	bindNetwork, err := multicastNetwork(network, gaddr)
	if err == nil && ctx == nil {
		err = errNilContext
	}
	if err != nil {
		return nil, err
	}
	p := c.newPlan(bindNetwork, multicastDatagram)
	if p.opts, err = options(c.Mode, multicastDatagram); err != nil {
		return nil, err
	}
	// net binds a multicast address to the wildcard only after setting
	// SO_REUSEADDR itself; binding the wildcard leaves every option to Mode.
	wildcard := net.JoinHostPort("0.0.0.0", strconv.Itoa(gaddr.Port))
	if bindNetwork == "udp6" {
		wildcard = net.JoinHostPort("::", strconv.Itoa(gaddr.Port))
	}
	pc, err := bind[net.PacketConn](ctx, &p, wildcard)
	if oe, ok := err.(*net.OpError); ok {
		// Name the group and the network the caller gave, not the wildcard.
		e := *oe
		e.Net, e.Addr = network, gaddr
		return nil, &e
	}
	if err != nil {
		return nil, err
	}
	conn := pc.(*net.UDPConn)
	if err := joinGroup(conn, ifi, gaddr.IP); err != nil {
		conn.Close()
		return nil, err
	}
	return conn, nil
}

// ListenMulticastUDP joins the group address gaddr on the interface ifi
// under Share, like (*Config).ListenMulticastUDP with the zero Config.
func ListenMulticastUDP(network string, ifi *net.Interface, gaddr *net.UDPAddr) (*net.UDPConn, error) {
	return zeroConfig.ListenMulticastUDP(context.Background(), network, ifi, gaddr)
}

// multicastNetwork checks network and the group address, and returns the
// network of the group's family.
func multicastNetwork(network string, gaddr *net.UDPAddr) (string, error) {
	switch network {
	case "udp", "udp4", "udp6":
	default:
		return "", net.UnknownNetworkError(network)
	}
	switch {
	case gaddr == nil || gaddr.IP == nil:
		return "", errors.New("missing multicast group address")
	case !gaddr.IP.IsMulticast():
		return "", fmt.Errorf("%v is not a multicast address", gaddr.IP)
	case gaddr.IP.To4() != nil && network == "udp6":
		return "", fmt.Errorf("IPv4 group %v on network udp6, which is IPv6 only", gaddr.IP)
	case gaddr.IP.To4() == nil && network == "udp4":
		return "", fmt.Errorf("IPv6 group %v on network udp4, which is IPv4 only", gaddr.IP)
	case gaddr.IP.To4() != nil:
		return "udp4", nil
	}
	return "udp6", nil
}

// joinGroup joins group on ifi, or on the system's choice if ifi is nil,
// and sends to the group through ifi too. With join, it is the package's
// one multicast join, like golang.org/x/net/ipv4's setGroup: each OS file
// gives only its setsockopt calls (setIPv4Group and the like).
func joinGroup(conn *net.UDPConn, ifi *net.Interface, group net.IP) error {
	rc, err := conn.SyscallConn()
	if err != nil {
		return err
	}
	if err := withFD(rc, func(fd uintptr) error { return join(fd, ifi, group) }); err != nil {
		on := "the default interface"
		if ifi != nil {
			on = fmt.Sprintf("interface %q (index %d)", ifi.Name, ifi.Index)
		}
		return fmt.Errorf("join %v on %s: %w", group, on, err)
	}
	return nil
}

// join sets on fd, in order, the options that join group on ifi.
func join(fd uintptr, ifi *net.Interface, group net.IP) error {
	ip4 := group.To4()
	if ip4 == nil {
		if err := onlyJoinedGroups(fd, true); err != nil {
			return err
		}
		if err := setIPv6Group(fd, ifi, group); err != nil {
			return optError("IPV6_JOIN_GROUP", err)
		}
		if ifi != nil {
			return optError("IPV6_MULTICAST_IF", setIPv6Interface(fd, ifi))
		}
		return nil
	}
	if err := onlyJoinedGroups(fd, false); err != nil {
		return err
	}
	var ifaddr net.IP
	if ifi != nil && !ipv4JoinByIndex {
		var err error
		if ifaddr, err = interfaceIPv4(ifi); err != nil {
			return err
		}
	}
	if err := setIPv4Group(fd, ifi, ifaddr, ip4); err != nil {
		return optError("IP_ADD_MEMBERSHIP", err)
	}
	if ifi != nil {
		return optError("IP_MULTICAST_IF", setIPv4Interface(fd, ifi, ifaddr))
	}
	return nil
}

// interfaceIPv4 returns the first IPv4 address of ifi, by which BSD stacks
// and Winsock name an interface for IPv4 multicast (ipv4JoinByIndex false).
func interfaceIPv4(ifi *net.Interface) (net.IP, error) {
	addrs, err := ifi.Addrs()
	if err != nil {
		return nil, err
	}
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok && ipn.IP.To4() != nil {
			return ipn.IP.To4(), nil
		}
	}
	return nil, fmt.Errorf("interface %q has no IPv4 address to join an IPv4 group on", ifi.Name)
}

// optError names the socket option that failed, if one did.
func optError(name string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s: %w", name, os.NewSyscallError("setsockopt", err))
}
