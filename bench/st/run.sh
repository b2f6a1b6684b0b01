#!/usr/bin/env bash
# The State Threads echo benchmark: bench/st/st_echo_server.c (one
# st_thread per connection, st_read/st_write) built against libphoton_st
# and against Debian's State Threads 1.9 (libst-dev), driven by the same
# client (c-examples/echo_client.c, 64 connections x 512 B ping-pong).
# Server on CPU 0, client on CPU 1; the servers interleaved, REPS rounds
# of DURATION seconds; prints requests/s and the server's on-CPU ns per
# request (/proc/PID/task/*/schedstat; its user-mode part from
# /proc/PID/stat, in clock ticks) with medians, ranges and ratios.
#
#   cargo build --release && bench/st/run.sh [REPS] [DURATION] [CONNS] [SIZE]
#
# Run it under `flock /tmp/photon-bench.lock` on a shared machine.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
reps=${1:-5} duration=${2:-3} conns=${3:-64} size=${4:-512}
lib="$root/target/release"
out="$root/target/st-bench"
mkdir -p "$out"
[ -e "$lib/libphoton_st.so.0" ] || { echo "run cargo build --release first" >&2; exit 1; }
[ -e /usr/lib/libst.so ] && [ -e /usr/include/st.h ] || { echo "Debian's libst-dev is missing (scripts/setup.sh)" >&2; exit 1; }
cc=${CC:-cc}
flags=(-O2 -g -Wall -Wextra -Werror)
"$cc" "${flags[@]}" -I "$root/include" "$root/bench/st/st_echo_server.c" -o "$out/st_echo_photon" \
    -L "$lib" -Wl,-rpath,"$lib" -lst
"$cc" "${flags[@]}" "$root/bench/st/st_echo_server.c" -o "$out/st_echo_debian" /usr/lib/libst.so
"$cc" "${flags[@]}" -I "$root/include" "$root/c-examples/echo_client.c" -o "$out/echo_client" \
    -L "$lib" -Wl,-rpath,"$lib" -lphoton -lpthread

cpu_ns() { # on-CPU nanoseconds of every thread of process $1
    local t sum=0
    for t in /proc/"$1"/task/*/schedstat; do
        read -r ns _ < "$t" && sum=$((sum + ns))
    done
    echo "$sum"
}

user_ticks() { # user-mode clock ticks of process $1 (field 14 of /proc/PID/stat)
    awk '{print $14}' /proc/"$1"/stat
}

results="$out/results.txt"
: > "$results"
for rep in $(seq "$reps"); do
    for server in debian-alt photon-epoll photon-alt; do
        case $server in
            debian-alt) cmd=("$out/st_echo_debian" 0 alt) env=() ;;
            photon-epoll) cmd=("$out/st_echo_photon" 0) env=(PHOTON_ENGINE=epoll) ;;
            photon-alt) cmd=("$out/st_echo_photon" 0 alt) env=() ;;
        esac
        rm -f "$out/server.out"
        env "${env[@]}" taskset -c 0 "${cmd[@]}" > "$out/server.out" 2>&1 &
        spid=$!
        for _ in $(seq 100); do grep -qs ready "$out/server.out" && break; sleep 0.05; done
        grep -q ready "$out/server.out" || { echo "$server did not start" >&2; cat "$out/server.out" >&2; exit 1; }
        port=$(awk '/ready/ {print $2}' "$out/server.out")
        engine=$(awk '/ready/ {print $3}' "$out/server.out")
        taskset -c 1 "$out/echo_client" --port "$port" --conns "$conns" --size "$size" \
            --duration "$duration" --warmup 0.5 --engine epoll > "$out/client.out" 2>&1 &
        cpid=$!
        sleep 0.5
        c0=$(cpu_ns "$spid") u0=$(user_ticks "$spid")
        sleep "$duration"
        c1=$(cpu_ns "$spid") u1=$(user_ticks "$spid")
        if ! wait "$cpid"; then
            echo "client failed against $server:" >&2; cat "$out/client.out" >&2
            kill "$spid"; exit 1
        fi
        kill "$spid"; wait "$spid" 2>/dev/null || true
        rps=$(sed -n 's/.* req\/s=\([0-9.]*\) .*/\1/p' "$out/client.out")
        reqs=$(sed -n 's/.* requests=\([0-9]*\) .*/\1/p' "$out/client.out")
        tick_ns=$((1000000000 / $(getconf CLK_TCK)))
        echo "$server $engine $rep $rps $(( (c1 - c0) / (reqs > 0 ? reqs : 1) )) $(( (u1 - u0) * tick_ns / (reqs > 0 ? reqs : 1) ))" | tee -a "$results"
    done
done

python3 - "$results" "$(uname -r)" "$(nproc)" "$conns" "$size" "$duration" <<'PY'
import sys, statistics
path, kernel, cpus, conns, size, dur = sys.argv[1:]
rows = [l.split() for l in open(path) if l.strip()]
by = {}
for name, engine, rep, rps, ns, user in rows:
    by.setdefault((name, engine), []).append((float(rps), float(ns), float(user)))
print(f"\nST echo, {conns} connections x {size} B ping-pong, {dur} s per run, server CPU 0, client CPU 1; kernel {kernel}, {cpus} CPUs")
print(f"{'server':<28}{'req/s median':>14}{'range':>22}{'server ns/req':>15}{'range':>18}{'user ns/req':>13}")
med = {}
for (name, engine), v in by.items():
    r = [x[0] for x in v]; n = [x[1] for x in v]; u = [x[2] for x in v]
    med[name] = (statistics.median(r), statistics.median(n), statistics.median(u))
    label = {"debian-alt": "Debian libst 1.9 (ALT)", "photon-epoll": "libphoton_st", "photon-alt": "libphoton_st (ALT)"}[name] + f" {engine}"
    print(f"{label:<28}{med[name][0]:>14.0f}{f'{min(r):.0f}-{max(r):.0f}':>22}{med[name][1]:>15.0f}{f'{min(n):.0f}-{max(n):.0f}':>18}{med[name][2]:>13.0f}")
base = med["debian-alt"]
for name in ("photon-epoll", "photon-alt"):
    m = med[name]
    print(f"{name}: {m[0] / base[0]:.2f}x Debian's requests/s, {base[1] / m[1]:.2f}x its CPU efficiency (Debian ns/req / ours)")
PY
