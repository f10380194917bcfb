#!/usr/bin/env bash
# Crash injection for reuse.Handover: TestHandoverCrashInjection (TCP, each
# tcp_migrate_req setting in a private network namespace) and
# TestUDPHandoverCrashInjection, with HANDOVERS handovers each (60 by
# default; the test suite runs 6), as root and as uid 65534 without
# capabilities. At a random moment of each handover the old or the new
# process is killed or stopped, or neither; the summaries say, by what was
# done to which process, the connections that failed or were refused and
# the datagrams lost. Run from anywhere, as root: bash bench/crash.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
HANDOVERS=${HANDOVERS:-60}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
chmod 755 "$tmp"
go test -c -o "$tmp/reuse.test" .
chmod a+rx "$tmp/reuse.test"
run() {
	(cd "$tmp" && "$@" env REUSE_CRASH_HANDOVERS="$HANDOVERS" "$tmp/reuse.test" -test.count=1 -test.v -test.timeout=30m \
		-test.run '^(TestHandoverCrashInjection|TestUDPHandoverCrashInjection)$') |
		grep -E '^\s+(handover_crash_linux_test.go:[0-9]+: |(none|old|new) )|^(--- |ok|FAIL|PASS)' |
		sed -E 's/^\s+handover_crash_linux_test.go:[0-9]+: //; s/^\s+/\t/'
}
failed=0
echo "== as root ($HANDOVERS handovers a case)"
run || failed=1
echo "== as uid 65534, no capabilities ($HANDOVERS handovers a case)"
run setpriv --reuid=65534 --regid=65534 --clear-groups --inh-caps=-all --bounding-set=-all || failed=1
exit $failed
