package reuse_test

import (
	"testing"

	"github.com/sockreuse/reuse/internal/sockettest"
)

// TestMain lets the test binary run again as a worker process, as another
// user, or inside a private network namespace (see internal/sockettest).
func TestMain(m *testing.M) { sockettest.Main(m) }
