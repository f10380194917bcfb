package reuse_test

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/sockreuse/reuse"
	"github.com/sockreuse/reuse/internal/sockettest"
)

// TestHijackMulticastOtherUser pins what doc.go says of multicast under Share
// on Linux: SO_REUSEADDR lets a receiver of another user join the group on
// the port, and lets a process of another user bind the port with
// SO_REUSEADDR alone and take the unicast datagrams sent to it.
func TestHijackMulticastOtherUser(t *testing.T) {
	sockettest.RequireRoot(t, "map uid 65534 into a private network namespace")
	if !sockettest.RunInNetNS(t) {
		return
	}
	enableMulticast(t, "udp4")
	group := &net.UDPAddr{IP: net.IPv4(239, 1, 9, 9), Port: 5009}
	mine, err := reuse.ListenMulticastUDP("udp4", nil, group)
	if err != nil {
		t.Fatal(err)
	}
	defer mine.Close()

	theirs := sockettest.StartWorker(t, "multicast-receiver", []string{"udp4", group.IP.String(), strconv.Itoa(group.Port)}, sockettest.AsUser(65534, 65534))
	theirs.Expect("ready", 10*time.Second)
	sender, err := net.DialUDP("udp4", nil, group)
	if err != nil {
		t.Fatal(err)
	}
	defer sender.Close()
	const sent = 10
	for i := 0; i < sent; i++ {
		if _, err := sender.Write([]byte("A")); err != nil {
			t.Fatal(err)
		}
		theirs.Expect(fmt.Sprintf("a=%d;", i+1), 10*time.Second)
	}
	if _, err := sender.Write([]byte("end")); err != nil {
		t.Fatal(err)
	}
	if got := theirs.Expect("total ", 10*time.Second); got != fmt.Sprintf("A=%d B=0 U=0", sent) {
		t.Errorf("uid 65534's receiver of the group got %s, want A=%d", got, sent)
	}

	// The security tests' worker: a plain socket with SO_REUSEADDR alone.
	hijacker := sockettest.StartWorker(t, "bind", []string{"reuseaddr", "udp4", "0.0.0.0:" + strconv.Itoa(group.Port)}, sockettest.AsUser(65534, 65534))
	if got := hijacker.Expect("", 10*time.Second); got != "bound" {
		t.Fatalf("uid 65534 binding the port with SO_REUSEADDR alone: %s, want bound", got)
	}
	uni, err := net.Dial("udp4", "127.0.0.1:"+strconv.Itoa(group.Port))
	if err != nil {
		t.Fatal(err)
	}
	defer uni.Close()
	for i := 0; i < sent; i++ {
		if _, err := uni.Write([]byte("U")); err != nil {
			t.Fatal(err)
		}
	}
	got := hijacker.Expect("received ", 10*time.Second)
	t.Logf("unicast datagrams to the port taken by uid 65534's SO_REUSEADDR socket: %s of %d", got, sent)
	if got == "0" {
		t.Errorf("uid 65534's socket took none of %d unicast datagrams; doc.go says it takes them", sent)
	}
}

// TestMulticastOptionsReadBack: the options read back from a multicast
// receiver are those of doc.go's "multicast" column, for each mode.
func TestMulticastOptionsReadBack(t *testing.T) {
	if !sockettest.RunInNetNS(t) {
		return
	}
	table := docTable(t, "linux,android")
	ifi := enableMulticast(t, "udp4")
	for i, mode := range []reuse.Mode{reuse.Share, reuse.Exclusive} {
		cfg := &reuse.Config{Mode: mode}
		group := &net.UDPAddr{IP: net.IPv4(239, 1, 9, 10), Port: 5010 + i}
		conn, err := cfg.ListenMulticastUDP(context.Background(), "udp4", ifi, group)
		if err != nil {
			t.Fatalf("%v: %v", mode, err)
		}
		got := readOpts(t, conn)
		conn.Close()
		want := map[string]int{"SO_REUSEADDR": 0, "SO_REUSEPORT": 0}
		for name, v := range table[mode.String()][3] {
			want[name] = v
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("%v multicast receiver: options read back differ from doc.go's table (-want +got):\n%s", mode, diff)
		}
	}
}
