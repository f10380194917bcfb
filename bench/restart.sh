#!/usr/bin/env bash
# Produces RESTARTS.md: servers restarted under load, reuse.Handover beside a
# naive replacement and cloudflare/tableflip, then restarted idle (one process
# beside tableflip, each worker slot, rolling restarts of 4, 8 and 16
# workers), in one run (cmd/restartload); then the cost of one handover as
# the group grows, with and without 10,000 unrelated connections (the root
# package's BenchmarkHandover). Run from anywhere: bash bench/restart.sh.
# With the defaults (36 HTTP cases and 4 UDP cases under load, 5 idle cases,
# of 20 restarts, 3 rolling restarts of each group idle and 4 of 16 workers
# under load, and 16 benchmarks of 3 handovers) it takes about 3 minutes on
# a 2-core machine, where a restart takes 5 to 60 ms. Every wait is bounded.
#
# Settings, from the environment:
#   RESTARTS=20      restarts per case (4 worker processes: 5 rounds of 4)
#   ROLLS=3          rolling restarts of each group of workers (4, 8, 16)
#   HANDOVERS=3      handovers of each benchmark (go test -benchtime=3x)
#   SHAPES=          the driver's -shapes (default: all of them; see
#                    go run ./cmd/restartload -h)
#   QUICK=           1: the short run of CI (4 restarts, fewer cases, 1 rolling
#                    restart of 4 workers), to stdout
#   NOTE=            a sentence about the machine's state during the run
#   OUT=RESTARTS.md, at the repository root
#   RUN_AS=          a uid (65534): the driver, and so every server and client, runs
#                    as that user without capabilities (needs root; built as root)
set -euo pipefail
cd "$(dirname "$0")"
RESTARTS=${RESTARTS:-20}
ROLLS=${ROLLS:-3}
SHAPES=${SHAPES:-}
HANDOVERS=${HANDOVERS:-3}
QUICK=${QUICK:-}
NOTE=${NOTE:-}
OUT=${OUT:-../RESTARTS.md}
HEY_VERSION=v0.1.5

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "installing hey $HEY_VERSION and building the drivers" >&2
GOBIN=$tmp go install "github.com/rakyll/hey@$HEY_VERSION"
go build -o "$tmp/restartserver" ./cmd/restartserver
go build -o "$tmp/restartload" ./cmd/restartload
RUN_AS=${RUN_AS:-}
# as_user runs a command in $tmp, as RUN_AS where it is set.
as_user() {
	if [ -z "$RUN_AS" ]; then
		(cd "$tmp" && "$@")
		return
	fi
	chmod 755 "$tmp"
	(cd "$tmp" && setpriv --reuid="$RUN_AS" --regid="$RUN_AS" --clear-groups --inh-caps=-all --bounding-set=-all \
		env HOME="$tmp" "$@")
}
drive() {
	as_user "$tmp/restartload" -server "$tmp/restartserver" -hey "$tmp/hey" "$@"
}

if [ -n "$QUICK" ]; then
	drive -quick -check
	exit
fi

(cd .. && go test -c -o "$tmp/reuse.test" .)
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
start=$SECONDS
drive -restarts "$RESTARTS" -rolls "$ROLLS" ${SHAPES:+-shapes "$SHAPES"} >"$tmp/tables.md"
echo "BenchmarkHandover, $HANDOVERS handovers each" >&2
bench_start=$SECONDS
bench_status=0
as_user "$tmp/reuse.test" -test.run '^$' -test.bench '^BenchmarkHandover$' -test.benchtime="${HANDOVERS}x" -test.v >"$tmp/bench.txt" 2>&1 ||
	bench_status=$?
bench_time=$((SECONDS - bench_start))
load_end=$(cut -d' ' -f1-3 /proc/loadavg)
# handover_table writes BenchmarkHandover's results (go test -v) as a table.
handover_table() {
	awk '
	/^BenchmarkHandover\/conns=[0-9]+$/ { conns = substr($1, index($1, "=") + 1) }
	/^BenchmarkHandover\// { why = "" }
	/^    handover_bench_linux_test.go:[0-9]+: / { why = $0; sub(/^ +[^ ]+ /, "", why); gsub(/\|/, "/", why) }
	/TCP sockets in this network namespace/ { sockets[conns] = $2 }
	/^BenchmarkHandover\/conns=[0-9]+\/shape=[a-z]+\/k=[0-9]+-[0-9]+[ \t]/ && $4 == "ns/op" {
		split($1, p, "/"); sub(/-[0-9]+$/, "", p[4])
		shape = substr(p[3], 7); k = substr(p[4], 3)
		what = (shape == "slot") ? "1 slot of " k (k == 1 ? " worker process" : " worker processes") : "1 process, " k (k == 1 ? " listener" : " listeners") " → " k
		printf "| %s | %s | %s | **%.1f** | %d | %d |\n", substr(p[2], 7), sockets[substr(p[2], 7)], what, $3 / 1e6, $7, $5
		rows++
	}
	/--- SKIP: BenchmarkHandover\/|--- FAIL: BenchmarkHandover\/.*\/k=/ {
		printf "| %s | | %s | | | |\n", $2 " " $3, why
		rows++
	}
	END { if (!rows) print "| no results | | | | | |" }
	' "$1"
}
md=$tmp/RESTARTS.md
{
	echo "# Restarts under load"
	echo
	echo "Produced by \`bash bench/restart.sh\` (RESTARTS=$RESTARTS, ROLLS=$ROLLS${RUN_AS:+, RUN_AS=$RUN_AS: every process as uid $RUN_AS without capabilities}), which runs"
	echo "\`go run ./cmd/restartload -restarts $RESTARTS -rolls $ROLLS\` (in bench/) with hey $HEY_VERSION; every figure below"
	echo "comes from that one run, which took $((SECONDS - start)) s."
	echo
	echo "| | |"
	echo "|---|---|"
	echo "| date | $(date -u '+%Y-%m-%d %H:%M UTC') |"
	echo "| machine | $(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), \`nproc\` $(nproc), $(uname -sr) |"
	echo "| Go | $(go version | cut -d' ' -f3-) |"
	echo "| clients and alternatives | github.com/rakyll/hey $HEY_VERSION, github.com/cloudflare/tableflip $(go list -m -f '{{.Version}}' github.com/cloudflare/tableflip) |"
	echo "| load average (1, 5, 15 min) | $load_start at the start, $load_end at the end |"
	if [ -n "$NOTE" ]; then echo "| note | $NOTE |"; fi
	echo
	echo "## What runs"
	echo
	echo "The driver runs in a private user and network namespace of its own, where it sets"
	echo "\`net.ipv4.tcp_migrate_req\` for each case, and talks to 127.0.0.1 only. The server"
	echo "(bench/cmd/restartserver; internal/restartserver, the server of \`reuse restart\` too, but"
	echo "for tableflip's modes) is a 1-process net/http server answering every request with its"
	echo "pid, or a UDP receiver that records the sequence number of every datagram. Each case"
	echo "starts the server(s), puts them under load, restarts them $RESTARTS times (one"
	echo "process at a time), and stops the load. Listeners are MPTCP (Go's default for modules"
	echo "whose go line is 1.24 or later, set here with \`ListenConfig.SetMultipathTCP(true)\`)"
	echo "or plain TCP; hey's own connections are plain TCP."
	echo
	echo "- **reuse.Handover**: the driver starts a new, unrelated process (no fd passing); it"
	echo "  opens its sockets with reuse (Share) and calls \`Handover.TakeOver\`; the old process"
	echo "  learns from \`Handover.Replaced\` that it was replaced, closes its listeners, waits"
	echo "  until every accepted connection's first request was read, calls \`Shutdown\` and"
	echo "  \`Handover.Close\`, and exits by itself. Worker processes each have a \`Slot\`."
	echo "- **reuse.Handover, Shutdown at once after Replaced**: the same, but the old process"
	echo "  calls \`Shutdown\` as soon as \`Replaced\` is closed (one listener only): what"
	echo "  reusehttp's \`Serving.Stop\` is for, as Go's \`Shutdown\` alone drops a connection whose"
	echo "  first request it has not read (golang/go#75591), and a handover replaces the old"
	echo "  process within milliseconds of such a connection's accept. Not a way to restart."
	echo "- **naive**: the new process opens its sockets with reuse (Share); once it listens, the"
	echo "  driver tells the old one (SIGTERM), which calls \`http.Server.Shutdown\` at once (UDP:"
	echo "  closes its sockets at once)."
	echo "- **tableflip, its net/http example**: the pattern of tableflip's README and of its"
	echo "  \`Example_httpShutdown\`: SIGHUP to the process, which calls \`Upgrade\` (exec of the"
	echo "  new binary, which inherits the listener); after \`<-upg.Exit()\`, \`Shutdown\`."
	echo "- **tableflip, first requests read before Shutdown**: the same, but after"
	echo "  \`<-upg.Exit()\` the old process closes its listener and waits until every"
	echo "  accepted connection's first request was read, then calls \`Shutdown\`: Go 1.26's"
	echo "  \`Shutdown\` closes, unanswered, a connection whose first request it reads after"
	echo "  shutdown began (golang/go#75591)."
	echo
	echo "HTTP load: hey with keep-alive disabled (a new connection for every request), run"
	echo "with \`-z\` and stopped by SIGINT after the last restart; it lets requests in flight"
	echo "finish. *Failed* is every request that did not get a 200: hey's errors (its error"
	echo "distribution, grouped by the last part of the message) and other status codes."
	echo "*Slowest request* is hey's: a connection left waiting in a queue shows there, and one"
	echo "near 1 s is a SYN that went unanswered and was sent again after TCP's initial 1 s"
	echo "timeout (with MPTCP listeners, the package steers through a short-lived plain-TCP"
	echo "helper that drops the SYNs the kernel's hash gives it)."
	echo "*Start new → old gone* is the time from starting the new process (tableflip: from"
	echo "the SIGHUP) to the exit of the old one. The requests answered grow with the length of"
	echo "a case, which the restart time sets: compare the failures, not the totals."
	echo "*TCP sockets in the namespace*: those that /proc/net/tcp and tcp6 listed after the last"
	echo "restart, mostly hey's connections in TIME_WAIT (of this case and of those of the last"
	echo "minute), which every listing of the namespace's TCP sockets passes."
	echo
	echo "Under the same load, (h) is one rolling restart of the largest group of (g) below, 16"
	echo "worker processes, each slot in turn as in (g), for its failed requests and its total time"
	echo "under load, in every setting."
	echo
	echo "Idle cases: the same restarts without load, for the time alone: (e) one"
	echo "process, reuse.Handover beside tableflip (its mode that reads first requests before"
	echo "\`Shutdown\`; without load the two modes do the same); (f) 4 worker processes, one"
	echo "slot after the other ($RESTARTS restarts: $((RESTARTS / 4)) of each slot); (g) rolling restarts of"
	echo "4, 8 and 16 worker processes: every slot in turn, the next slot's new process"
	echo "started as soon as the previous slot's old process is gone, as a supervisor rolling"
	echo "through its workers does, $ROLLS times for each group. The idle cases run at"
	echo "\`tcp_migrate_req\` 0 (the kernel's default), (e) and (f) with MPTCP and plain listeners,"
	echo "(g) with MPTCP listeners (Go's default) only; they run first, before hey's connections"
	echo "leave thousands of TIME_WAIT sockets in the namespace (for a minute), which the"
	echo "cases under load then have beside them."
	echo
	echo "UDP load: one goroutine of the driver sends numbered 64-byte datagrams round-robin"
	echo "from 1,000 connected sockets (1,000 source ports), paced per millisecond. *Lost* is"
	echo "sent minus the distinct sequence numbers that the servers recorded;"
	echo "*receive-buffer drops* is the growth of \`Udp: RcvbufErrors\` of the namespace over the"
	echo "case (drops for a full socket buffer, which a restart does not cause: a datagram"
	echo "queued on a socket that closes is not counted there)."
	echo
	echo "*One handover*, last, is the root package's \`BenchmarkHandover\` (handover_bench_linux_test.go),"
	echo "run as \`go test -run '^\$' -bench '^BenchmarkHandover\$' -benchtime=${HANDOVERS}x\` in the machine's own network"
	echo "namespace (not the driver's), which took $bench_time s. Each handover is a real one between two processes: the old"
	echo "one is a process of the test binary, started and serving before the timer runs; the new one is"
	echo "the benchmark's process, whose time runs from its \`TakeOver\` to the old process gone (exited),"
	echo "and whose allocations (the successor's) are counted. *k* is the size of the group of"
	echo "sockets on the port: either one process with k listeners handing over to k new ones, or k"
	echo "worker processes of one listener each (in k Slots), of which one slot is handed over while"
	echo "the others serve on; before each of those handovers another worker restarts, as in a rolling"
	echo "restart, which moves the old worker to that worker's place in the kernel's array. Listeners"
	echo "are MPTCP, with the default Quiet. *Unrelated connections*: established loopback connections"
	echo "held by two helper processes (the server ends in one, the client ends in the other), which every"
	echo "listing of the namespace's TCP sockets passes; the next column is the count of TCP sockets that"
	echo "/proc/net/tcp and tcp6 listed in the namespace when those benchmarks began (other programs' too)."
	echo
	echo "The tables after the UDP one take the restart times apart. *Restart time, idle*: (e),"
	echo "reuse.Handover beside tableflip, and the ratio of their medians. *Restart time under"
	echo "hey*: the same for the cases (a), from the table of failed requests. *Restart time of each"
	echo "worker slot*: the median of each slot's restarts in (c), (d) and (f), slot 1 being the"
	echo "first worker started, and the last slot's median divided by the first's. *Rolling"
	echo "restarts*: the total time of (g) for each number of workers, and of (h), and that total per"
	echo "worker, also divided by that of the smallest group of the same load and settings: a total that"
	echo "grows at most linearly with the workers keeps it at about 1 or below. Medians come with"
	echo "quartiles (interpolated between the two nearest restarts) and the fastest and slowest restart."
	echo
	echo "## Results"
	echo
	cat "$tmp/tables.md"
	echo "### One handover, as the group grows"
	echo
	echo "| unrelated connections | TCP sockets in the namespace | handed over | ms per handover | allocations | bytes allocated |"
	echo "|---|---|---|---|---|---|"
	handover_table "$tmp/bench.txt"
	if [ "$bench_status" != 0 ]; then
		echo
		echo "**The benchmark failed** (exit status $bench_status): see the rows marked FAIL."
	fi
	echo
} >"$md"
cp "$md" "$OUT"
echo "wrote $OUT" >&2
