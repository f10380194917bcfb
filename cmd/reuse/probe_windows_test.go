package main

import (
	"strings"
	"testing"
)

// TestProbeWindowsRefusals checks the refusals of the Windows rows (from
// Microsoft's "Using SO_REUSEADDR and SO_EXCLUSIVEADDRUSE"). Only refusals: under Wine, a listening first socket follows
// Linux's rules, so a bind that Windows itself allows may be refused there.
func TestProbeWindowsRefusals(t *testing.T) {
	rep := runProbeJSON(t)
	t.Logf("kernel %s", rep.Kernel)
	for _, r := range rep.Binds {
		if r.Addrs != addrSame {
			if r.Result != notMeasured {
				t.Errorf("row %+v binds a wildcard outside a private network namespace", r)
			}
			continue
		}
		refused := r.Result != "ok"
		switch {
		case r.First == "EXCLUSIVEADDRUSE" && !refused:
			t.Errorf("%s %s %s: a bind after SO_EXCLUSIVEADDRUSE succeeded", r.Proto, r.Family, r.Second)
		case r.Second == "EXCLUSIVEADDRUSE" && !refused:
			t.Errorf("%s %s %s, then SO_EXCLUSIVEADDRUSE: succeeded on a port in use", r.Proto, r.Family, r.First)
		case r.First == "Exclusive" && r.Second == "Share" && !refused:
			t.Errorf("%s %s: Share bound a port held by Exclusive", r.Proto, r.Family)
		case r.First == "none" && r.Second == "none" && r.Result != "WSAEADDRINUSE":
			t.Errorf("%s %s: a second plain bind gives %s, want WSAEADDRINUSE", r.Proto, r.Family, r.Result)
		case refused && !strings.HasPrefix(strings.TrimPrefix(r.Result, "listen: "), "WSAE"):
			t.Errorf("row %+v: refused with %q, not a Winsock error", r, r.Result)
		}
	}
}
