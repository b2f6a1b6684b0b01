#!/usr/bin/env bash
# Builds everything (cargo through CMake, in build/) and runs the demo: the
# sleep-sort tour of the API, then an echo benchmark (c-examples/echo_server.c
# and c-examples/echo_client.c, both on libphoton) printing the throughput
# the client measured and the server's summary.
#   scripts/demo.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/setup.sh

echo "== build (cmake, build/)"
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j "$(nproc)"

# One block per demo.

echo
echo "== demo: sleep sort (c-examples/sleep_sort.c)"
build/sleep_sort

echo
echo "== demo: echo server and client (c-examples/echo_server.c, echo_client.c)"

# The server on CPU 0 and the client on CPU 1, when there are two CPUs: each
# is one OS thread (one vcpu), so they do not compete for a core.
server_cmd=(build/echo_server)
client_cmd=(build/echo_client)
if (($(nproc) >= 2)) && command -v taskset >/dev/null; then
    server_cmd=(taskset -c 0 build/echo_server)
    client_cmd=(taskset -c 1 build/echo_client)
    echo "server pinned to CPU 0, client to CPU 1"
fi

tmp=$(mktemp -d)
server_pid=
stop_server() {
    # SIGTERM stops it cleanly (it prints its summary); SIGKILL if it hangs.
    local pid=$server_pid i
    server_pid=
    [[ -n $pid ]] || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        echo "echo_server did not stop within 10 s of SIGTERM; killing it" >&2
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
        return 1
    fi
    wait "$pid"
}
cleanup() {
    stop_server >/dev/null 2>&1 || true
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Port 0: the server picks a free port and prints it ("listening on PORT ...").
"${server_cmd[@]}" --port 0 --quiet >"$tmp/server.out" &
server_pid=$!
port=
for ((i = 0; i < 100; i++)); do
    port=$(awk '/^listening on / { print $3; exit }' "$tmp/server.out")
    [[ -n $port ]] && break
    if ! kill -0 "$server_pid" 2>/dev/null; then
        echo "echo_server exited before listening" >&2
        exit 1
    fi
    sleep 0.05
done
if [[ -z $port ]]; then
    echo "echo_server did not report its port within 5 s" >&2
    exit 1
fi
echo "server: $(head -n 1 "$tmp/server.out")"

# The client exits non-zero (and prints no figures) if the run had any error.
echo "ping-pong: 64 connections x 512 B, 3 s"
"${client_cmd[@]}" --port "$port" --mode pingpong --conns 64 --size 512 --duration 3
echo "streaming: 64 connections x 4 KiB, 3 s"
"${client_cmd[@]}" --port "$port" --mode stream --conns 64 --size 4096 --duration 3

if ! stop_server; then
    exit 1
fi
echo "server: $(tail -n +2 "$tmp/server.out")"
