/*
 * No waiter starves behind threads that keep re-taking a photon_mutex (the
 * hand-off rule of src/sync/mutex.rs: an unlock wakes the longest waiter
 * to compete, and a waiter parked for more than 1 ms is handed the lock
 * directly). Three "hogs" (two on the main vcpu, one on pool vcpu 0) lock
 * and unlock in a tight loop, holding it about 2 us each time, so the
 * mutex is nearly always taken (they yield only every 256 rounds, so their
 * own vcpu's other threads get to run at all). Meanwhile a "polite" thread
 * on pool vcpu 1, and then one on the main vcpu, takes the lock 300
 * times with pauses of 100 us between. Its lock calls must return in
 * about 1 ms plus a wake-up (the rule): 9 in 10 within 5 ms and at most 3
 * of 300 over 10 ms, and the hogs must make progress too. Measured with the
 * hand-off: median 1.0 ms, p90 1.0 ms (pool vcpu) and 1.4-1.5 ms (main
 * vcpu), none over 10 ms; with it removed (STARVING_US infinite): p90
 * 8-32 ms and 21-82 over 10 ms on one vcpu or the other. A single worst
 * case is not the bound: a CI run on a loaded VM saw one 15.9 ms wait
 * (most likely the VM's CPU itself taken away, which run_delay does not
 * show) among 299 normal ones. Time the OS kept this process's threads
 * waiting for a CPU during a lock call (run_delay in
 * /proc/self/task/N/schedstat: a hog preempted while holding the lock, on
 * a machine busy with other work) is not photon's and is taken out of that
 * call's wait; on a quiet machine it is about zero.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

#include "check.h"

#define HOGS 3
#define ROUNDS 300
#define P90_WAIT_US 5000ULL
#define LONG_WAIT_US 10000ULL
#define MAX_LONG_WAITS 3
#define WATCHDOG_S 30

static photon_workpool *pool;
static photon_mutex *mtx;
static photon_sem *done;
static atomic_int stop;
static atomic_ullong hog_ops;
static atomic_int inside;
static atomic_int finished;

static void *watchdog(void *arg) {
    (void)arg;
    for (int i = 0; i < WATCHDOG_S * 10; i++) {
        if (atomic_load(&finished)) return NULL;
        usleep(100000);
    }
    fprintf(stderr, "WATCHDOG: stalled for %d s; hog ops %llu\n", WATCHDOG_S,
            (unsigned long long)atomic_load(&hog_ops));
    abort();
}

static void *hog(void *arg) {
    (void)arg;
    for (unsigned i = 1; !atomic_load(&stop); i++) {
        if (i % 256 == 0) photon_thread_yield(); /* let its vcpu's other threads run */
        CHECK_OK(photon_mutex_lock(mtx, PHOTON_FOREVER));
        CHECK(atomic_exchange(&inside, 1) == 0, "two owners");
        uint64_t t0 = photon_now_us();
        while (photon_now_us() - t0 < 2) { /* hold it ~2 us: the lock is nearly always taken */
        }
        atomic_store(&inside, 0);
        CHECK_OK(photon_mutex_unlock(mtx));
        atomic_fetch_add_explicit(&hog_ops, 1, memory_order_relaxed);
    }
    CHECK_OK(photon_sem_signal(done, 1));
    return NULL;
}

struct polite_result {
    uint64_t sum, os_delay;
    uint64_t waits[ROUNDS];
};

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void *polite(void *arg) {
    struct polite_result *res = arg;
    for (int i = 0; i < ROUNDS; i++) {
        uint64_t d0 = process_run_delay_us();
        uint64_t t0 = photon_now_us();
        CHECK_OK(photon_mutex_lock(mtx, PHOTON_FOREVER));
        uint64_t w = elapsed_us(t0);
        uint64_t os = process_run_delay_us() - d0;
        res->os_delay += os;
        w = w > os ? w - os : 0;
        CHECK(atomic_exchange(&inside, 1) == 0, "two owners");
        atomic_store(&inside, 0);
        CHECK_OK(photon_mutex_unlock(mtx));
        res->sum += w;
        res->waits[i] = w;
        CHECK_OK(photon_thread_usleep(100));
    }
    CHECK_OK(photon_sem_signal(done, 1));
    return NULL;
}

/* Runs fn on pool vcpu `index` (0 or 1), by moving it there first. */
struct placed {
    photon_entry fn;
    void *arg;
    photon_vcpu *to;
};

static void *placed_main(void *arg) {
    struct placed *p = arg;
    if (p->to != NULL) CHECK_OK(photon_thread_migrate(photon_thread_self(), p->to));
    return p->fn(p->arg);
}

int main(void) {
    test_start("sync_mutex_fairness");
    test_init();
    pthread_t wd;
    CHECK(pthread_create(&wd, NULL, watchdog, NULL) == 0, "pthread_create watchdog");
    pool = photon_workpool_new(2, PHOTON_EVENT_DEFAULT);
    CHECK(pool != NULL, "photon_workpool_new(2): errno %d", errno);
    mtx = photon_mutex_new();
    done = photon_sem_new(0);
    CHECK(mtx && done, "new");
    photon_vcpu *p0 = photon_workpool_vcpu(pool, 0), *p1 = photon_workpool_vcpu(pool, 1);

    struct placed hogs[HOGS] = {{hog, NULL, NULL}, {hog, NULL, NULL}, {hog, NULL, p0}};
    for (int i = 0; i < HOGS; i++) CHECK(photon_thread_create(placed_main, &hogs[i], 0), "create");
    CHECK_OK(photon_thread_usleep(10000));

    const char *where[2] = {"pool vcpu 1 (no hog there)", "the main vcpu (with two hogs)"};
    for (int k = 0; k < 2; k++) {
        static struct polite_result res;
        memset(&res, 0, sizeof(res));
        struct placed pol = {polite, &res, k == 0 ? p1 : NULL};
        uint64_t before = atomic_load(&hog_ops);
        CHECK(photon_thread_create(placed_main, &pol, 0), "create");
        errno = 0;
        CHECK(photon_sem_wait(done, 1, 20 * 1000 * 1000ULL) == 0, "the polite thread: errno %d", errno);
        uint64_t hogged = atomic_load(&hog_ops) - before;
        qsort(res.waits, ROUNDS, sizeof(res.waits[0]), cmp_u64);
        uint64_t p50 = res.waits[ROUNDS / 2], p90 = res.waits[ROUNDS * 9 / 10], p99 = res.waits[ROUNDS * 99 / 100];
        int over = 0;
        for (int i = 0; i < ROUNDS; i++) over += res.waits[i] >= LONG_WAIT_US;
        SAY("polite thread on %s: %d locks, mean wait %.0f us, median %llu, p90 %llu, p99 %llu, worst %llu us, "
            "%d over %llu us (OS run delays taken out: %llu us in all); hogs meanwhile %llu ops",
            where[k], ROUNDS, (double)res.sum / ROUNDS, (unsigned long long)p50, (unsigned long long)p90,
            (unsigned long long)p99, (unsigned long long)res.waits[ROUNDS - 1], over, (unsigned long long)LONG_WAIT_US,
            (unsigned long long)res.os_delay, (unsigned long long)hogged);
        CHECK(p90 < P90_WAIT_US, "1 lock in 10 waited %llu us or more behind the hogs (limit %llu)",
              (unsigned long long)p90, (unsigned long long)P90_WAIT_US);
        CHECK(over <= MAX_LONG_WAITS, "%d locks waited over %llu us behind the hogs (limit %d)", over,
              (unsigned long long)LONG_WAIT_US, MAX_LONG_WAITS);
        CHECK(hogged > ROUNDS, "the hogs made no progress (%llu ops)", (unsigned long long)hogged);
    }
    atomic_store(&stop, 1);
    errno = 0;
    CHECK(photon_sem_wait(done, HOGS, 10 * 1000 * 1000ULL) == 0, "hogs did not stop: errno %d", errno);

    CHECK_OK(photon_mutex_free(mtx));
    CHECK_OK(photon_sem_free(done));
    photon_workpool_free(pool);
    atomic_store(&finished, 1);
    CHECK(pthread_join(wd, NULL) == 0, "pthread_join watchdog");
    test_fini();
    SAY("ok");
    return 0;
}
