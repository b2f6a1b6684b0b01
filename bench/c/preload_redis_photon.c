/* hiredis GET throughput from photon threads on one vcpu, through
 * libphoton_preload.so (see preload_redis_common.h for arguments and
 * output). photon_init(PHOTON_EVENT_DEFAULT, 0) (the driver picks the
 * engine with PHOTON_ENGINE and this program fails if the vcpu got another
 * one), then CONNS photon threads, each with its own blocking hiredis
 * connection: the shim turns hiredis's connect/poll/read/write into photon
 * waits. Fails unless the shim is loaded. */
#include "preload_redis_common.h"

#include <photon.h>

static void *worker(void *arg) {
    redis_worker_run(arg);
    return NULL;
}

static void photon_sleep_us(uint64_t us) { photon_thread_usleep(us); }

int main(int argc, char **argv) {
    redis_parse_args(argc, argv);
    int shim = preload_shim_loaded();
    if (!shim) {
        errno = ENOENT;
        BENCH_DIE("libphoton_preload.so is not loaded: run with LD_PRELOAD=.../libphoton_preload.so");
    }
    if (photon_init(PHOTON_EVENT_DEFAULT, 0) != 0) BENCH_DIE("photon_init");
    const char *engine = photon_engine_name();
    const char *want = getenv("PHOTON_ENGINE");
    if (engine == NULL || (want != NULL && *want && strcmp(want, engine) != 0)) {
        errno = ENOSYS;
        BENCH_DIE("PHOTON_ENGINE=%s but the vcpu got engine %s", want, engine ? engine : "(none)");
    }
    redis_set_key();
    photon_thread **ths = calloc((size_t)redis_args.conns, sizeof *ths);
    if (ths == NULL) BENCH_DIE("calloc");
    for (int i = 0; i < redis_args.conns; i++) {
        ths[i] = photon_thread_create(worker, &redis_workers[i], 0);
        if (ths[i] == NULL || photon_thread_enable_join(ths[i]) != 0) BENCH_DIE("photon_thread_create");
    }
    struct redis_window win = redis_measure(photon_sleep_us);
    for (int i = 0; i < redis_args.conns; i++) {
        if (photon_thread_join(ths[i], NULL) != 0) BENCH_DIE("photon_thread_join");
    }
    free(ths);
    int rc = redis_report(win, shim, engine);
    if (photon_fini() != 0) BENCH_DIE("photon_fini");
    return rc;
}
