#!/usr/bin/env bash
# Builds and runs the consumer project against an installed libphoton:
#   cmake/consumer-test/run.sh PREFIX [WORKDIR]
# checks find_package (shared and static), pkg-config through CMake, and a
# plain `cc $(pkg-config --cflags --libs photon)` build; checks that programs
# record the soname libphoton.so.0.
set -euo pipefail

prefix=$(cd "${1:?usage: run.sh PREFIX [WORKDIR]}" && pwd)
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
work=${2:-$(mktemp -d)}
mkdir -p "$work"

libdir=$(dirname "$(find "$prefix" -name photon.pc -path '*/pkgconfig/*' -print -quit)")
libdir=$(dirname "$libdir")
export PKG_CONFIG_PATH="$libdir/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"

echo "== consumer: cmake (find_package + pkg_check_modules) against $prefix"
cmake -S "$here" -B "$work/build" -DCMAKE_PREFIX_PATH="$prefix" \
      -DCMAKE_BUILD_TYPE=Release >"$work/configure.log" \
    || { cat "$work/configure.log"; exit 1; }
cmake --build "$work/build" -j "$(nproc)"

echo "== consumer: cc \$(pkg-config --cflags --libs photon)"
# shellcheck disable=SC2046
cc -std=c99 -Wall -Wextra -Werror -pedantic "$here/main.c" -o "$work/consumer_cc" \
   $(pkg-config --cflags --libs photon)
# shellcheck disable=SC2046
cc -std=c99 -Wall -Wextra -Werror -pedantic "$here/main.c" -o "$work/consumer_cc_static" \
   $(pkg-config --cflags photon) "$libdir/libphoton.a" \
   $(pkg-config --libs-only-l --static photon | sed 's/-lphoton//')

echo "== consumer: cc \$(pkg-config --cflags --libs photon) \$(pkg-config --variable=rpath photon), run without LD_LIBRARY_PATH"
# shellcheck disable=SC2046
cc -std=c99 -Wall -Wextra -Werror -pedantic "$here/main.c" -o "$work/consumer_cc_rpath" \
   $(pkg-config --cflags --libs photon) $(pkg-config --variable=rpath photon)
env -u LD_LIBRARY_PATH "$work/consumer_cc_rpath"

check_needed() { # program: linked to libphoton.so.0, by soname, not by path
    local needed
    needed=$(readelf -d "$1" | sed -n 's/.*(NEEDED).*\[\(.*photon.*\)\]/\1/p')
    if [[ "$needed" != "libphoton.so.0" ]]; then
        echo "FAIL: $1 needs '${needed}', expected libphoton.so.0" >&2
        exit 1
    fi
}
check_static() { # program: no libphoton.so dependency at all
    local dynamic
    dynamic=$(readelf -d "$1") # captured: grep -q on a pipe can SIGPIPE readelf (pipefail)
    if grep -q 'NEEDED.*photon' <<<"$dynamic"; then
        echo "FAIL: $1 should not need libphoton.so" >&2
        exit 1
    fi
}
check_needed "$work/build/consumer_shared"
check_needed "$work/build/consumer_pc"
check_needed "$work/consumer_cc"
check_needed "$work/consumer_cc_rpath"
check_static "$work/build/consumer_static"
check_static "$work/consumer_cc_static"

export LD_LIBRARY_PATH="$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
for prog in "$work/build/consumer_shared" "$work/build/consumer_static" \
            "$work/build/consumer_pc" "$work/consumer_cc" "$work/consumer_cc_static"; do
    echo "== run $(basename "$prog")"
    "$prog"
done
echo "consumer test: ok"
