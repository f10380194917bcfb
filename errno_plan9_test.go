package reuse_test

import "syscall"

// plan9 reports errors as strings; its bind refusal reads so.
var errAddrInUse error = syscall.ErrorString("address in use")
