//go:build !linux

package sockettest

import (
	"errors"
	"syscall"
)

func netNSAttr() *syscall.SysProcAttr { return nil }

// isRefusal on other OSes: RunInNetNS never starts a child there.
func isRefusal(error) bool { return true }

func setUpNetNS() error { return errors.New("network namespaces exist on Linux only") }

func removeSharedCopy() {}
