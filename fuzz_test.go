package reuse_test

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/sockreuse/reuse"
	"github.com/sockreuse/reuse/internal/sockettest"
)

// The fuzz targets call Listen, ListenPacket and Dial with fuzzed networks
// and addresses and check that each call returns an error (a *net.OpError)
// or a working loopback socket, never panics, and leaves no descriptor open.
//
// They must touch nothing but loopback ports of their own: an address whose
// host is empty (the wildcard), another host than 127.0.0.1, ::1 (in any
// spelling, with a zone or v4-mapped) or "localhost", which would be looked up
// in DNS, is skipped. A fixed port is replaced by a port the target holds
// itself, so that a Share socket never joins another program's group; port
// 0, and ports net rejects, are passed on as written.

// fuzzSeeds are inputs of every shape the targets must handle; each target
// also reads its corpus from testdata/fuzz.
var (
	fuzzNetworks  = []string{"tcp", "tcp4", "tcp6", "udp", "udp4", "udp6", "unix", "unixpacket", "ip4:icmp", "ip", "", "TCP", "sctp"}
	fuzzAddresses = []string{
		"127.0.0.1:0", "[::1]:0", "localhost:0", "127.0.0.1:", "127.0.0.1:8080", "localhost:http",
		"127.0.0.1:65535", "127.0.0.1:65536", "127.0.0.1:-1", "127.0.0.1:+0", "127.0.0.1:-0", "127.0.0.1:000",
		"127.0.0.1:99999999999999999999", "127.0.0.1:nosuchservice", "[::1%lo]:0", "[::1%1]:0",
		"[::1%nosuchzone]:0", "[::ffff:127.0.0.1]:0", "127.0.0.1", "[::1]", ":", "[", "[::1", "]:0",
		"example.com:80", "0.0.0.0:0", ":0", "", "127.0.0.1%lo:0", "127.0.0.1:0:0", "127.0.0.1:+", "127.0.0.1:-",
		"127.0.0.1: 0",
	}
)

// fuzzPorts are the ports a target points fixed ports at.
type fuzzPorts struct {
	bind int // held by Share sockets on 127.0.0.1 and ::1, TCP and UDP
	dial int // a TCP listener that accepts and closes, and a UDP socket, on both
}

// holdFuzzPort returns a port that listen could bind on 127.0.0.1 and ::1,
// TCP and UDP, holding it until the fuzz target ends.
func holdFuzzPort(f *testing.F, c *reuse.Config, serve func(net.Listener)) int {
	f.Helper()
	ctx := context.Background()
	var last error
	for try := 0; try < 20; try++ {
		var closers []interface{ Close() error }
		ln, err := c.Listen(ctx, "tcp4", "127.0.0.1:0")
		if err != nil {
			f.Fatal(err)
		}
		closers = append(closers, ln)
		port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
		lns := []net.Listener{ln}
		ln6, err := c.Listen(ctx, "tcp6", "[::1]:"+port)
		if err == nil {
			closers, lns = append(closers, ln6), append(lns, ln6)
			var pc4, pc6 net.PacketConn
			if pc4, err = c.ListenPacket(ctx, "udp4", "127.0.0.1:"+port); err == nil {
				closers = append(closers, pc4)
				if pc6, err = c.ListenPacket(ctx, "udp6", "[::1]:"+port); err == nil {
					closers = append(closers, pc6)
				}
			}
		}
		if err == nil {
			f.Cleanup(func() {
				for _, c := range closers {
					c.Close()
				}
			})
			if serve != nil {
				for _, ln := range lns {
					go serve(ln)
				}
			}
			n, _ := strconv.Atoi(port)
			return n
		}
		last = err
		for _, c := range closers {
			c.Close()
		}
	}
	f.Fatalf("no port free on both 127.0.0.1 and ::1 in 20 tries: %v", last)
	return 0
}

// setUpFuzz holds the ports of a fuzz target and starts the poller, whose
// descriptors stay open for the life of the process.
func setUpFuzz(f *testing.F) fuzzPorts {
	// Every target holds TCP and UDP ports of its own.
	requireSockets(f)
	sockettest.RequireUDP(f)
	var p fuzzPorts
	p.bind = holdFuzzPort(f, &reuse.Config{}, nil)
	p.dial = holdFuzzPort(f, &reuse.Config{Mode: reuse.Exclusive}, func(ln net.Listener) {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	})
	return p
}

// confine returns address with a fixed port replaced by port, and false
// when the call could reach past loopback: see the comment at the top.
func confine(network, address string, port int) (string, bool) {
	if address == "" {
		return "", false // the wildcard, port 0
	}
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return address, true // net fails before any lookup
	}
	if host != "localhost" {
		ip, err := netip.ParseAddr(host)
		if err != nil {
			return "", false
		}
		if ip = ip.WithZone("").Unmap(); ip != netip.MustParseAddr("127.0.0.1") && ip != netip.IPv6Loopback() {
			return "", false
		}
	}
	var fixed int
	switch network {
	case "tcp", "tcp4", "tcp6":
		if a, err := net.ResolveTCPAddr(network, address); err == nil {
			fixed = a.Port
		}
	case "udp", "udp4", "udp6":
		if a, err := net.ResolveUDPAddr(network, address); err == nil {
			fixed = a.Port
		}
	}
	if fixed == 0 {
		return address, true
	}
	return net.JoinHostPort(host, strconv.Itoa(port)), true
}

// checkResult fails unless exactly one of conn and err is nil, err is a
// *net.OpError, and conn's address is a loopback one.
func checkResult(t *testing.T, call string, conn interface{ Close() error }, local net.Addr, err error) {
	t.Helper()
	if err != nil {
		var oe *net.OpError
		if !errors.As(err, &oe) {
			t.Errorf("%s: error %v (%T) is not a *net.OpError", call, err, err)
		}
		if conn != nil {
			t.Errorf("%s: both an error (%v) and a socket", call, err)
			conn.Close()
		}
		return
	}
	if conn == nil {
		t.Fatalf("%s: neither an error nor a socket", call)
	}
	defer conn.Close()
	ap, perr := netip.ParseAddrPort(local.String())
	if perr != nil || !ap.Addr().Unmap().IsLoopback() || ap.Port() == 0 {
		t.Errorf("%s: bound %v, want a loopback address with a port", call, local)
	}
}

// checkNoLeak waits, briefly, for the descriptors to return to before: the
// peer of a connection that was dialled is closed by another goroutine.
func checkNoLeak(t *testing.T, call string, before int) {
	t.Helper()
	if before < 0 {
		return
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		// Fewer is no leak: the fuzz targets' servers close the connections
		// of earlier calls as they go.
		now := openFDs(t)
		if now <= before {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d descriptors open after the call, %d before", call, now, before)
		}
		time.Sleep(time.Millisecond)
	}
}

func fuzzConfig(mode uint8) *reuse.Config {
	// 0 Share, 1 Exclusive, 2 a Mode that does not exist.
	return &reuse.Config{Mode: reuse.Mode(mode % 3)}
}

func FuzzListen(f *testing.F) {
	for _, n := range fuzzNetworks {
		for _, a := range fuzzAddresses {
			f.Add(n, a, uint8(0))
		}
	}
	f.Add("tcp", "127.0.0.1:0", uint8(1))
	f.Add("tcp", "127.0.0.1:0", uint8(2))
	ports := setUpFuzz(f)
	f.Fuzz(func(t *testing.T, network, address string, mode uint8) {
		address, ok := confine(network, address, ports.bind)
		if !ok {
			t.Skip("not a loopback address")
		}
		call := "Listen(" + strconv.Quote(network) + ", " + strconv.Quote(address) + ")"
		before := openFDs(t)
		ln, err := fuzzConfig(mode).Listen(context.Background(), network, address)
		if err == nil {
			checkResult(t, call, ln, ln.Addr(), nil)
		} else {
			checkResult(t, call, nil, nil, err)
			if ln != nil {
				t.Errorf("%s: non-nil listener with error %v", call, err)
			}
		}
		checkNoLeak(t, call, before)
	})
}

func FuzzListenPacket(f *testing.F) {
	for _, n := range fuzzNetworks {
		for _, a := range fuzzAddresses {
			f.Add(n, a, uint8(0))
		}
	}
	f.Add("udp", "127.0.0.1:0", uint8(1))
	f.Add("udp", "127.0.0.1:0", uint8(2))
	ports := setUpFuzz(f)
	f.Fuzz(func(t *testing.T, network, address string, mode uint8) {
		address, ok := confine(network, address, ports.bind)
		if !ok {
			t.Skip("not a loopback address")
		}
		call := "ListenPacket(" + strconv.Quote(network) + ", " + strconv.Quote(address) + ")"
		before := openFDs(t)
		pc, err := fuzzConfig(mode).ListenPacket(context.Background(), network, address)
		if err == nil {
			checkResult(t, call, pc, pc.LocalAddr(), nil)
		} else {
			checkResult(t, call, nil, nil, err)
			if pc != nil {
				t.Errorf("%s: non-nil socket with error %v", call, err)
			}
		}
		checkNoLeak(t, call, before)
	})
}

func FuzzDial(f *testing.F) {
	for _, n := range fuzzNetworks {
		for _, a := range fuzzAddresses {
			f.Add(n, "", a, uint8(0))
			f.Add(n, a, "127.0.0.1:1", uint8(0))
		}
	}
	f.Add("tcp", "127.0.0.1:1", "127.0.0.1:1", uint8(1))
	f.Add("udp", "[::1]:1", "[::1]:1", uint8(2))
	ports := setUpFuzz(f)
	f.Fuzz(func(t *testing.T, network, laddr, raddr string, mode uint8) {
		if laddr != "" {
			var ok bool
			if laddr, ok = confine(network, laddr, ports.bind); !ok {
				t.Skip("not a loopback local address")
			}
		}
		if raddr != "" { // "" is an error, not the wildcard, for a remote address
			var ok bool
			if raddr, ok = confine(network, raddr, ports.dial); !ok {
				t.Skip("not a loopback remote address")
			}
		}
		call := "Dial(" + strconv.Quote(network) + ", " + strconv.Quote(laddr) + ", " + strconv.Quote(raddr) + ")"
		c := fuzzConfig(mode)
		c.Dialer.Timeout = 5 * time.Second
		before := openFDs(t)
		conn, err := c.Dial(context.Background(), network, laddr, raddr)
		if err == nil {
			checkResult(t, call, conn, conn.LocalAddr(), nil)
		} else {
			checkResult(t, call, nil, nil, err)
			if conn != nil {
				t.Errorf("%s: non-nil connection with error %v", call, err)
			}
		}
		checkNoLeak(t, call, before)
	})
}
