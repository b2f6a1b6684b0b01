#!/usr/bin/env bash
# Instructions per operation of the second-pass hot paths (hot_paths.cpp)
# against the C API, under callgrind:  cpp-wrapper/bench/hot_paths.sh [N]
# Builds libphoton (cargo build --release) and compiles hot_paths.cpp with
# $CXX (default g++) -O2. Each C++ row is compared with the C API row above it.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
(cd "$root" && cargo build --release --lib >&2)
out="$root/target/release/cpp-bench"
mkdir -p "$out"
"${CXX:-g++}" -std=c++14 -O2 -Wall -Wextra -Werror -I"$root/include" -I"$root/cpp-wrapper" \
    "$here/hot_paths.cpp" -o "$out/hot_paths" \
    -L"$root/target/release" -Wl,-rpath,"$root/target/release" -lphoton -pthread
n=${1:-100000}
command -v valgrind >/dev/null || { echo "ERROR: valgrind not found" >&2; exit 1; }
dumps=$(mktemp -d)
trap 'rm -rf "$dumps"' EXIT
PHOTON_ENGINE=epoll valgrind --tool=callgrind --callgrind-out-file="$dumps/cg.%p" \
    "$out/hot_paths" "$n" >"$dumps/stdout" 2>"$dumps/stderr" || {
    echo "ERROR: the callgrind run failed:" >&2
    cat "$dumps/stderr" >&2
    exit 1
}
echo "hot paths in instructions (callgrind, $n units per row, engine epoll, $("${CXX:-g++}" --version | head -1))"
k=0
baseline=""
while read -r tag ops name; do
    [[ "$tag" == INSTR ]] || continue
    k=$((k + 1))
    file=$(ls "$dumps"/cg.*."$k" 2>/dev/null | head -1)
    [[ -n "$file" ]] || { echo "ERROR: no callgrind dump $k" >&2; exit 1; }
    ir=$(awk '/^(summary|totals):/ { print $2; exit }' "$file")
    per=$(awk -v ir="$ir" -v ops="$ops" 'BEGIN { printf "%.2f", ir / ops }')
    case "$name" in
        "C API"*) baseline=$per; ratio="(baseline)" ;;
        *) ratio=$(awk -v a="$per" -v b="$baseline" 'BEGIN { printf "%+.2f instr (%.3f)", a - b, a / b }') ;;
    esac
    printf '  %-42s %10s instr/op   %s\n' "$name" "$per" "$ratio"
done <"$dumps/stdout"
[[ $k -gt 0 ]] || { echo "ERROR: no rows" >&2; cat "$dumps/stdout" "$dumps/stderr" >&2; exit 1; }
