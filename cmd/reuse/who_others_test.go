//go:build !linux

package main

import (
	"errors"
	"testing"
)

// TestWhoUnsupported: where the package cannot list a port's sockets, who
// says so with an error wrapping errors.ErrUnsupported.
func TestWhoUnsupported(t *testing.T) {
	_, err := who(nil, 80)
	if !errors.Is(err, errors.ErrUnsupported) {
		t.Fatalf("who: %v, want an error wrapping errors.ErrUnsupported", err)
	}
}
