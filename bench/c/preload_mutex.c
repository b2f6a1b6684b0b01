/* Uncontended pthread_mutex_lock/unlock pairs: what libphoton_preload.so's
 * pthread hooks cost.
 *
 *   preload_mutex SECS
 *
 * After photon_init (the main thread becomes a vcpu), times pairs of
 * pthread_mutex_lock + pthread_mutex_unlock on a private normal mutex
 * nobody else uses: on a plain pthread (not a vcpu), on the vcpu's main
 * photon thread, and on a photon thread the main one created; each for
 * about SECS/3 seconds in ~20 ms chunks. The driver runs it with and
 * without LD_PRELOAD=libphoton_preload.so.
 * Prints: RESULT plain_ns=... main_ns=... photon_ns=... shim=0|1 */
#include "preload_common.h"

#include <pthread.h>

#include "photon.h"

static pthread_mutex_t mx = PTHREAD_MUTEX_INITIALIZER;
static double secs;

static void pairs(uint64_t n) {
    for (uint64_t i = 0; i < n; i++) {
        if (pthread_mutex_lock(&mx) != 0) BENCH_DIE("pthread_mutex_lock");
        if (pthread_mutex_unlock(&mx) != 0) BENCH_DIE("pthread_mutex_unlock");
    }
}

/* ns per pair, timed in chunks for ~secs/3. */
static double time_pairs(void) {
    uint64_t n = bench_calibrate(pairs, 0.02);
    uint64_t chunks = (uint64_t)(secs / 3 / 0.02);
    if (chunks < 1) chunks = 1;
    double t0 = bench_now_s();
    for (uint64_t i = 0; i < chunks; i++) pairs(n);
    return (bench_now_s() - t0) * 1e9 / (double)(chunks * n);
}

static double result;
static void *measure(void *arg) {
    (void)arg;
    result = time_pairs();
    return NULL;
}

int main(int argc, char **argv) {
    secs = bench_secs_arg(argc, argv);
    int shim = preload_shim_loaded();
    if (photon_init(PHOTON_EVENT_DEFAULT, 0) != 0) BENCH_DIE("photon_init");
    pthread_t p;
    if (pthread_create(&p, NULL, measure, NULL) != 0) BENCH_DIE("pthread_create");
    pthread_join(p, NULL);
    double plain = result;
    double main_ns = time_pairs();
    photon_thread *th = photon_thread_create(measure, NULL, 0);
    if (th == NULL || photon_thread_enable_join(th) != 0 || photon_thread_join(th, NULL) != 0)
        BENCH_DIE("photon thread");
    double photon = result;
    photon_fini();
    printf("RESULT plain_ns=%.3f main_ns=%.3f photon_ns=%.3f shim=%d\n", plain, main_ns, photon, shim);
    return 0;
}
