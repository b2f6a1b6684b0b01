#!/usr/bin/env bash
# Probes every tool the tests invoke, one line each, and stops at the first
# that is missing or broken, naming what to install. scripts/test.sh runs it
# right after scripts/setup.sh, so a missing piece fails in the first seconds
# instead of minutes into the suite. Run it alone: scripts/probe.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if ! command -v cargo >/dev/null && [[ -x "$HOME/.cargo/bin/cargo" ]]; then
    export PATH="$HOME/.cargo/bin:$PATH"
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# probe WHAT FIX COMMAND...: runs COMMAND quietly; on failure prints its output
# and the fix, and exits.
probe() {
    local what=$1 fix=$2
    shift 2
    if "$@" >"$tmp/out" 2>&1; then
        echo "probe: ok   $what"
    else
        echo "probe: FAIL $what" >&2
        sed 's/^/    /' "$tmp/out" | tail -n 15 >&2
        echo "probe: fix: $fix" >&2
        exit 1
    fi
}

# A tiny C program, and one in C++ for each standard the C++ tests use.
cat >"$tmp/t.c" <<'EOF'
#include <stdio.h>
#include <stdlib.h>
int main(void) { char *p = malloc(8); p[0] = 'k'; printf("%c\n", p[0]); free(p); return 0; }
EOF
cat >"$tmp/t.cpp" <<'EOF'
#include <memory>
#include <string>
int main() { auto s = std::unique_ptr<std::string>(new std::string("ok")); return s->size() == 2 ? 0 : 1; }
EOF

# compile_run OUT COMPILER ARGS...: compiles (ARGS include the sources) to OUT and runs it.
compile_run() {
    local out=$1
    shift
    "$@" -o "$out" && "$out"
}

apt="scripts/setup.sh installs it; by hand: apt-get install"

probe "cargo" "install a Rust toolchain (https://rustup.rs), 1.88 or later" cargo --version
probe "cargo fmt" "rustup component add rustfmt" cargo fmt --version
probe "cargo clippy" "rustup component add clippy" cargo clippy --version
probe "cc (gcc), C11" "$apt gcc" \
    compile_run "$tmp/gcc" gcc -std=c11 -Wall -Wextra -Werror "$tmp/t.c"
probe "clang -fsanitize=address,undefined" "$apt clang libclang-rt-14-dev (the sanitizer runtimes)" \
    compile_run "$tmp/asan" clang -std=c11 -g -fsanitize=address,undefined -fno-sanitize-recover=all "$tmp/t.c"
for std in c++11 c++14 c++17; do
    probe "g++ -std=$std" "$apt g++" compile_run "$tmp/gxx-$std" g++ "-std=$std" -Wall -Wextra -Werror "$tmp/t.cpp"
done
probe "clang++ -std=c++14" "$apt clang" compile_run "$tmp/clangxx14" clang++ -std=c++14 -Wall -Werror "$tmp/t.cpp"
probe "clang++ -std=c++17" "$apt clang" compile_run "$tmp/clangxx17" clang++ -std=c++17 -Wall -Werror "$tmp/t.cpp"
probe "valgrind" "$apt valgrind" valgrind --version
probe "valgrind run" "$apt valgrind" valgrind -q --error-exitcode=1 "$tmp/gcc"
probe "cmake" "$apt cmake" cmake --version
probe "pkg-config" "$apt pkg-config" pkg-config --version
probe "readelf" "$apt binutils" readelf --version
probe "ld.bfd (links the libraries with their version scripts)" "$apt binutils" ld.bfd --version
probe "redis-server" "$apt redis-server" redis-server --version
probe "redis-benchmark" "$apt redis-tools" redis-benchmark --version
probe "python3" "$apt python3" python3 -c 'pass'
probe "fio (bench files)" "$apt fio" fio --version
cat >"$tmp/hiredis.c" <<'EOF'
#include <hiredis/hiredis.h>
int main(void) { redisReply *r = NULL; (void)r; return HIREDIS_MAJOR >= 0 ? 0 : 1; }
EOF
probe "hiredis headers and library" "$apt libhiredis-dev" \
    compile_run "$tmp/hiredis" gcc -Wall -Wextra -Werror "$tmp/hiredis.c" -lhiredis
cat >"$tmp/rocksdb.cpp" <<'EOF'
#include <rocksdb/db.h>
int main() { rocksdb::Options o; o.create_if_missing = true; return o.create_if_missing ? 0 : 1; }
EOF
probe "RocksDB headers and library" "$apt librocksdb-dev" \
    compile_run "$tmp/rocksdb" g++ -std=c++17 "$tmp/rocksdb.cpp" -lrocksdb -lpthread
cat >"$tmp/ssl.c" <<'EOF'
#include <openssl/err.h>
#include <openssl/ssl.h>
int main(void) { OPENSSL_init_ssl(0, NULL); ERR_clear_error(); return ERR_peek_error() == 0 ? 0 : 1; }
EOF
probe "OpenSSL headers and library" "$apt libssl-dev" \
    compile_run "$tmp/ssl" gcc -Wall -Wextra -Werror "$tmp/ssl.c" -lssl -lcrypto
cat >"$tmp/st.c" <<'EOF'
#include </usr/include/st.h>
int main(void) { return st_init() == 0 && st_usleep(1) == 0 ? 0 : 1; }
EOF
probe "State Threads (Debian's, for the side-by-side tests)" "$apt libst-dev" \
    compile_run "$tmp/st" gcc -Wall -Wextra -Werror "$tmp/st.c" /usr/lib/libst.so
probe "openssl CLI (TLS peer)" "$apt openssl" openssl version
probe "curl with TLS (TLS peer)" "$apt curl" sh -c 'curl --version | grep -q "SSL"'
probe "abidw" "$apt abigail-tools" abidw --version
probe "abidiff" "$apt abigail-tools" abidiff --version
probe "ip (iproute2), unshare" "$apt iproute2 util-linux" sh -c 'ip -V && unshare --version'
probe "libdpdk (pkg-config; the userspace stack's dpdk: device)" "$apt libdpdk-dev" pkg-config --exists libdpdk
echo "probe: all tools present"
