package reuse

import (
	"bufio"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/sockreuse/reuse/internal/sockdiag"
)

// This file tells what may still reach the old process's listeners once
// the group is steered away from them: a handshake in flight to one lands
// in its queue, and is reset if the listener closes first, unless the
// kernel hands it on (tcp_migrate_req).

// handshakes returns the handshakes in flight (SYN_RECV) to the group's
// port, each by its remote address with its local one: each may still land
// in an old listener's queue. The listing walks the host's table of TCP
// connections, shared by its network namespaces, whatever the port
// (BenchmarkInFlight: 1.2 ms with no connection, 2 ms beside 20,000 in
// TIME_WAIT, on 2 cores): no interface gives a listener's count of
// handshakes, but unreferenced tells when it has none. stillInFlight then
// looks each up alone (10 µs each).
func (st *handoverState) handshakes() (map[netip.AddrPort]netip.AddrPort, error) {
	a := st.addrPort()
	q := sockdiag.Query{Family: familyOf(a.Addr()), Proto: unix.IPPROTO_TCP, Port: int(a.Port()),
		States: 1<<sockdiag.SynRecv | 1<<sockdiag.NewSynRecv}
	inFlight := make(map[netip.AddrPort]netip.AddrPort)
	err := sockdiag.Dump(q, func(s sockdiag.Socket) { inFlight[s.Remote] = s.Local })
	if err != nil {
		return nil, fmt.Errorf("listing the handshakes in flight to %s (NETLINK_SOCK_DIAG): %w", st.g.address, err)
	}
	return inFlight, nil
}

// stillInFlight removes from inFlight the handshakes that are over; where
// the listing failed (err), it returns err again.
func (st *handoverState) stillInFlight(inFlight map[netip.AddrPort]netip.AddrPort, err error) (map[netip.AddrPort]netip.AddrPort, error) {
	if err != nil {
		return nil, err
	}
	for remote, local := range inFlight {
		s, ok, err := sockdiag.Connection(local, remote)
		if err != nil {
			return nil, fmt.Errorf("looking up the handshake from %s to %s (NETLINK_SOCK_DIAG): %w", remote, local, err)
		}
		if !ok || s.State != sockdiag.SynRecv && s.State != sockdiag.NewSynRecv {
			delete(inFlight, remote)
		}
	}
	return inFlight, nil
}

// migratesHandshakes reports whether the kernel gives the handshakes in
// flight to this process's listeners, when they close, to the group's other
// listeners (net.ipv4.tcp_migrate_req=1, Linux 5.14+), so that the old
// process need not wait for them: plain TCP and MPTCP listeners alike, as
// TestHandoverWaitsForHandshakes shows.
func (st *handoverState) migratesHandshakes() bool {
	b, err := os.ReadFile("/proc/sys/net/ipv4/tcp_migrate_req")
	return err == nil && strings.TrimSpace(string(b)) == "1"
}

// unreferenced reports whether the kernel holds this process's listeners
// for nothing but themselves: no handshake in flight to them (a request
// socket holds its listener) and no connection in their queues (which does
// too), as /proc/net/tcp{,6} counts their references: 1 for a plain TCP
// listener that nothing reaches (TestUnreferenced). It reads the table's
// first lines, where the listeners are, a few at a time: the kernel walks
// its table of connections only up to the namespace's first one
// (BenchmarkInFlight: 32 µs beside 20,000 connections in TIME_WAIT; in a
// namespace of none, 1.9 ms, a whole walk as a dump). An MPTCP listener is
// also held by its MPTCP socket: never unreferenced.
func (st *handoverState) unreferenced() (bool, error) {
	left := make(map[uint64]bool)
	for _, s := range st.socks {
		if s.proto != unix.IPPROTO_TCP {
			return false, nil
		}
		left[s.ino] = true
	}
	file := "/proc/net/tcp"
	if st.v6Family() {
		file += "6"
	}
	f, err := os.Open(file)
	if err != nil {
		return false, err
	}
	defer f.Close()
	r := bufio.NewReaderSize(f, 512)
	_, err = r.ReadString('\n') // the header
	for err == nil && len(left) > 0 {
		var line string
		if line, err = r.ReadString('\n'); err != nil {
			break
		}
		// sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode refcount ...
		fields := strings.Fields(line)
		if len(fields) <= 10 || fields[3] != "0A" {
			return false, fmt.Errorf("%s lists %d of this process's listeners nowhere among its listeners", file, len(left))
		}
		ino, _ := strconv.ParseUint(fields[9], 10, 64)
		if !left[ino] {
			continue
		}
		delete(left, ino)
		if !strings.HasSuffix(fields[4], ":00000000") || fields[10] != "1" {
			return false, nil
		}
	}
	if err != nil {
		return false, fmt.Errorf("reading %s: %w", file, err)
	}
	return true, nil
}
