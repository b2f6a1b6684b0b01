/*
 * Ping-pong across two vcpus, with no stall: the main thread (main vcpu)
 * and a photon thread on a work pool of one vcpu hand a turn back and forth
 *   1. through a photon_cond + photon_mutex + a turn variable, then
 *   2. through two photon_sems (ping, pong).
 * Each part runs 1,000,000 round trips or for 2 s, whichever comes first
 * (on the 2-core test machine a cross-vcpu round trip costs a few to tens
 * of microseconds, so usually the 2 s limit ends it; the count done is
 * printed and must be at least 4,000). Every round trip is timed: the
 * slowest must stay under 200 ms (a lost wake-up would show as a stall
 * until some unrelated event, or forever: the watchdog pthread then aborts
 * with the count so far). Median and p99 are printed for information.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>

#include "check.h"

#define MAX_ROUNDS 1000000
#define PART_US 2000000ULL
#define MIN_ROUNDS 4000
#define MAX_RTT_US 200000ULL
#define WATCHDOG_S 30
#define HIST_US 10000 /* one-microsecond buckets up to here */

static photon_mutex *mtx;
static photon_cond *cv;
static int turn;          /* guarded by mtx: 1 = the pool thread's move */
static int stop;          /* guarded by mtx */
static photon_sem *ping, *pong;
static atomic_int sem_stop;
static photon_sem *part_done;
static atomic_ullong rounds_done;
static atomic_int finished;
static const char *part_name = "?";

static uint32_t hist[HIST_US + 1];

static void hist_reset(void) { memset(hist, 0, sizeof hist); }
static void hist_add(uint64_t us) { hist[us < HIST_US ? us : HIST_US]++; }
static uint64_t hist_pct(uint64_t n, double p) {
    uint64_t want = (uint64_t)(n * p), seen = 0;
    for (int i = 0; i <= HIST_US; i++) {
        seen += hist[i];
        if (seen > want) return (uint64_t)i;
    }
    return HIST_US;
}

static void *cond_partner(void *arg) {
    (void)arg;
    CHECK_OK(photon_mutex_lock(mtx, PHOTON_FOREVER));
    for (;;) {
        while (turn != 1 && !stop) CHECK_OK(photon_cond_wait(cv, mtx, PHOTON_FOREVER));
        if (stop) break;
        turn = 0;
        CHECK_OK(photon_cond_notify_one(cv));
    }
    CHECK_OK(photon_mutex_unlock(mtx));
    CHECK_OK(photon_sem_signal(part_done, 1));
    return NULL;
}

static void *sem_partner(void *arg) {
    (void)arg;
    for (;;) {
        CHECK_OK(photon_sem_wait(ping, 1, PHOTON_FOREVER));
        if (atomic_load(&sem_stop)) break;
        CHECK_OK(photon_sem_signal(pong, 1));
    }
    CHECK_OK(photon_sem_signal(part_done, 1));
    return NULL;
}

static void *watchdog(void *arg) {
    (void)arg;
    for (int i = 0; i < WATCHDOG_S * 10; i++) {
        if (atomic_load(&finished)) return NULL;
        usleep(100000);
    }
    fprintf(stderr, "WATCHDOG: stalled after %d s in the %s part: %llu round trips done\n",
            WATCHDOG_S, part_name, (unsigned long long)atomic_load(&rounds_done));
    abort();
}

static void report(const char *what, uint64_t n, uint64_t took, uint64_t worst) {
    SAY("%s: %llu round trips in %.2f s (%s), %.0f per s; round trip median %llu us, p99 %llu us, "
        "max %llu us",
        what, (unsigned long long)n, took / 1e6, n == MAX_ROUNDS ? "all 1,000,000" : "the 2 s limit",
        n / (took / 1e6), (unsigned long long)hist_pct(n, 0.5), (unsigned long long)hist_pct(n, 0.99),
        (unsigned long long)worst);
    CHECK(n >= MIN_ROUNDS, "%s: only %llu round trips in 2 s", what, (unsigned long long)n);
    CHECK(worst < MAX_RTT_US, "%s: a round trip took %llu us (limit %llu)", what,
          (unsigned long long)worst, (unsigned long long)MAX_RTT_US);
}

int main(void) {
    test_start("sync_pingpong");
    test_init();
    pthread_t wd;
    CHECK(pthread_create(&wd, NULL, watchdog, NULL) == 0, "pthread_create watchdog");
    photon_workpool *pool = photon_workpool_new(1, PHOTON_EVENT_DEFAULT);
    CHECK(pool != NULL, "photon_workpool_new(1): errno %d", errno);
    mtx = photon_mutex_new();
    cv = photon_cond_new();
    ping = photon_sem_new(0);
    pong = photon_sem_new(0);
    part_done = photon_sem_new(0);
    CHECK(mtx && cv && ping && pong && part_done, "new lock failed");

    SAY("condition variable ping-pong, main vcpu <-> pool vcpu");
    part_name = "cond";
    hist_reset();
    CHECK_OK(photon_workpool_spawn(pool, cond_partner, NULL));
    uint64_t n = 0, worst = 0, t0 = photon_now_us(), end = t0 + PART_US;
    CHECK_OK(photon_mutex_lock(mtx, PHOTON_FOREVER));
    while (n < MAX_ROUNDS) {
        uint64_t s = photon_now_us();
        if (s >= end) break;
        turn = 1;
        CHECK_OK(photon_cond_notify_one(cv));
        while (turn != 0) CHECK_OK(photon_cond_wait(cv, mtx, PHOTON_FOREVER));
        uint64_t d = photon_now_us() - s;
        worst = d > worst ? d : worst;
        hist_add(d);
        n++;
        atomic_store_explicit(&rounds_done, n, memory_order_relaxed);
    }
    uint64_t took = elapsed_us(t0);
    stop = 1;
    CHECK_OK(photon_cond_notify_all(cv));
    CHECK_OK(photon_mutex_unlock(mtx));
    CHECK_OK(photon_sem_wait(part_done, 1, 5 * 1000 * 1000ULL));
    report("cond", n, took, worst);

    SAY("semaphore ping-pong, main vcpu <-> pool vcpu");
    part_name = "sem";
    atomic_store(&rounds_done, 0);
    hist_reset();
    CHECK_OK(photon_workpool_spawn(pool, sem_partner, NULL));
    n = 0, worst = 0, t0 = photon_now_us(), end = t0 + PART_US;
    while (n < MAX_ROUNDS) {
        uint64_t s = photon_now_us();
        if (s >= end) break;
        CHECK_OK(photon_sem_signal(ping, 1));
        CHECK_OK(photon_sem_wait(pong, 1, PHOTON_FOREVER));
        uint64_t d = photon_now_us() - s;
        worst = d > worst ? d : worst;
        hist_add(d);
        n++;
        atomic_store_explicit(&rounds_done, n, memory_order_relaxed);
    }
    took = elapsed_us(t0);
    atomic_store(&sem_stop, 1);
    CHECK_OK(photon_sem_signal(ping, 1));
    CHECK_OK(photon_sem_wait(part_done, 1, 5 * 1000 * 1000ULL));
    report("sem", n, took, worst);

    CHECK_OK(photon_mutex_free(mtx));
    CHECK_OK(photon_cond_free(cv));
    CHECK_OK(photon_sem_free(ping));
    CHECK_OK(photon_sem_free(pong));
    CHECK_OK(photon_sem_free(part_done));
    photon_workpool_free(pool);
    atomic_store(&finished, 1);
    CHECK(pthread_join(wd, NULL) == 0, "pthread_join watchdog");
    test_fini();
    SAY("ok");
    return 0;
}
