/* libphoton: two photon threads ping-pong with photon_thread_yield, through
 * the C API of libphoton.so (so each call goes through the PLT).
 * Prints ns per switch (one direction): each yield is one switch.
 * Usage: photon_yield [seconds] */
#include <photon.h>

#include "bench_common.h"

static void* yielder(void* arg) {
    uint64_t n = *(const uint64_t*)arg;
    for (uint64_t i = 0; i < n; i++) photon_thread_yield();
    return arg;
}

/* n yields in each of two threads: 2n switches (plus 3 to enter them and
 * return to main, negligible). */
static void body(uint64_t n) {
    photon_thread* a = photon_thread_create(yielder, &n, 0);
    if (!a) BENCH_DIE("photon_thread_create");
    photon_thread* b = photon_thread_create(yielder, &n, 0);
    if (!b) BENCH_DIE("photon_thread_create");
    if (photon_thread_enable_join(a) != 0) BENCH_DIE("photon_thread_enable_join");
    if (photon_thread_enable_join(b) != 0) BENCH_DIE("photon_thread_enable_join");
    void* ra = NULL;
    void* rb = NULL;
    if (photon_thread_join(a, &ra) != 0) BENCH_DIE("photon_thread_join");
    if (photon_thread_join(b, &rb) != 0) BENCH_DIE("photon_thread_join");
    if (ra != &n || rb != &n) {
        errno = 0;
        BENCH_DIE("photon_thread_join returned the wrong value");
    }
}

int main(int argc, char** argv) {
    bench_fp_settle();
    double secs = bench_secs_arg(argc, argv);
    if (photon_init(PHOTON_EVENT_DEFAULT, 0) != 0) BENCH_DIE("photon_init");
    const char* engine = photon_engine_name();
    uint64_t n = bench_calibrate(body, secs);
    double t0 = bench_now_s();
    body(n);
    double dt = bench_now_s() - t0;
    printf("INFO libphoton %s, engine %s: 2 x %llu yields in %.3f s\n", photon_version(),
           engine ? engine : "?", (unsigned long long)n, dt);
    if (photon_fini() != 0) BENCH_DIE("photon_fini");
    printf("RESULT value=%.4f unit=ns/switch switches=%llu secs=%.4f engine=%s\n",
           dt * 1e9 / (2.0 * (double)n), (unsigned long long)(2 * n), dt, engine ? engine : "?");
    return 0;
}
