#!/usr/bin/env bash
# What steering costs: datagrams per second through a group of 4 UDP sockets
# steered by a payload byte (byte) or by QUIC connection ID (quic), against
# a group spread by the kernel's hash (hash), taking turns in one run; see
# BenchmarkSteering in steer_test.go, path=delivered (readers included) and
# path=selected (the send path and the pick alone). benchstat reports the
# medians over the rounds of each group's datagrams/s and of the ratios
# byte/hash and quic/hash (target: at least 0.95). Linux only; talks to
# 127.0.0.1 only. Run from anywhere: bash bench/steer.sh. About 1 minute
# with the defaults.
#
# Settings, from the environment:
#   COUNT=10             rounds
#   BENCHTIME=200000x    datagrams to each group per benchmark run
#   OUT=steer.txt        the raw benchmark output, in bench/
set -euo pipefail
cd "$(dirname "$0")"
COUNT=${COUNT:-10}
BENCHTIME=${BENCHTIME:-200000x}
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
# The medians over the rounds, with their 95% confidence intervals:
# datagrams/s of each group and the ratios byte/hash and quic/hash.
benchstat "$OUT"
