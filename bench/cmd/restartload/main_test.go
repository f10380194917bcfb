//go:build linux

package main

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// heyOutput is the end of hey v0.1.5's summary, as it prints it.
const heyOutput = `
Summary:
  Total:	1.2345 secs
  Slowest:	0.2501 secs

Status code distribution:
  [200]	1500 responses
  [503]	2 responses

Error distribution:
  [3]	Get "http://127.0.0.1:20001/": EOF
  [1]	Get "http://127.0.0.1:20001/": read tcp 127.0.0.1:40312->127.0.0.1:20001: read: connection reset by peer
  [2]	Get "http://127.0.0.1:20001/": read tcp 127.0.0.1:40999->127.0.0.1:20001: read: connection reset by peer
`

func TestParseHey(t *testing.T) {
	r := &result{errs: map[string]int{}}
	if err := parseHey(heyOutput, r); err != nil {
		t.Fatal(err)
	}
	want := map[string]int{"EOF": 3, "connection reset by peer": 3, "status 503": 2}
	if diff := cmp.Diff(want, r.errs); diff != "" {
		t.Errorf("errors (-want +got):\n%s", diff)
	}
	if r.ok != 1500 || r.failed != 8 || r.slowest != 250*time.Millisecond {
		t.Errorf("ok %d, failed %d, slowest %v; want 1500, 8, 250ms", r.ok, r.failed, r.slowest)
	}
}

func TestParseHeyRefusesOtherOutput(t *testing.T) {
	r := &result{errs: map[string]int{}}
	if err := parseHey("flag provided but not defined: -x", r); err == nil {
		t.Error("parseHey accepted output without a status code distribution")
	}
}
