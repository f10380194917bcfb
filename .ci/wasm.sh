#!/usr/bin/env bash
# Runs the tests as wasm programs: bash .ci/wasm.sh js|wasip1 [go test flags]
# js/wasm runs under Node (which must be on PATH), wasip1/wasm under wazero,
# installed from the Go module proxy by .ci/bin/go_wasip1_wasm_exec.
set -euo pipefail
cd "$(dirname "$0")/.."
goos=$1
shift
# Examples are not run here: they need sockets, which js and wasip1 lack (they
# stop with log.Fatal there, as examples should). They run natively.
PATH=$PWD/.ci/bin:$PATH GOOS=$goos GOARCH=wasm exec go test ./... -run '^(Test|Fuzz)' "$@"
