#!/usr/bin/env bash
# Install an emulated aarch64 Python userland for the ARM64 runtime tests.
#
# What it installs, all under $RNNEDGE_ARM64_CACHE (default /var/cache/rnnedge-arm64):
#   root/     Debian bookworm's arm64 python3.11 and the libraries it links, unpacked with
#             `dpkg -x` (no arm64 package is installed into the host system)
#   site/     aarch64 wheels of onnxruntime, numpy, click and PyYAML (cp311, manylinux),
#             installed with `pip --target` for use on PYTHONPATH
#   cpuinfo   an ARM-style /proc/cpuinfo (four Cortex-A72 cores), which tests/arm64/run.sh
#             bind-mounts over /proc/cpuinfo, because onnxruntime's CPU detection crashes
#             under qemu-user when it reads the host's x86 text
#   ready     a stamp holding the recipe below; when it matches, the script exits at once
# and qemu-user-static from apt, if qemu-aarch64-static is not on PATH.
#
# Needs root and access to Debian's apt repositories and PyPI. Every network step runs
# under `timeout`, so a stalled mirror fails the step instead of hanging CI. Exits 0
# with a message and no stamp when it cannot install (not root, no apt-get), and the
# ARM64 tests then skip with that reason.
set -euo pipefail

CACHE="${RNNEDGE_ARM64_CACHE:-/var/cache/rnnedge-arm64}"
ORT_VERSION="${RNNEDGE_ARM64_ORT:-1.32.0}"
NUMPY_VERSION="${RNNEDGE_ARM64_NUMPY:-2.4.6}"
STEP_TIMEOUT="${RNNEDGE_ARM64_STEP_TIMEOUT:-600}"
# Debian packages of the arm64 userland: the interpreter, its standard library and the
# shared libraries that the interpreter and the wheels load.
DEBS=(
    libc6 libgcc-s1 libstdc++6 zlib1g libexpat1 libffi8 libssl3 libbz2-1.0 liblzma5
    libuuid1 libcrypt1 libsqlite3-0 libncursesw6 libtinfo6 libreadline8 libnsl2 libtirpc3
    libdb5.3 libgdbm6 libzstd1
    python3.11-minimal libpython3.11-minimal libpython3.11-stdlib python3.11
)
# Architecture-independent packages the interpreter reads at run time.
DEBS_ALL=(media-types)
RECIPE="bookworm python3.11 onnxruntime==$ORT_VERSION numpy==$NUMPY_VERSION click pyyaml"

log() { echo "setup-arm64: $*" >&2; }

if [[ -f "$CACHE/ready" && "$(cat "$CACHE/ready")" == "$RECIPE" ]] \
    && command -v qemu-aarch64-static >/dev/null; then
    log "cached in $CACHE"
    exit 0
fi
if [[ "$(id -u)" != 0 ]] || ! command -v apt-get >/dev/null; then
    log "skipped: needs root and apt-get; the ARM64 tests will be skipped"
    exit 0
fi

export DEBIAN_FRONTEND=noninteractive
apt_updated=0
apt_update() {
    if [[ $apt_updated == 0 ]]; then
        timeout "$STEP_TIMEOUT" apt-get update -qq
        apt_updated=1
    fi
}

if ! command -v qemu-aarch64-static >/dev/null; then
    log "installing qemu-user-static"
    apt_update
    timeout "$STEP_TIMEOUT" apt-get install -y -qq --no-install-recommends qemu-user-static \
        >/dev/null
fi

rm -rf "$CACHE/ready" "$CACHE/root" "$CACHE/site"
mkdir -p "$CACHE/debs" "$CACHE/root" "$CACHE/site"

if ! dpkg --print-foreign-architectures | grep -qx arm64; then
    dpkg --add-architecture arm64
    apt_updated=0
fi
log "downloading the arm64 userland"
apt_update
(cd "$CACHE/debs" && timeout "$STEP_TIMEOUT" apt-get download -qq -o APT::Sandbox::User=root "${DEBS[@]/%/:arm64}" "${DEBS_ALL[@]}")
for deb in "$CACHE"/debs/*_arm64.deb "$CACHE"/debs/*_all.deb; do
    [[ -e "$deb" ]] && dpkg -x "$deb" "$CACHE/root"
done
test -x "$CACHE/root/usr/bin/python3.11"

log "installing the aarch64 wheels"
timeout "$STEP_TIMEOUT" python3 -m pip install --quiet --disable-pip-version-check \
    --no-compile --target "$CACHE/site" --only-binary=:all: --implementation cp \
    --python-version 3.11 --platform manylinux_2_28_aarch64 \
    --platform manylinux_2_17_aarch64 --platform manylinux2014_aarch64 \
    "onnxruntime==$ORT_VERSION" "numpy==$NUMPY_VERSION" click pyyaml

{
    for core in 0 1 2 3; do
        printf 'processor\t: %s\nBogoMIPS\t: 108.00\n' "$core"
        printf 'Features\t: fp asimd evtstrm crc32 cpuid\n'
        printf 'CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x0\n'
        printf 'CPU part\t: 0xd08\nCPU revision\t: 3\n\n'
    done
} >"$CACHE/cpuinfo"

echo "$RECIPE" >"$CACHE/ready"
log "ready in $CACHE"
