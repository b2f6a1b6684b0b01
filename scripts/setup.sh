#!/usr/bin/env bash
# Installs the Debian packages that building and testing libphoton need, when
# they are missing. Idempotent: does nothing (and touches no package list)
# when everything is already installed. The Rust toolchain (cargo) is expected
# to be on the machine already.
set -euo pipefail

packages=(
    cmake            # the C/C++ build, install and consumer test
    gcc g++ clang    # C examples and tests, C++ wrapper
    pkg-config       # consumer test of photon.pc
    libboost-context-dev  # the context-switch comparison in bench/
    redis-server redis-tools libhiredis-dev  # the preload shim's tests and benchmark
    librocksdb-dev libssl-dev  # the shim's RocksDB and OpenSSL tests, the RocksDB benchmark
    python3          # the preload shim's pass-through test
    valgrind         # the C tests under memcheck (clang above: under ASan)
)

missing=()
for pkg in "${packages[@]}"; do
    status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
    if [[ "$status" != "install ok installed" ]]; then
        missing+=("$pkg")
    fi
done

if ((${#missing[@]} == 0)); then
    exit 0
fi

echo "setup: installing ${missing[*]}"
sudo=()
if ((EUID != 0)); then
    sudo=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
