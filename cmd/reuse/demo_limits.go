package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/sockreuse/reuse"
)

// limit is the most of something that the demo runs on this machine, and why.
type limit struct {
	max int
	why string
}

// lower returns the smaller of l and m; l where m is unknown (max 0).
func (l limit) lower(m limit) limit {
	if m.max > 0 && m.max < l.max {
		return m
	}
	return l
}

// demoLimits returns the most workers and connections the demo runs here;
// a test may replace it.
var demoLimits = func() (workers, conns limit) { return workerLimit(), connLimit() }

// workerMemory is what one demo worker costs the machine: its resident set
// measured about 6 MB (Linux 6.18, Go 1.26), rounded up.
const workerMemory = 8 << 20

// workerLimit is the most worker processes the demo starts here: as many
// as the available memory and this process's file descriptors allow (each
// worker holds workerFDs of them), and no more than a balancing group of
// this OS holds.
func workerLimit() limit {
	l := limit{1024, "the demo starts at most 1024 workers where it cannot tell what the machine holds"}
	if avail, ok := memAvailable(); ok {
		l = limit{int(avail / workerMemory), fmt.Sprintf("each worker is a process of about %d MiB, and %.1f GiB of memory is available", workerMemory>>20, float64(avail)/(1<<30))}
	}
	if n, ok := fileLimit(); ok {
		l = l.lower(limit{(n - 64) / workerFDs, fmt.Sprintf("each worker holds %d of the %d file descriptors this process may open", workerFDs, n)})
	}
	if reuse.BalancingHere().Option == "SO_REUSEPORT_LB" {
		l = l.lower(limit{256, "a SO_REUSEPORT_LB group holds at most 256 sockets (FreeBSD's documentation)"})
	}
	return l
}

// workerFDs is how many file descriptors a worker holds in this process:
// the pipes to its stdin and from its stdout, and its process handle.
const workerFDs = 3

// connLimit is the most connections the demo opens here: one from each
// ephemeral port, so that each connection is a new client address and port.
func connLimit() limit {
	if lo, hi, ok := ephemeralPorts(); ok {
		return limit{hi - lo + 1, fmt.Sprintf("each connection comes from a new source port, and net.ipv4.ip_local_port_range %d-%d has %d", lo, hi, hi-lo+1)}
	}
	return limit{16384, "each connection comes from a new source port, and the dynamic ports 49152-65535 (IANA's range, the default of Windows, macOS and the BSDs) are 16384"}
}

// memAvailable returns the memory available to new processes (Linux).
func memAvailable() (uint64, bool) {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0, false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "MemAvailable:"); ok {
			f := strings.Fields(rest)
			if len(f) == 2 && f[1] == "kB" {
				if kb, err := strconv.ParseUint(f[0], 10, 64); err == nil {
					return kb << 10, true
				}
			}
		}
	}
	return 0, false
}

// ephemeralPorts returns the range of local ports that connect picks from
// (Linux).
func ephemeralPorts() (lo, hi int, ok bool) {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 0, 0, false
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return 0, 0, false
	}
	lo, err1 := strconv.Atoi(f[0])
	hi, err2 := strconv.Atoi(f[1])
	if err1 != nil || err2 != nil || hi < lo {
		return 0, 0, false
	}
	return lo, hi, true
}
