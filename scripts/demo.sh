#!/usr/bin/env bash
# Builds everything (cargo through CMake, in build/) and runs the demo.
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
