#!/usr/bin/env bash
# User-space instructions per request of the State Threads echo server
# (bench/st/st_echo_server.c) on Debian's libst and on libphoton_st (epoll;
# Valgrind cannot follow io_uring), counted by callgrind over the same
# fixed ping-pong (bench/st/pingpong_client.c: CONNS connections x N round
# trips of 512 B, after a warm-up of CONNS x 200 that is not counted).
# Repeatable where wall-clock figures on a shared machine are not; the
# kernel's share is not in it (count syscalls for that: see bench/README.md).
#
#   cargo build --release && bench/st/callgrind.sh [N] [CONNS] [TOP]
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
n=${1:-1000} conns=${2:-64} top=${3:-15}
lib="$root/target/release"
out="$root/target/st-bench"
mkdir -p "$out"
[ -e "$lib/libphoton_st.so.0" ] || { echo "run cargo build --release first" >&2; exit 1; }
command -v valgrind > /dev/null || { echo "valgrind is missing" >&2; exit 1; }
cc=${CC:-cc}
flags=(-O2 -g -Wall -Wextra -Werror)
"$cc" "${flags[@]}" -I "$root/include" "$root/bench/st/st_echo_server.c" -o "$out/st_echo_photon" \
    -L "$lib" -Wl,-rpath,"$lib" -lst
"$cc" "${flags[@]}" "$root/bench/st/st_echo_server.c" -o "$out/st_echo_debian" /usr/lib/libst.so
"$cc" "${flags[@]}" "$root/bench/st/pingpong_client.c" -o "$out/pingpong_client"
# Valgrind keeps fds near the hard limit for itself; Debian's st_init raises
# the soft limit to the hard one, which Valgrind refuses (EPERM).
ulimit -n 1024

count() { # NAME ENV... -- server command: prints instructions per request
    local name=$1; shift
    local envs=()
    while [ "$1" != -- ]; do envs+=("$1"); shift; done
    shift
    rm -f "$out/cg-$name".* "$out/cg-$name.out"
    env "${envs[@]}" valgrind --tool=callgrind --callgrind-out-file="$out/cg-$name.%p" "$@" \
        > "$out/cg-$name.out" 2> "$out/cg-$name.err" &
    local vpid=$!
    for _ in $(seq 300); do grep -qs ready "$out/cg-$name.out" && break; sleep 0.1; done
    local port
    port=$(awk '/ready/ {print $2}' "$out/cg-$name.out")
    [ -n "$port" ] || { echo "$name did not start" >&2; cat "$out/cg-$name.err" >&2; kill "$vpid"; exit 1; }
    "$out/pingpong_client" "$port" "$conns" 200
    callgrind_control -z "$vpid" > /dev/null 2>&1
    "$out/pingpong_client" "$port" "$conns" "$n"
    callgrind_control -d "$vpid" > /dev/null 2>&1
    kill "$vpid"; wait "$vpid" 2> /dev/null || true
    local f
    f=$(ls -t "$out/cg-$name".*.1 | head -1)
    python3 - "$f" $((conns * n)) "$name" "$top" <<'PY'
import collections, re, subprocess, sys
path, reqs, name, top = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
text = subprocess.run(["callgrind_annotate", "--threshold=100", "--auto=no", "--inclusive=no", path],
                      capture_output=True, text=True, check=True).stdout
total, by = 0, collections.Counter()
for line in text.splitlines():
    m = re.match(r"\s*([\d,]+) \([ \d.]+%\)\s+(.*)$", line)
    if not m:
        continue
    ir, what = int(m.group(1).replace(",", "")), m.group(2)
    if "PROGRAM TOTALS" in what:
        total = ir
        continue
    fn = re.sub(r"\s*\[.*\]$", "", what)
    fn = re.sub(r"'\d+$", "", fn.split(":", 1)[1] if ":" in fn else fn)
    by[fn] += ir  # inlined code is reported per source file: summed per function
print(f"{name}: {total / reqs:.0f} instructions/request (user space, {reqs} requests)")
# Zeroing the counts mid-run leaves the frames then on the stack (main and
# below) holding everything: not functions' own costs.
own = [(fn, ir) for fn, ir in by.most_common() if ir < 0.9 * total]
for fn, ir in own[:top]:
    print(f"  {ir / reqs:8.1f}  {fn}")
PY
}

count debian X=1 -- "$out/st_echo_debian" 0 alt
count photon-epoll PHOTON_ENGINE=epoll -- "$out/st_echo_photon" 0
