package main

import (
	"os"
	"runtime"
	"testing"

	"github.com/sockreuse/reuse/internal/sockettest"
)

// TestMain lets the test binary serve as the command's own worker
// processes, which it starts by re-running its executable.
func TestMain(m *testing.M) {
	if name := os.Getenv(envWorker); name != "" {
		os.Exit(runWorker(name, os.Args[1:]))
	}
	os.Exit(m.Run())
}

// requireSelfExec skips a test in which the command starts itself again (as
// a worker, another user, or in a private network namespace): under a
// user-mode emulator without a binfmt_misc handler, the host kernel cannot
// execute the binary.
func requireSelfExec(t *testing.T) {
	t.Helper()
	if _, err := os.Executable(); err != nil {
		t.Skipf("the command starts itself again, which %s cannot: %v", runtime.GOOS, err)
	}
	if e := sockettest.Emulator(); e != "" {
		t.Skipf("the command starts itself again, which the host cannot execute under %s (no binfmt_misc handler)", e)
	}
}
