# Shared by the scripts of .ci: where they keep what they build, and how they
# install Debian packages. Source it; it changes nothing by itself.

# ci_cache is where the Wine prefix and the wazero binary live between runs.
ci_cache=${REUSE_CI_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/reuse-ci}

# need_apt COMMAND PACKAGE... installs the packages with apt-get unless
# COMMAND is already there (an absolute path, or a name on PATH).
need_apt() {
	local cmd=$1
	shift
	if [ -x "$cmd" ] || command -v "$cmd" >/dev/null 2>&1; then
		return 0
	fi
	local sudo=
	[ "$(id -u)" = 0 ] || sudo=sudo
	echo "installing $*" >&2
	# apt's lists may be missing or stale on a fresh machine: update once per run.
	if [ -z "${REUSE_APT_UPDATED:-}" ]; then
		$sudo apt-get update -qq >&2
		export REUSE_APT_UPDATED=1
	fi
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$@" >&2
}
