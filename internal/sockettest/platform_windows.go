package sockettest

import (
	"errors"
	"sync"

	"golang.org/x/sys/windows"
)

var isWine = sync.OnceValue(func() bool {
	// Wine's ntdll exports wine_get_version; Windows' never has.
	return windows.NewLazySystemDLL("ntdll.dll").NewProc("wine_get_version").Find() == nil
})

// IsWine reports whether this Windows program runs under Wine, whose socket
// rules differ from Windows' where Wine maps them onto the host's.
func IsWine() bool { return isWine() }

func isUDPIoctlMissing(err error) bool { return errors.Is(err, windows.WSAEOPNOTSUPP) }

func isExecFormatError(error) bool { return false }
