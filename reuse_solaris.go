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
}

func osOptions(m Mode, k sockKind) ([]sockOpt, error) {
	if m == Share {
		return nil, errNoOption(m, "SO_REUSEPORT")
	}
	return exclusiveOpts[k], nil
}
