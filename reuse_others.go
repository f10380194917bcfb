//go:build !unix && !windows

package reuse

// js and wasip1 simulate net in memory, and plan9 opens files: there are no
// socket options (tableFor gives these OSes none).
var optNumbers = map[optName]optNumber{}

func setsockoptInt(fd uintptr, level, opt, value int) error { return errNoSockets }

func isAddrInUse(error) bool { return false }

func isTupleInUse(error) bool { return false }
