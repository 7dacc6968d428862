#!/bin/bash
# Installs the Debian packages that building and testing pairkey need.
# Idempotent: installs only what is missing, so a second run is quick.
set -euo pipefail

packages=(
    # Building the patched Open vSwitch.
    openvswitch-source build-essential autoconf automake libtool pkg-config
    libsodium-dev libssl-dev libcap-ng-dev libunbound-dev libxdp-dev
    libbpf-dev libnuma-dev python3
    # The key server.
    libsqlite3-dev sqlite3
    # Unit tests.
    libcmocka-dev python3-cryptography
    # Integration tests, demo and benchmarks.
    python3-pytest python3-scapy tcpdump iproute2 ethtool iperf3
    iputils-ping procps nftables
)

missing=()
for p in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null \
            | grep -q "install ok installed"; then
        missing+=("$p")
    fi
done

if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" != 0 ]; then
        echo "install-deps: missing packages (run as root): ${missing[*]}" >&2
        exit 1
    fi
    echo "install-deps: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null
    apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
fi
