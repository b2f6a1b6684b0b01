#!/usr/bin/env bash
# Runs every test: the tool probe (scripts/probe.sh), cargo fmt and clippy,
# cargo build and test (release), the ABI check against the baseline
# (scripts/abi-check.sh), the C tests again under AddressSanitizer+UBSan (the
# io_uring engine) and under Valgrind (the epoll engine), then the CMake build
# of the C examples, an install into a temporary prefix, and a consumer
# project built against that install (find_package and pkg-config).
# Exits non-zero on the first failure.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$(pwd)

scripts/setup.sh

if ! command -v cargo >/dev/null && [[ -x "$HOME/.cargo/bin/cargo" ]]; then
    export PATH="$HOME/.cargo/bin:$PATH"
fi

step() { echo; echo "== $*"; }

step "tools the tests use (scripts/probe.sh)"
scripts/probe.sh

step "cargo fmt --check"
cargo fmt --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets -- -D warnings

step "cargo build --release"
cargo build --release

step "cargo test --release"
cargo test --release

step "ABI against the baseline abi/libphoton.so.0.abi (scripts/abi-check.sh)"
scripts/abi-check.sh

step "C tests under AddressSanitizer + UndefinedBehaviorSanitizer (io_uring engine; clang; leaks and stack-use-after-return checked)"
PHOTON_TEST_SANITIZE=asan cargo test --release --test c_api

step "C tests under Valgrind memcheck (epoll engine; definite leaks checked)"
PHOTON_TEST_SANITIZE=valgrind cargo test --release --test c_api

step "cmake build (build/)"
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j "$(nproc)"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

step "cmake install into a temporary prefix"
cmake --install build --prefix "$tmp/prefix" >/dev/null
for f in lib/libphoton.so.0 lib/libphoton.so lib/libphoton.a lib/libphoton_preload.so include/photon.h \
         lib/pkgconfig/photon.pc lib/cmake/photon/photonConfig.cmake \
         lib/cmake/photon/photonConfigVersion.cmake \
         lib/libphoton_st.so.0 lib/libst.so include/st.h lib/pkgconfig/st.pc; do
    if [[ ! -e "$tmp/prefix/$f" ]]; then
        echo "FAIL: install is missing $f" >&2
        exit 1
    fi
done

step "the installed libphoton.so.0 carries its symbol versions"
# Output captured first: with pipefail, grep -q closing the pipe early can
# kill readelf with SIGPIPE and fail the test by chance.
syms=$(readelf --dyn-syms -W "$tmp/prefix/lib/libphoton.so.0")
if grep -q ' photon_init@@PHOTON_0\.1$' <<<"$syms"; then
    echo "libphoton.so.0: photon_init@@PHOTON_0.1: ok"
else
    echo "FAIL: the installed libphoton.so.0 lacks symbol versions (build.rs links it with abi/libphoton.map)" >&2
    exit 1
fi

step "the installed shim finds the installed libphoton.so.0 (\$ORIGIN)"
deps=$(ldd "$tmp/prefix/lib/libphoton_preload.so")
if grep -q "libphoton.so.0 => $tmp/prefix/lib/" <<<"$deps"; then
    echo "libphoton_preload.so: ok"
else
    ldd "$tmp/prefix/lib/libphoton_preload.so" >&2
    echo "FAIL: the installed libphoton_preload.so does not load the installed libphoton.so.0" >&2
    exit 1
fi

step "consumer project against the install"
"$root/cmake/consumer-test/run.sh" "$tmp/prefix" "$tmp/consumer"

step "C examples (default engine, then PHOTON_ENGINE=epoll)"
build/sleep_sort >/dev/null
echo "sleep_sort: ok"
PHOTON_ENGINE=epoll build/sleep_sort >/dev/null
echo "sleep_sort (PHOTON_ENGINE=epoll): ok"

echo
echo "test.sh: all passed"
