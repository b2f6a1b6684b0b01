/* Timer accuracy: COUNT sleeps of US microseconds, one after another, on an
 * otherwise idle vcpu (photon_thread_usleep; the engine comes from
 * PHOTON_ENGINE), or with clock_nanosleep on a plain thread ("os" mode,
 * the peer). Prints the median and p99 of the time each sleep took.
 * Usage: photon_timer COUNT US photon|os */
#include <photon.h>

#include "bench_common.h"

static int cmp_u64(const void* a, const void* b) {
    uint64_t x = *(const uint64_t*)a, y = *(const uint64_t*)b;
    return x < y ? -1 : x > y;
}

static uint64_t now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

int main(int argc, char** argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s COUNT US photon|os\n", argv[0]);
        return 2;
    }
    long count = atol(argv[1]);
    long us = atol(argv[2]);
    int photon = strcmp(argv[3], "photon") == 0;
    if (count < 100 || us <= 0) {
        errno = EINVAL;
        BENCH_DIE("COUNT >= 100, US > 0");
    }
    uint64_t* took = malloc(sizeof *took * (size_t)count);
    if (!took) BENCH_DIE("malloc");
    const char* engine = "none";
    if (photon) {
        if (photon_init(PHOTON_EVENT_DEFAULT, 0) != 0) BENCH_DIE("photon_init");
        engine = photon_engine_name();
    }
    for (long i = 0; i < count; i++) {
        uint64_t t0 = now_us();
        if (photon) {
            if (photon_thread_usleep((uint64_t)us) != 0) BENCH_DIE("photon_thread_usleep");
        } else {
            struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
            if (clock_nanosleep(CLOCK_MONOTONIC, 0, &ts, NULL) != 0) BENCH_DIE("clock_nanosleep");
        }
        took[i] = now_us() - t0;
    }
    qsort(took, (size_t)count, sizeof *took, cmp_u64);
    printf("INFO %ld sleeps of %ld us (%s): min %llu us, max %llu us\n", count, us, argv[3],
           (unsigned long long)took[0], (unsigned long long)took[count - 1]);
    if (photon && photon_fini() != 0) BENCH_DIE("photon_fini");
    printf("RESULT median_us=%llu p99_us=%llu engine=%s\n", (unsigned long long)took[count / 2],
           (unsigned long long)took[count * 99 / 100], engine);
    free(took);
    return 0;
}
