package reuse

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"syscall"
)

// sockKind is what a socket is for; each OS maps (Mode, sockKind) to options.
type sockKind int

const (
	streamListener sockKind = iota
	streamDialer
	datagram
	multicastDatagram // a receiver of ListenMulticastUDP
	numKinds
)

// optName is a socket option, as the OSes document it. The tables below are
// written with names; each OS file maps the names it has to its constants
// (optNumbers), the way golang.org/x/net/ipv4 keeps its sockOpts.
type optName int

const (
	soReuseAddr optName = iota
	soReusePort
	soReusePortLB      // FreeBSD 12+
	soExclusiveAddrUse // Windows
	soExclBind         // Solaris, illumos
	numOptNames
)

var optNameStrings = [numOptNames]string{
	soReuseAddr:        "SO_REUSEADDR",
	soReusePort:        "SO_REUSEPORT",
	soReusePortLB:      "SO_REUSEPORT_LB",
	soExclusiveAddrUse: "SO_EXCLUSIVEADDRUSE",
	soExclBind:         "SO_EXCLBIND",
}

func (n optName) String() string { return optNameStrings[n] }

// String returns the option as NAME=value.
func (o sockOpt) String() string { return o.name.String() + "=" + strconv.Itoa(o.value) }

// optNumber is where an OS keeps an option: setsockopt's level and name.
type optNumber struct{ level, opt int }

// sockOpt is one integer socket option that a (Mode, sockKind) sets.
type sockOpt struct {
	name  optName
	value int
}

var (
	reuseAddrOn    = sockOpt{soReuseAddr, 1}
	reuseAddrOff   = sockOpt{soReuseAddr, 0}
	reusePortOn    = sockOpt{soReusePort, 1}
	reusePortOff   = sockOpt{soReusePort, 0}
	reusePortLBOn  = sockOpt{soReusePortLB, 1}
	reusePortLBOff = sockOpt{soReusePortLB, 0}
	exclAddrUseOn  = sockOpt{soExclusiveAddrUse, 1}
	exclBindOn     = sockOpt{soExclBind, 1}
)

// optTable is what each Mode sets on each kind of socket on one family of
// OSes. A nil entry is a Mode the OS cannot deliver on that kind: missing
// names the option it lacks, or is "" where the OS has no socket options.
type optTable struct {
	opts    [2][numKinds][]sockOpt // [Mode][sockKind]
	missing string

	// zeroPortAfterBind says that a Share socket bound to port 0 gets its
	// sharing options after bind, so that the kernel's choice of port
	// cannot fall on a port that another socket shares (see Listen). It is
	// set where both halves are measured (Linux 6.18): the choice then
	// never lands on a held port, and later sockets still join the group.
	// Elsewhere neither is known (a BSD may check the options only at
	// bind, or Windows give a port held with SO_REUSEADDR), so a port is
	// reserved first by an exclusive bind, at the cost of a second bind.
	zeroPortAfterBind bool
}

// reusePortTable is for the OSes where SO_REUSEPORT makes the group
// (tableFor); what each does with it is in doc.go's "Per OS". SO_REUSEADDR
// lets a listener bind past TIME_WAIT; on a unicast datagram socket it would
// let any user share the port (Linux), so those never carry it.
var reusePortTable = optTable{opts: [2][numKinds][]sockOpt{
	Share: {
		streamListener:    {reuseAddrOn, reusePortOn},
		streamDialer:      {reuseAddrOn, reusePortOn},
		datagram:          {reuseAddrOff, reusePortOn},
		multicastDatagram: {reuseAddrOn, reusePortOn},
	},
	Exclusive: {
		streamListener:    {reuseAddrOn, reusePortOff},
		streamDialer:      {reuseAddrOff, reusePortOff},
		datagram:          {reuseAddrOff, reusePortOff},
		multicastDatagram: {reuseAddrOff, reusePortOff},
	},
}}

// linuxTable is reusePortTable with port 0 handled after bind: measured on
// Linux 6.18, SO_REUSEPORT set after bind never lets a port 0 bind land on a
// port another socket holds, and later sockets still join the group.
var linuxTable = func() optTable {
	t := reusePortTable
	t.zeroPortAfterBind = true
	return t
}()

// freebsdTable: SO_REUSEPORT_LB balances listening and bound datagram
// sockets (doc.go's "Per OS"); plain SO_REUSEPORT only lets sockets bind
// together, which is what dialers and multicast receivers need.
var freebsdTable = optTable{opts: [2][numKinds][]sockOpt{
	Share: {
		streamListener:    {reuseAddrOn, reusePortLBOn},
		streamDialer:      {reuseAddrOn, reusePortOn},
		datagram:          {reuseAddrOff, reusePortLBOn},
		multicastDatagram: {reuseAddrOn, reusePortOn},
	},
	Exclusive: {
		streamListener:    {reuseAddrOn, reusePortOff, reusePortLBOff},
		streamDialer:      {reuseAddrOff, reusePortOff, reusePortLBOff},
		datagram:          {reuseAddrOff, reusePortOff, reusePortLBOff},
		multicastDatagram: {reuseAddrOff, reusePortOff, reusePortLBOff},
	},
}}

// solarisTable: Exclusive sets SO_EXCLBIND. Share has no option (missing;
// doc.go's "Per OS" says why) but on a multicast receiver, where
// SO_REUSEADDR alone lets every receiver of a group bind the port, as in
// Go's net.ListenMulticastUDP.
var solarisTable = optTable{missing: "SO_REUSEPORT", opts: [2][numKinds][]sockOpt{
	Share: {
		multicastDatagram: {reuseAddrOn},
	},
	Exclusive: {
		streamListener:    {reuseAddrOn, exclBindOn},
		streamDialer:      {reuseAddrOff, exclBindOn},
		datagram:          {reuseAddrOff, exclBindOn},
		multicastDatagram: {reuseAddrOff, exclBindOn},
	},
}}

// windowsTable: SO_REUSEADDR shares without balancing and lets any process,
// of any user, bind the port over it; SO_EXCLUSIVEADDRUSE forbids every
// other bind of the address. Setting both on one socket fails (WSAEINVAL).
var windowsTable = optTable{opts: [2][numKinds][]sockOpt{
	Share: {
		streamListener:    {reuseAddrOn},
		streamDialer:      {reuseAddrOn},
		datagram:          {reuseAddrOn},
		multicastDatagram: {reuseAddrOn},
	},
	Exclusive: {
		streamListener:    {exclAddrUseOn},
		streamDialer:      {exclAddrUseOn},
		datagram:          {exclAddrUseOn},
		multicastDatagram: {exclAddrUseOn},
	},
}}

// tableFor returns the options of goos. js and wasip1 simulate net in
// memory and plan9 opens files: they have no socket options.
func tableFor(goos string) *optTable {
	switch goos {
	case "linux", "android":
		return &linuxTable
	case "aix", "darwin", "ios", "dragonfly", "netbsd", "openbsd":
		return &reusePortTable
	case "freebsd":
		return &freebsdTable
	case "solaris", "illumos":
		return &solarisTable
	case "windows":
		return &windowsTable
	}
	return &optTable{}
}

// osTable is the table of this OS.
var osTable = tableFor(runtime.GOOS)

// options returns the options that mode m sets on a socket of kind k here.
func options(m Mode, k sockKind) ([]sockOpt, error) {
	if err := checkMode(m); err != nil {
		return nil, err
	}
	if opts := osTable.opts[m][k]; opts != nil {
		return opts, nil
	}
	if osTable.missing == "" {
		return nil, errNoSockets
	}
	return nil, fmt.Errorf("%v needs %s, which %s does not have: %w", m, osTable.missing, runtime.GOOS, errors.ErrUnsupported)
}

// errNoSockets is the error of every call where the OS has no BSD sockets
// (js, wasip1, plan9), so that no option can be set.
var errNoSockets = fmt.Errorf("%s has no socket options to share or reserve a port: %w", runtime.GOOS, errors.ErrUnsupported)

// setOptions sets opts on the socket behind rc, in order, and stops at the
// first error. It is the one place where the package sets the options of a
// Mode.
func setOptions(rc syscall.RawConn, opts []sockOpt) error {
	if len(opts) == 0 {
		return nil
	}
	return withFD(rc, func(fd uintptr) error { return setOptionsFD(fd, opts) })
}

// setOptionsFD sets opts on fd, in order, and stops at the first error.
func setOptionsFD(fd uintptr, opts []sockOpt) error {
	for _, o := range opts {
		n, ok := optNumbers[o.name]
		if !ok {
			return &optionError{o, fmt.Errorf("%s has no %v: %w", runtime.GOOS, o.name, errors.ErrUnsupported)}
		}
		if err := setsockoptInt(fd, n.level, n.opt, o.value); err != nil {
			return &optionError{o, os.NewSyscallError("setsockopt", err)}
		}
	}
	return nil
}

// optionError is the failure to set an option of a Mode.
type optionError struct {
	opt sockOpt
	err error
}

func (e *optionError) Error() string {
	return "set " + e.opt.String() + ": " + e.err.Error()
}

func (e *optionError) Unwrap() error { return e.err }
