package reuse

import (
	"context"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// plan is what a listen call decided before any socket opens: network, kind
// of socket, Mode and its options, and how port 0 is handled. It is made
// once a call and carried through retries, fallbacks and a group's members.
type plan struct {
	c       *Config
	network string
	kind    sockKind
	mode    Mode
	opts    []sockOpt // what mode sets on the socket

	// afterBind: under Share, a bind to port 0 sets the options that share
	// (value 1) after bind, and only those that clear one before it; else
	// it reserves a port first (reserveAndBind). A Control of the caller's
	// is promised every option before it runs, so it takes the reservation.
	afterBind bool

	// retrying: a refused bind will be tried again, so its error does not
	// look up who holds the port (explainInUse); only the last one does.
	retrying bool
}

// planListen decides the plan of a listen call for a stream (Listen) or
// datagram (ListenPacket) socket.
func (c *Config) planListen(ctx context.Context, network string, kind sockKind) (plan, error) {
	k, err := kindOf(network, false)
	switch {
	case err != nil:
		return plan{}, err
	case k != kind && kind == streamListener:
		return plan{}, fmt.Errorf("%s is a datagram network: use ListenPacket or ListenPacketGroup", network)
	case k != kind:
		return plan{}, fmt.Errorf("%s is a stream network: use Listen or ListenGroup", network)
	case ctx == nil:
		return plan{}, errNilContext
	}
	p := c.newPlan(network, k)
	if p.opts, err = options(c.Mode, k); err != nil {
		return plan{}, err
	}
	if err := c.checkBalancing(); err != nil {
		return plan{}, err
	}
	if c.Steering != nil {
		if err := c.checkSteering(network, k); err != nil {
			return plan{}, err
		}
	}
	return p, nil
}

// newPlan is the plan of c for a socket of kind k on network, but for
// its options.
func (c *Config) newPlan(network string, k sockKind) plan {
	return plan{c: c, network: network, kind: k, mode: c.Mode, afterBind: osTable.zeroPortAfterBind && c.ListenConfig.Control == nil}
}

// socket is what the pipeline opens: net.Listener or net.PacketConn.
type socket interface{ Close() error }

// open opens one socket with lc: Listen or ListenPacket, by T.
func open[T socket](lc *net.ListenConfig, ctx context.Context, network, address string) (T, error) {
	var conn T
	var err error
	switch c := any(&conn).(type) {
	case *net.Listener:
		*c, err = lc.Listen(ctx, network, address)
	case *net.PacketConn:
		*c, err = lc.ListenPacket(ctx, network, address)
	}
	return conn, err
}

// listen is Listen and ListenPacket.
func listen[T socket](ctx context.Context, c *Config, network, address string, kind sockKind) (T, error) {
	var zero T
	p, err := c.planListen(ctx, network, kind)
	if err != nil {
		return zero, edgeError("listen", network, address, err)
	}
	conn, err := bindAny[T](ctx, &p, address, c.Fallback)
	if err == nil && c.Steering != nil {
		if err = steerNew(conn, *c.Steering); err != nil {
			conn.Close()
		}
	}
	if err != nil {
		return zero, edgeError("listen", network, address, err)
	}
	return conn, nil
}

// bindAny binds address, then each of fallback in order, each retried by
// the Config's Retry while it is in use, and returns the first that binds.
// Without retries and fallbacks it returns the bind's own error.
func bindAny[T socket](ctx context.Context, p *plan, address string, fallback []string) (T, error) {
	var zero T
	retry := p.c.Retry
	if len(fallback) == 0 && retry.attempts() == 1 {
		return bind[T](ctx, p, address)
	}
	var failed []bindFailure
	for _, a := range append([]string{address}, fallback...) {
		conn, tries, err := bindRetrying[T](ctx, p, retry, a)
		if err == nil {
			return conn, nil
		}
		failed = append(failed, bindFailure{a, tries, err})
		if ctx.Err() != nil {
			break
		}
	}
	return zero, &bindFailuresError{failed, ctx.Err()}
}

// bindRetrying binds address, trying again after a growing, jittered wait
// while the bind is refused with EADDRINUSE, until r's attempts are spent
// or ctx is done. It returns the number of binds tried.
func bindRetrying[T socket](ctx context.Context, p *plan, r RetryPolicy, address string) (T, int, error) {
	wait := r.initial()
	for try := 1; ; try++ {
		p.retrying = try < r.attempts()
		conn, err := bind[T](ctx, p, address)
		if err == nil || !isAddrInUse(err) || try >= r.attempts() {
			return conn, try, err
		}
		timer := time.NewTimer(jitter(wait))
		select {
		case <-ctx.Done():
			timer.Stop()
			return conn, try, lookUpHolders(err)
		case <-timer.C:
		}
		wait = min(2*wait, r.max())
	}
}

// bind opens one socket on address with the plan's options, port 0
// included.
func bind[T socket](ctx context.Context, p *plan, address string) (T, error) {
	if p.mode != Share || !isZeroPort(ctx, p.network, address) {
		return bindWith[T](ctx, p, address, p.opts)
	}
	if !p.afterBind {
		return reserveAndBind[T](ctx, p, address)
	}
	before, after := splitSharing(p.opts)
	conn, err := bindWith[T](ctx, p, address, before)
	if err != nil {
		return conn, err
	}
	if err := setAfterBind(conn, after); err != nil {
		conn.Close()
		var zero T
		return zero, err
	}
	return conn, nil
}

// splitSharing splits opts into those that clear an option, set before
// bind, and those that share the port, set after. Bound first with nothing
// shared, a socket gets from the kernel a port that no other socket holds.
func splitSharing(opts []sockOpt) (before, after []sockOpt) {
	// The tables list clearing options first where a kind has both, so
	// that both halves are subslices and nothing is allocated.
	i := 0
	for i < len(opts) && opts[i].value == 0 {
		i++
	}
	return opts[:i], opts[i:]
}

// setAfterBind sets opts on the socket of conn.
func setAfterBind(conn any, opts []sockOpt) error {
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return fmt.Errorf("cannot set options on a %T", conn)
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return err
	}
	return setOptions(rc, opts)
}

// bindWith opens one socket on address, setting opts before bind, then the
// caller's own Control.
func bindWith[T socket](ctx context.Context, p *plan, address string, opts []sockOpt) (T, error) {
	lc := p.c.ListenConfig
	lc.Control = listenControl(ctx, opts, lc.Control)
	conn, err := open[T](&lc, ctx, p.network, address)
	if err != nil {
		return conn, explainBind(p.mode, p.opts, p.retrying, err)
	}
	return conn, nil
}

// listenControl is withOptions for a ListenConfig, whose Control has no
// context.
func listenControl(ctx context.Context, opts []sockOpt, user func(string, string, syscall.RawConn) error) func(string, string, syscall.RawConn) error {
	control := withOptions(opts, user, nil)
	if control == nil {
		return nil
	}
	return func(network, address string, rc syscall.RawConn) error { return control(ctx, network, address, rc) }
}

// withOptions returns a Control that sets opts, then runs the caller's own
// ControlContext, userCtx, or else Control, user, if any (net prefers the
// first too), and returns its error: the one place where the package's
// options and a caller's Control meet (Listen, ListenPacket, their groups,
// Dial). It is nil when there is nothing to do: a Control where none is
// needed fails on js, whose net is simulated.
func withOptions(opts []sockOpt, user func(string, string, syscall.RawConn) error, userCtx func(context.Context, string, string, syscall.RawConn) error) func(context.Context, string, string, syscall.RawConn) error {
	if len(opts) == 0 && user == nil && userCtx == nil {
		return nil
	}
	return func(ctx context.Context, network, address string, rc syscall.RawConn) error {
		if err := setOptions(rc, opts); err != nil {
			return err
		}
		switch {
		case userCtx != nil:
			return userCtx(ctx, network, address, rc)
		case user != nil:
			return user(network, address, rc)
		}
		return nil
	}
}

// freshPortTries bounds the retries of reserveAndBind when another socket
// takes the reserved port between the reservation and the bind.
const freshPortTries = 8

// reserveAndBind binds address, whose port is 0, on a port that no socket
// holds, where the OS is not known to choose such a port for a socket that
// shares (afterBind): it binds port 0 without sharing (the options of
// Exclusive), closes that socket and binds the shared one on its port.
// Between the two binds another socket may take the port; a bind refused
// then is tried again on a new port.
func reserveAndBind[T socket](ctx context.Context, p *plan, address string) (T, error) {
	var zero T
	exclusive, err := options(Exclusive, p.kind)
	if err != nil {
		return zero, err
	}
	host, _, err := net.SplitHostPort(address)
	if err != nil && address != "" {
		// Not reached: isZeroPort parsed address. Let net report it.
		return bindWith[T](ctx, p, address, p.opts)
	}
	// The reservation is not the caller's socket: its Control does not run.
	lc := p.c.ListenConfig
	lc.Control = listenControl(ctx, exclusive, nil)
	for try := 1; ; try++ {
		r, err := open[T](&lc, ctx, p.network, address)
		if err != nil {
			return zero, explainBind(p.mode, p.opts, p.retrying, err)
		}
		port := localPort(localAddr(r))
		if err := r.Close(); err != nil {
			return zero, err
		}
		conn, err := bindWith[T](ctx, p, net.JoinHostPort(host, strconv.Itoa(port)), p.opts)
		if err == nil || !isAddrInUse(err) || try == freshPortTries {
			return conn, err
		}
	}
}

// isZeroPort reports whether net reads address as one with port 0: "" (any
// address), a port that is a sign, if any, and zeros, if any ("host:",
// "host:0", "host:+0", even "host:-", as net's parsePort reads them), or a
// service name that the resolver net uses maps to 0 (cgo's getaddrinfo
// reads " 0" so).
func isZeroPort(ctx context.Context, network, address string) bool {
	if address == "" {
		return true
	}
	_, port, err := net.SplitHostPort(address)
	if err != nil {
		return false
	}
	digits := port
	if digits != "" && (digits[0] == '+' || digits[0] == '-') {
		digits = digits[1:]
	}
	if strings.Trim(digits, "0123456789") == "" {
		return strings.Trim(digits, "0") == ""
	}
	n, err := net.DefaultResolver.LookupPort(ctx, network, port)
	return err == nil && n == 0
}

// localAddr returns the local address of a listener or packet connection.
func localAddr(conn any) net.Addr {
	switch c := conn.(type) {
	case net.Listener:
		return c.Addr()
	case net.PacketConn:
		return c.LocalAddr()
	}
	return nil
}

// bindFailure is how binding one address failed.
type bindFailure struct {
	address string
	tries   int
	err     error // the last one
}

// bindFailuresError is the error of a Listen or ListenPacket with retries
// or fallbacks when no address could be bound: each address, how often it
// was tried and its last error, then the context's error if it ended the
// tries. errors.Is and errors.As see all of them.
type bindFailuresError struct {
	failed []bindFailure
	ctxErr error
}

func (e *bindFailuresError) Error() string {
	var b strings.Builder
	b.WriteString("could not bind ")
	for i, f := range e.failed {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(f.address)
		b.WriteString(" (")
		b.WriteString(strconv.Itoa(f.tries))
		if f.tries == 1 {
			b.WriteString(" try): ")
		} else {
			b.WriteString(" tries): ")
		}
		// The address is named already: leave out net's "listen tcp addr: ".
		if oe, ok := f.err.(*net.OpError); ok && oe.Err != nil {
			b.WriteString(oe.Err.Error())
		} else {
			b.WriteString(f.err.Error())
		}
	}
	if e.ctxErr != nil {
		b.WriteString("; gave up: ")
		b.WriteString(e.ctxErr.Error())
	}
	return b.String()
}

func (e *bindFailuresError) Unwrap() []error {
	errs := make([]error, 0, len(e.failed)+1)
	for _, f := range e.failed {
		errs = append(errs, f.err)
	}
	if e.ctxErr != nil {
		errs = append(errs, e.ctxErr)
	}
	return errs
}

// bindError is a bind refused by the OS, with the mode and options the
// socket carried, which are what decide whether a port can be shared.
type bindError struct {
	mode Mode
	opts []sockOpt
	err  error // bind's *os.SyscallError, or an error wrapping it
}

func (e *bindError) Error() string {
	var b strings.Builder
	b.WriteString(e.mode.String())
	b.WriteString(" (")
	for i, o := range e.opts {
		if i > 0 {
			b.WriteString(" ")
		}
		b.WriteString(o.String())
	}
	b.WriteString("): ")
	b.WriteString(e.err.Error())
	return b.String()
}

func (e *bindError) Unwrap() error { return e.err }

// explainBind adds the mode and options to the error of a refused bind, so
// that the message names the option as well as the network and address.
func explainBind(m Mode, opts []sockOpt, retrying bool, err error) error {
	oe, ok := err.(*net.OpError)
	if !ok {
		return err
	}
	se, ok := oe.Err.(*os.SyscallError)
	if !ok || se.Syscall != "bind" && se.Syscall != "listen" {
		return err
	}
	e := *oe
	e.Err = &bindError{m, opts, se}
	if !retrying {
		return lookUpHolders(&e)
	}
	return &e
}

// lookUpHolders adds to a refused bind's error, made by explainBind, who
// holds the port and why it refused (explainInUse).
func lookUpHolders(err error) error {
	if oe, ok := err.(*net.OpError); ok {
		if be, ok := oe.Err.(*bindError); ok {
			be.err = explainInUse(oe, be.err, be.opts)
		}
	}
	return err
}
