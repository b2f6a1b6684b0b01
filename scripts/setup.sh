#!/usr/bin/env bash
# Installs the Debian packages that building and testing libphoton need, when
# they are missing. Idempotent: does nothing (and touches no package list)
# when everything is already installed. The Rust toolchain (cargo) is expected
# to be on the machine already (its rustfmt and clippy are added through rustup
# when missing).
set -euo pipefail

packages=(
    cmake            # the C/C++ build, install and consumer test
    gcc g++ clang    # C examples and tests, C++ wrapper
    binutils         # ld.bfd: build.rs links the libraries with their version scripts; readelf
    libclang-rt-14-dev  # clang's sanitizer runtimes (ASan+UBSan); a recommend of clang, so not pulled in
    pkg-config       # consumer test of photon.pc
    libboost-context-dev  # the context-switch comparison in bench/
    redis-server redis-tools libhiredis-dev  # the preload shim's tests and benchmark
    python3          # the preload shim's pass-through test; scripts/abi-check.sh
    valgrind         # the C tests under memcheck (clang above: under ASan)
    librocksdb-dev   # RocksDB on photon threads (tests)
    libssl-dev       # OpenSSL's per-thread error queue (tests); photon_ssl.h (TLS)
    openssl curl     # TLS peers of tests/tls.rs (openssl s_server/s_client, curl --cacert)
    abigail-tools    # abidw/abidiff: the ABI baseline check (scripts/abi-check.sh)
    libst-dev        # State Threads 1.9: the side-by-side run of tests/st.rs, bench/st
    iproute2 util-linux  # ip, unshare: the userspace-stack tests' namespaces and TAP devices (tests/unet.rs)
    libdpdk-dev      # DPDK 22.11: the userspace stack's dpdk: device (build.rs compiles libphoton_dpdk.so when present)
    fio              # bench files: the io_uring ceiling libphoton's file reads are measured against
)

# rustfmt and clippy: test.sh runs cargo fmt --check and cargo clippy. A
# rustup toolchain installed with the minimal profile lacks them.
if ! command -v cargo >/dev/null && [[ -x "$HOME/.cargo/bin/cargo" ]]; then
    export PATH="$HOME/.cargo/bin:$PATH"
fi
if command -v rustup >/dev/null && ! { cargo fmt --version && cargo clippy --version; } >/dev/null 2>&1; then
    echo "setup: rustup component add rustfmt clippy"
    rustup component add rustfmt clippy
fi

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
