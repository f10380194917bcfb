package reuse

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// Mode says whether other sockets may bind the same local address and port.
type Mode int

const (
	// Share lets sockets of the same user bind the same address and port.
	// Where the OS balances (see BalancingHere), it spreads connections and
	// datagrams across them.
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
// (Mode Share) and otherwise behaves like the zero [net.ListenConfig] and
// [net.Dialer]. A Config may be used by several goroutines at once as long as
// none of them changes it.
//
// Errors of Listen, ListenPacket, Dial, the groups and ListenMulticastUDP
// are *[net.OpError] values naming the operation,
// network and address, and the package's own words in them start with
// "reuse: ", once. A refused bind names the Mode and the options the
// socket carried; a failed setsockopt wraps an *[os.SyscallError] and names
// the option; unix and ip networks, which have no port, and what the OS
// cannot do, wrap [errors.ErrUnsupported]. A nil context.Context is an
// error, not a panic. Control and DialerControl return the bare error,
// which net wraps in its own *net.OpError.
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
	// group functions fail with an error wrapping [errors.ErrUnsupported],
	// before any socket is opened, where the OS would share the port without
	// spreading connections and datagrams across the sockets (see
	// BalancingHere), instead of handing them all to one socket. It does not
	// affect Exclusive, Dial or Control.
	RequireBalancing bool

	// Steering, if set, makes ListenPacket and ListenPacketGroup steer the
	// port's group by it (see Steer) before they return, so that no
	// datagram is spread by the hash alone. Where the OS cannot steer, they
	// fail with an error wrapping [errors.ErrUnsupported] before any socket
	// is opened; Listen and ListenGroup refuse it, and so does Exclusive.
	// ListenMulticastUDP, Dial and Control ignore it.
	Steering *Steering
}

// errPrefix starts the message of every error of the package. It is
// written in one place, reuseError, at the API's edge.
const errPrefix = "reuse: "

// reuseError is an error in the package's own words, said with the
// package's name before them. The package's functions find and return
// their errors bare; each exported function wraps its result once, on the
// way out: in a *[net.OpError] (edgeError), or alone where net adds the
// OpError itself (Control) or there is no socket (Generate).
type reuseError struct{ err error }

func (e *reuseError) Error() string { return errPrefix + e.err.Error() }

func (e *reuseError) Unwrap() error { return e.err }

// wrapError returns err, if any, as an error of the package.
func wrapError(err error) error {
	if err == nil {
		return nil
	}
	return &reuseError{err}
}

// edgeError returns err, if any, the failure of a call of op (listen, dial,
// steer, ...) on network and address, as a *[net.OpError], built once, at
// the API's edge, as net builds its own. err is either bare, in the
// package's own words, or the *net.OpError of net's call of the same op,
// whose addresses it keeps: there only the words that the package put in
// (see ownWords) get the package's name, and the caller's Control's error,
// or net's own, stay as net gave them. net's error of another op (a read
// inside a takeover, a closed socket's raw-control) is bare, like any other.
func edgeError(op, network, address string, err error) error {
	if err == nil {
		return nil
	}
	if oe, ok := err.(*net.OpError); ok && oe.Op == op {
		if !ownWords(oe.Err) {
			return oe
		}
		e := *oe
		e.Err = &reuseError{oe.Err}
		return &e
	}
	var addr net.Addr
	if address != "" {
		addr = addrString{network, address}
	}
	return &net.OpError{Op: op, Net: network, Addr: addr, Err: &reuseError{err}}
}

// ownWords reports whether err, the Err of a *net.OpError of net's, is one
// that the package put there: its options' failure (inside net's call of
// its Control), its explanation of a refused bind or connect, or a group's
// member.
func ownWords(err error) bool {
	switch err.(type) {
	case *optionError, *bindError, *tupleInUseError, *groupMemberError:
		return true
	}
	return false
}

// errNilContext is the error of every call given a nil context.Context,
// where package net would panic.
var errNilContext = errors.New("nil context.Context")

// kindOf maps a network to the kind of socket that Listen (dial == false) or
// Dial (dial == true) opens on it. For unix and ip networks, which have no
// port, the error wraps [errors.ErrUnsupported]; for the others, it is
// net's own [net.UnknownNetworkError].
func kindOf(network string, dial bool) (sockKind, error) {
	switch network {
	case "tcp", "tcp4", "tcp6":
		if dial {
			return streamDialer, nil
		}
		return streamListener, nil
	case "udp", "udp4", "udp6":
		return datagram, nil
	}
	if strings.HasPrefix(network, "unix") || network == "ip" || strings.HasPrefix(network, "ip4") || strings.HasPrefix(network, "ip6") ||
		strings.HasPrefix(network, "ip:") {
		return 0, fmt.Errorf("port sharing does not apply to %s sockets, which have no port: %w", network, errors.ErrUnsupported)
	}
	return 0, net.UnknownNetworkError(network)
}

// Control sets the options of c.Mode on the socket behind rc. Its signature
// is that of [net.ListenConfig.Control], so that it can be used in a
// ListenConfig of the caller's own; it treats tcp sockets as listeners (in a
// [net.Dialer], use DialerControl). It can be called more than once on one
// socket.
//
// Control cannot keep Listen's promise for port 0: it runs before bind,
// so under Share the kernel may give a bind to port 0 a port that another
// Share socket of the same user holds (on Linux, a UDP socket), which the
// new socket then joins. Use it with a fixed port, or call Listen and
// ListenPacket, which handle port 0.
func (c *Config) Control(network, address string, rc syscall.RawConn) error {
	return c.control(network, rc, false)
}

// DialerControl sets the options of c.Mode for a dialing socket on the
// socket behind rc. Its signature is that of [net.Dialer.Control]: use it in a
// [net.Dialer] whose LocalAddr has a fixed port, to connect from a shared
// local port as Dial does. With no LocalAddr, or port 0, set no Control:
// the kernel's ephemeral port is never to be shared (Dial sets nothing
// then), and DialerControl, which cannot see the local address, would
// share it.
func (c *Config) DialerControl(network, address string, rc syscall.RawConn) error {
	return c.control(network, rc, true)
}

func (c *Config) control(network string, rc syscall.RawConn, dial bool) error {
	kind, err := kindOf(network, dial)
	var opts []sockOpt
	if err == nil {
		opts, err = options(c.Mode, kind)
	}
	if err == nil && rc == nil {
		err = errors.New("nil syscall.RawConn")
	}
	if err == nil {
		err = setOptions(rc, opts)
	}
	// net wraps a Control's error in its own *net.OpError.
	return wrapError(err)
}

// addrString is a net.Addr for an address that could not be resolved, so
// that errors name it as the caller wrote it.
type addrString struct{ network, address string }

func (a addrString) Network() string { return a.network }
func (a addrString) String() string  { return a.address }

// Listen announces on the local network address with the options of c.Mode,
// like [net.ListenConfig.Listen]. The network must be "tcp", "tcp4" or "tcp6".
//
// Under Share with port 0 (address "", "host:" or "host:0"), the port
// returned is one that no other socket held when it was chosen, so that the
// listener never joins a group of someone else's by accident.
//
// To keep that promise on Linux and Android, Listen binds port 0 with
// nothing shared, which gets a port nobody holds, and sets the sharing
// options right after bind: later sockets join as usual. Elsewhere, and
// where c.ListenConfig has a Control (promised every option before it
// runs), it first binds port 0 without sharing, closes that socket and
// binds the shared one on its port; a bind refused between the two is
// retried on a new port. Fallback addresses and multicast receivers with
// port 0 are handled alike.
//
// A nil ctx is an error, as in every function of the package that takes
// one.
func (c *Config) Listen(ctx context.Context, network, address string) (net.Listener, error) {
	return listen[net.Listener](ctx, c, network, address, streamListener)
}

// ListenPacket announces on the local network address with the options of
// c.Mode, like [net.ListenConfig.ListenPacket]. The network must be "udp",
// "udp4" or "udp6". Port 0 is handled as in Listen.
func (c *Config) ListenPacket(ctx context.Context, network, address string) (net.PacketConn, error) {
	return listen[net.PacketConn](ctx, c, network, address, datagram)
}

// Dial connects to raddr from laddr with the options of c.Mode, like
// [net.Dialer.DialContext] with LocalAddr set. Several connections may leave
// from one shared laddr, to different remote addresses. laddr "" means any
// local address, or c.Dialer.LocalAddr if set.
//
// When no local port is fixed (laddr "" or port 0), nothing is shared and no
// option is set: the kernel's ephemeral port is left alone.
//
// A second connection between the same laddr and raddr would repeat a
// 5-tuple: connect refuses it while the first is open, and while it waits in
// TIME_WAIT unless the OS may reuse that (on Linux, with TCP timestamps and
// net.ipv4.tcp_tw_reuse: both by default, the latter for loopback only). The
// error says so and matches both the OS's errno (EADDRNOTAVAIL on Linux) and
// EADDRINUSE with errors.Is.
//
// A fixed local port also meets TIME_WAIT at bind: under Share (with
// SO_REUSEADDR) a dialer binds a local port that a closed connection holds
// in TIME_WAIT, but an Exclusive dialer, which clears SO_REUSEADDR, is
// refused with EADDRINUSE until TIME_WAIT ends (60 s on Linux, on the side
// that closed first). Connected UDP sockets on Linux may repeat a 4-tuple:
// the second connect succeeds.
func (c *Config) Dial(ctx context.Context, network, laddr, raddr string) (net.Conn, error) {
	conn, err := c.dial(ctx, network, laddr, raddr)
	if err != nil {
		return nil, edgeError("dial", network, raddr, err)
	}
	return conn, nil
}

func (c *Config) dial(ctx context.Context, network, laddr, raddr string) (net.Conn, error) {
	kind, err := kindOf(network, true)
	if err == nil && ctx == nil {
		err = errNilContext
	}
	if err == nil {
		err = checkMode(c.Mode)
	}
	if err != nil {
		return nil, err
	}
	d := c.Dialer
	if laddr != "" {
		if kind == datagram {
			d.LocalAddr, err = net.ResolveUDPAddr(network, laddr)
		} else {
			d.LocalAddr, err = net.ResolveTCPAddr(network, laddr)
		}
		if err != nil {
			// net's own error, with both addresses, as net's Dial gives it.
			return nil, &net.OpError{Op: "dial", Net: network, Source: addrString{network, laddr}, Addr: addrString{network, raddr}, Err: err}
		}
	}
	if localPort(d.LocalAddr) == 0 {
		// Nothing to set: leave the Dialer as the caller made it, since a
		// Control where none is needed fails on js, whose net is simulated.
		return d.DialContext(ctx, network, raddr)
	}
	opts, err := options(c.Mode, kind)
	if err != nil {
		return nil, err
	}
	d.ControlContext, d.Control = withOptions(opts, d.Control, d.ControlContext), nil
	conn, err := d.DialContext(ctx, network, raddr)
	if err != nil {
		return nil, explainBind(c.Mode, opts, false, explainTupleInUse(err))
	}
	return conn, nil
}

// checkMode returns the error of a Mode that is neither Share nor Exclusive.
func checkMode(m Mode) error {
	if m != Share && m != Exclusive {
		return fmt.Errorf("unknown %v: want Share or Exclusive", m)
	}
	return nil
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

// tupleInUseError explains connect's refusal of a connection whose local
// and remote address and port another socket already uses, open or in
// TIME_WAIT: with a shared local port, the kernel cannot tell the two apart.
// Linux says EADDRNOTAVAIL, the BSDs and Windows EADDRINUSE; the error wraps
// the OS's own and also matches EADDRINUSE, so that one errors.Is test
// serves on every OS.
type tupleInUseError struct{ err error }

func (e *tupleInUseError) Error() string {
	return "the local and remote address pair is already in use by another connection, open or in TIME_WAIT: " + e.err.Error()
}

func (e *tupleInUseError) Unwrap() error { return e.err }

// Is matches this OS's EADDRINUSE.
func (e *tupleInUseError) Is(target error) bool { return isAddrInUse(target) }

// explainTupleInUse wraps the error of a connect refused for a repeated
// 5-tuple.
func explainTupleInUse(err error) error {
	var oe *net.OpError
	var se *os.SyscallError
	if !errors.As(err, &oe) || !errors.As(oe.Err, &se) || !strings.HasPrefix(se.Syscall, "connect") || !isTupleInUse(se) {
		return err
	}
	e := *oe
	e.Err = &tupleInUseError{explainInUse(oe, oe.Err, nil)}
	return &e
}

// zeroConfig is the Config of the shorthands. Shared, and never changed, it
// is not allocated on every call.
var zeroConfig Config

// Control sets the options of Share on the socket behind rc, like
// (*Config).Control with the zero Config.
func Control(network, address string, rc syscall.RawConn) error {
	return zeroConfig.Control(network, address, rc)
}

// Listen announces on the local network address under Share, like
// (*Config).Listen with the zero Config.
func Listen(network, address string) (net.Listener, error) {
	return zeroConfig.Listen(context.Background(), network, address)
}

// ListenPacket announces on the local network address under Share, like
// (*Config).ListenPacket with the zero Config.
func ListenPacket(network, address string) (net.PacketConn, error) {
	return zeroConfig.ListenPacket(context.Background(), network, address)
}

// Dial connects to raddr from laddr under Share, like (*Config).Dial with the
// zero Config. laddr "" means any local address.
func Dial(network, laddr, raddr string) (net.Conn, error) {
	return zeroConfig.Dial(context.Background(), network, laddr, raddr)
}
