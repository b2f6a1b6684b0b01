/*
 * The photon_rwlock is phase-fair (photon.h: "neither side starves"), across
 * three vcpus (the main one and a work pool of two):
 *  1. 8 readers (4 on the main vcpu, 4 on the pool) hold read locks in
 *     overlapping turns of 200 us, so that some reader always holds it; a
 *     writer on the main vcpu takes the write lock 200 times: each wrlock
 *     must return within 100 ms (phase-fairness predicts about one reader
 *     turn), and the readers keep going between;
 *  2. 8 writers hold the write lock in turns of 200 us; a reader takes the
 *     read lock 200 times: each within 100 ms (about one writer turn).
 */
#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>

#include "check.h"

#define HOLDERS 8
#define ROUNDS 200
#define LIMIT_US 100000ULL
#define WATCHDOG_S 30

static photon_workpool *pool;
static photon_rwlock *rw;
static photon_sem *done;
static atomic_int stop;
static atomic_ullong holder_ops;
static atomic_int finished;
static const char *stage = "start";

static void *watchdog(void *arg) {
    (void)arg;
    for (int i = 0; i < WATCHDOG_S * 10; i++) {
        if (atomic_load(&finished)) return NULL;
        usleep(100000);
    }
    fprintf(stderr, "WATCHDOG: stalled for %d s in %s; holder ops %llu\n", WATCHDOG_S, stage,
            (unsigned long long)atomic_load(&holder_ops));
    abort();
}

static void *holder(void *arg) {
    int write = (int)(intptr_t)arg;
    while (!atomic_load(&stop)) {
        if (write) {
            CHECK_OK(photon_rwlock_wrlock(rw, PHOTON_FOREVER));
        } else {
            CHECK_OK(photon_rwlock_rdlock(rw, PHOTON_FOREVER));
        }
        CHECK_OK(photon_thread_usleep(200));
        CHECK_OK(photon_rwlock_unlock(rw));
        atomic_fetch_add(&holder_ops, 1);
    }
    CHECK_OK(photon_sem_signal(done, 1));
    return NULL;
}

static void run(int holders_write) {
    atomic_store(&stop, 0);
    for (int i = 0; i < HOLDERS; i++) {
        if (i % 2) {
            CHECK_OK(photon_workpool_spawn(pool, holder, (void *)(intptr_t)holders_write));
        } else {
            CHECK(photon_thread_create(holder, (void *)(intptr_t)holders_write, 0), "create: errno %d", errno);
        }
    }
    CHECK_OK(photon_thread_usleep(20000)); /* they are all at it */
    uint64_t worst = 0, sum = 0, before = atomic_load(&holder_ops);
    for (int i = 0; i < ROUNDS; i++) {
        uint64_t t0 = photon_now_us();
        if (holders_write) {
            CHECK_OK(photon_rwlock_rdlock(rw, PHOTON_FOREVER));
        } else {
            CHECK_OK(photon_rwlock_wrlock(rw, PHOTON_FOREVER));
        }
        uint64_t w = elapsed_us(t0);
        CHECK_OK(photon_rwlock_unlock(rw));
        worst = w > worst ? w : worst;
        sum += w;
        CHECK_OK(photon_thread_usleep(100));
    }
    uint64_t others = atomic_load(&holder_ops) - before;
    atomic_store(&stop, 1);
    errno = 0;
    CHECK(photon_sem_wait(done, HOLDERS, 10 * 1000 * 1000ULL) == 0, "holders did not stop: errno %d", errno);
    SAY("   %s: mean wait %llu us, worst %llu us; the %d %s meanwhile: %llu turns",
        holders_write ? "rdlock" : "wrlock", (unsigned long long)(sum / ROUNDS), (unsigned long long)worst,
        HOLDERS, holders_write ? "writers" : "readers", (unsigned long long)others);
    CHECK(worst < LIMIT_US, "a %s waited %llu us (limit %llu)", holders_write ? "reader" : "writer",
          (unsigned long long)worst, (unsigned long long)LIMIT_US);
    CHECK(others >= (uint64_t)ROUNDS / 4, "the %s starved: %llu turns", holders_write ? "writers" : "readers",
          (unsigned long long)others);
}

int main(void) {
    test_start("sync_rwlock_fairness");
    test_init();
    pthread_t wd;
    CHECK(pthread_create(&wd, NULL, watchdog, NULL) == 0, "pthread_create watchdog");
    pool = photon_workpool_new(2, PHOTON_EVENT_DEFAULT);
    CHECK(pool != NULL, "photon_workpool_new(2): errno %d", errno);
    rw = photon_rwlock_new();
    done = photon_sem_new(0);
    CHECK(rw && done, "new");

    stage = "a writer against overlapping readers";
    SAY("%s: %d write locks", stage, ROUNDS);
    run(0);
    stage = "a reader against writers";
    SAY("%s: %d read locks", stage, ROUNDS);
    run(1);

    CHECK_OK(photon_rwlock_free(rw));
    CHECK_OK(photon_sem_free(done));
    photon_workpool_free(pool);
    atomic_store(&finished, 1);
    CHECK(pthread_join(wd, NULL) == 0, "pthread_join watchdog");
    test_fini();
    SAY("ok");
    return 0;
}
