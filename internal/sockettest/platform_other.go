//go:build !linux && !windows

package sockettest

// IsWine reports whether this Windows program runs under Wine; never here.
func IsWine() bool { return false }

func isUDPIoctlMissing(error) bool { return false }

func isExecFormatError(error) bool { return false }
