package reuse

import (
	"math/rand"
	"time"
)

// RetryPolicy says how Listen and ListenPacket retry a bind refused because
// the address is in use. The zero RetryPolicy tries once.
//
// The waits double from Initial up to Max, each drawn at random from its
// upper half, so that servers restarted together do not retry in step,
// until the attempts are spent or the context is done. When no address
// binds, the error lists every address, how often it was tried and why it
// failed, then the context's error if it ended the tries; errors.Is
// matches each.
type RetryPolicy struct {
	// Attempts is the most binds tried on each address, the first one
	// included. Below 2, an address is tried once.
	Attempts int

	// Initial is the wait after the first refused bind; every later wait
	// doubles. Max caps them all, the first included. Zero means 10ms.
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

// initial is the first wait, which Max caps too.
func (p RetryPolicy) initial() time.Duration {
	if p.Initial <= 0 {
		return min(defaultRetryInitial, p.max())
	}
	return min(p.Initial, p.max())
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
