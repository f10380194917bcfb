package sockettest

import (
	"errors"

	"golang.org/x/sys/unix"
)

// IsWine reports whether this Windows program runs under Wine; never here.
func IsWine() bool { return false }

func isUDPIoctlMissing(error) bool { return false }

// isExecFormatError reports whether the kernel cannot run the test binary
// again: it is of another architecture, run by an emulator that did not
// say so in SOCKETTEST_EMULATOR, with no binfmt_misc handler.
func isExecFormatError(err error) bool { return errors.Is(err, unix.ENOEXEC) }
