#!/usr/bin/env bash
# Restarts a pion/dtls server under live sessions, with reuse.ListenFlows and
# with one plain socket, side by side (examples/dtls): ROUNDS runs of
# SESSIONS sessions (default 5 of 100; .ci/run runs one short round).
set -euo pipefail
cd "$(dirname "$0")/../examples/dtls"
rounds=${ROUNDS:-5}
sessions=${SESSIONS:-100}
go build -o "${TMPDIR:-/tmp}/reuse-dtls.$$" .
trap 'rm -f "${TMPDIR:-/tmp}/reuse-dtls.$$"' EXIT
uname -r
for i in $(seq "$rounds"); do
	"${TMPDIR:-/tmp}/reuse-dtls.$$" -sessions "$sessions" -new 20 -after 3s
done
