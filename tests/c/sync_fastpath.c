/*
 * The lock-free fast paths of photon_sem and photon_rwlock (one atomic word
 * while nobody waits, the locked state while threads wait) and the moves
 * between the two:
 *  1. counts: a counting semaphore fed by 2 plain pthreads and 2 photon
 *     threads (signals of 1..3 units) and drained by 6 photon threads on 3
 *     vcpus (waits of 1..4 units, with a timeout no healthy run reaches),
 *     each consumer taking an exact quota; the producers hold back while
 *     more than a few units are untaken, so consumers keep running dry.
 *     Nothing may be lost or made up:
 *     units signalled = units taken + the count left, which must be exactly
 *     the surplus the producers add;
 *  2. wake bursts: 6 photon threads on a pool vcpu wait for 1 unit each,
 *     round after round, while the main thread and a plain pthread each
 *     signal half the round's units one at a time (the waiters are queued,
 *     arriving or already woken when the signals come): every round must
 *     complete (a lost wake-up times out the round) and the count end at 0;
 *  3. counts that do not fit the word (2^63 and up) move to the locked
 *     state and back: exact counts, EOVERFLOW only past UINT64_MAX, and a
 *     request of more than 2^63 units queued until it fits;
 *  4. the rwlock's word: a read lock taken on the fast path makes _free and
 *     trywrlock EBUSY (from another thread too); the fast write lock is
 *     owned (EDEADLK for its owner's rdlock/wrlock, EINVAL for another
 *     thread's unlock, which leaves it held), and a writer waiting on a
 *     fast-held read lock gets it when the last reader leaves.
 * A watchdog pthread aborts with the progress if anything stalls.
 */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <unistd.h>

#include "check.h"

#define WATCHDOG_S 60
#define TIMEOUT_US (20 * 1000 * 1000ULL)

static atomic_int finished;
static atomic_ullong progress;
static atomic_int stage;

static void *watchdog(void *arg) {
    (void)arg;
    for (int i = 0; i < WATCHDOG_S * 10; i++) {
        if (atomic_load(&finished)) return NULL;
        usleep(100000);
    }
    fprintf(stderr, "WATCHDOG: stalled after %d s in part %d, progress %llu\n", WATCHDOG_S,
            atomic_load(&stage), (unsigned long long)atomic_load(&progress));
    abort();
}

static uint64_t rnd(uint64_t *x) {
    *x ^= *x << 13, *x ^= *x >> 7, *x ^= *x << 17;
    return *x;
}

/* ---------------------------------------------------------------- 1. counts */

#define CONSUMERS 6
#define QUOTA 40000        /* units each consumer takes */
#define PRODUCERS 4        /* 2 pthreads + 2 photon threads */
#define SURPLUS 7          /* units left over at the end */
#define IN_FLIGHT 12       /* producers wait while more than this is untaken */
#define PER_PRODUCER ((CONSUMERS * QUOTA + SURPLUS) / PRODUCERS)
#define PRODUCED_EXTRA ((CONSUMERS * QUOTA + SURPLUS) % PRODUCERS)

static photon_sem *units, *done;
static atomic_ullong taken, signalled;

static void produce(int id, int plain) {
    uint64_t x = 0x2545f4914f6cdd1dULL * (uint64_t)(id + 1);
    uint64_t left = PER_PRODUCER + (id == 0 ? PRODUCED_EXTRA : 0);
    while (left > 0) {
        /* keep the count low, so consumers keep running dry and queueing
         * while the signals come: the moves between word and locked state
         * race with signals from every side */
        while (atomic_load(&signalled) - atomic_load(&taken) > IN_FLIGHT) {
            if (plain) {
                sched_yield();
            } else {
                photon_thread_yield();
            }
        }
        uint64_t n = 1 + rnd(&x) % 3;
        if (n > left) n = left;
        CHECK_OK(photon_sem_signal(units, n));
        atomic_fetch_add(&signalled, n);
        left -= n;
        if (rnd(&x) % 16 == 0) {
            if (plain) {
                sched_yield();
            } else {
                photon_thread_yield();
            }
        }
    }
}

static void *plain_producer(void *arg) {
    produce((int)(intptr_t)arg, 1);
    return NULL;
}

static void *photon_producer(void *arg) {
    produce((int)(intptr_t)arg, 0);
    CHECK_OK(photon_sem_signal(done, 1));
    return NULL;
}

static void *consumer(void *arg) {
    int id = (int)(intptr_t)arg;
    uint64_t x = 0x9e3779b97f4a7c15ULL * (uint64_t)(id + 1);
    uint64_t left = QUOTA;
    while (left > 0) {
        uint64_t n = 1 + rnd(&x) % 4;
        if (n > left) n = left;
        errno = 0;
        int r = rnd(&x) % 8 == 0 ? photon_sem_wait(units, n, 0) : photon_sem_wait(units, n, TIMEOUT_US);
        if (r != 0) {
            CHECK(errno == ETIMEDOUT, "consumer %d: sem_wait(%llu): errno %d", id, (unsigned long long)n, errno);
            continue; /* only a timeout-0 try may miss: a real wait would have stalled 20 s */
        }
        atomic_fetch_add(&taken, n);
        atomic_fetch_add_explicit(&progress, n, memory_order_relaxed);
        left -= n;
    }
    CHECK_OK(photon_sem_signal(done, 1));
    return NULL;
}

static void part_counts(photon_workpool *pool) {
    atomic_store(&stage, 1);
    SAY("1. counts: %d producers (2 pthreads, 2 photon threads) signal %d units, %d consumers on 3 vcpus take %d each",
        PRODUCERS, CONSUMERS * QUOTA + SURPLUS, CONSUMERS, QUOTA);
    units = photon_sem_new(0);
    done = photon_sem_new(0);
    CHECK(units && done, "photon_sem_new: errno %d", errno);
    for (int i = 0; i < CONSUMERS; i++) {
        if (i % 3 == 0) {
            CHECK(photon_thread_create(consumer, (void *)(intptr_t)i, 0) != NULL, "create: errno %d", errno);
        } else {
            CHECK_OK(photon_workpool_spawn(pool, consumer, (void *)(intptr_t)i));
        }
    }
    pthread_t plain[2];
    for (int i = 0; i < 2; i++) {
        CHECK(pthread_create(&plain[i], NULL, plain_producer, (void *)(intptr_t)i) == 0, "pthread_create");
    }
    CHECK(photon_thread_create(photon_producer, (void *)(intptr_t)2, 0) != NULL, "create: errno %d", errno);
    CHECK_OK(photon_workpool_spawn(pool, photon_producer, (void *)(intptr_t)3));
    errno = 0;
    int r = photon_sem_wait(done, CONSUMERS + 2, 40 * 1000 * 1000ULL);
    CHECK(r == 0, "consumers/producers did not finish: errno %d, %llu taken, %llu signalled", errno,
          (unsigned long long)atomic_load(&taken), (unsigned long long)atomic_load(&signalled));
    for (int i = 0; i < 2; i++) pthread_join(plain[i], NULL);
    uint64_t count = 0;
    CHECK_OK(photon_sem_count(units, &count));
    SAY("   signalled %llu, taken %llu, left %llu", (unsigned long long)atomic_load(&signalled),
        (unsigned long long)atomic_load(&taken), (unsigned long long)count);
    CHECK(atomic_load(&signalled) == (uint64_t)CONSUMERS * QUOTA + SURPLUS, "signalled %llu",
          (unsigned long long)atomic_load(&signalled));
    CHECK(atomic_load(&taken) == (uint64_t)CONSUMERS * QUOTA, "taken %llu", (unsigned long long)atomic_load(&taken));
    CHECK(count == SURPLUS, "count left %llu, want %d", (unsigned long long)count, SURPLUS);
    CHECK_ERRNO(photon_sem_wait(units, SURPLUS + 1, 0), ETIMEDOUT);
    CHECK_OK(photon_sem_wait(units, SURPLUS, 0));
    CHECK_ERRNO(photon_sem_wait(units, 1, 0), ETIMEDOUT);
    CHECK_OK(photon_sem_free(units));
    CHECK_OK(photon_sem_free(done));
}

/* ----------------------------------------------------------- 2. wake bursts */

#define WAITERS 6
#define ROUNDS 3000

static photon_sem *bell, *ack;
static atomic_int round_go;   /* the round the plain signaller may ring */
static atomic_int round_rung; /* the last round it rang */
static atomic_int bursts_over;

static void *burst_waiter(void *arg) {
    (void)arg;
    for (int r = 0; r < ROUNDS; r++) {
        errno = 0;
        int ret = photon_sem_wait(bell, 1, TIMEOUT_US);
        CHECK(ret == 0, "round %d: waiter's sem_wait: errno %d (a lost wake-up)", r, errno);
        CHECK_OK(photon_sem_signal(ack, 1));
    }
    return NULL;
}

static void *plain_ringer(void *arg) {
    (void)arg;
    for (int r = 0; r < ROUNDS; r++) {
        while (atomic_load(&round_go) <= r) {
            if (atomic_load(&bursts_over)) return NULL;
            sched_yield();
        }
        for (int i = 0; i < WAITERS / 2; i++) CHECK_OK(photon_sem_signal(bell, 1));
        atomic_store(&round_rung, r + 1);
    }
    return NULL;
}

static void part_bursts(photon_workpool *pool) {
    atomic_store(&stage, 2);
    SAY("2. wake bursts: %d waiters on a pool vcpu, %d rounds, half the units from the main thread, half from a "
        "pthread",
        WAITERS, ROUNDS);
    bell = photon_sem_new(0);
    ack = photon_sem_new(0);
    CHECK(bell && ack, "photon_sem_new: errno %d", errno);
    for (int i = 0; i < WAITERS; i++) CHECK_OK(photon_workpool_spawn(pool, burst_waiter, NULL));
    pthread_t ringer;
    CHECK(pthread_create(&ringer, NULL, plain_ringer, NULL) == 0, "pthread_create");
    for (int r = 0; r < ROUNDS; r++) {
        atomic_store(&round_go, r + 1);
        for (int i = 0; i < WAITERS - WAITERS / 2; i++) {
            CHECK_OK(photon_sem_signal(bell, 1));
            if (r % 3 == i) photon_thread_yield();
        }
        errno = 0;
        int ret = photon_sem_wait(ack, WAITERS, TIMEOUT_US);
        CHECK(ret == 0, "round %d: acks: errno %d (a lost wake-up)", r, errno);
        /* the acks needed the pthread's units too: it rang (and is about to say so) */
        while (atomic_load(&round_rung) != r + 1) sched_yield();
        atomic_fetch_add_explicit(&progress, 1, memory_order_relaxed);
    }
    atomic_store(&bursts_over, 1);
    pthread_join(ringer, NULL);
    uint64_t count = 1;
    CHECK_OK(photon_sem_count(bell, &count));
    CHECK(count == 0, "bell count %llu after the rounds, want 0", (unsigned long long)count);
    CHECK_OK(photon_sem_count(ack, &count));
    CHECK(count == 0, "ack count %llu after the rounds, want 0", (unsigned long long)count);
    /* the waiters have ended (their last wait was answered); the pool keeps no waiter */
    for (int i = 0; i < 100; i++) {
        if (photon_sem_free(bell) == 0) {
            bell = NULL;
            break;
        }
        photon_thread_usleep(1000);
    }
    CHECK(bell == NULL, "bell still in use after the rounds");
    CHECK_OK(photon_sem_free(ack));
}

/* --------------------------------------------------------------- 3. big counts */

#define TOP (1ULL << 63)

static photon_sem *big;

static void *big_waiter(void *arg) {
    (void)arg;
    CHECK_OK(photon_sem_wait(big, TOP + 5, TIMEOUT_US));
    return NULL;
}

static uint64_t count_of(photon_sem *s) {
    uint64_t c = 0;
    CHECK_OK(photon_sem_count(s, &c));
    return c;
}

static void part_big(void) {
    atomic_store(&stage, 3);
    SAY("3. counts past 2^63 and back");
    big = photon_sem_new(TOP - 2);
    CHECK(big != NULL, "photon_sem_new: errno %d", errno);
    CHECK_OK(photon_sem_signal(big, 1));
    CHECK(count_of(big) == TOP - 1, "count %llu", (unsigned long long)count_of(big));
    CHECK_OK(photon_sem_signal(big, 1));
    CHECK(count_of(big) == TOP, "count %llu", (unsigned long long)count_of(big));
    CHECK_OK(photon_sem_wait(big, 3, 0));
    CHECK(count_of(big) == TOP - 3, "count %llu", (unsigned long long)count_of(big));
    CHECK_OK(photon_sem_wait(big, 1, 0));
    CHECK_OK(photon_sem_signal(big, UINT64_MAX - (TOP - 4)));
    CHECK(count_of(big) == UINT64_MAX, "count %llu", (unsigned long long)count_of(big));
    CHECK_ERRNO(photon_sem_signal(big, 1), EOVERFLOW);
    CHECK(count_of(big) == UINT64_MAX, "count %llu after EOVERFLOW", (unsigned long long)count_of(big));
    CHECK_OK(photon_sem_wait(big, UINT64_MAX - 2, 0));
    CHECK(count_of(big) == 2, "count %llu", (unsigned long long)count_of(big));
    CHECK_OK(photon_sem_wait(big, 2, 0));
    CHECK_ERRNO(photon_sem_wait(big, 1, 0), ETIMEDOUT);

    SAY("   a request of 2^63 + 5 waits until it fits");
    photon_thread *w = spawn_joinable(big_waiter, NULL, 0);
    photon_thread_usleep(2000); /* it queues */
    CHECK_OK(photon_sem_signal(big, TOP));
    photon_thread_usleep(2000);
    CHECK(count_of(big) == TOP, "count %llu with the big request queued", (unsigned long long)count_of(big));
    CHECK_ERRNO(photon_sem_free(big), EBUSY);
    CHECK_OK(photon_sem_signal(big, 4));
    photon_thread_usleep(2000);
    CHECK(count_of(big) == TOP + 4, "count %llu: 2^63 + 4 does not fit", (unsigned long long)count_of(big));
    CHECK_OK(photon_sem_signal(big, 3));
    join_ok(w);
    CHECK(count_of(big) == 2, "count %llu after the big request", (unsigned long long)count_of(big));
    CHECK_OK(photon_sem_wait(big, 2, 0));
    CHECK_ERRNO(photon_sem_wait(big, 1, 0), ETIMEDOUT);
    CHECK_OK(photon_sem_free(big));
}

/* --------------------------------------------------------------- 4. rwlock */

static photon_rwlock *rw;
static atomic_int writer_in;

static void *other_tries(void *arg) {
    int read_held = (int)(intptr_t)arg;
    CHECK_ERRNO(photon_rwlock_trywrlock(rw), EBUSY);
    CHECK_ERRNO(photon_rwlock_free(rw), EBUSY);
    if (read_held) {
        CHECK_OK(photon_rwlock_tryrdlock(rw)); /* readers share */
        CHECK_OK(photon_rwlock_unlock(rw));
    } else {
        CHECK_ERRNO(photon_rwlock_tryrdlock(rw), EBUSY);
        CHECK_ERRNO(photon_rwlock_unlock(rw), EINVAL); /* not the writer: it stays held */
        CHECK_ERRNO(photon_rwlock_trywrlock(rw), EBUSY);
    }
    return NULL;
}

static void *late_writer(void *arg) {
    (void)arg;
    CHECK_OK(photon_rwlock_wrlock(rw, TIMEOUT_US));
    atomic_store(&writer_in, 1);
    CHECK_OK(photon_rwlock_unlock(rw));
    return NULL;
}

static void part_rwlock(photon_workpool *pool) {
    atomic_store(&stage, 4);
    SAY("4. rwlock: fast read and write locks are seen and owned");
    rw = photon_rwlock_new();
    CHECK(rw != NULL, "photon_rwlock_new: errno %d", errno);

    CHECK_OK(photon_rwlock_rdlock(rw, PHOTON_FOREVER));
    CHECK_ERRNO(photon_rwlock_free(rw), EBUSY);
    join_ok(spawn_joinable(other_tries, (void *)(intptr_t)1, 0));
    CHECK_OK(photon_rwlock_unlock(rw));
    CHECK_ERRNO(photon_rwlock_unlock(rw), EINVAL);

    CHECK_OK(photon_rwlock_wrlock(rw, PHOTON_FOREVER));
    CHECK_ERRNO(photon_rwlock_rdlock(rw, 0), EDEADLK);
    CHECK_ERRNO(photon_rwlock_wrlock(rw, 0), EDEADLK);
    CHECK_ERRNO(photon_rwlock_free(rw), EBUSY);
    join_ok(spawn_joinable(other_tries, (void *)(intptr_t)0, 0));
    CHECK_OK(photon_rwlock_unlock(rw));
    CHECK_ERRNO(photon_rwlock_unlock(rw), EINVAL);

    SAY("   a writer on a pool vcpu waits for two fast readers and gets the lock after the last");
    CHECK_OK(photon_rwlock_rdlock(rw, PHOTON_FOREVER));
    CHECK_OK(photon_rwlock_rdlock(rw, PHOTON_FOREVER)); /* counted, not named */
    CHECK_OK(photon_workpool_spawn(pool, late_writer, NULL));
    photon_thread_usleep(5000);
    CHECK(!atomic_load(&writer_in), "the writer entered while read locks were held");
    CHECK_ERRNO(photon_rwlock_tryrdlock(rw), EBUSY); /* a writer waits: phase-fair */
    CHECK_OK(photon_rwlock_unlock(rw));
    photon_thread_usleep(5000);
    CHECK(!atomic_load(&writer_in), "the writer entered while a read lock was held");
    CHECK_OK(photon_rwlock_unlock(rw));
    for (int i = 0; i < 2000 && !atomic_load(&writer_in); i++) photon_thread_usleep(1000);
    CHECK(atomic_load(&writer_in), "the writer never got the lock after the last reader left");
    int freed = 0;
    for (int i = 0; i < 100 && !(freed = photon_rwlock_free(rw) == 0); i++) photon_thread_usleep(1000);
    CHECK(freed, "the rwlock is still in use after its last writer left");
}

int main(void) {
    test_start("sync_fastpath");
    test_init();
    pthread_t wd;
    CHECK(pthread_create(&wd, NULL, watchdog, NULL) == 0, "pthread_create watchdog");
    photon_workpool *pool = photon_workpool_new(2, PHOTON_EVENT_DEFAULT);
    CHECK(pool != NULL, "photon_workpool_new(2): errno %d", errno);

    part_counts(pool);
    part_bursts(pool);
    part_big();
    part_rwlock(pool);

    photon_workpool_free(pool);
    atomic_store(&finished, 1);
    pthread_join(wd, NULL);
    test_fini();
    SAY("OK");
    return 0;
}
