#!/usr/bin/env bash
# The whole test suite as a user without privilege (uid 65534, no
# capabilities), as most servers run: the test binaries are built here (as
# root), then run with setpriv in a copy of the tree that user may read, with
# the modules vendored (the root module's and examples/quic's) for
# cmd/reuse's README test, which compiles the snippets' imports. What needs a
# capability skips, naming it. Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
	echo "skipped: not root, so the suite above already ran as an ordinary user (uid $(id -u))"
	exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
chmod 755 "$tmp"
mkdir -p "$tmp/src" "$tmp/bin" "$tmp/home"
tar --exclude=./.git -cf - . | tar -xf - -C "$tmp/src"
(cd "$tmp/src" && go mod vendor && cd examples/quic && go mod vendor)
pkgs=$(go list ./...)
for pkg in $pkgs; do
	go test -c -o "$tmp/bin/$(echo "$pkg" | tr / _).test" "$pkg"
done
chmod -R a+rX "$tmp/src" "$tmp/bin"
chown 65534:65534 "$tmp/home"
failed=0
for pkg in $pkgs; do
	bin=$tmp/bin/$(echo "$pkg" | tr / _).test
	[ -e "$bin" ] || continue # a package without tests
	dir=$tmp/src/${pkg#github.com/sockreuse/reuse}
	start=$SECONDS
	if out=$(cd "$dir" && setpriv --reuid=65534 --regid=65534 --clear-groups --inh-caps=-all --bounding-set=-all \
		env HOME="$tmp/home" GOCACHE="$tmp/home/cache" GOFLAGS=-mod=vendor GOTOOLCHAIN=local "$bin" -test.count=1 -test.timeout=15m 2>&1); then
		if [ "$out" != PASS ]; then
			printf 'stray output from %s:\n%s\n' "$pkg" "$out"
			failed=1
		fi
		printf 'ok  \t%s\t%ds\n' "$pkg" $((SECONDS - start))
	else
		printf '%s\nFAIL\t%s\t%ds\n' "$out" "$pkg" $((SECONDS - start))
		failed=1
	fi
done
exit $failed
