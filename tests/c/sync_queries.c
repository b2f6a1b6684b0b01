/*
 * The C API's PHOTON_0.2 lock and thread queries:
 *  - photon_rwlock_tryrdlock / photon_rwlock_trywrlock are true try-locks:
 *    a refused one returns EBUSY without yielding (a photon thread waiting
 *    to run does not run meanwhile: no zero-timeout wait), whether the lock
 *    is held on this vcpu or on a pool vcpu; a reader is refused while a
 *    writer waits (phase-fair); readers share; a granted write lock
 *    excludes a timed rdlock until unlocked;
 *  - photon_sem_count reads the count as waits and signals change it,
 *    including a queued request (which takes nothing until it fits) and a
 *    signal from a plain pthread;
 *  - photon_cond_wake_one returns 1 per waiter woken, 0 with none (also
 *    after a waiter timed out), and works from a plain pthread;
 *  - photon_thread_joinable follows enable_join / detach / end / join, and
 *    answers from a plain pthread.
 */
#include <pthread.h>
#include <stdatomic.h>

#include "check.h"

static photon_rwlock *rw;
static photon_sem *done;
static atomic_int runs;  /* bumped by a photon thread each time it runs */
static atomic_int flag;

static void *count_runs(void *arg) {
    (void)arg;
    while (!atomic_load(&flag)) {
        atomic_fetch_add(&runs, 1);
        photon_thread_yield();
    }
    return NULL;
}

static void *wrlock_until_flag(void *arg) {
    (void)arg;
    CHECK_OK(photon_rwlock_wrlock(rw, PHOTON_FOREVER));
    CHECK_OK(photon_sem_signal(done, 1));
    while (!atomic_load(&flag)) CHECK_OK(photon_thread_usleep(500));
    CHECK_OK(photon_rwlock_unlock(rw));
    CHECK_OK(photon_sem_signal(done, 1));
    return NULL;
}

static void *wrlock_then_unlock(void *arg) {
    (void)arg;
    CHECK_OK(photon_rwlock_wrlock(rw, PHOTON_FOREVER));
    CHECK_OK(photon_rwlock_unlock(rw));
    CHECK_OK(photon_sem_signal(done, 1));
    return NULL;
}

/* `call` refused 1000 times in a row, with another photon thread of this
 * vcpu runnable all along: it must never have run (nothing yielded). */
#define REFUSED_WITHOUT_YIELD(call)                                          \
    do {                                                                     \
        int before_ = atomic_load(&runs);                                    \
        for (int i_ = 0; i_ < 1000; i_++) CHECK_ERRNO(call, EBUSY);          \
        CHECK(atomic_load(&runs) == before_,                                 \
              "%s yielded: the runnable thread ran %d times", #call,         \
              atomic_load(&runs) - before_);                                 \
    } while (0)

static void try_locks(photon_workpool *pool) {
    rw = photon_rwlock_new();
    CHECK(rw != NULL, "rwlock_new");
    atomic_store(&flag, 0);
    photon_thread *counter = photon_thread_create(count_runs, NULL, 0);
    CHECK(counter != NULL, "create");
    CHECK_OK(photon_thread_enable_join(counter));

    SAY("free lock: trywrlock, then tryrdlock refused, then unlock; tryrdlock x2 shares");
    CHECK_OK(photon_rwlock_trywrlock(rw));
    CHECK_ERRNO(photon_rwlock_trywrlock(rw), EDEADLK);
    CHECK_ERRNO(photon_rwlock_tryrdlock(rw), EDEADLK);
    CHECK_OK(photon_rwlock_unlock(rw));
    CHECK_OK(photon_rwlock_tryrdlock(rw));
    CHECK_OK(photon_rwlock_tryrdlock(rw));
    REFUSED_WITHOUT_YIELD(photon_rwlock_trywrlock(rw));
    CHECK_OK(photon_rwlock_unlock(rw));
    CHECK_OK(photon_rwlock_unlock(rw));

    SAY("write-locked by a thread on a pool vcpu: both refused at once, without yielding");
    CHECK_OK(photon_workpool_spawn(pool, wrlock_until_flag, NULL));
    CHECK_OK(photon_sem_wait(done, 1, 10 * 1000 * 1000ULL));
    REFUSED_WITHOUT_YIELD(photon_rwlock_trywrlock(rw));
    REFUSED_WITHOUT_YIELD(photon_rwlock_tryrdlock(rw));
    CHECK_ERRNO(photon_rwlock_rdlock(rw, 2000), ETIMEDOUT);
    atomic_store(&flag, 1);
    CHECK_OK(photon_sem_wait(done, 1, 10 * 1000 * 1000ULL));
    CHECK_OK(photon_thread_join(counter, NULL));

    SAY("phase-fair: with a reader in and a writer waiting, tryrdlock is refused");
    CHECK_OK(photon_rwlock_rdlock(rw, PHOTON_FOREVER));
    photon_thread *w = photon_thread_create(wrlock_then_unlock, NULL, 0);
    CHECK(w != NULL, "create");
    photon_thread_yield(); /* w runs and queues for the write lock */
    CHECK_ERRNO(photon_rwlock_tryrdlock(rw), EBUSY);
    CHECK_ERRNO(photon_rwlock_trywrlock(rw), EBUSY);
    CHECK_OK(photon_rwlock_unlock(rw)); /* w enters, unlocks, signals */
    CHECK_OK(photon_sem_wait(done, 1, 10 * 1000 * 1000ULL));
    CHECK_OK(photon_rwlock_tryrdlock(rw));
    CHECK_OK(photon_rwlock_unlock(rw));

    SAY("misuse: NULL is EINVAL");
    CHECK_ERRNO(photon_rwlock_tryrdlock(NULL), EINVAL);
    CHECK_ERRNO(photon_rwlock_trywrlock(NULL), EINVAL);
    CHECK_OK(photon_rwlock_free(rw));
}

static photon_sem *counted;

static void *take_ten(void *arg) {
    (void)arg;
    CHECK_OK(photon_sem_wait(counted, 10, PHOTON_FOREVER));
    CHECK_OK(photon_sem_signal(done, 1));
    return NULL;
}

static void *signal_from_pthread(void *arg) {
    CHECK_OK(photon_sem_signal(counted, (uint64_t)(uintptr_t)arg));
    return NULL;
}

static uint64_t count_of(photon_sem *s) {
    uint64_t n = 12345;
    CHECK_OK(photon_sem_count(s, &n));
    return n;
}

static void sem_count(void) {
    counted = photon_sem_new(3);
    CHECK(counted != NULL, "sem_new");
    SAY("sem_count follows waits and signals");
    CHECK(count_of(counted) == 3, "count %" PRIu64, count_of(counted));
    CHECK_OK(photon_sem_wait(counted, 2, PHOTON_FOREVER));
    CHECK(count_of(counted) == 1, "count %" PRIu64, count_of(counted));
    CHECK_OK(photon_sem_signal(counted, 5));
    CHECK(count_of(counted) == 6, "count %" PRIu64, count_of(counted));

    SAY("a queued request for 10 takes nothing until it fits");
    photon_thread *t = photon_thread_create(take_ten, NULL, 0);
    CHECK(t != NULL, "create");
    photon_thread_yield();
    CHECK(count_of(counted) == 6, "count %" PRIu64 " with a request queued", count_of(counted));

    SAY("a plain pthread signals 7: the request is served, 3 remain");
    pthread_t p;
    CHECK(pthread_create(&p, NULL, signal_from_pthread, (void *)(uintptr_t)7) == 0, "pthread_create");
    CHECK(pthread_join(p, NULL) == 0, "pthread_join");
    CHECK_OK(photon_sem_wait(done, 1, 10 * 1000 * 1000ULL));
    CHECK(count_of(counted) == 3, "count %" PRIu64, count_of(counted));

    SAY("misuse: NULL semaphore or NULL out: EINVAL");
    uint64_t n;
    CHECK_ERRNO(photon_sem_count(NULL, &n), EINVAL);
    CHECK_ERRNO(photon_sem_count(counted, NULL), EINVAL);
    CHECK_OK(photon_sem_free(counted));
}

static photon_cond *cond;
static photon_mutex *mtx;
static atomic_int woken;

static void *cond_waiter(void *arg) {
    uint64_t timeout = (uint64_t)(uintptr_t)arg;
    CHECK_OK(photon_mutex_lock(mtx, PHOTON_FOREVER));
    int r = photon_cond_wait(cond, mtx, timeout);
    int e = errno;
    CHECK_OK(photon_mutex_unlock(mtx));
    if (r == 0) atomic_fetch_add(&woken, 1);
    else CHECK(e == ETIMEDOUT, "cond_wait: errno %d", e);
    CHECK_OK(photon_sem_signal(done, 1));
    return NULL;
}

static void *wake_one_from_pthread(void *arg) {
    *(int *)arg = photon_cond_wake_one(cond);
    return NULL;
}

static void cond_wake_one(void) {
    cond = photon_cond_new();
    mtx = photon_mutex_new();
    CHECK(cond && mtx, "new");
    SAY("no waiter: 0");
    CHECK(photon_cond_wake_one(cond) == 0, "woke someone with no waiter");

    SAY("two waiters: 1, 1, then 0");
    for (int i = 0; i < 2; i++)
        CHECK(photon_thread_create(cond_waiter, (void *)(uintptr_t)PHOTON_FOREVER, 0) != NULL, "create");
    photon_thread_yield();
    CHECK(photon_cond_wake_one(cond) == 1, "first wake");
    CHECK(photon_cond_wake_one(cond) == 1, "second wake");
    CHECK(photon_cond_wake_one(cond) == 0, "third wake found a waiter");
    CHECK_OK(photon_sem_wait(done, 2, 10 * 1000 * 1000ULL));
    CHECK(atomic_load(&woken) == 2, "woken %d", atomic_load(&woken));

    SAY("a waiter that timed out is no longer there: 0");
    CHECK(photon_thread_create(cond_waiter, (void *)(uintptr_t)1000, 0) != NULL, "create");
    CHECK_OK(photon_sem_wait(done, 1, 10 * 1000 * 1000ULL));
    CHECK(photon_cond_wake_one(cond) == 0, "woke a waiter that had timed out");

    SAY("from a plain pthread: 1 with a waiter");
    CHECK(photon_thread_create(cond_waiter, (void *)(uintptr_t)PHOTON_FOREVER, 0) != NULL, "create");
    photon_thread_yield();
    int got = -2;
    pthread_t p;
    CHECK(pthread_create(&p, NULL, wake_one_from_pthread, &got) == 0, "pthread_create");
    CHECK(pthread_join(p, NULL) == 0, "pthread_join");
    CHECK(got == 1, "wake_one from a pthread returned %d", got);
    CHECK_OK(photon_sem_wait(done, 1, 10 * 1000 * 1000ULL));
    CHECK(atomic_load(&woken) == 3, "woken %d", atomic_load(&woken));

    CHECK_ERRNO(photon_cond_wake_one(NULL), EINVAL);
    CHECK_OK(photon_cond_free(cond));
    CHECK_OK(photon_mutex_free(mtx));
}

static void *return_seven(void *arg) {
    (void)arg;
    return (void *)7;
}

static void *joinable_from_pthread(void *arg) {
    return (void *)(intptr_t)photon_thread_joinable((photon_thread *)arg);
}

static void joinable(void) {
    SAY("joinable follows enable_join, detach, end and join");
    photon_thread *t = photon_thread_create(return_seven, NULL, 0);
    CHECK(t != NULL, "create");
    CHECK(photon_thread_joinable(t) == 0, "a new thread is detached");
    CHECK_OK(photon_thread_enable_join(t));
    CHECK(photon_thread_joinable(t) == 1, "after enable_join");
    CHECK_OK(photon_thread_detach(t));
    CHECK(photon_thread_joinable(t) == 0, "after detach");
    CHECK_OK(photon_thread_enable_join(t));
    pthread_t p;
    void *from_pthread = NULL;
    CHECK(pthread_create(&p, NULL, joinable_from_pthread, t) == 0, "pthread_create");
    CHECK(pthread_join(p, &from_pthread) == 0, "pthread_join");
    CHECK((intptr_t)from_pthread == 1, "from a pthread: %d", (int)(intptr_t)from_pthread);
    photon_thread_yield(); /* t ends */
    CHECK(photon_thread_joinable(t) == 1, "an ended joinable thread");
    void *rv = NULL;
    CHECK_OK(photon_thread_join(t, &rv));
    CHECK(rv == (void *)7, "retval");
    CHECK_ERRNO(photon_thread_joinable(t), ESRCH);
    CHECK_ERRNO(photon_thread_joinable(NULL), EINVAL);

    photon_thread *d = photon_thread_create(return_seven, NULL, 0);
    CHECK(d != NULL, "create");
    photon_thread_yield(); /* ends detached: its handle goes stale */
    CHECK_ERRNO(photon_thread_joinable(d), ESRCH);
}

int main(void) {
    CHECK_OK(photon_init(PHOTON_EVENT_DEFAULT, 0));
    done = photon_sem_new(0);
    CHECK(done != NULL, "sem_new");
    photon_workpool *pool = photon_workpool_new(1, PHOTON_EVENT_DEFAULT);
    CHECK(pool != NULL, "workpool_new: errno %d", errno);
    try_locks(pool);
    sem_count();
    cond_wake_one();
    joinable();
    photon_workpool_free(pool);
    CHECK_OK(photon_sem_free(done));
    CHECK_OK(photon_fini());
    SAY("ok");
    return 0;
}
