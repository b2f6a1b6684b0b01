/* hiredis GET throughput from OS threads (see preload_redis_common.h for
 * arguments and output): CONNS pthreads, each with its own blocking
 * hiredis connection, no libphoton and no shim (the driver runs it without
 * LD_PRELOAD and checks shim=0). */
#include "preload_redis_common.h"

#include <pthread.h>

static void *worker(void *arg) {
    redis_worker_run(arg);
    return NULL;
}

static void os_sleep_us(uint64_t us) {
    struct timespec ts = {(time_t)(us / 1000000), (long)(us % 1000000) * 1000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

int main(int argc, char **argv) {
    redis_parse_args(argc, argv);
    int shim = preload_shim_loaded();
    redis_set_key();
    pthread_t *ths = calloc((size_t)redis_args.conns, sizeof *ths);
    if (ths == NULL) BENCH_DIE("calloc");
    for (int i = 0; i < redis_args.conns; i++) {
        int e = pthread_create(&ths[i], NULL, worker, &redis_workers[i]);
        if (e != 0) {
            errno = e;
            BENCH_DIE("pthread_create");
        }
    }
    struct redis_window win = redis_measure(os_sleep_us);
    for (int i = 0; i < redis_args.conns; i++) {
        int e = pthread_join(ths[i], NULL);
        if (e != 0) {
            errno = e;
            BENCH_DIE("pthread_join");
        }
    }
    free(ths);
    return redis_report(win, shim, NULL);
}
