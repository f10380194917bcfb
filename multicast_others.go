//go:build !unix && !windows

package reuse

import "net"

// There are no groups to join here; ListenMulticastUDP fails before, when
// it asks for the options of its Mode.

const ipv4JoinByIndex = true

func onlyJoinedGroups(uintptr, bool) error { return errNoSockets }

func setIPv4Group(uintptr, *net.Interface, net.IP, net.IP) error { return errNoSockets }

func setIPv4Interface(uintptr, *net.Interface, net.IP) error { return errNoSockets }

func setIPv6Group(uintptr, *net.Interface, net.IP) error { return errNoSockets }

func setIPv6Interface(uintptr, *net.Interface) error { return errNoSockets }
