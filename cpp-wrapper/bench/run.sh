#!/usr/bin/env bash
# The C++ wrapper's overhead benchmark (see wrapper_overhead.cpp):
#   cpp-wrapper/bench/run.sh [--reps N] [--secs S]   wall time, interleaved reps (21 x 0.1 s)
#   cpp-wrapper/bench/run.sh --instructions [N]      instructions per operation,
#                                                   under callgrind (default N 200000)
# Builds libphoton (cargo build --release) and compiles wrapper_overhead.cpp
# with $CXX (default g++) -O2 against it. PHOTON_ENGINE and BENCH_CPU are
# passed through (the instruction count runs under epoll: valgrind does not
# know io_uring).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
(cd "$root" && cargo build --release --lib >&2)
out="$root/target/release/cpp-bench"
mkdir -p "$out"
"${CXX:-g++}" -std=c++14 -O2 -Wall -Wextra -Werror -I"$root/include" -I"$root/cpp-wrapper" \
    "$here/wrapper_overhead.cpp" -o "$out/wrapper_overhead" \
    -L"$root/target/release" -Wl,-rpath,"$root/target/release" -lphoton -pthread

if [[ "${1:-}" != "--instructions" ]]; then
    exec "$out/wrapper_overhead" "$@"
fi

n=${2:-200000}
command -v valgrind >/dev/null || { echo "ERROR: valgrind not found" >&2; exit 1; }
dumps=$(mktemp -d)
trap 'rm -rf "$dumps"' EXIT
PHOTON_ENGINE=epoll valgrind --tool=callgrind --callgrind-out-file="$dumps/cg.%p" \
    "$out/wrapper_overhead" --instructions "$n" >"$dumps/stdout" 2>"$dumps/stderr" || {
    echo "ERROR: the callgrind run failed:" >&2
    cat "$dumps/stderr" >&2
    exit 1
}
echo "C++ wrapper overhead in instructions (callgrind, $n units per row, engine epoll, $("${CXX:-g++}" --version | head -1))"
# Dumps .1 .. .K are the rows in the order the program printed them.
k=0
baseline=""
while read -r tag ops name; do
    [[ "$tag" == INSTR ]] || continue
    k=$((k + 1))
    file=$(ls "$dumps"/cg.*."$k" 2>/dev/null | head -1)
    [[ -n "$file" ]] || { echo "ERROR: no callgrind dump $k" >&2; exit 1; }
    ir=$(awk '/^(summary|totals):/ { print $2; exit }' "$file")
    [[ -n "$ir" ]] || { echo "ERROR: no count in $file" >&2; exit 1; }
    per=$(awk -v ir="$ir" -v ops="$ops" 'BEGIN { printf "%.2f", ir / ops }')
    case "$name" in
        "C API"*) baseline=$per; ratio="(baseline)" ;;
        *) ratio=$(awk -v a="$per" -v b="$baseline" 'BEGIN { printf "%+.2f instr (%.3f)", a - b, a / b }') ;;
    esac
    printf '  %-44s %10s instr/op   %s\n' "$name" "$per" "$ratio"
done <"$dumps/stdout"
[[ $k -gt 0 ]] || { echo "ERROR: no rows" >&2; cat "$dumps/stdout" "$dumps/stderr" >&2; exit 1; }
