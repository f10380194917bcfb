#!/usr/bin/env bash
# Runs the tests as windows/amd64 programs under Wine: bash .ci/wine.sh [go test flags]
# It installs Wine and the MinGW binutils when missing (Debian), makes the
# project's own Wine prefix, and runs go test through .ci/bin/go_windows_amd64_exec
# in a private network namespace when the kernel allows one, so that the tests
# may bind the wildcard address (SOCKETTEST_PRIVATE_NET=1).
set -euo pipefail
cd "$(dirname "$0")/.."
. .ci/lib.sh
need_apt /usr/lib/wine/wine64 wine wine64
need_apt x86_64-w64-mingw32-dlltool binutils-mingw-w64-x86-64
.ci/wine/prefix.sh >/dev/null
go mod download
export PATH=$PWD/.ci/bin:$PATH GOOS=windows GOARCH=amd64
# Examples are not run here: several open a second listener on a shared
# port, which Windows allows and Wine refuses once the first one listens
# (it applies the Linux rules under it). They are compiled, and run natively.
set -- -run '^(Test|Fuzz)' "$@"
# A wineserver left running outside the namespace would own the sockets.
WINEPREFIX=$(.ci/wine/prefix.sh) "$(dirname "$(.ci/wine/wine64-path.sh)")/wineserver" -w 2>/dev/null || true
if unshare --net --map-root-user true 2>/dev/null; then
	# lo carries multicast there, for the Winsock multicast test.
	exec unshare --net --map-root-user -- bash -c 'ip link set lo up multicast on && ip route add 224.0.0.0/4 dev lo && SOCKETTEST_PRIVATE_NET=1 exec go test "$@"' go-test ./... "$@"
fi
echo "no private network namespace here: tests that bind the wildcard address skip" >&2
exec go test ./... "$@"
