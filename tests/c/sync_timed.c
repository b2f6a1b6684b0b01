/*
 * Timed waits that time out under contention, on three vcpus (the main vcpu
 * and a work pool of two). Each timed-out call must return -1 with
 * ETIMEDOUT after at least its timeout (and not absurdly later: < 1 s more),
 * and the lock must be in a sane state afterwards.
 *
 *  1. mutex: one thread holds it 300 ms; meanwhile waiters on every vcpu
 *     ask with timeouts of 5..60 ms (all time out) and others wait without
 *     a timeout (all get it afterwards, one at a time).
 *  2. mutex, busy: 6 threads pass the mutex around for 300 ms, each
 *     holding it 2 ms at a time, while 6 others try with 1..3 ms timeouts
 *     over and over: each try either times out (elapsed >= timeout) or
 *     really holds the mutex alone.
 *  3. cond_wait with a timeout and no notify while others hammer the mutex:
 *     ETIMEDOUT, and the mutex is held again on return.
 *  4. semaphore: count 0, waiters with timeouts time out; then a request
 *     for 5 at the head of the queue times out and the request for 1 queued
 *     behind it is served at once from the count of 2 that is there.
 *  5. rwlock: a writer holds it: timed rdlock and wrlock time out; readers
 *     hold it: a timed wrlock times out, and a reader that queued behind the
 *     waiting writer enters as soon as that writer gives up (while the
 *     first readers still hold it).
 */
#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>

#include "check.h"

#define WATCHDOG_S 40
#define SLACK_US 1000000ULL

static photon_workpool *pool;
static photon_sem *done;
static atomic_int finished;
static const char *stage = "start";

static void *watchdog(void *arg) {
    (void)arg;
    for (int i = 0; i < WATCHDOG_S * 10; i++) {
        if (atomic_load(&finished)) return NULL;
        usleep(100000);
    }
    fprintf(stderr, "WATCHDOG: stalled for %d s in stage: %s\n", WATCHDOG_S, stage);
    abort();
}

/* Starts fn(arg): even n on the main vcpu, odd n on the pool (round robin). */
static void start(int n, photon_entry fn, void *arg) {
    if (n % 2 == 0) {
        CHECK(photon_thread_create(fn, arg, 0) != NULL, "photon_thread_create: errno %d", errno);
    } else {
        CHECK_OK(photon_workpool_spawn(pool, fn, arg));
    }
}

static void wait_done(int n) {
    errno = 0;
    int r = photon_sem_wait(done, (uint64_t)n, 20 * 1000 * 1000ULL);
    CHECK(r == 0, "stage %s: waiting for %d threads: errno %d", stage, n, errno);
}

static void check_timed_out(const char *what, int r, int err, uint64_t took, uint64_t timeout) {
    CHECK(r == -1 && err == ETIMEDOUT, "%s (timeout %llu us): got %d errno %d, want ETIMEDOUT", what,
          (unsigned long long)timeout, r, err);
    CHECK(took >= timeout, "%s: timed out after %llu us, before its timeout of %llu us", what,
          (unsigned long long)took, (unsigned long long)timeout);
    CHECK(took < timeout + SLACK_US, "%s: timed out after %llu us, timeout %llu us", what,
          (unsigned long long)took, (unsigned long long)timeout);
}

/* ------------------------------------------------------------ 1. mutex held */

static photon_mutex *m1;
static atomic_int inside;
static atomic_int m1_held;    /* the 300 ms holder has it */
static atomic_int m1_timeouts, m1_late_ok;

static void *m1_holder(void *arg) {
    (void)arg;
    CHECK_OK(photon_mutex_lock(m1, PHOTON_FOREVER));
    atomic_store(&m1_held, 1);
    CHECK_OK(photon_thread_usleep(300000));
    atomic_store(&m1_held, 0);
    CHECK_OK(photon_mutex_unlock(m1));
    CHECK_OK(photon_sem_signal(done, 1));
    return NULL;
}

static void *m1_timed(void *arg) {
    uint64_t timeout = (uint64_t)(uintptr_t)arg;
    uint64_t t0 = photon_now_us();
    errno = 0;
    int r = photon_mutex_lock(m1, timeout);
    int err = errno;
    check_timed_out("mutex_lock", r, err, elapsed_us(t0), timeout);
    atomic_fetch_add(&m1_timeouts, 1);
    CHECK_OK(photon_sem_signal(done, 1));
    return NULL;
}

static void *m1_forever(void *arg) {
    (void)arg;
    CHECK_OK(photon_mutex_lock(m1, PHOTON_FOREVER));
    CHECK(atomic_exchange(&inside, 1) == 0, "two owners");
    CHECK(!atomic_load(&m1_held), "got the mutex while the holder had it");
    CHECK_OK(photon_thread_usleep(1000));
    atomic_store(&inside, 0);
    CHECK_OK(photon_mutex_unlock(m1));
    atomic_fetch_add(&m1_late_ok, 1);
    CHECK_OK(photon_sem_signal(done, 1));
    return NULL;
}

/* ------------------------------------------------------------ 2. mutex busy */

static atomic_int busy_stop;
static atomic_ullong busy_timeouts, busy_got;

static void *m2_passer(void *arg) {
    (void)arg;
    while (!atomic_load(&busy_stop)) {
        CHECK_OK(photon_mutex_lock(m1, PHOTON_FOREVER));
        CHECK(atomic_exchange(&inside, 1) == 0, "two owners");
        CHECK_OK(photon_thread_usleep(2000));
        atomic_store(&inside, 0);
        CHECK_OK(photon_mutex_unlock(m1));
    }
    CHECK_OK(photon_sem_signal(done, 1));
    return NULL;
}

static void *m2_timed(void *arg) {
    uint64_t seed = (uint64_t)(uintptr_t)arg;
    while (!atomic_load(&busy_stop)) {
        seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
        uint64_t timeout = 1000 + (seed >> 33) % 2001;
        uint64_t t0 = photon_now_us();
        errno = 0;
        int r = photon_mutex_lock(m1, timeout);
        int err = errno;
        uint64_t took = elapsed_us(t0);
        if (r == 0) {
            CHECK(atomic_exchange(&inside, 1) == 0, "a timed lock got a held mutex");
            photon_thread_yield();
            atomic_store(&inside, 0);
            CHECK_OK(photon_mutex_unlock(m1));
            atomic_fetch_add(&busy_got, 1);
        } else {
            check_timed_out("mutex_lock (busy)", r, err, took, timeout);
            atomic_fetch_add(&busy_timeouts, 1);
        }
        CHECK_OK(photon_thread_usleep(500));
    }
    CHECK_OK(photon_sem_signal(done, 1));
    return NULL;
}

/* ------------------------------------------------------------- 3. cond */

static photon_cond *c3;
static atomic_int c3_stop;

static void *c3_hammer(void *arg) {
    (void)arg;
    for (unsigned i = 0; !atomic_load(&c3_stop); i++) {
        CHECK_OK(photon_mutex_lock(m1, PHOTON_FOREVER));
        CHECK(atomic_exchange(&inside, 1) == 0, "two owners");
        if (i % 4 == 0) photon_thread_yield();
        atomic_store(&inside, 0);
        CHECK_OK(photon_mutex_unlock(m1));
        photon_thread_yield();
    }
    CHECK_OK(photon_sem_signal(done, 1));
    return NULL;
}

static void *c3_waiter(void *arg) {
    uint64_t timeout = (uint64_t)(uintptr_t)arg;
    CHECK_OK(photon_mutex_lock(m1, PHOTON_FOREVER));
    CHECK(atomic_exchange(&inside, 1) == 0, "two owners");
    atomic_store(&inside, 0);
    uint64_t t0 = photon_now_us();
    errno = 0;
    int r = photon_cond_wait(c3, m1, timeout);
    int err = errno;
    check_timed_out("cond_wait", r, err, elapsed_us(t0), timeout);
    CHECK(atomic_exchange(&inside, 1) == 0, "cond_wait returned without the mutex to itself");
    photon_thread_yield();
    atomic_store(&inside, 0);
    CHECK_OK(photon_mutex_unlock(m1)); /* held again: unlock succeeds */
    CHECK_OK(photon_sem_signal(done, 1));
    return NULL;
}

/* --------------------------------------------------------------- 4. sem */

static photon_sem *s4;
static atomic_int s4_small_got;

static void *s4_timed(void *arg) {
    uint64_t timeout = (uint64_t)(uintptr_t)arg;
    uint64_t t0 = photon_now_us();
    errno = 0;
    int r = photon_sem_wait(s4, 1, timeout);
    int err = errno;
    check_timed_out("sem_wait", r, err, elapsed_us(t0), timeout);
    CHECK_OK(photon_sem_signal(done, 1));
    return NULL;
}

static void *s4_big(void *arg) {
    (void)arg;
    uint64_t t0 = photon_now_us();
    errno = 0;
    int r = photon_sem_wait(s4, 5, 50000);
    int err = errno;
    check_timed_out("sem_wait(5)", r, err, elapsed_us(t0), 50000);
    CHECK(!atomic_load(&s4_small_got), "the request for 1 overtook the request for 5 at the head");
    CHECK_OK(photon_sem_signal(done, 1));
    return NULL;
}

static void *s4_small(void *arg) {
    uint64_t *woke_at = arg;
    CHECK_OK(photon_sem_wait(s4, 1, 5 * 1000 * 1000ULL));
    *woke_at = photon_now_us();
    atomic_store(&s4_small_got, 1);
    CHECK_OK(photon_sem_signal(done, 1));
    return NULL;
}

/* ------------------------------------------------------------- 5. rwlock */

static photon_rwlock *rw;
static atomic_int rw_release; /* the holders may let go */

static void *rw_writer_holds(void *arg) {
    (void)arg;
    CHECK_OK(photon_rwlock_wrlock(rw, PHOTON_FOREVER));
    CHECK_OK(photon_sem_signal(done, 1)); /* "I hold it" */
    while (!atomic_load(&rw_release)) CHECK_OK(photon_thread_usleep(1000));
    CHECK_OK(photon_rwlock_unlock(rw));
    CHECK_OK(photon_sem_signal(done, 1));
    return NULL;
}

static void *rw_reader_holds(void *arg) {
    (void)arg;
    CHECK_OK(photon_rwlock_rdlock(rw, PHOTON_FOREVER));
    CHECK_OK(photon_sem_signal(done, 1)); /* "I hold it" */
    while (!atomic_load(&rw_release)) CHECK_OK(photon_thread_usleep(1000));
    CHECK_OK(photon_rwlock_unlock(rw));
    CHECK_OK(photon_sem_signal(done, 1));
    return NULL;
}

static void *rw_timed(void *arg) {
    intptr_t kind = (intptr_t)arg; /* 0 rdlock, 1 wrlock; timeout 10 or 30 ms */
    uint64_t timeout = kind % 2 ? 30000 : 10000;
    uint64_t t0 = photon_now_us();
    errno = 0;
    int r = kind < 2 ? photon_rwlock_rdlock(rw, timeout) : photon_rwlock_wrlock(rw, timeout);
    int err = errno;
    check_timed_out(kind < 2 ? "rwlock_rdlock" : "rwlock_wrlock", r, err, elapsed_us(t0), timeout);
    CHECK_OK(photon_sem_signal(done, 1));
    return NULL;
}

static atomic_ullong rw_writer_started_at, rw_writer_gave_up_at, rw_late_reader_at;

static void *rw_waiting_writer(void *arg) {
    (void)arg;
    uint64_t t0 = photon_now_us();
    atomic_store(&rw_writer_started_at, t0);
    errno = 0;
    int r = photon_rwlock_wrlock(rw, 50000);
    int err = errno;
    atomic_store(&rw_writer_gave_up_at, photon_now_us());
    check_timed_out("rwlock_wrlock (readers hold it)", r, err, elapsed_us(t0), 50000);
    CHECK_OK(photon_sem_signal(done, 1));
    return NULL;
}

static void *rw_late_reader(void *arg) {
    (void)arg;
    CHECK_OK(photon_rwlock_rdlock(rw, 5 * 1000 * 1000ULL));
    atomic_store(&rw_late_reader_at, photon_now_us());
    CHECK(!atomic_load(&rw_release), "the late reader entered only after the first readers left");
    CHECK_OK(photon_rwlock_unlock(rw));
    CHECK_OK(photon_sem_signal(done, 1));
    return NULL;
}

int main(void) {
    test_start("sync_timed");
    test_init();
    pthread_t wd;
    CHECK(pthread_create(&wd, NULL, watchdog, NULL) == 0, "pthread_create watchdog");
    pool = photon_workpool_new(2, PHOTON_EVENT_DEFAULT);
    CHECK(pool != NULL, "photon_workpool_new(2): errno %d", errno);
    done = photon_sem_new(0);
    m1 = photon_mutex_new();
    c3 = photon_cond_new();
    s4 = photon_sem_new(0);
    rw = photon_rwlock_new();
    CHECK(done && m1 && c3 && s4 && rw, "new lock failed");

    stage = "1. mutex held 300 ms";
    SAY("%s: timed lockers (5..60 ms) time out, untimed ones get it after", stage);
    start(1, m1_holder, NULL); /* on the pool */
    while (!atomic_load(&m1_held)) CHECK_OK(photon_thread_usleep(1000));
    int n = 0;
    for (int i = 0; i < 12; i++) start(n++, m1_timed, (void *)(uintptr_t)(5000 + 5000 * i));
    for (int i = 0; i < 6; i++) start(n++, m1_forever, NULL);
    uint64_t t0 = photon_now_us();
    errno = 0;
    int r = photon_mutex_lock(m1, 20000);
    int err = errno;
    check_timed_out("mutex_lock (main thread)", r, err, elapsed_us(t0), 20000);
    wait_done(n + 1);
    CHECK(atomic_load(&m1_timeouts) == 12 && atomic_load(&m1_late_ok) == 6,
          "timeouts %d (want 12), late lockers %d (want 6)", atomic_load(&m1_timeouts),
          atomic_load(&m1_late_ok));
    CHECK_OK(photon_mutex_trylock(m1));
    CHECK_OK(photon_mutex_unlock(m1));

    stage = "2. mutex passed around";
    SAY("%s: 6 holders (2 ms each time) vs 6 timed lockers (1..3 ms) for 300 ms", stage);
    n = 0;
    for (int i = 0; i < 6; i++) start(n++, m2_passer, NULL);
    for (int i = 0; i < 6; i++) start(n++, m2_timed, (void *)(uintptr_t)(i + 1));
    CHECK_OK(photon_thread_usleep(300000));
    atomic_store(&busy_stop, 1);
    wait_done(n);
    SAY("   timed lockers: %llu timed out, %llu got it", (unsigned long long)atomic_load(&busy_timeouts),
        (unsigned long long)atomic_load(&busy_got));
    CHECK(atomic_load(&busy_timeouts) > 0, "no timed lock ever timed out against 2 ms holds");
    CHECK_OK(photon_mutex_trylock(m1));
    CHECK_OK(photon_mutex_unlock(m1));

    stage = "3. cond_wait timeouts";
    SAY("%s: 6 waiters (10..60 ms), never notified, while 4 threads hammer the mutex", stage);
    n = 0;
    for (int i = 0; i < 4; i++) start(n++, c3_hammer, NULL);
    for (int i = 0; i < 6; i++) start(n++, c3_waiter, (void *)(uintptr_t)(10000 * (i + 1)));
    CHECK_OK(photon_thread_usleep(100000));
    atomic_store(&c3_stop, 1);
    wait_done(n);
    CHECK_OK(photon_cond_free(c3));

    stage = "4. semaphore";
    SAY("%s: count 0, 6 waiters (5..30 ms) time out", stage);
    n = 0;
    for (int i = 0; i < 6; i++) start(n++, s4_timed, (void *)(uintptr_t)(5000 * (i + 1)));
    wait_done(n);
    SAY("   a request for 5 times out at the head; the request for 1 behind it then gets served");
    CHECK_OK(photon_sem_signal(s4, 2));
    uint64_t small_at = 0;
    start(0, s4_big, NULL);
    CHECK_OK(photon_thread_usleep(5000)); /* the request for 5 is queued first */
    start(2, s4_small, &small_at);
    wait_done(2);
    CHECK(atomic_load(&s4_small_got), "the request for 1 was not served");
    CHECK_ERRNO(photon_sem_wait(s4, 2, 0), ETIMEDOUT); /* 1 is left */
    CHECK_OK(photon_sem_wait(s4, 1, 0));
    CHECK_OK(photon_sem_free(s4));

    stage = "5. rwlock";
    SAY("%s: a writer holds it: timed rdlock / wrlock time out", stage);
    start(1, rw_writer_holds, NULL);
    wait_done(1);
    n = 0;
    for (int i = 0; i < 8; i++) start(n++, rw_timed, (void *)(intptr_t)(i % 4));
    wait_done(n);
    atomic_store(&rw_release, 1);
    wait_done(1);
    atomic_store(&rw_release, 0);

    SAY("   readers hold it: a timed wrlock times out; a reader queued behind it then enters");
    start(1, rw_reader_holds, NULL);
    start(2, rw_reader_holds, NULL);
    wait_done(2);
    atomic_store(&rw_writer_started_at, 0);
    start(3, rw_waiting_writer, NULL);
    /* The writer runs on the pool's vcpu, which a loaded host may not have
     * scheduled yet: wait until it is about to lock (a reader coming first
     * would simply get the lock), then give it 10 ms to queue. */
    while (atomic_load(&rw_writer_started_at) == 0) CHECK_OK(photon_thread_usleep(1000));
    CHECK_OK(photon_thread_usleep(10000)); /* the writer is queued */
    t0 = photon_now_us();
    errno = 0;
    r = photon_rwlock_rdlock(rw, 5000); /* held back by the waiting writer */
    err = errno;
    check_timed_out("rwlock_rdlock (a writer waits)", r, err, elapsed_us(t0), 5000);
    start(4, rw_late_reader, NULL);
    wait_done(2); /* the writer gave up and the late reader entered and left */
    long long lag = (long long)(atomic_load(&rw_late_reader_at) - atomic_load(&rw_writer_gave_up_at));
    SAY("   the late reader entered %lld us after the writer's wrlock returned", lag);
    CHECK(atomic_load(&rw_late_reader_at) >= atomic_load(&rw_writer_started_at) + 50000,
          "the late reader entered before the waiting writer's 50 ms timeout");
    CHECK(lag < 200000, "the late reader entered %lld us after the writer gave up", lag);
    atomic_store(&rw_release, 1);
    wait_done(2);
    CHECK_OK(photon_rwlock_wrlock(rw, 0));
    CHECK_OK(photon_rwlock_unlock(rw));
    CHECK_OK(photon_rwlock_free(rw));

    CHECK_OK(photon_mutex_free(m1));
    CHECK_OK(photon_sem_free(done));
    photon_workpool_free(pool);
    atomic_store(&finished, 1);
    CHECK(pthread_join(wd, NULL) == 0, "pthread_join watchdog");
    test_fini();
    SAY("ok");
    return 0;
}
