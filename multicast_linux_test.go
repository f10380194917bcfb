package reuse_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/sockreuse/reuse"
	"github.com/sockreuse/reuse/internal/sockettest"
)

func init() {
	sockettest.Register("multicast-receiver", multicastReceiver)
}

// A multicast test sends three kinds of datagram, told apart by their first
// byte: 'A' to the group the receivers joined, 'B' to another group on the
// same port, 'U' to the port's unicast loopback address; "end" closes a run.
type received struct{ A, B, U int }

func (r received) String() string { return fmt.Sprintf("A=%d B=%d U=%d", r.A, r.B, r.U) }

// receiveUntilEnd counts the datagrams conn receives until "end", calling
// onA after each 'A' datagram with the count so far.
func receiveUntilEnd(conn *net.UDPConn, onA func(n int)) (received, error) {
	var r received
	buf := make([]byte, 64)
	for {
		if err := conn.SetReadDeadline(time.Now().Add(20 * time.Second)); err != nil {
			return r, err
		}
		n, _, err := conn.ReadFromUDP(buf)
		if err != nil {
			return r, fmt.Errorf("after %v: %w", r, err)
		}
		switch p := string(buf[:n]); {
		case p == "end":
			return r, nil
		case p[0] == 'A':
			r.A++
			onA(r.A)
		case p[0] == 'B':
			r.B++
		case p[0] == 'U':
			r.U++
		}
	}
}

// multicastReceiver is a worker: it joins group args[1] on port args[2] of
// network args[0] under Share on the default interface, prints "ready",
// "a=N;" after each datagram to the group, and its counts at "end".
func multicastReceiver(args []string) error {
	port, err := strconv.Atoi(args[2])
	if err != nil {
		return err
	}
	conn, err := reuse.ListenMulticastUDP(args[0], nil, &net.UDPAddr{IP: net.ParseIP(args[1]), Port: port})
	if err != nil {
		return err
	}
	defer conn.Close()
	fmt.Println("ready")
	r, err := receiveUntilEnd(conn, func(n int) { fmt.Printf("a=%d;\n", n) })
	fmt.Printf("total %v\n", r)
	return err
}

// enableMulticast makes the default interface of network's multicast, in
// the test's private network namespace, one that reaches nothing outside it:
// lo for IPv4, a bridge without ports for IPv6, which Linux does not run on
// lo (see sockettest.AddIPv6MulticastInterface). It returns the interface.
func enableMulticast(t *testing.T, network string) *net.Interface {
	t.Helper()
	if network == "udp6" {
		ifi, err := sockettest.AddIPv6MulticastInterface("mc0")
		if err != nil {
			t.Fatalf("adding an interface for IPv6 multicast: %v", err)
		}
		return ifi
	}
	if err := sockettest.EnableLoopbackMulticast(); err != nil {
		t.Fatalf("enabling multicast on lo: %v", err)
	}
	lo, err := net.InterfaceByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	return lo
}

// groupUsers returns how many sockets joined group on ifi, from the
// kernel's /proc/net/igmp or /proc/net/igmp6 (0 if none).
func groupUsers(t *testing.T, ifi *net.Interface, group net.IP) int {
	t.Helper()
	if ip4 := group.To4(); ip4 != nil {
		data, err := os.ReadFile("/proc/net/igmp")
		if err != nil {
			t.Fatal(err)
		}
		// Group lines follow their device's line; the group is the
		// in-memory value of the address as a hexadecimal number.
		want := fmt.Sprintf("%08X", binary.NativeEndian.Uint32(ip4))
		onIfi := false
		for _, line := range strings.Split(string(data), "\n")[1:] {
			f := strings.Fields(line)
			switch {
			case len(f) == 0:
			case !strings.HasPrefix(line, "\t"):
				onIfi = len(f) > 1 && f[1] == ifi.Name
			case onIfi && f[0] == want && len(f) > 1:
				n, err := strconv.Atoi(f[1])
				if err != nil {
					t.Fatalf("/proc/net/igmp: %q: %v", line, err)
				}
				return n
			}
		}
		return 0
	}
	data, err := os.ReadFile("/proc/net/igmp6")
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("%x", []byte(group.To16()))
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) > 3 && f[1] == ifi.Name && f[2] == want {
			n, err := strconv.Atoi(f[3])
			if err != nil {
				t.Fatalf("/proc/net/igmp6: %q: %v", line, err)
			}
			return n
		}
	}
	return 0
}

var multicastFamilies = []struct {
	name, network  string
	groupA, groupB string
	loopback       string // the unicast address of the test's port
	source         string // the address multicast is sent from
}{
	{"IPv4", "udp4", "239.1.2.3", "239.1.2.4", "127.0.0.1", "127.0.0.1"},
	// Sent from the interface's own address: Linux drops the copy it loops
	// back if its source is ::1.
	{"IPv6", "udp6", "ff05::1:3", "ff05::1:4", "::1", sockettest.MulticastSource6.String()},
}

// TestMulticastShare joins one group on one port from three sockets of the
// test and two worker processes, and another group on the same port from a
// sixth socket. Each datagram to the group must reach all five and none the
// sixth; each to the other group the sixth only; each unicast datagram to
// the port exactly one of the six.
func TestMulticastShare(t *testing.T) {
	for _, fam := range multicastFamilies {
		fam := fam
		t.Run(fam.name, func(t *testing.T) {
			if !sockettest.RunInNetNS(t) {
				return
			}
			ifi := enableMulticast(t, fam.network)
			const port = 5000
			groupA := &net.UDPAddr{IP: net.ParseIP(fam.groupA), Port: port}
			groupB := &net.UDPAddr{IP: net.ParseIP(fam.groupB), Port: port}

			// In-process receivers: three of group A, one of group B.
			type receiver struct {
				name   string
				gotA   atomic.Int64
				result received
				err    error
			}
			var (
				receivers []*receiver
				wg        sync.WaitGroup
			)
			start := func(name string, gaddr *net.UDPAddr) {
				conn, err := reuse.ListenMulticastUDP(fam.network, nil, gaddr)
				if err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				t.Cleanup(func() { conn.Close() })
				r := &receiver{name: name}
				receivers = append(receivers, r)
				wg.Add(1)
				go func() {
					defer wg.Done()
					r.result, r.err = receiveUntilEnd(conn, func(n int) { r.gotA.Store(int64(n)) })
				}()
			}
			for i := 1; i <= 3; i++ {
				start(fmt.Sprintf("socket %d", i), groupA)
			}
			start("other-group socket", groupB)
			var workers []*sockettest.Worker
			for i := 0; i < 2; i++ {
				w := sockettest.StartWorker(t, "multicast-receiver", []string{fam.network, fam.groupA, strconv.Itoa(port)})
				w.Expect("ready", 10*time.Second)
				workers = append(workers, w)
			}
			if got := groupUsers(t, ifi, groupA.IP); got != 5 {
				t.Errorf("sockets joined to %v on %s: %d, want 5", groupA.IP, ifi.Name, got)
			}
			if got := groupUsers(t, ifi, groupB.IP); got != 1 {
				t.Errorf("sockets joined to %v on %s: %d, want 1", groupB.IP, ifi.Name, got)
			}

			sender, err := net.ListenUDP(fam.network, &net.UDPAddr{IP: net.ParseIP(fam.source)})
			if err != nil {
				t.Fatal(err)
			}
			defer sender.Close()
			send := func(payload string, to *net.UDPAddr) {
				t.Helper()
				if _, err := sender.WriteToUDP([]byte(payload), to); err != nil {
					t.Fatalf("sending %q to %v: %v", payload, to, err)
				}
			}
			// waitA waits until every receiver of group A got n datagrams,
			// so that no socket buffer overflows on a loaded machine.
			waitA := func(n int) {
				t.Helper()
				for _, w := range workers {
					w.Expect(fmt.Sprintf("a=%d;", n), 20*time.Second)
				}
				deadline := time.Now().Add(20 * time.Second)
				for _, r := range receivers[:3] {
					for r.gotA.Load() < int64(n) {
						if time.Now().After(deadline) {
							t.Fatalf("%s received %d of %d datagrams to %v in 20s", r.name, r.gotA.Load(), n, groupA)
						}
						time.Sleep(time.Millisecond)
					}
				}
			}
			const datagrams, batch = 100, 10
			for i := 0; i < datagrams; i++ {
				send(fmt.Sprintf("A %d", i), groupA)
				send(fmt.Sprintf("B %d", i), groupB)
				if (i+1)%batch == 0 {
					waitA(i + 1)
				}
			}
			// Unicast from several source ports, so that the 4-tuple
			// hash has room to pick different members.
			unicast := &net.UDPAddr{IP: net.ParseIP(fam.loopback), Port: port}
			for i := 0; i < datagrams; i++ {
				if i%batch == 0 {
					sender.Close()
					if sender, err = net.ListenUDP(fam.network, &net.UDPAddr{IP: net.ParseIP(fam.source)}); err != nil {
						t.Fatal(err)
					}
				}
				send(fmt.Sprintf("U %d", i), unicast)
				time.Sleep(2 * time.Millisecond)
			}
			send("end", groupA)
			send("end", groupB)

			wg.Wait()
			results := map[string]received{}
			for _, r := range receivers {
				if r.err != nil {
					t.Errorf("%s: %v", r.name, r.err)
				}
				results[r.name] = r.result
			}
			for i, w := range workers {
				name := fmt.Sprintf("worker %d", i+1)
				total := w.Expect("total ", 20*time.Second)
				var r received
				if _, err := fmt.Sscanf(total, "A=%d B=%d U=%d", &r.A, &r.B, &r.U); err != nil {
					t.Fatalf("%s printed %q: %v", name, total, err)
				}
				if err := w.Wait(); err != nil {
					t.Error(err)
				}
				results[name] = r
			}
			t.Logf("%d datagrams to %v, %d to %v, %d unicast to %v; received: %v", datagrams, groupA, datagrams, groupB, datagrams, unicast, results)
			unicastTotal := 0
			for name, r := range results {
				wantA, wantB := datagrams, 0
				if name == "other-group socket" {
					wantA, wantB = 0, datagrams
				}
				if r.A != wantA || r.B != wantB {
					t.Errorf("%s received %d datagrams to %v and %d to %v, want %d and %d", name, r.A, groupA.IP, r.B, groupB.IP, wantA, wantB)
				}
				unicastTotal += r.U
			}
			if unicastTotal != datagrams {
				t.Errorf("the six receivers got %d unicast datagrams between them, want %d: each to exactly one", unicastTotal, datagrams)
			}
		})
	}
}

// TestMulticastRelease checks that closing a receiver leaves its group and
// frees its port.
func TestMulticastRelease(t *testing.T) {
	for _, fam := range multicastFamilies {
		fam := fam
		t.Run(fam.name, func(t *testing.T) {
			if !sockettest.RunInNetNS(t) {
				return
			}
			ifi := enableMulticast(t, fam.network)
			gaddr := &net.UDPAddr{IP: net.ParseIP(fam.groupA), Port: 5001}
			warmUpPoller(t)
			fds := sockettest.OpenFDs(t)
			var conns []*net.UDPConn
			for i := 0; i < 3; i++ {
				conn, err := reuse.ListenMulticastUDP(fam.network, ifi, gaddr)
				if err != nil {
					t.Fatal(err)
				}
				conns = append(conns, conn)
			}
			if got := groupUsers(t, ifi, gaddr.IP); got != 3 {
				t.Errorf("sockets joined to %v on %s with 3 open: %d, want 3", gaddr.IP, ifi.Name, got)
			}
			for _, c := range conns {
				if err := c.Close(); err != nil {
					t.Fatal(err)
				}
			}
			if got := groupUsers(t, ifi, gaddr.IP); got != 0 {
				t.Errorf("sockets joined to %v on %s after closing: %d, want 0", gaddr.IP, ifi.Name, got)
			}
			if got := sockettest.OpenFDs(t); got != fds {
				t.Errorf("open descriptors: %d after closing, %d before", got, fds)
			}
			// Nothing holds the port any more: an Exclusive receiver binds it.
			excl := reuse.Config{Mode: reuse.Exclusive}
			conn, err := excl.ListenMulticastUDP(context.Background(), fam.network, ifi, gaddr)
			if err != nil {
				t.Fatalf("Exclusive after closing the shared receivers: %v", err)
			}
			conn.Close()
		})
	}
}

// TestMulticastExclusive checks that an Exclusive receiver receives its
// group and that no second receiver, of any kind, can bind its port.
func TestMulticastExclusive(t *testing.T) {
	for _, fam := range multicastFamilies {
		fam := fam
		t.Run(fam.name, func(t *testing.T) {
			if !sockettest.RunInNetNS(t) {
				return
			}
			ifi := enableMulticast(t, fam.network)
			gaddr := &net.UDPAddr{IP: net.ParseIP(fam.groupA), Port: 5002}
			excl := reuse.Config{Mode: reuse.Exclusive}
			first, err := excl.ListenMulticastUDP(context.Background(), fam.network, nil, gaddr)
			if err != nil {
				t.Fatal(err)
			}
			defer first.Close()

			for _, second := range []struct {
				name   string
				listen func() (*net.UDPConn, error)
			}{
				{"Exclusive", func() (*net.UDPConn, error) {
					return excl.ListenMulticastUDP(context.Background(), fam.network, nil, gaddr)
				}},
				{"Share", func() (*net.UDPConn, error) { return reuse.ListenMulticastUDP(fam.network, nil, gaddr) }},
				{"net.ListenMulticastUDP", func() (*net.UDPConn, error) { return net.ListenMulticastUDP(fam.network, ifi, gaddr) }},
			} {
				conn, err := second.listen()
				if err == nil {
					conn.Close()
					t.Errorf("a second receiver (%s) joined %v beside an Exclusive one", second.name, gaddr)
					continue
				}
				if !errors.Is(err, syscall.EADDRINUSE) {
					t.Errorf("a second receiver (%s): %v, want EADDRINUSE", second.name, err)
				}
				t.Logf("a second receiver (%s): %v", second.name, err)
			}

			sender, err := net.ListenUDP(fam.network, &net.UDPAddr{IP: net.ParseIP(fam.source)})
			if err != nil {
				t.Fatal(err)
			}
			defer sender.Close()
			if _, err := sender.WriteToUDP([]byte("A"), gaddr); err != nil {
				t.Fatal(err)
			}
			if err := first.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 8)
			if n, _, err := first.ReadFromUDP(buf); err != nil || string(buf[:n]) != "A" {
				t.Errorf("the Exclusive receiver read %q, %v; want the datagram sent to %v", buf[:n], err, gaddr)
			}
		})
	}
}

// TestMulticastErrors checks that bad arguments fail with an error naming
// what was wrong, and leave no descriptor and no bound port behind.
func TestMulticastErrors(t *testing.T) {
	if !sockettest.RunInNetNS(t) {
		return
	}
	lo := enableMulticast(t, "udp4")
	mc0 := enableMulticast(t, "udp6")
	const port = 5003
	group4 := &net.UDPAddr{IP: net.ParseIP("239.1.2.3"), Port: port}
	group6 := &net.UDPAddr{IP: net.ParseIP("ff05::1:3"), Port: port}
	noSuch := &net.Interface{Index: 9999, Name: "nosuch0"}
	warmUpPoller(t)
	for _, tc := range []struct {
		name, network string
		ifi           *net.Interface
		gaddr         *net.UDPAddr
		want          string
		errno         error
	}{
		{"unicast address", "udp4", nil, &net.UDPAddr{IP: net.ParseIP("127.0.0.1"), Port: port}, "127.0.0.1 is not a multicast address", nil},
		{"IPv6 group on udp4", "udp4", nil, group6, "IPv6 group ff05::1:3 on network udp4", nil},
		{"IPv4 group on udp6", "udp6", nil, group4, "IPv4 group 239.1.2.3 on network udp6", nil},
		{"no group", "udp4", nil, nil, "missing multicast group address", nil},
		{"tcp", "tcp", nil, group4, "unknown network tcp", nil},
		{"no such interface, IPv4", "udp4", noSuch, group4, `join 239.1.2.3 on interface "nosuch0" (index 9999): IP_ADD_MEMBERSHIP: setsockopt: no such device`, syscall.ENODEV},
		{"no such interface, IPv6", "udp6", noSuch, group6, `join ff05::1:3 on interface "nosuch0" (index 9999): IPV6_JOIN_GROUP: setsockopt: no such device`, syscall.ENODEV},
		{"unknown mode", "udp4", lo, group4, "unknown Mode(7)", nil},
	} {
		fds := sockettest.OpenFDs(t)
		c := reuse.Config{}
		if tc.name == "unknown mode" {
			c.Mode = 7
		}
		conn, err := c.ListenMulticastUDP(context.Background(), tc.network, tc.ifi, tc.gaddr)
		if err == nil {
			conn.Close()
			t.Errorf("%s: no error", tc.name)
			continue
		}
		var oe *net.OpError
		if !errors.As(err, &oe) || oe.Op != "listen" || oe.Net != tc.network {
			t.Errorf("%s: %#v, want a *net.OpError of listen on %s", tc.name, err, tc.network)
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %q, want it to contain %q", tc.name, err, tc.want)
		}
		if tc.errno != nil && !errors.Is(err, tc.errno) {
			t.Errorf("%s: %v, want it to match %v", tc.name, err, tc.errno)
		}
		if got := sockettest.OpenFDs(t); got != fds {
			t.Errorf("%s: %d descriptors open after the error, %d before", tc.name, got, fds)
		}
		t.Logf("%s: %v", tc.name, err)
	}
	// The failed joins closed their sockets: the port is free for Exclusive.
	excl := reuse.Config{Mode: reuse.Exclusive}
	for _, g := range []*net.UDPAddr{group4, group6} {
		network, ifi := "udp4", lo
		if g.IP.To4() == nil {
			network, ifi = "udp6", mc0
		}
		conn, err := excl.ListenMulticastUDP(context.Background(), network, ifi, g)
		if err != nil {
			t.Fatalf("Exclusive on port %d after the failed joins: %v", port, err)
		}
		conn.Close()
	}
}

// warmUpPoller opens and closes a socket, so that the descriptors of the
// runtime's network poller, opened with the first socket, are not counted as
// leaked by the first call tested.
func warmUpPoller(t *testing.T) {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
}
