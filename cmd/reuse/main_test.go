package main

import (
	"os"
	"testing"
)

// TestMain lets the test binary serve as the command's own worker
// processes, which it starts by re-running its executable.
func TestMain(m *testing.M) {
	if name := os.Getenv(envWorker); name != "" {
		os.Exit(runWorker(name, os.Args[1:]))
	}
	os.Exit(m.Run())
}
