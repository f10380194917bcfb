//go:build !unix

package main

// fileLimit reports that this OS sets no limit that the demo can read on
// the file descriptors (handles) of a process.
func fileLimit() (int, bool) { return 0, false }
