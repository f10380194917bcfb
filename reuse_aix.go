package reuse

import "golang.org/x/sys/unix"

var (
	reusePortOn  = sockOpt{"SO_REUSEPORT", unix.SOL_SOCKET, unix.SO_REUSEPORT, 1}
	reusePortOff = sockOpt{"SO_REUSEPORT", unix.SOL_SOCKET, unix.SO_REUSEPORT, 0}
)

// sockOpts is what each Mode sets on each kind of socket on AIX, whose
// SO_REUSEPORT balances since 7.2.5.
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
