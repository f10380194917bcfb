//go:build aix || darwin || dragonfly || linux || netbsd || openbsd

package reuse

import "golang.org/x/sys/unix"

var (
	reusePortOn  = sockOpt{"SO_REUSEPORT", unix.SOL_SOCKET, unix.SO_REUSEPORT, 1}
	reusePortOff = sockOpt{"SO_REUSEPORT", unix.SOL_SOCKET, unix.SO_REUSEPORT, 0}
)

// sockOpts is what each Mode sets on each kind of socket where SO_REUSEPORT
// makes the group: Linux and Android (3.9+), AIX, macOS, iOS, DragonFly,
// NetBSD and OpenBSD. The options are the same; what the OS does with them
// is not (doc.go): Linux, DragonFly and AIX 7.2.5+ balance, the others give
// unicast traffic to one socket (macOS: the last bound). Linux admits only
// sockets of the same effective UID. SO_REUSEADDR lets a listener bind past
// TIME_WAIT; on a unicast datagram socket it would let any user share the
// port (Linux), so those never carry it.
var sockOpts = [...][numKinds][]sockOpt{
	Share: {
		streamListener: {reuseAddrOn, reusePortOn},
		streamDialer:   {reuseAddrOn, reusePortOn},
		datagram:       {reuseAddrOff, reusePortOn},

		// Every receiver of a group gets its own copy (multicast.go).
		multicastDatagram: {reuseAddrOn, reusePortOn},
	},
	Exclusive: {
		streamListener: {reuseAddrOn, reusePortOff},
		streamDialer:   {reuseAddrOff, reusePortOff},
		datagram:       {reuseAddrOff, reusePortOff},

		multicastDatagram: {reuseAddrOff, reusePortOff},
	},
}

func osOptions(m Mode, k sockKind) ([]sockOpt, error) { return sockOpts[m][k], nil }
