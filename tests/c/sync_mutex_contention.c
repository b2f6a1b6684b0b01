/*
 * A photon_mutex under contention from photon threads on three vcpus: the
 * main vcpu (threads made with photon_thread_create) and a work pool of two
 * (threads started with photon_workpool_spawn, round robin over the pool).
 * Every thread increments a plain, non-atomic counter under the mutex, by
 * lock (PHOTON_FOREVER), by a timed lock with a generous timeout, and by
 * trylock retried with yields; an atomic "inside" flag catches two owners at
 * once. The total must be exact: 8 threads x 400,000 = 3,200,000 increments.
 * The workers report their end on a photon_sem that the main thread waits
 * on; a watchdog pthread aborts with the progress so far if the whole thing
 * stalls (a lost wake-up leaves a waiter parked forever).
 */
#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>

#include "check.h"

#define MAIN_THREADS 4
#define POOL_THREADS 4
#define THREADS (MAIN_THREADS + POOL_THREADS)
#define ITERS 400000
#define WATCHDOG_S 40

static photon_mutex *mtx;
static photon_sem *done;
static uint64_t counter;         /* guarded by mtx only */
static atomic_int inside;        /* 1 while someone holds mtx */
static atomic_ullong progress;   /* increments done, for the watchdog */
static atomic_int finished;      /* set when the test is over */
static _Atomic(photon_vcpu *) vcpu_of[THREADS];
static atomic_ullong trylock_busy, timed_ok;

static void enter(void) {
    int was = atomic_exchange(&inside, 1);
    CHECK(was == 0, "two threads hold the mutex at once");
}

static void leave(void) { atomic_store(&inside, 0); }

static void *worker(void *arg) {
    int id = (int)(intptr_t)arg;
    photon_vcpu *me = photon_vcpu_current();
    CHECK(me != NULL, "worker %d: photon_vcpu_current NULL (errno %d)", id, errno);
    atomic_store(&vcpu_of[id], me);
    uint64_t x = 0x9e3779b97f4a7c15ULL * (uint64_t)(id + 1);
    for (int i = 0; i < ITERS; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        switch (x % 8) {
        case 0: /* trylock, yielding until it is free */
            for (;;) {
                errno = 0;
                int r = photon_mutex_trylock(mtx);
                if (r == 0) break;
                CHECK(errno == EBUSY, "trylock: got %d errno %d, want EBUSY", r, errno);
                atomic_fetch_add_explicit(&trylock_busy, 1, memory_order_relaxed);
                photon_thread_yield();
            }
            break;
        case 1: /* timed lock: 10 s cannot expire here */
            CHECK_OK(photon_mutex_lock(mtx, 10 * 1000 * 1000ULL));
            atomic_fetch_add_explicit(&timed_ok, 1, memory_order_relaxed);
            break;
        default:
            CHECK_OK(photon_mutex_lock(mtx, PHOTON_FOREVER));
        }
        enter();
        counter++;
        if (x % 64 == 3) photon_thread_yield(); /* hold it across a switch */
        leave();
        CHECK_OK(photon_mutex_unlock(mtx));
        atomic_fetch_add_explicit(&progress, 1, memory_order_relaxed);
        if (x % 32 == 5) photon_thread_yield();
    }
    CHECK_OK(photon_sem_signal(done, 1));
    return NULL;
}

static void *watchdog(void *arg) {
    (void)arg;
    for (int i = 0; i < WATCHDOG_S * 10; i++) {
        if (atomic_load(&finished)) return NULL;
        usleep(100000);
    }
    fprintf(stderr, "WATCHDOG: stalled after %d s: %llu of %d increments done, inside=%d\n",
            WATCHDOG_S, (unsigned long long)atomic_load(&progress), THREADS * ITERS,
            atomic_load(&inside));
    abort();
}

int main(void) {
    test_start("sync_mutex_contention");
    test_init();
    pthread_t wd;
    CHECK(pthread_create(&wd, NULL, watchdog, NULL) == 0, "pthread_create watchdog");

    photon_workpool *pool = photon_workpool_new(2, PHOTON_EVENT_DEFAULT);
    CHECK(pool != NULL, "photon_workpool_new(2): errno %d", errno);
    mtx = photon_mutex_new();
    done = photon_sem_new(0);
    CHECK(mtx && done, "new lock failed");

    SAY("%d threads on the main vcpu + %d on a pool of 2 vcpus, %d locked increments each",
        MAIN_THREADS, POOL_THREADS, ITERS);
    uint64_t t0 = photon_now_us();
    for (int i = 0; i < POOL_THREADS; i++) {
        CHECK_OK(photon_workpool_spawn(pool, worker, (void *)(intptr_t)(MAIN_THREADS + i)));
    }
    for (int i = 0; i < MAIN_THREADS; i++) {
        CHECK(photon_thread_create(worker, (void *)(intptr_t)i, 0) != NULL,
              "photon_thread_create: errno %d", errno);
    }
    /* the main thread waits as a photon thread: its vcpu keeps running workers */
    errno = 0;
    int r = photon_sem_wait(done, THREADS, 30 * 1000 * 1000ULL);
    CHECK(r == 0, "waiting for the workers: %d errno %d; %llu of %d increments done", r, errno,
          (unsigned long long)atomic_load(&progress), THREADS * ITERS);
    uint64_t took = elapsed_us(t0);

    CHECK_OK(photon_mutex_lock(mtx, PHOTON_FOREVER));
    uint64_t total = counter;
    CHECK_OK(photon_mutex_unlock(mtx));
    SAY("total %llu in %.2f s (%.0f lock/unlock per s; trylock EBUSY %llu, timed locks %llu)",
        (unsigned long long)total, took / 1e6, total / (took / 1e6),
        (unsigned long long)atomic_load(&trylock_busy), (unsigned long long)atomic_load(&timed_ok));
    CHECK(total == (uint64_t)THREADS * ITERS, "counter %llu, want %d", (unsigned long long)total,
          THREADS * ITERS);

    SAY("the threads ran on 3 distinct vcpus");
    photon_vcpu *main_vcpu = photon_vcpu_current();
    photon_vcpu *p0 = photon_workpool_vcpu(pool, 0), *p1 = photon_workpool_vcpu(pool, 1);
    CHECK(main_vcpu && p0 && p1 && main_vcpu != p0 && main_vcpu != p1 && p0 != p1,
          "vcpus main %p pool %p %p", (void *)main_vcpu, (void *)p0, (void *)p1);
    int on_main = 0, on_p0 = 0, on_p1 = 0;
    for (int i = 0; i < THREADS; i++) {
        photon_vcpu *v = atomic_load(&vcpu_of[i]);
        on_main += v == main_vcpu;
        on_p0 += v == p0;
        on_p1 += v == p1;
    }
    CHECK(on_main == MAIN_THREADS && on_p0 > 0 && on_p1 > 0 && on_p0 + on_p1 == POOL_THREADS,
          "threads per vcpu: main %d, pool0 %d, pool1 %d", on_main, on_p0, on_p1);
    SAY("threads per vcpu: main %d, pool0 %d, pool1 %d", on_main, on_p0, on_p1);

    CHECK_OK(photon_mutex_free(mtx));
    CHECK_OK(photon_sem_free(done));
    photon_workpool_free(pool);
    atomic_store(&finished, 1);
    CHECK(pthread_join(wd, NULL) == 0, "pthread_join watchdog");
    test_fini();
    SAY("ok");
    return 0;
}
