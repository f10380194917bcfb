package reuse

import (
	"context"
	"errors"
	"math/rand"
	"net"
	"os"
	"strconv"
	"strings"
	"time"
)

// RetryPolicy says how Listen and ListenPacket retry a bind refused because
// the address is in use. The zero RetryPolicy tries once.
type RetryPolicy struct {
	// Attempts is the most binds tried on each address, the first one
	// included. Below 2, an address is tried once.
	Attempts int

	// Initial is the wait after the first refused bind; every later wait
	// doubles, up to Max. Zero means 10ms.
	Initial time.Duration

	// Max caps the wait between two binds. Zero means 1s.
	Max time.Duration
}

// Defaults of RetryPolicy: short enough for a restart, long enough not to spin.
const (
	defaultRetryInitial = 10 * time.Millisecond
	defaultRetryMax     = time.Second
)

func (p RetryPolicy) attempts() int {
	if p.Attempts < 1 {
		return 1
	}
	return p.Attempts
}

func (p RetryPolicy) initial() time.Duration {
	if p.Initial <= 0 {
		return defaultRetryInitial
	}
	return p.Initial
}

func (p RetryPolicy) max() time.Duration {
	if p.Max <= 0 {
		return defaultRetryMax
	}
	return p.Max
}

// jitter returns a wait drawn uniformly from [d/2, d], so that servers
// restarted together do not retry in step. It needs no cryptographic
// randomness: the top-level functions of math/rand are safe for concurrent
// use and seeded at random.
func jitter(d time.Duration) time.Duration {
	half := d / 2
	return half + time.Duration(rand.Int63n(int64(d-half)+1))
}

// bindAny binds address with bind, then each of c.Fallback in order, each
// retried by c.Retry while it is in use, and returns the first that binds.
// Without retries and fallbacks it returns bind's own error, explained.
func bindAny[T any](ctx context.Context, c *Config, opts []sockOpt, network, address string, bind func(string) (T, error)) (T, error) {
	addrs := append([]string{address}, c.Fallback...)
	var zero T
	var failed []bindFailure
	for _, a := range addrs {
		conn, tries, err := bindRetrying(ctx, c.Retry, a, bind)
		if err == nil {
			return conn, nil
		}
		err = explainBind(c.Mode, opts, err)
		if len(addrs) == 1 && c.Retry.attempts() == 1 {
			return zero, err
		}
		failed = append(failed, bindFailure{a, tries, err})
		if ctx.Err() != nil {
			break
		}
	}
	return zero, &net.OpError{Op: "listen", Net: network, Addr: addrString{network, address}, Err: &bindErrors{failed, ctx.Err()}}
}

// bindRetrying binds address with bind, trying again after a growing,
// jittered wait while the bind is refused with EADDRINUSE, until p's
// attempts are spent or ctx is done. It returns the number of binds tried.
func bindRetrying[T any](ctx context.Context, p RetryPolicy, address string, bind func(string) (T, error)) (T, int, error) {
	wait := p.initial()
	for try := 1; ; try++ {
		conn, err := bind(address)
		if err == nil || !isAddrInUse(err) || try >= p.attempts() {
			return conn, try, err
		}
		timer := time.NewTimer(jitter(wait))
		select {
		case <-ctx.Done():
			timer.Stop()
			return conn, try, err
		case <-timer.C:
		}
		wait = min(2*wait, p.max())
	}
}

// bindFailure is how binding one address failed.
type bindFailure struct {
	address string
	tries   int
	err     error // the last one
}

// bindErrors is the error of a Listen or ListenPacket with retries or
// fallbacks when no address could be bound: each address, how often it was
// tried and its last error, then the context's error if it ended the tries.
// errors.Is and errors.As see all of them.
type bindErrors struct {
	failed []bindFailure
	ctxErr error
}

func (e *bindErrors) Error() string {
	var b strings.Builder
	b.WriteString(errPrefix + "could not bind ")
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
		var oe *net.OpError
		if errors.As(f.err, &oe) && oe.Err != nil {
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

func (e *bindErrors) Unwrap() []error {
	errs := make([]error, 0, len(e.failed)+1)
	for _, f := range e.failed {
		errs = append(errs, f.err)
	}
	if e.ctxErr != nil {
		errs = append(errs, e.ctxErr)
	}
	return errs
}

// errBind is a bind refused by the OS, with the mode and options the socket
// carried, which are what decide whether a port can be shared.
type errBind struct {
	mode Mode
	opts []sockOpt
	err  *os.SyscallError
}

func (e *errBind) Error() string {
	var b strings.Builder
	b.WriteString(errPrefix)
	b.WriteString(e.mode.String())
	b.WriteString(" (")
	for i, o := range e.opts {
		if i > 0 {
			b.WriteString(" ")
		}
		b.WriteString(o.name)
		b.WriteString("=")
		b.WriteString(strconv.Itoa(o.value))
	}
	b.WriteString("): ")
	b.WriteString(e.err.Error())
	return b.String()
}

func (e *errBind) Unwrap() error { return e.err }

// explainBind adds the mode and options to the error of a refused bind, so
// that the message names the option as well as the network and address.
func explainBind(m Mode, opts []sockOpt, err error) error {
	oe, ok := err.(*net.OpError)
	if !ok {
		return err
	}
	se, ok := oe.Err.(*os.SyscallError)
	if !ok || se.Syscall != "bind" {
		return err
	}
	e := *oe
	e.Err = &errBind{m, opts, se}
	return &e
}
