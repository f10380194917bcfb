package bench_test

import (
	"context"
	"net"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"

	reuseport "github.com/libp2p/go-reuseport"
	"github.com/sockreuse/reuse"
	"golang.org/x/sys/unix"
)

// impl is one way to open sockets. Sub-benchmarks are named impl=NAME so
// that `benchstat -col /impl` puts the implementations side by side, with
// ratios to the first column, the hand-written Control.
type impl struct {
	name         string
	shares       bool // false for plain net, which cannot share a port
	listen       func(network, address string) (net.Listener, error)
	listenPacket func(network, address string) (net.PacketConn, error)
	dial         func(network, laddr, raddr string) (net.Conn, error)
}

// handControl sets, by hand, the options that reuse sets under Share on
// Linux: SO_REUSEADDR and SO_REUSEPORT on TCP sockets, SO_REUSEPORT without
// SO_REUSEADDR on UDP sockets.
func handControl(network, address string, rc syscall.RawConn) error {
	reuseAddr := 1
	if strings.HasPrefix(network, "udp") {
		reuseAddr = 0
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		if serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEADDR, reuseAddr); serr != nil {
			return
		}
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
	}); err != nil {
		return err
	}
	return serr
}

var handListenConfig = net.ListenConfig{Control: handControl}

// handDial takes laddr as a string, like reuse.Dial and reuseport.Dial, so
// that all three resolve it on each call.
func handDial(network, laddr, raddr string) (net.Conn, error) {
	d := net.Dialer{Control: handControl}
	var err error
	if strings.HasPrefix(network, "udp") {
		d.LocalAddr, err = net.ResolveUDPAddr(network, laddr)
	} else {
		d.LocalAddr, err = net.ResolveTCPAddr(network, laddr)
	}
	if err != nil {
		return nil, err
	}
	return d.Dial(network, raddr)
}

func netDial(network, laddr, raddr string) (net.Conn, error) {
	var d net.Dialer
	var err error
	if strings.HasPrefix(network, "udp") {
		d.LocalAddr, err = net.ResolveUDPAddr(network, laddr)
	} else {
		d.LocalAddr, err = net.ResolveTCPAddr(network, laddr)
	}
	if err != nil {
		return nil, err
	}
	return d.Dial(network, raddr)
}

// impls are in the order benchstat shows them; the first is the base of
// the ratios.
var impls = []impl{
	{
		name:   "control",
		shares: true,
		listen: func(network, address string) (net.Listener, error) {
			return handListenConfig.Listen(context.Background(), network, address)
		},
		listenPacket: func(network, address string) (net.PacketConn, error) {
			return handListenConfig.ListenPacket(context.Background(), network, address)
		},
		dial: handDial,
	},
	{name: "reuse", shares: true, listen: reuse.Listen, listenPacket: reuse.ListenPacket, dial: reuse.Dial},
	{name: "reuseport", shares: true, listen: reuseport.Listen, listenPacket: reuseport.ListenPacket, dial: reuseport.Dial},
	{name: "net", listen: net.Listen, listenPacket: net.ListenPacket, dial: netDial},
}

// freePort returns a loopback port that no socket held a moment ago.
func freePort(b *testing.B, network string) int {
	b.Helper()
	var addr net.Addr
	if strings.HasPrefix(network, "udp") {
		pc, err := net.ListenPacket(network, "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		addr = pc.LocalAddr()
		pc.Close()
		return addr.(*net.UDPAddr).Port
	}
	ln, err := net.Listen(network, "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	addr = ln.Addr()
	ln.Close()
	return addr.(*net.TCPAddr).Port
}

// BenchmarkListen opens and closes a TCP listener. On a fixed port every
// implementation does the same syscalls but for its options; on port 0,
// reuse sets its sharing options after bind on Linux, so that the port the
// kernel picks is one no other socket holds (see listen.go, bind). A
// listener that never accepted leaves no TIME_WAIT, so the fixed port binds
// again.
func BenchmarkListen(b *testing.B) {
	for _, port := range []string{"fixed", "0"} {
		for _, im := range impls {
			im, port := im, port
			b.Run("port="+port+"/impl="+im.name, func(b *testing.B) {
				addr := "127.0.0.1:0"
				if port == "fixed" {
					addr = "127.0.0.1:" + strconv.Itoa(freePort(b, "tcp4"))
				}
				b.ReportAllocs()
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					ln, err := im.listen("tcp4", addr)
					if err != nil {
						b.Fatal(err)
					}
					if err := ln.Close(); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkListenPacket opens and closes a UDP socket, as BenchmarkListen.
func BenchmarkListenPacket(b *testing.B) {
	for _, port := range []string{"fixed", "0"} {
		for _, im := range impls {
			im, port := im, port
			b.Run("port="+port+"/impl="+im.name, func(b *testing.B) {
				addr := "127.0.0.1:0"
				if port == "fixed" {
					addr = "127.0.0.1:" + strconv.Itoa(freePort(b, "udp4"))
				}
				b.ReportAllocs()
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					pc, err := im.listenPacket("udp4", addr)
					if err != nil {
						b.Fatal(err)
					}
					if err := pc.Close(); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkDial connects from a fixed local port to a loopback server and
// closes. For the implementations that share, a listener of their own
// holds the local port the whole time, so each Dial shares it; plain net
// cannot share, so it dials from a fixed port that nothing else holds.
//
// TCP connections are closed with SO_LINGER 0 (a reset), so that no
// TIME_WAIT keeps the next Dial from the same 4-tuple; the server accepts
// each one and closes it after the reset. The reset and the server's work are the same for
// every implementation.
// dialServers is how many servers BenchmarkDial connects to in turn.
const dialServers = 16

func BenchmarkDial(b *testing.B) {
	for _, network := range []string{"tcp4", "udp4"} {
		for _, im := range impls {
			im, network := im, network
			b.Run("net="+network+"/impl="+im.name, func(b *testing.B) {
				// Rotating among servers, a 4-tuple comes back only every
				// dialServers dials: the server has finished with it by then.
				var raddrs []string
				for j := 0; j < dialServers; j++ {
					raddr, stop := server(b, network)
					defer stop()
					raddrs = append(raddrs, raddr)
				}
				laddr := "127.0.0.1:" + strconv.Itoa(freePort(b, network))
				if im.shares {
					holder := hold(b, im, network, laddr)
					defer holder.Close()
				}
				b.ReportAllocs()
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					c, err := im.dial(network, laddr, raddrs[i%dialServers])
					if err != nil {
						b.Fatal(err)
					}
					if tc, ok := c.(*net.TCPConn); ok {
						if err := tc.SetLinger(0); err != nil {
							b.Fatal(err)
						}
					}
					if err := c.Close(); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// hold opens a socket of im on laddr that the dialing sockets share.
func hold(b *testing.B, im impl, network, laddr string) interface{ Close() error } {
	b.Helper()
	if strings.HasPrefix(network, "udp") {
		pc, err := im.listenPacket(network, laddr)
		if err != nil {
			b.Fatal(err)
		}
		return pc
	}
	ln, err := im.listen(network, laddr)
	if err != nil {
		b.Fatal(err)
	}
	return ln
}

// server opens a loopback server for Dial to connect to. A TCP server
// accepts every connection until stop is called, and closes each only
// after the client's reset: were the server to close first, its FIN could
// race the reset and leave state behind for the 4-tuple that the next Dial
// reuses, which then waits a second for a SYN retransmission (measured:
// one such stall in about 3,000 dials).
func server(b *testing.B, network string) (addr string, stop func()) {
	b.Helper()
	if strings.HasPrefix(network, "udp") {
		pc, err := net.ListenPacket(network, "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		return pc.LocalAddr().String(), func() { pc.Close() }
	}
	ln, err := net.Listen(network, "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				c.Read(make([]byte, 1)) // returns at the client's reset
				c.Close()
			}()
		}
	}()
	return ln.Addr().String(), func() {
		ln.Close()
		wg.Wait()
	}
}
