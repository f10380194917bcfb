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

func TestStatsOf(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		var ds []time.Duration
		for _, x := range v {
			ds = append(ds, time.Duration(x)*time.Millisecond)
		}
		return ds
	}
	for _, c := range []struct {
		in   []time.Duration
		want stats
	}{
		{ms(30, 10, 50, 20, 40), stats{n: 5, min: ms(10)[0], q1: ms(20)[0], med: ms(30)[0], q3: ms(40)[0], max: ms(50)[0]}},
		// Between two samples: a quarter, half and three quarters of the way.
		{ms(40, 10, 30, 20), stats{n: 4, min: ms(10)[0], q1: 17500 * time.Microsecond, med: ms(25)[0], q3: 32500 * time.Microsecond, max: ms(40)[0]}},
		{ms(7), stats{n: 1, min: ms(7)[0], q1: ms(7)[0], med: ms(7)[0], q3: ms(7)[0], max: ms(7)[0]}},
		{nil, stats{}},
	} {
		got := statsOf(c.in)
		// statsOf rounds to the millisecond.
		want := c.want
		for _, d := range []*time.Duration{&want.min, &want.q1, &want.med, &want.q3, &want.max} {
			*d = d.Round(time.Millisecond)
		}
		if got != want {
			t.Errorf("statsOf(%v) = %+v, want %+v", c.in, got, want)
		}
	}
}
