package reuse_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/sockreuse/reuse"
)

// multipathTCP returns the GODEBUG multipathtcp setting in force in this
// test binary: the environment's, else the default built in from go.mod's
// go line (0 below 1.24, where Go makes plain TCP listeners).
func multipathTCP() (value, source string) {
	last := func(list string) (v string, ok bool) {
		for _, kv := range strings.Split(list, ",") {
			if s, found := strings.CutPrefix(strings.TrimSpace(kv), "multipathtcp="); found {
				v, ok = s, true
			}
		}
		return v, ok
	}
	if v, ok := last(os.Getenv("GODEBUG")); ok {
		return v, "GODEBUG in the environment"
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "DefaultGODEBUG" {
				if v, ok := last(s.Value); ok {
					return v, "the default of go.mod's go line"
				}
			}
		}
	}
	return "", "the toolchain's default"
}

// listenersMPTCP reports whether Go makes MPTCP listeners by default under
// the toolchain goVersion ("go1.26.8") and the GODEBUG multipathtcp value:
// since Go 1.24 unless the value is 0 or 3 (dialers only); before, only
// with 1 (src/net/dial.go).
func listenersMPTCP(goVersion, value string) bool {
	var minor int
	if _, err := fmt.Sscanf(goVersion, "go1.%d", &minor); err == nil && minor < 24 {
		return value == "1"
	}
	return value != "0" && value != "3"
}

// requireMPTCP skips a test where the kernel makes no MPTCP socket.
func requireMPTCP(t *testing.T) {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, unix.IPPROTO_MPTCP)
	if err != nil {
		t.Skipf("this kernel makes no MPTCP socket (socket(AF_INET, SOCK_STREAM, IPPROTO_MPTCP): %v)", err)
	}
	unix.Close(fd)
}

// protocolOf returns a listener's SO_PROTOCOL: IPPROTO_TCP or IPPROTO_MPTCP.
func protocolOf(t *testing.T, ln net.Listener) int {
	t.Helper()
	rc, err := ln.(*net.TCPListener).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var proto int
	var gerr error
	if err := rc.Control(func(fd uintptr) { proto, gerr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_PROTOCOL) }); err != nil {
		t.Fatal(err)
	}
	if gerr != nil {
		t.Fatal(gerr)
	}
	return proto
}

// TestUsersDefaultMPTCP pins which listeners the package makes under the
// GODEBUG in force: a program of a module whose go line is 1.24 or later
// (multipathtcp unset, or 2) gets MPTCP listeners from Listen and
// ListenGroup; this repository's go 1.21 line gets plain TCP. .ci/run runs
// the whole suite both ways (GODEBUG=multipathtcp=2 for users' default);
// this test fails if the second pass is not really MPTCP. An explicit
// ListenConfig.SetMultipathTCP wins over either default.
func TestUsersDefaultMPTCP(t *testing.T) {
	requireMPTCP(t)
	value, source := multipathTCP()
	want := unix.IPPROTO_TCP
	if listenersMPTCP(runtime.Version(), value) {
		want = unix.IPPROTO_MPTCP
	}
	t.Logf("GODEBUG multipathtcp=%q (%s): want protocol %d", value, source, want)
	ln, err := reuse.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if got := protocolOf(t, ln); got != want {
		t.Errorf("reuse.Listen under multipathtcp=%q made protocol %d, want %d", value, got, want)
	}
	group, err := reuse.ListenGroup("tcp", "127.0.0.1:0", 2)
	if err != nil {
		t.Fatal(err)
	}
	for i, m := range group {
		if got := protocolOf(t, m); got != want {
			t.Errorf("ListenGroup member %d under multipathtcp=%q made protocol %d, want %d", i, value, got, want)
		}
		m.Close()
	}
	for _, mptcp := range []bool{true, false} {
		var cfg reuse.Config
		cfg.ListenConfig.SetMultipathTCP(mptcp)
		ln, err := cfg.Listen(context.Background(), "tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		want := unix.IPPROTO_TCP
		if mptcp {
			want = unix.IPPROTO_MPTCP
		}
		if got := protocolOf(t, ln); got != want {
			t.Errorf("SetMultipathTCP(%v): protocol %d, want %d", mptcp, got, want)
		}
		ln.Close()
	}
}
