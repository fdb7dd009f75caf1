#!/usr/bin/env bash
# Installs the OpenSSH server that the remote-profiling tests start on 127.0.0.1 with
# throwaway keys. The tests start their own sshd and skip where it is missing; nothing
# here enables a system-wide SSH service.
set -euo pipefail

if [ ! -x /usr/sbin/sshd ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            openssh-server openssh-client >/dev/null
    else
        echo "setup-ssh: sshd is missing and cannot be installed here; the remote tests will skip" >&2
        exit 0
    fi
fi
# sshd started as root checks for its privilege separation directory; Debian's package
# creates it only when its service starts.
if [ "$(id -u)" = 0 ]; then
    mkdir -p /run/sshd
    chmod 0755 /run/sshd
fi
