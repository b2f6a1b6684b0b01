/* libphoton: two photon threads ping-pong with photon_thread_yield in a C++
 * program that links librocksdb (so its thread-local blocks, and those of
 * its dependencies, are loaded), to price thread-local isolation: run with
 * PHOTON_TLS_ISOLATE=none and with PHOTON_TLS_ISOLATE='*'. Every switch goes
 * between the two threads, so with isolation each one copies the isolated
 * blocks out and in (the worst case; a switch to or from the idle thread
 * copies nothing). Prints ns per switch.
 * Usage: photon_yield_tls [seconds] */
#include <photon.h>
#include <rocksdb/options.h>

#include "bench_common.h"

static void* yielder(void* arg) {
    uint64_t n = *(const uint64_t*)arg;
    for (uint64_t i = 0; i < n; i++) photon_thread_yield();
    return arg;
}

static void body(uint64_t n) {
    photon_thread* a = photon_thread_create(yielder, &n, 0);
    photon_thread* b = photon_thread_create(yielder, &n, 0);
    if (!a || !b) BENCH_DIE("photon_thread_create");
    if (photon_thread_enable_join(a) != 0 || photon_thread_enable_join(b) != 0) BENCH_DIE("photon_thread_enable_join");
    if (photon_thread_join(a, NULL) != 0 || photon_thread_join(b, NULL) != 0) BENCH_DIE("photon_thread_join");
}

int main(int argc, char** argv) {
    rocksdb::Options keep_linked; /* librocksdb stays a needed library */
    (void)keep_linked;
    bench_fp_settle();
    double secs = bench_secs_arg(argc, argv);
    if (photon_init(PHOTON_EVENT_DEFAULT, 0) != 0) BENCH_DIE("photon_init");
    const char* spec = getenv("PHOTON_TLS_ISOLATE");
    uint64_t n = bench_calibrate(body, secs);
    double t0 = bench_now_s();
    body(n);
    double dt = bench_now_s() - t0;
    if (photon_fini() != 0) BENCH_DIE("photon_fini");
    printf("INFO PHOTON_TLS_ISOLATE=%s: 2 x %llu yields in %.3f s\n", spec ? spec : "(unset)",
           (unsigned long long)n, dt);
    printf("RESULT value=%.4f unit=ns/switch switches=%llu secs=%.4f\n", dt * 1e9 / (2.0 * (double)n),
           (unsigned long long)(2 * n), dt);
    return 0;
}
