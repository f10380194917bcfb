#!/usr/bin/env bash
# Produces every figure of BENCHMARKS.md and writes that file (and the raw
# benchmark output, bench/overhead.txt, that its tables are computed from).
# Run from anywhere: bash bench/run.sh. About 5 minutes with the defaults.
#
# Settings, from the environment:
#   COUNT=10         runs of every overhead benchmark (interleaved, for benchstat)
#   BENCHTIME=300ms  -benchtime of each run
#   ROUNDS=5         rounds of each throughput measurement (median reported)
#   DURATION=1s      length of one throughput measurement
#   K=               group sizes for the throughput tables (default: 1,2,4 and
#                    powers of two up to the number of CPUs)
#   NOTE=            a sentence about the machine's state, e.g. that it was
#                    shared by other work during the run
#   OUT=BENCHMARKS.md, at the repository root
set -euo pipefail
cd "$(dirname "$0")"
COUNT=${COUNT:-10}
BENCHTIME=${BENCHTIME:-300ms}
ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-1s}
K=${K:-}
NOTE=${NOTE:-}
OUT=${OUT:-../BENCHMARKS.md}
BENCHSTAT_VERSION=v0.0.0-20260908200009-22c9c6c9d4da
benchstat() { go run "golang.org/x/perf/cmd/benchstat@$BENCHSTAT_VERSION" "$@"; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
md=$tmp/BENCHMARKS.md
load_start=$(cut -d' ' -f1-3 /proc/loadavg)

echo "building the benchmarks and benchstat" >&2
go test -c -o "$tmp/bench.test" .
go build -o "$tmp/throughput" ./cmd/throughput
benchstat -h >/dev/null 2>&1 || true

# Every round runs every benchmark once, so that a change of load on the
# machine falls on all implementations alike.
: >overhead.txt
for i in $(seq "$COUNT"); do
	echo "overhead benchmarks, run $i of $COUNT" >&2
	"$tmp/bench.test" -test.run='^$' -test.bench=. -test.benchmem -test.benchtime="$BENCHTIME" >>overhead.txt
done

kflag=()
if [ -n "$K" ]; then kflag=(-k "$K"); fi
echo "throughput and fairness" >&2
"$tmp/throughput" -rounds "$ROUNDS" -duration "$DURATION" "${kflag[@]}" >"$tmp/throughput.md"
load_end=$(cut -d' ' -f1-3 /proc/loadavg)

# ratio BASE prints, for each benchmark, the median time of reuse over that
# of BASE, with benchstat's verdict (~ where the difference may be noise).
ratio() {
	benchstat -format csv -col "/impl@($1 reuse)" overhead.txt 2>/dev/null | awk -F, '
		/^,sec\/op/ { on = 1; next }
		on && /^geomean/ { printf "%s\t%.3f\t%s\n", $1, $4 / $2, $6; exit }
		on && NF >= 7 { printf "%s\t%.3f\t%s (%s)\n", $1, $4 / $2, $6, $7 }'
}
# allocs prints, for each benchmark, the allocations per call of reuse
# minus those of the hand-written Control.
allocs() {
	benchstat -format csv -col "/impl@(control reuse)" overhead.txt 2>/dev/null | awk -F, '
		/^,allocs\/op/ { on = 1; next }
		on && /^geomean/ { printf "geomean\t-\n"; exit }
		on && NF >= 5 { printf "%s\t%+d (%d vs %d)\n", $1, $4 - $2, $4, $2 }'
}
allocs >"$tmp/a.control"
ratio control >"$tmp/r.control"
ratio reuseport >"$tmp/r.reuseport"
ratio net >"$tmp/r.net"

{
	echo "# Benchmarks"
	echo
	echo "Produced by \`bash bench/run.sh\` (COUNT=$COUNT BENCHTIME=$BENCHTIME ROUNDS=$ROUNDS DURATION=$DURATION${K:+ K=$K})."
	echo "Every figure below comes from that one run; the overhead tables are"
	echo "\`benchstat\` ($BENCHSTAT_VERSION) over [bench/overhead.txt](bench/overhead.txt),"
	echo "the raw output of the same run."
	echo
	echo "| | |"
	echo "|---|---|"
	echo "| date | $(date -u '+%Y-%m-%d %H:%M UTC') |"
	echo "| machine | $(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), \`nproc\` $(nproc), $(uname -sr) |"
	echo "| Go | $(go version | cut -d' ' -f3-) |"
	echo "| go-reuseport | $(go list -m -f '{{.Version}}' github.com/libp2p/go-reuseport) |"
	echo "| load average (1, 5, 15 min) | $load_start at the start, $load_end at the end |"
	if [ -n "$NOTE" ]; then echo "| note | $NOTE |"; fi
	echo
	echo "## Ratios"
	echo
	echo "Median time per call of reuse divided by that of each alternative (below 1: reuse is"
	echo "faster). The verdict is benchstat's: ~ means the difference is not significant at"
	echo "p < 0.05 over the $COUNT runs; otherwise benchstat's own change."
	echo
	echo "| benchmark | reuse ÷ hand-written Control | allocs/op, reuse − Control | reuse ÷ go-reuseport | reuse ÷ plain net |"
	echo "|---|---|---|---|---|"
	paste "$tmp/r.control" "$tmp/a.control" "$tmp/r.reuseport" "$tmp/r.net" | awk -F'\t' '{ a = $5; printf "| %s | %s %s | %s | %s %s | %s %s |\n", $1, $2, $3, a, $7, $8, $10, $11 }'
	echo
	echo "The goal for the port=fixed and port=0 rows of Listen and ListenPacket: at most 1.05 times"
	echo "the hand-written Control, and at most one allocation more."
	echo
	echo "What is measured (bench/overhead_test.go):"
	echo
	echo "- **control**: \`net.ListenConfig\`/\`net.Dialer\` with a hand-written Control setting the options"
	echo "  reuse sets under Share on Linux (TCP: SO_REUSEADDR and SO_REUSEPORT; UDP: SO_REUSEADDR=0"
	echo "  and SO_REUSEPORT). **reuse**: \`reuse.Listen\`, \`reuse.ListenPacket\`, \`reuse.Dial\`."
	echo "  **reuseport**: github.com/libp2p/go-reuseport (which also sets SO_REUSEADDR on UDP)."
	echo "  **net**: \`net.Listen\`, \`net.ListenPacket\`, \`net.Dialer\` with a LocalAddr; it cannot share."
	echo "- **Listen, ListenPacket** open and close one socket on 127.0.0.1. *port=fixed*: the same"
	echo "  port every time, the same work for all but the options. *port=0*: the kernel picks; on"
	echo "  Linux reuse binds with nothing shared and sets SO_REUSEPORT (and, on TCP, SO_REUSEADDR)"
	echo "  right after bind, so that the kernel's choice never lands on a port another socket"
	echo "  shares (the hand-written Control has no such safety): one bind, as on a fixed port."
	echo "- **Dial** connects from a fixed local port that a listener of the same implementation holds"
	echo "  (plain net: a fixed port nothing else holds) to one of 16 loopback servers in turn, then"
	echo "  closes (TCP with a reset, so no TIME_WAIT blocks the next call). With one server, every"
	echo "  dial repeated the last 4-tuple and TCP dials of all four stalled now and then (runs of"
	echo "  75 µs and of 300 µs to 10 ms per call); taking the servers in turn removes that. Laddr"
	echo "  is a string resolved on every call by all four."
	echo
	echo "## Time, bytes and allocations per call"
	echo
	echo "\`benchstat -col /impl bench/overhead.txt\`; \"vs base\" is against the hand-written Control."
	echo
	echo '```'
	benchstat -col /impl overhead.txt
	echo '```'
	echo
	echo "## What sharing buys"
	echo
	echo "\`go run ./cmd/throughput -rounds $ROUNDS -duration $DURATION${K:+ -k $K}\` (in bench/). A group of k"
	echo "sockets opened with \`reuse.ListenPacket\` or \`reuse.Listen\` on one 127.0.0.1 port, one reader or"
	echo "accepting goroutine per socket. The load is the same for every k: 2 sending goroutines, each"
	echo "writing 64-byte datagrams round-robin on 16 connected UDP sockets (16 source ports, so the"
	echo "kernel's 4-tuple hash has flows to spread), or 2 goroutines dialing and resetting TCP"
	echo "connections from ephemeral ports. The k values are interleaved round by round; the"
	echo "medians are reported with their ratio to k=1."
	echo
	if [ "$(nproc)" -le 4 ]; then
		echo "On this $(nproc)-core machine the senders share the cores with the receivers, so a"
		echo "larger group cannot get more CPU than one socket had; the figures are reported as they"
		echo "are. These k-up-to-core-count figures come from this $(nproc)-core machine only; on a"
		echo "machine with more cores the driver goes higher by itself (or with \`-k 1,2,4,8,16\`)."
		echo
	fi
	cat "$tmp/throughput.md"
	echo "The coefficient of variation is the standard deviation of the accepts per listener over"
	echo "their mean. Linux picks the listener by a hash of the connection's 4-tuple; were that a"
	echo "uniform random choice, the counts would be multinomial and the expected coefficient about"
	echo "sqrt((k-1)/n), shown beside it."
} >"$md"
cp "$md" "$OUT"
echo "wrote $OUT and bench/overhead.txt" >&2
