/* libphoton: create + join one photon thread at a time, through the C API
 * (default stack size). Prints threads created and joined per second.
 * Usage: photon_create_join [seconds] */
#include <photon.h>

#include "bench_common.h"

static void* entry(void* arg) { return arg; }

static void body(uint64_t n) {
    for (uint64_t i = 1; i <= n; i++) {
        photon_thread* th = photon_thread_create(entry, (void*)(uintptr_t)i, 0);
        if (!th) BENCH_DIE("photon_thread_create (#%llu)", (unsigned long long)i);
        if (photon_thread_enable_join(th) != 0) BENCH_DIE("photon_thread_enable_join");
        void* ret = NULL;
        if (photon_thread_join(th, &ret) != 0) BENCH_DIE("photon_thread_join");
        if (ret != (void*)(uintptr_t)i) {
            errno = 0;
            BENCH_DIE("photon_thread_join returned the wrong value");
        }
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
    printf("INFO libphoton %s, engine %s: %llu create+join in %.3f s\n", photon_version(),
           engine ? engine : "?", (unsigned long long)n, dt);
    if (photon_fini() != 0) BENCH_DIE("photon_fini");
    printf("RESULT value=%.1f unit=/s count=%llu secs=%.4f engine=%s\n", (double)n / dt,
           (unsigned long long)n, dt, engine ? engine : "?");
    return 0;
}
