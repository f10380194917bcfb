package main

import (
	"os"
	"testing"
)

// TestMain lets the test binary run again as one of the command's workers,
// as the command itself does (see worker.go).
func TestMain(m *testing.M) {
	if name := os.Getenv(envWorker); name != "" {
		os.Exit(runWorker(name, os.Args[1:]))
	}
	os.Exit(m.Run())
}
