#!/usr/bin/env bash
# Prints the path of the 64-bit Wine loader (Debian's wine64 package puts it
# in /usr/lib/wine; other systems have wine64 or a wine that runs 64-bit code).
for w in /usr/lib/wine/wine64 "$(command -v wine64 || true)" "$(command -v wine || true)"; do
	if [ -n "$w" ] && [ -x "$w" ]; then echo "$w"; exit 0; fi
done
echo "no 64-bit Wine: run .ci/wine.sh, or apt-get install wine wine64" >&2
exit 1
