package reuse_test

import (
	"net"
	"syscall"
	"testing"

	"github.com/sockreuse/reuse"
)

// BenchmarkControl measures Control alone, on one socket of each kind: the
// options of Share set again and again, which is the package's own cost
// inside a Listen (compare BenchmarkListen in bench/, which adds socket,
// bind and close).
func BenchmarkControl(b *testing.B) {
	for _, network := range []string{"tcp4", "udp4"} {
		b.Run("net="+network, func(b *testing.B) {
			var sc syscall.Conn
			if network == "tcp4" {
				ln, err := net.Listen(network, "127.0.0.1:0")
				if err != nil {
					b.Fatal(err)
				}
				defer ln.Close()
				sc = ln.(*net.TCPListener)
			} else {
				pc, err := net.ListenPacket(network, "127.0.0.1:0")
				if err != nil {
					b.Fatal(err)
				}
				defer pc.Close()
				sc = pc.(*net.UDPConn)
			}
			rc, err := sc.SyscallConn()
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				if err := reuse.Control(network, "127.0.0.1:0", rc); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
