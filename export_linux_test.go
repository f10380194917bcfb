package reuse

import (
	"fmt"
	"os"
	"time"
)

// The handover's tests run their processes with shorter bounds, and learn
// when a successor passes the point of no return, through the environment:
// REUSE_TEST_ANSWER_TIMEOUT (a duration) replaces answerTimeout, and
// REUSE_TEST_SAY_GO makes a successor print "saying go" before its "go";
// REUSE_TEST_HOLD_DRAIN makes an old process drain for its whole Quiet.
func init() {
	if d, err := time.ParseDuration(os.Getenv("REUSE_TEST_ANSWER_TIMEOUT")); err == nil {
		answerTimeout = d
	}
	testHoldDrain = os.Getenv("REUSE_TEST_HOLD_DRAIN") != ""
	if os.Getenv("REUSE_TEST_SAY_GO") != "" {
		testHookGo = func() { fmt.Println("saying go") }
	}
}
