package reuse_test

import "golang.org/x/sys/windows"

var errAddrInUse error = windows.WSAEADDRINUSE
