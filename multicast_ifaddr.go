//go:build (unix && !linux) || windows

package reuse

import (
	"fmt"
	"net"
)

// interfaceIPv4 returns the first IPv4 address of ifi, by which BSD stacks
// and Winsock name an interface for IPv4 multicast.
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
