package reuse

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
)

// Mode says whether other sockets may bind the same local address and port.
type Mode int

const (
	// Share lets sockets of the same user bind the same address and port.
	// Where the OS balances (Linux, DragonFly, FreeBSD's SO_REUSEPORT_LB, AIX
	// 7.2.5+), it spreads connections and datagrams across them.
	Share Mode = iota
	// Exclusive lets no other socket bind the address and port, where the OS
	// can enforce that. It still lets a restarted server bind again while its
	// old connections sit in TIME_WAIT.
	Exclusive
)

// String returns "Share", "Exclusive", or "Mode(N)" for any other value.
func (m Mode) String() string {
	switch m {
	case Share:
		return "Share"
	case Exclusive:
		return "Exclusive"
	}
	return "Mode(" + strconv.Itoa(int(m)) + ")"
}

// Config is the policy for the sockets it opens. The zero Config shares
// (Mode Share) and otherwise behaves like the zero net.ListenConfig and
// net.Dialer. A Config may be used by several goroutines at once as long as
// none of them changes it.
type Config struct {
	// Mode says whether other sockets may bind the same address and port.
	Mode Mode

	// ListenConfig is the base for Listen and ListenPacket. Its Control, if
	// any, runs after the options of Mode are set, and its error is returned.
	ListenConfig net.ListenConfig

	// Dialer is the base for Dial. Its ControlContext or Control, if any,
	// runs after the options of Mode are set, and its error is returned. Its
	// LocalAddr is used when Dial's laddr is "".
	Dialer net.Dialer

	// Retry makes Listen and ListenPacket try a bind refused because the
	// address is in use (EADDRINUSE) again, after a growing wait, as when an
	// old process has not yet let go of the port. The zero RetryPolicy tries
	// once.
	Retry RetryPolicy

	// Fallback lists other addresses that Listen and ListenPacket try, in
	// order, when the given address cannot be bound (each with Retry); the
	// first that binds wins. When none does, the error lists every address
	// tried and why it failed.
	Fallback []string

	// RequireBalancing, under Share, makes Listen, ListenPacket and the
	// group functions fail with an error wrapping errors.ErrUnsupported,
	// before any socket is opened, where the OS would share the port without
	// spreading connections and datagrams across the sockets (see
	// BalancingHere), instead of handing them all to one socket. It does not
	// affect Exclusive, Dial or Control.
	RequireBalancing bool
}

// sockKind is what a socket is for; each OS maps (Mode, sockKind) to options.
type sockKind int

const (
	streamListener sockKind = iota
	streamDialer
	datagram
	multicastDatagram // a receiver of ListenMulticastUDP
	numKinds
)

func (k sockKind) String() string {
	switch k {
	case streamListener:
		return "stream listener"
	case streamDialer:
		return "stream dialer"
	case datagram:
		return "datagram"
	case multicastDatagram:
		return "multicast datagram"
	}
	return "sockKind(" + strconv.Itoa(int(k)) + ")"
}

// sockOpt is one integer socket option that a (Mode, sockKind) sets before bind.
type sockOpt struct {
	name  string // as the OS documents it, for errors: "SO_REUSEPORT"
	level int
	opt   int
	value int
}

// errPrefix starts every error message of the package.
const errPrefix = "reuse: "

// kindOf maps a network to the kind of socket that Listen (dial == false) or
// Dial (dial == true) opens on it. It returns an error wrapping
// errors.ErrUnsupported for unix and ip networks, where ports do not exist,
// and ok == false for networks net itself rejects or that do not fit the call.
func kindOf(network string, dial bool) (kind sockKind, ok bool, err error) {
	switch network {
	case "tcp", "tcp4", "tcp6":
		if dial {
			return streamDialer, true, nil
		}
		return streamListener, true, nil
	case "udp", "udp4", "udp6":
		return datagram, true, nil
	}
	if strings.HasPrefix(network, "unix") || network == "ip" || strings.HasPrefix(network, "ip4") || strings.HasPrefix(network, "ip6") ||
		strings.HasPrefix(network, "ip:") {
		return 0, false, fmt.Errorf("%sport sharing does not apply to %s sockets, which have no port: %w", errPrefix, network, errors.ErrUnsupported)
	}
	return 0, false, nil
}

// options returns the options that mode m sets on a socket of kind k here.
func options(m Mode, k sockKind) ([]sockOpt, error) {
	if m != Share && m != Exclusive {
		return nil, fmt.Errorf("%sunknown %v: want Share or Exclusive", errPrefix, m)
	}
	return osOptions(m, k)
}

// errNoOption is the error for a mode that this OS has no option for.
func errNoOption(m Mode, option string) error {
	return fmt.Errorf("%s%v needs %s, which %s does not have: %w", errPrefix, m, option, runtime.GOOS, errors.ErrUnsupported)
}

// setOptions sets opts on the socket behind rc, in order, and stops at the
// first error.
func setOptions(rc syscall.RawConn, opts []sockOpt) error {
	if len(opts) == 0 {
		return nil
	}
	var serr error
	err := rc.Control(func(fd uintptr) {
		for _, o := range opts {
			if e := setsockoptInt(fd, o.level, o.opt, o.value); e != nil {
				serr = fmt.Errorf("%sset %s=%d: %w", errPrefix, o.name, o.value, os.NewSyscallError("setsockopt", e))
				return
			}
		}
	})
	if err != nil {
		return err
	}
	return serr
}

// Control sets the options of c.Mode on the socket behind rc. Its signature
// is that of net.ListenConfig.Control and net.Dialer.Control, so that it can
// be used in a ListenConfig or Dialer of the caller's own. It treats tcp
// sockets as listeners; Dial picks the dialer options itself. It can be
// called more than once on one socket.
func (c *Config) Control(network, address string, rc syscall.RawConn) error {
	kind, ok, err := kindOf(network, false)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("%sunknown network %q", errPrefix, network)
	}
	opts, err := options(c.Mode, kind)
	if err != nil {
		return err
	}
	return setOptions(rc, opts)
}

// listenControl returns a Control for lc that sets opts, then runs the
// caller's own Control.
func listenControl(opts []sockOpt, user func(network, address string, rc syscall.RawConn) error) func(string, string, syscall.RawConn) error {
	return func(network, address string, rc syscall.RawConn) error {
		if err := setOptions(rc, opts); err != nil {
			return err
		}
		if user != nil {
			return user(network, address, rc)
		}
		return nil
	}
}

// addrString is a net.Addr for an address that could not be resolved, so
// that errors name it as the caller wrote it.
type addrString struct{ network, address string }

func (a addrString) Network() string { return a.network }
func (a addrString) String() string  { return a.address }

// opError wraps err the way net does, for errors found before net is called.
func opError(op, network, address string, err error) error {
	var addr net.Addr
	if address != "" {
		addr = addrString{network, address}
	}
	return &net.OpError{Op: op, Net: network, Addr: addr, Err: err}
}

// prepare checks network and Mode for a listen call and returns the options.
func (c *Config) prepare(network, address string, wantStream bool) ([]sockOpt, bool, error) {
	kind, ok, err := kindOf(network, false)
	if err != nil {
		return nil, false, opError("listen", network, address, err)
	}
	if !ok || (kind == streamListener) != wantStream {
		// Let net reject the network with its usual error.
		return nil, false, nil
	}
	opts, err := options(c.Mode, kind)
	if err == nil {
		err = c.checkBalancing()
	}
	if err != nil {
		return nil, false, opError("listen", network, address, err)
	}
	return opts, true, nil
}

// Listen announces on the local network address with the options of c.Mode,
// like net.ListenConfig.Listen. The network must be "tcp", "tcp4" or "tcp6".
//
// Under Share with port 0, the port returned is one that no other socket
// held when it was chosen, so that the listener never joins a group of
// someone else's by accident.
func (c *Config) Listen(ctx context.Context, network, address string) (net.Listener, error) {
	opts, ok, err := c.prepare(network, address, true)
	if err != nil {
		return nil, err
	}
	lc := c.ListenConfig
	if !ok {
		return lc.Listen(ctx, network, address)
	}
	lc.Control = listenControl(opts, c.ListenConfig.Control)
	return bindAny(ctx, c, opts, network, address, func(address string) (net.Listener, error) {
		if c.Mode == Share {
			return listenFreshPort(ctx, network, address, func(addr string) (net.Listener, error) {
				return lc.Listen(ctx, network, addr)
			})
		}
		return lc.Listen(ctx, network, address)
	})
}

// ListenPacket announces on the local network address with the options of
// c.Mode, like net.ListenConfig.ListenPacket. The network must be "udp",
// "udp4" or "udp6". Port 0 is handled as in Listen.
func (c *Config) ListenPacket(ctx context.Context, network, address string) (net.PacketConn, error) {
	opts, ok, err := c.prepare(network, address, false)
	if err != nil {
		return nil, err
	}
	lc := c.ListenConfig
	if !ok {
		return lc.ListenPacket(ctx, network, address)
	}
	lc.Control = listenControl(opts, c.ListenConfig.Control)
	return bindAny(ctx, c, opts, network, address, func(address string) (net.PacketConn, error) {
		if c.Mode == Share {
			return listenFreshPort(ctx, network, address, func(addr string) (net.PacketConn, error) {
				return lc.ListenPacket(ctx, network, addr)
			})
		}
		return lc.ListenPacket(ctx, network, address)
	})
}

// freshPortTries bounds the retries of listenFreshPort when another socket
// takes the reserved port between the reservation and the bind.
const freshPortTries = 8

// listenFreshPort binds address with listen, first replacing port 0 by a port
// that no socket holds. With SO_REUSEPORT set, Linux may give a UDP bind to
// port 0 a port that another SO_REUSEPORT socket of the same user holds, and
// the new socket would silently join that group. An Exclusive socket sets no
// sharing option, so the port the kernel gives it is held by nobody; it is
// closed just before the shared bind takes the port over.
func listenFreshPort[T interface{ Close() error }](ctx context.Context, network, address string, listen func(string) (T, error)) (T, error) {
	host, port, err := net.SplitHostPort(address)
	if err != nil || !isZeroPort(port) {
		// net reports a malformed address; a fixed port is shared on purpose.
		return listen(address)
	}
	excl := Config{Mode: Exclusive}
	var zero T
	for try := 1; ; try++ {
		reserved, err := excl.reservePort(ctx, network, address)
		if err != nil {
			return zero, err
		}
		conn, err := listen(net.JoinHostPort(host, strconv.Itoa(reserved)))
		if err == nil || !isAddrInUse(err) || try == freshPortTries {
			return conn, err
		}
	}
}

// isZeroPort reports whether net reads port as port 0: "", or a decimal 0
// such as "0", "00", "+0" or "-0".
func isZeroPort(port string) bool {
	n, err := strconv.Atoi(port)
	return port == "" || (err == nil && n == 0)
}

// reservePort binds address (port 0) without sharing, closes it, and returns
// the port the kernel chose.
func (c *Config) reservePort(ctx context.Context, network, address string) (int, error) {
	var addr net.Addr
	if kind, _, _ := kindOf(network, false); kind == datagram {
		pc, err := c.ListenPacket(ctx, network, address)
		if err != nil {
			return 0, err
		}
		addr = pc.LocalAddr()
		if err := pc.Close(); err != nil {
			return 0, err
		}
	} else {
		ln, err := c.Listen(ctx, network, address)
		if err != nil {
			return 0, err
		}
		addr = ln.Addr()
		if err := ln.Close(); err != nil {
			return 0, err
		}
	}
	switch a := addr.(type) {
	case *net.TCPAddr:
		return a.Port, nil
	case *net.UDPAddr:
		return a.Port, nil
	}
	return 0, fmt.Errorf("%sunexpected local address %v", errPrefix, addr)
}

// Dial connects to raddr from laddr with the options of c.Mode, like
// net.Dialer.DialContext with LocalAddr set. Several connections may leave
// from one shared laddr, to different remote addresses. laddr "" means any
// local address, or c.Dialer.LocalAddr if set.
//
// When no local port is fixed (laddr "" or port 0), nothing is shared and no
// option is set: the kernel's ephemeral port is left alone.
//
// A second connection between the same laddr and raddr would repeat a
// 5-tuple; connect refuses it, and the error says so and matches both the
// OS's errno (EADDRNOTAVAIL on Linux) and EADDRINUSE with errors.Is.
func (c *Config) Dial(ctx context.Context, network, laddr, raddr string) (net.Conn, error) {
	kind, ok, err := kindOf(network, true)
	if err != nil {
		return nil, opError("dial", network, raddr, err)
	}
	d := c.Dialer
	if !ok {
		return d.DialContext(ctx, network, raddr)
	}
	if laddr != "" {
		var err error
		if kind == datagram {
			d.LocalAddr, err = net.ResolveUDPAddr(network, laddr)
		} else {
			d.LocalAddr, err = net.ResolveTCPAddr(network, laddr)
		}
		if err != nil {
			return nil, &net.OpError{Op: "dial", Net: network, Source: addrString{network, laddr}, Addr: addrString{network, raddr}, Err: err}
		}
	}
	var opts []sockOpt
	if localPort(d.LocalAddr) != 0 {
		if opts, err = options(c.Mode, kind); err != nil {
			return nil, opError("dial", network, raddr, err)
		}
	}
	if len(opts) == 0 {
		// Nothing to set: leave the Dialer as the caller made it, since a
		// Control where none is needed fails on js, whose net is simulated.
		return d.DialContext(ctx, network, raddr)
	}
	userCtx, user := c.Dialer.ControlContext, c.Dialer.Control
	d.Control = nil
	d.ControlContext = func(ctx context.Context, network, address string, rc syscall.RawConn) error {
		if err := setOptions(rc, opts); err != nil {
			return err
		}
		if userCtx != nil {
			return userCtx(ctx, network, address, rc)
		}
		if user != nil {
			return user(network, address, rc)
		}
		return nil
	}
	conn, err := d.DialContext(ctx, network, raddr)
	if err != nil {
		err = explainBind(c.Mode, opts, explainTupleInUse(err))
	}
	return conn, err
}

// localPort returns the port of a *net.TCPAddr or *net.UDPAddr, else 0.
func localPort(a net.Addr) int {
	switch a := a.(type) {
	case *net.TCPAddr:
		if a != nil {
			return a.Port
		}
	case *net.UDPAddr:
		if a != nil {
			return a.Port
		}
	}
	return 0
}

// errTupleInUse explains connect's refusal of a connection whose local and
// remote address and port another socket already uses: with a shared local
// port, the kernel cannot tell the two apart. Linux says EADDRNOTAVAIL, the
// BSDs and Windows EADDRINUSE; the error wraps the OS's own and also matches
// EADDRINUSE, so that one errors.Is test serves on every OS.
type errTupleInUse struct{ err error }

func (e *errTupleInUse) Error() string {
	return errPrefix + "the local and remote address pair is already in use by another connection: " + e.err.Error()
}

func (e *errTupleInUse) Unwrap() error { return e.err }

// Is matches this OS's EADDRINUSE.
func (e *errTupleInUse) Is(target error) bool { return isAddrInUse(target) }

// explainTupleInUse wraps the error of a connect refused for a repeated
// 5-tuple.
func explainTupleInUse(err error) error {
	var oe *net.OpError
	var se *os.SyscallError
	if !errors.As(err, &oe) || !errors.As(oe.Err, &se) || !strings.HasPrefix(se.Syscall, "connect") || !isTupleInUse(se) {
		return err
	}
	e := *oe
	e.Err = &errTupleInUse{oe.Err}
	return &e
}

// Control sets the options of Share on the socket behind rc, like
// (*Config).Control with the zero Config.
func Control(network, address string, rc syscall.RawConn) error {
	var c Config
	return c.Control(network, address, rc)
}

// Listen announces on the local network address under Share, like
// (*Config).Listen with the zero Config.
func Listen(network, address string) (net.Listener, error) {
	var c Config
	return c.Listen(context.Background(), network, address)
}

// ListenPacket announces on the local network address under Share, like
// (*Config).ListenPacket with the zero Config.
func ListenPacket(network, address string) (net.PacketConn, error) {
	var c Config
	return c.ListenPacket(context.Background(), network, address)
}

// Dial connects to raddr from laddr under Share, like (*Config).Dial with the
// zero Config. laddr "" means any local address.
func Dial(network, laddr, raddr string) (net.Conn, error) {
	var c Config
	return c.Dial(context.Background(), network, laddr, raddr)
}
