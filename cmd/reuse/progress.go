package main

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"
)

// progressOut is where progress goes; tests replace it.
var progressOut io.Writer = os.Stderr

// progress reports how far a long step has got, on standard error, so that
// a person knows that the command still works: nothing during its first
// second, then a line at most every second, and a last line at the end if
// any was printed. Its methods may be called from several goroutines.
type progress struct {
	mu      sync.Mutex
	what    string // "probe: binds"
	total   int
	done    int
	start   time.Time
	next    time.Time // when the next line may be printed
	printed bool
	shown   int // done when the last line was printed
}

// newProgress starts reporting on total units of what.
func newProgress(what string, total int) *progress {
	now := time.Now()
	return &progress{what: what, total: total, start: now, next: now.Add(time.Second)}
}

// add counts n more units done.
func (p *progress) add(n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.done += n
	if now := time.Now(); !now.Before(p.next) {
		p.next = now.Add(time.Second)
		p.print(now)
	}
}

// end prints the final count, if progress was shown at all and the last
// line did not already say it.
func (p *progress) end() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.printed && p.shown != p.done {
		p.print(time.Now())
	}
}

func (p *progress) print(now time.Time) {
	p.printed, p.shown = true, p.done
	fmt.Fprintf(progressOut, "reuse %s: %d of %d (%v)\n", p.what, p.done, p.total, now.Sub(p.start).Round(100*time.Millisecond))
}
