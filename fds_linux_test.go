package reuse_test

import (
	"testing"

	"github.com/sockreuse/reuse/internal/sockettest"
)

// openFDs returns how many descriptors this process has open.
func openFDs(t testing.TB) int { return sockettest.OpenFDs(t) }
