//go:build !unix && !windows

package reuse

import "net"

// There are no groups to join here; ListenMulticastUDP fails before, when
// it asks for the options of its Mode.

func joinIPv4(uintptr, *net.Interface, net.IP) error { return errNoSockets }

func joinIPv6(uintptr, *net.Interface, net.IP) error { return errNoSockets }
