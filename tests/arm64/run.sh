#!/usr/bin/env bash
# Run a Python command inside the emulated aarch64 userland, with rnnedge importable.
#
#   tests/arm64/run.sh [PYTHON ARGS...]
#
# Examples:
#   tests/arm64/run.sh -c 'import platform; print(platform.machine())'   # aarch64
#   tests/arm64/run.sh -m rnnedge run model.onnx -i x.npy --provider arm
#
# The arguments go to Debian's arm64 python3.11, run by qemu-aarch64-static with a
# Cortex-A72 CPU model (the Raspberry Pi 4's core, QEMU_CPU=cortex-a72), inside a private
# mount namespace (`unshare -m`) where an ARM-style cpuinfo is bind-mounted over
# /proc/cpuinfo: onnxruntime's CPU detection crashes under qemu-user when it reads the
# host's x86 text. PYTHONPATH contains the repository root (this checkout's rnnedge), the
# aarch64 wheels and any PYTHONPATH the caller set. The working directory, stdin, stdout
# and the exit code pass through.
#
# Needs root (for unshare and mount) and the userland that .ci/setup-arm64.sh installs
# under $RNNEDGE_ARM64_CACHE (default /var/cache/rnnedge-arm64). Exits with 77 and a
# one-line reason on stderr where either is missing.
# Emulated time says nothing about a board's latency; use it for correctness only.
set -euo pipefail

CACHE="${RNNEDGE_ARM64_CACHE:-/var/cache/rnnedge-arm64}"
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"

if [[ "$(id -u)" != 0 ]]; then
    echo "arm64 runner: needs root for unshare -m and the cpuinfo bind mount" >&2
    exit 77
fi
if [[ ! -f "$CACHE/ready" ]] || ! command -v qemu-aarch64-static >/dev/null; then
    echo "arm64 runner: no aarch64 userland in $CACHE; run .ci/setup-arm64.sh first" >&2
    exit 77
fi

export QEMU_CPU=cortex-a72
export PYTHONPATH="$REPO:$CACHE/site${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONDONTWRITEBYTECODE=1
exec unshare -m -- /bin/bash -c '
    set -e
    mount --bind "$1/cpuinfo" /proc/cpuinfo
    root="$1"/root
    shift
    exec qemu-aarch64-static -L "$root" "$root/usr/bin/python3.11" "$@"
' arm64-runner "$CACHE" "$@"
