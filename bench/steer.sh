#!/usr/bin/env bash
# What steering costs: datagrams per second through a group of 4 UDP sockets
# steered by a payload byte (by=byte) or by QUIC connection ID (by=quic),
# against the same group spread by the kernel's hash (by=hash); see
# BenchmarkSteering in steer_test.go. Every round runs all three, so that a
# change of load on the machine falls on all alike; benchstat then compares
# them and the last lines give the ratios of the medians (target: steered
# datagrams/s at least 0.95 of hashed). Linux only; talks to 127.0.0.1 only.
# Run from anywhere: bash bench/steer.sh. About 1 minute with the defaults.
#
# Settings, from the environment:
#   COUNT=10             rounds
#   BENCHTIME=300000x    datagrams per benchmark run
#   OUT=steer.txt        the raw benchmark output, in bench/
set -euo pipefail
cd "$(dirname "$0")"
COUNT=${COUNT:-10}
BENCHTIME=${BENCHTIME:-300000x}
OUT=${OUT:-steer.txt}
BENCHSTAT_VERSION=v0.0.0-20260908200009-22c9c6c9d4da
benchstat() { go run "golang.org/x/perf/cmd/benchstat@$BENCHSTAT_VERSION" "$@"; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
go test -c -o "$tmp/bench.test" .
: >"$OUT"
for i in $(seq "$COUNT"); do
	echo "round $i of $COUNT" >&2
	"$tmp/bench.test" -test.run='^$' -test.bench='^BenchmarkSteering$' -test.benchtime="$BENCHTIME" >>"$OUT"
done
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg), nproc $(nproc), $(uname -sr)"
benchstat -col /by "$OUT"
# Ratios of the medians of datagrams/s: steered over hashed.
awk '/^BenchmarkSteering\/by=/ {
	split($1, a, "="); by = a[2]; sub(/-[0-9]+$/, "", by)
	for (i = 1; i < NF; i++) if ($(i+1) == "datagrams/s") v[by, ++n[by]] = $i
}
function median(by,   i, j, t, k) {
	k = n[by]
	for (i = 1; i <= k; i++) for (j = i + 1; j <= k; j++) if (v[by, j] < v[by, i]) { t = v[by, i]; v[by, i] = v[by, j]; v[by, j] = t }
	return k % 2 ? v[by, (k + 1) / 2] : (v[by, k / 2] + v[by, k / 2 + 1]) / 2
}
END {
	h = median("hash")
	printf "median datagrams/s: hash %.0f, byte %.0f, quic %.0f\n", h, median("byte"), median("quic")
	printf "steered / hashed: by=byte %.3f, by=quic %.3f\n", median("byte") / h, median("quic") / h
}' "$OUT"
