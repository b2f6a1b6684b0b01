/*
 * A photon_rwlock under contention from photon threads on three vcpus (the
 * main vcpu, threads made with photon_thread_create, and a work pool of two,
 * threads started with photon_workpool_spawn). Writers increment two plain
 * counters a and b one after the other (yielding between them now and
 * then, so a reader admitted too early would see a != b); readers check
 * a == b, that no writer is inside, and count how many readers are inside
 * at once (shared access must really happen). Locks are taken without a
 * timeout and with a generous one. The writes must add up exactly:
 * 4 writers x 75,000 = 300,000, while 4 readers read 75,000 times each
 * (600,000 lock operations; a third of that under Valgrind, where the full
 * run took 25 s of the 30 s the main thread waits).
 */
#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>

#include "check.h"

#define WRITERS 4
#define READERS 4
#define THREADS (WRITERS + READERS)
static int iters = 75000; /* 25,000 under Valgrind: main() */
#define WATCHDOG_S 40

static photon_rwlock *rw;
static photon_sem *done;
static uint64_t a, b; /* guarded by rw */
static atomic_int writers_in, readers_in, max_readers_in;
static atomic_ullong progress;
static atomic_int finished;
static _Atomic(photon_vcpu *) vcpu_of[THREADS];

static void *writer(void *arg) {
    int id = (int)(intptr_t)arg;
    atomic_store(&vcpu_of[id], photon_vcpu_current());
    uint64_t x = 0x2545F4914F6CDD1DULL * (uint64_t)(id + 1);
    for (int i = 0; i < iters; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        if (x % 4 == 0) {
            CHECK_OK(photon_rwlock_wrlock(rw, 10 * 1000 * 1000ULL));
        } else {
            CHECK_OK(photon_rwlock_wrlock(rw, PHOTON_FOREVER));
        }
        CHECK(atomic_fetch_add(&writers_in, 1) == 0, "two writers inside");
        CHECK(atomic_load(&readers_in) == 0, "a writer inside with %d readers",
              atomic_load(&readers_in));
        a++;
        if (x % 16 == 1) photon_thread_yield();
        b++;
        atomic_fetch_sub(&writers_in, 1);
        CHECK_OK(photon_rwlock_unlock(rw));
        atomic_fetch_add_explicit(&progress, 1, memory_order_relaxed);
        if (x % 8 == 3) photon_thread_yield();
    }
    CHECK_OK(photon_sem_signal(done, 1));
    return NULL;
}

static void *reader(void *arg) {
    int id = (int)(intptr_t)arg;
    atomic_store(&vcpu_of[id], photon_vcpu_current());
    uint64_t x = 0x9E3779B97F4A7C15ULL * (uint64_t)(id + 1);
    uint64_t last = 0;
    for (int i = 0; i < iters; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        if (x % 4 == 0) {
            CHECK_OK(photon_rwlock_rdlock(rw, 10 * 1000 * 1000ULL));
        } else {
            CHECK_OK(photon_rwlock_rdlock(rw, PHOTON_FOREVER));
        }
        int n = atomic_fetch_add(&readers_in, 1) + 1;
        int m = atomic_load(&max_readers_in);
        while (n > m && !atomic_compare_exchange_weak(&max_readers_in, &m, n)) {
        }
        CHECK(atomic_load(&writers_in) == 0, "a reader inside with a writer");
        uint64_t sa = a, sb = b;
        CHECK(sa == sb, "reader saw a=%llu b=%llu", (unsigned long long)sa, (unsigned long long)sb);
        CHECK(sa >= last, "the counter went back: %llu after %llu", (unsigned long long)sa,
              (unsigned long long)last);
        last = sa;
        if (x % 8 == 1) photon_thread_yield(); /* hold it across a switch */
        CHECK(a == sa && b == sb, "written under a read lock");
        atomic_fetch_sub(&readers_in, 1);
        CHECK_OK(photon_rwlock_unlock(rw));
        atomic_fetch_add_explicit(&progress, 1, memory_order_relaxed);
        if (x % 8 == 3) photon_thread_yield();
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
    fprintf(stderr, "WATCHDOG: stalled after %d s: %llu of %d lock operations done, "
            "writers_in=%d readers_in=%d\n",
            WATCHDOG_S, (unsigned long long)atomic_load(&progress), THREADS * iters,
            atomic_load(&writers_in), atomic_load(&readers_in));
    abort();
}

int main(void) {
    test_start("sync_rwlock_contention");
    test_init();
    if (under_valgrind()) iters = 25000;
    pthread_t wd;
    CHECK(pthread_create(&wd, NULL, watchdog, NULL) == 0, "pthread_create watchdog");
    photon_workpool *pool = photon_workpool_new(2, PHOTON_EVENT_DEFAULT);
    CHECK(pool != NULL, "photon_workpool_new(2): errno %d", errno);
    rw = photon_rwlock_new();
    done = photon_sem_new(0);
    CHECK(rw && done, "new lock failed");

    SAY("%d writers and %d readers, half on the main vcpu, half on a pool of 2, %d ops each",
        WRITERS, READERS, iters);
    uint64_t t0 = photon_now_us();
    /* ids 0..3 writers, 4..7 readers; even ids on the pool, odd ones on main */
    for (int i = 0; i < THREADS; i++) {
        photon_entry fn = i < WRITERS ? writer : reader;
        if (i % 2 == 0) {
            CHECK_OK(photon_workpool_spawn(pool, fn, (void *)(intptr_t)i));
        } else {
            CHECK(photon_thread_create(fn, (void *)(intptr_t)i, 0) != NULL, "create: errno %d", errno);
        }
    }
    errno = 0;
    int r = photon_sem_wait(done, THREADS, 30 * 1000 * 1000ULL);
    CHECK(r == 0, "waiting for the workers: %d errno %d; %llu of %d ops done", r, errno,
          (unsigned long long)atomic_load(&progress), THREADS * iters);
    uint64_t took = elapsed_us(t0);

    CHECK_OK(photon_rwlock_rdlock(rw, PHOTON_FOREVER));
    uint64_t sa = a, sb = b;
    CHECK_OK(photon_rwlock_unlock(rw));
    SAY("a=%llu b=%llu in %.2f s (%.0f lock/unlock per s), at most %d readers inside at once",
        (unsigned long long)sa, (unsigned long long)sb, took / 1e6, THREADS * iters / (took / 1e6),
        atomic_load(&max_readers_in));
    CHECK(sa == (uint64_t)WRITERS * iters && sb == sa, "a=%llu b=%llu, want %d",
          (unsigned long long)sa, (unsigned long long)sb, WRITERS * iters);
    CHECK(atomic_load(&max_readers_in) >= 2, "readers never shared the lock");

    photon_vcpu *vm = photon_vcpu_current();
    photon_vcpu *p0 = photon_workpool_vcpu(pool, 0), *p1 = photon_workpool_vcpu(pool, 1);
    int on[3] = {0, 0, 0};
    for (int i = 0; i < THREADS; i++) {
        photon_vcpu *v = atomic_load(&vcpu_of[i]);
        on[0] += v == vm, on[1] += v == p0, on[2] += v == p1;
    }
    SAY("threads per vcpu: main %d, pool0 %d, pool1 %d", on[0], on[1], on[2]);
    CHECK(on[0] == THREADS / 2 && on[1] > 0 && on[2] > 0 && on[1] + on[2] == THREADS / 2,
          "threads per vcpu: main %d, pool0 %d, pool1 %d", on[0], on[1], on[2]);

    CHECK_OK(photon_rwlock_free(rw));
    CHECK_OK(photon_sem_free(done));
    photon_workpool_free(pool);
    atomic_store(&finished, 1);
    CHECK(pthread_join(wd, NULL) == 0, "pthread_join watchdog");
    test_fini();
    SAY("ok");
    return 0;
}
