//go:build !unix

package reuse

// shareOptionsWork reports whether this OS has options for Share at all.
// Windows has SO_REUSEADDR on every version Go supports, so there is nothing
// to probe; js, wasip1 and plan9 have no socket options.
func shareOptionsWork() bool {
	_, err := options(Share, streamListener)
	return err == nil
}
