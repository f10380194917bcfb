package reuse

import "golang.org/x/sys/unix"

var exclBindOn = sockOpt{"SO_EXCLBIND", unix.SOL_SOCKET, unix.SO_EXCLBIND, 1}

// exclusiveOpts is what Exclusive sets on each kind of socket on Solaris and
// illumos. Share has no option here: illumos has no SO_REUSEPORT, and
// golang.org/x/sys lacks Solaris 11.4's.
var exclusiveOpts = [numKinds][]sockOpt{
	streamListener: {reuseAddrOn, exclBindOn},
	streamDialer:   {reuseAddrOff, exclBindOn},
	datagram:       {reuseAddrOff, exclBindOn},

	multicastDatagram: {reuseAddrOff, exclBindOn},
}

// shareMulticastOpts is what Share sets on a multicast receiver: there
// SO_REUSEADDR alone lets every receiver of a group bind its port, as in Go's
// net.ListenMulticastUDP.
var shareMulticastOpts = []sockOpt{reuseAddrOn}

func osOptions(m Mode, k sockKind) ([]sockOpt, error) {
	switch {
	case m == Exclusive:
		return exclusiveOpts[k], nil
	case k == multicastDatagram:
		return shareMulticastOpts, nil
	}
	return nil, errNoOption(m, "SO_REUSEPORT")
}
