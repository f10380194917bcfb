#!/usr/bin/env bash
# Runs the Linux tests under qemu-user for other architectures, on this
# machine's kernel: bash .ci/qemu.sh ARCH [go test flags]
# ARCH is a GOARCH with a wrapper in .ci/bin: arm64, s390x, riscv64, ppc64le,
# mips64. It installs qemu-user when missing (Debian).
set -euo pipefail
cd "$(dirname "$0")/.."
. .ci/lib.sh
arch=$1
shift
[ -x ".ci/bin/go_linux_${arch}_exec" ] || { echo "no .ci/bin/go_linux_${arch}_exec" >&2; exit 2; }
need_apt qemu-aarch64 qemu-user
# qemu-user does not translate SO_ATTACH_REUSEPORT_CBPF nor SO_TIMESTAMPNS (ENOPROTOOPT): the
# handover, steering and flow examples, which stop with log.Fatal on it, run natively instead;
# the handover tests skip there themselves, naming qemu.
PATH=$PWD/.ci/bin:$PATH GOOS=linux GOARCH=$arch CGO_ENABLED=0 exec go test ./... \
	-skip '^Example(Handover|Handover_steering|Steer|Steering|QUICSteering|Unsteer|ListenFlows|FlowListener|Config_ListenFlows)$' "$@"
