/* Shared helpers of the C/C++ benchmark programs of bench/ (header-only).
 *
 * Output protocol, read by the driver (`cargo run --release --bin core`):
 *   INFO <free text>              informational, shown with --verbose
 *   RESULT key=value key=value    the figures of this run (exactly one line)
 * Any failure prints "ERROR: ..." on stderr and exits non-zero. */
#ifndef PHOTON_BENCH_COMMON_H
#define PHOTON_BENCH_COMMON_H

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BENCH_DIE(...)                                                      \
    do {                                                                    \
        fprintf(stderr, "ERROR: " __VA_ARGS__);                             \
        fprintf(stderr, " (errno %d: %s)\n", errno, strerror(errno));       \
        exit(1);                                                            \
    } while (0)

static inline double bench_now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Sets MXCSR's sticky "inexact" flag, as any program's first inexact
 * floating-point operation does, before any context is created: then every
 * context has the same MXCSR as main, and the timing arithmetic between runs
 * cannot make them differ. (A switch that reloads a different MXCSR value
 * and reads it back stalls for 60-90 ns on this VM; Boost's fcontext reloads
 * on every switch. See fp_settle in src/lib.rs.) */
static inline void bench_fp_settle(void) {
    volatile double a = 1.0, b = 3.0;
    volatile double c = a / b;
    (void)c;
}

/* Seconds per timed run, from argv[1] (default 1.0). */
static inline double bench_secs_arg(int argc, char** argv) {
    double s = argc > 1 ? atof(argv[1]) : 1.0;
    if (!(s > 0.0) || s > 600.0) {
        errno = EINVAL;
        BENCH_DIE("bad duration argument '%s'", argv[1]);
    }
    return s;
}

/* Runs body(n) with growing n until one call takes >= 50 ms (warm-up and
 * calibration), then returns the n that should take about `secs`. */
typedef void (*bench_body)(uint64_t n);
static inline uint64_t bench_calibrate(bench_body body, double secs) {
    uint64_t n = 64;
    for (;;) {
        double t0 = bench_now_s();
        body(n);
        double dt = bench_now_s() - t0;
        if (dt >= 0.05) {
            double want = (double)n * secs / dt;
            return want < 1.0 ? 1 : (uint64_t)want;
        }
        n *= (dt < 0.005) ? 8 : 2;
    }
}

#endif
