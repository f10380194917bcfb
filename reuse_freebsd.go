package reuse

import "golang.org/x/sys/unix"

var (
	reusePortOn    = sockOpt{"SO_REUSEPORT", unix.SOL_SOCKET, unix.SO_REUSEPORT, 1}
	reusePortOff   = sockOpt{"SO_REUSEPORT", unix.SOL_SOCKET, unix.SO_REUSEPORT, 0}
	reusePortLBOn  = sockOpt{"SO_REUSEPORT_LB", unix.SOL_SOCKET, unix.SO_REUSEPORT_LB, 1}
	reusePortLBOff = sockOpt{"SO_REUSEPORT_LB", unix.SOL_SOCKET, unix.SO_REUSEPORT_LB, 0}
)

// sockOpts is what each Mode sets on each kind of socket on FreeBSD.
// SO_REUSEPORT_LB (12.0+) balances listening and bound datagram sockets by a
// hash, at most 256 a group; plain SO_REUSEPORT only lets them bind together,
// which is what dialers need.
var sockOpts = [...][numKinds][]sockOpt{
	Share: {
		streamListener: {reuseAddrOn, reusePortLBOn},
		streamDialer:   {reuseAddrOn, reusePortOn},
		datagram:       {reuseAddrOff, reusePortLBOn},

		// Every receiver of a group gets its own copy (multicast.go).
		multicastDatagram: {reuseAddrOn, reusePortOn},
	},
	Exclusive: {
		streamListener: {reuseAddrOn, reusePortOff, reusePortLBOff},
		streamDialer:   {reuseAddrOff, reusePortOff, reusePortLBOff},
		datagram:       {reuseAddrOff, reusePortOff, reusePortLBOff},

		multicastDatagram: {reuseAddrOff, reusePortOff, reusePortLBOff},
	},
}

func osOptions(m Mode, k sockKind) ([]sockOpt, error) { return sockOpts[m][k], nil }
