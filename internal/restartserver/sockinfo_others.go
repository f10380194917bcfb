//go:build !linux

package restartserver

import "net"

// protocol names the protocol of a listener: TCP (MPTCP is Linux's).
func protocol(net.Listener) string { return "TCP" }

// udpDrops returns 0: the count is read from Linux's /proc.
func udpDrops(net.PacketConn) int { return 0 }
