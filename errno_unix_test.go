//go:build unix || js || wasip1

package reuse_test

import "syscall"

var errAddrInUse error = syscall.EADDRINUSE
