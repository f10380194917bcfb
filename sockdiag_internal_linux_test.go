package reuse

import (
	"context"
	"fmt"
	"io"
	"net"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestMembers reads the members of a group of 5 (TCP and UDP, IPv4 and
// IPv6, plain and MPTCP listeners) by sock_diag and by /proc, among sockets
// that share the port but are no members: a connection accepted on it or a
// connected UDP socket bound to it, and a socket on another address with the
// same port. Both read the members in the order they joined, before and
// after a member in the middle leaves.
func TestMembers(t *testing.T) {
	for _, c := range []struct {
		network, addr, other string
		mptcp                bool
	}{
		{"tcp4", "127.0.0.1", "127.0.0.2", false},
		{"tcp4", "127.0.0.1", "127.0.0.2", true},
		{"tcp6", "::1", "::", false},
		{"udp4", "127.0.0.1", "127.0.0.2", false},
		{"udp6", "::1", "::", false},
	} {
		t.Run(fmt.Sprintf("%s MPTCP=%v", c.network, c.mptcp), func(t *testing.T) {
			const k = 5
			var cfg Config
			cfg.ListenConfig.SetMultipathTCP(c.mptcp)
			ctx := context.Background()
			var socks []any
			var closers []io.Closer
			defer func() {
				for _, s := range closers {
					s.Close()
				}
			}()
			addr := net.JoinHostPort(c.addr, "0")
			if c.network[:3] == "tcp" {
				lns, err := cfg.ListenGroup(ctx, c.network, addr, k)
				if err != nil {
					t.Fatal(err)
				}
				for _, ln := range lns {
					socks, closers = append(socks, ln), append(closers, ln)
				}
				addr = lns[0].Addr().String()
				conn, err := net.Dial(c.network, addr)
				if err != nil {
					t.Fatal(err)
				}
				closers = append(closers, conn) // accepted, unread, by one member
			} else {
				pcs, err := cfg.ListenPacketGroup(ctx, c.network, addr, k)
				if err != nil {
					t.Fatal(err)
				}
				for _, pc := range pcs {
					socks, closers = append(socks, pc), append(closers, pc)
				}
				addr = pcs[0].LocalAddr().String()
				peer, err := net.ListenPacket(c.network, net.JoinHostPort(c.addr, "0"))
				if err != nil {
					t.Fatal(err)
				}
				closers = append(closers, peer)
				conn, err := Dial(c.network, addr, peer.LocalAddr().String())
				if err != nil {
					t.Fatal(err)
				}
				closers = append(closers, conn)
			}
			_, port, _ := net.SplitHostPort(addr)
			if c.network[:3] == "tcp" {
				other, err := Listen(c.network, net.JoinHostPort(c.other, port))
				if err != nil {
					t.Fatal(err)
				}
				closers = append(closers, other)
			} else {
				other, err := ListenPacket(c.network, net.JoinHostPort(c.other, port))
				if err != nil {
					t.Fatal(err)
				}
				closers = append(closers, other)
			}

			st := stateOf(t, socks)
			var joined []uint64
			for _, s := range st.socks {
				joined = append(joined, s.ino)
			}
			// Read as a handover reads them (stableMembers): one listing
			// of /proc may skip or repeat a socket while other sockets
			// of the namespace close.
			check := func(when string, want []uint64) {
				t.Helper()
				st.noSockDiag = false
				got, err := st.stableMembers()
				if st.noSockDiag {
					t.Logf("%s: the kernel answers no sock_diag dump here (qemu-user?): /proc alone", when)
				} else if err != nil {
					t.Fatalf("%s: members by sock_diag: %v", when, err)
				} else if diff := cmp.Diff(want, got); diff != "" {
					t.Errorf("%s: members by sock_diag (-want +got):\n%s", when, diff)
				}
				st.noSockDiag = true
				got, err = st.stableMembers()
				if err != nil {
					t.Fatalf("%s: members by /proc: %v", when, err)
				}
				if diff := cmp.Diff(want, got); diff != "" {
					t.Errorf("%s: members by /proc (-want +got):\n%s", when, diff)
				}
			}
			check("all joined", joined)
			closers[2].Close()
			check("member 2 closed", append(joined[:2:2], joined[3:]...))
		})
	}
}

// BenchmarkMembers reads a group of 4 UDP sockets' members, by sock_diag and
// by /proc, among 1,000 other UDP sockets of the namespace, as a server's
// table holds them: the cost of each poll of a handover.
func BenchmarkMembers(b *testing.B) {
	pcs, err := ListenPacketGroup("udp4", "127.0.0.1:0", 4)
	if err != nil {
		b.Fatal(err)
	}
	socks := make([]any, len(pcs))
	for i, pc := range pcs {
		defer pc.Close()
		socks[i] = pc
	}
	for i := 0; i < 1000; i++ {
		pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		defer pc.Close()
	}
	g, err := newSockGroup(socks)
	if err != nil {
		b.Fatal(err)
	}
	st, err := inspect(g)
	if err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct {
		name string
		proc bool
	}{{"sock_diag", false}, {"proc", true}} {
		b.Run(c.name, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				st.noSockDiag = c.proc
				inos, err := st.members()
				if err != nil || len(inos) != len(pcs) || st.noSockDiag != c.proc {
					b.Fatalf("members: %v, %v (by /proc: %v)", inos, err, st.noSockDiag)
				}
			}
		})
	}
}
