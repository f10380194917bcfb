#!/usr/bin/env bash
# Prints the path of this project's own Wine prefix, creating it first if it
# is not there: a 64-bit prefix with no Mono or Gecko, and a forwarding
# bcryptprimitives.dll built from bcryptprimitives.def. Several callers may
# run it at once (go test runs test binaries in parallel): they take turns.
# It never touches the user's own WINEPREFIX.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../lib.sh"
prefix=${REUSE_WINEPREFIX:-$ci_cache/wine-prefix}
ready=$prefix/.reuse-ready
if [ ! -e "$ready" ]; then
	mkdir -p "$(dirname "$prefix")"
	exec 9>"$prefix.lock"
	flock 9
	if [ ! -e "$ready" ]; then
		wine=$("$here/wine64-path.sh")
		command -v x86_64-w64-mingw32-dlltool >/dev/null || { echo "x86_64-w64-mingw32-dlltool missing: run .ci/wine.sh, or apt-get install binutils-mingw-w64-x86-64" >&2; exit 1; }
		rm -rf "$prefix"
		mkdir -p "$prefix"
		export WINEPREFIX=$prefix WINEDEBUG=-all WINEDLLOVERRIDES='mscoree,mshtml=' DISPLAY=
		"$wine" wineboot --init >/dev/null 2>&1
		"$(dirname "$wine")/wineserver" -w 2>/dev/null || wineserver -w
		tmp=$(mktemp -d)
		x86_64-w64-mingw32-dlltool --def "$here/bcryptprimitives.def" --dllname bcryptprimitives.dll --output-exp "$tmp/b.exp"
		x86_64-w64-mingw32-ld --dll -e 0 --subsystem windows --no-insert-timestamp -o "$tmp/bcryptprimitives.dll" "$tmp/b.exp"
		cp "$tmp/bcryptprimitives.dll" "$prefix/drive_c/windows/system32/"
		rm -rf "$tmp"
		touch "$ready"
	fi
fi
echo "$prefix"
