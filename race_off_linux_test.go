//go:build linux && !race

package reuse_test

// raceEnabled reports whether the race detector is on: it slows the load
// tests' clients and servers many times over.
const raceEnabled = false
