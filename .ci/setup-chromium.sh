#!/usr/bin/env bash
# Install Debian's chromium for the headless rendering test of the HTML report.
# Skips the install when a chromium binary is already on PATH; without root or apt-get it
# prints why and exits 0, and the test then skips with that reason.
set -euo pipefail

if command -v chromium >/dev/null 2>&1; then
    echo "setup-chromium: $(command -v chromium) already installed"
    exit 0
fi
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "setup-chromium: needs root and apt-get; the HTML rendering test will be skipped"
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
echo "setup-chromium: installed $(chromium --version 2>/dev/null || echo chromium)"
