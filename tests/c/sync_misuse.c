/*
 * Every misuse of the lock API, with the errno the header promises, and the
 * lock still working afterwards:
 *  - NULL handles: EINVAL from every call; the _free functions accept NULL;
 *  - unlock of a lock the caller does not hold: EINVAL (unlocked, or held
 *    by another thread); cond_wait with a mutex not held: EINVAL;
 *  - recursive locking: EDEADLK (mutex lock, timed or not; rwlock wrlock
 *    twice; rdlock under one's own wrlock); trylock of one's own: EBUSY;
 *  - free of a lock that is held or waited on: EBUSY, nothing freed, and the
 *    lock keeps working (the waiter gets it; then free succeeds);
 *  - sem_wait of count 0: EINVAL; sem_signal past UINT64_MAX: EOVERFLOW
 *    (count unchanged);
 *  - from a plain pthread (not a vcpu): lock, trylock, cond_wait, sem_wait,
 *    rdlock, wrlock fail with EPERM; unlock fails with EINVAL (a pthread
 *    cannot hold a photon lock); _new and _free work; and cond_notify_one,
 *    cond_notify_all and sem_signal work, waking photon threads on the main
 *    vcpu and on a pool vcpu.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>

#include "check.h"

static photon_workpool *pool;
static photon_sem *done;
static photon_mutex *shared_m;
static photon_rwlock *shared_rw;
static atomic_int flag;

static void wait_done(int n) {
    errno = 0;
    int r = photon_sem_wait(done, (uint64_t)n, 10 * 1000 * 1000ULL);
    CHECK(r == 0, "waiting for %d threads: errno %d", n, errno);
}

/* --- helpers run as other photon threads */

static void *hold_mutex_until_flag(void *arg) {
    (void)arg;
    CHECK_OK(photon_mutex_lock(shared_m, PHOTON_FOREVER));
    CHECK_OK(photon_sem_signal(done, 1));
    while (!atomic_load(&flag)) CHECK_OK(photon_thread_usleep(1000));
    CHECK_OK(photon_mutex_unlock(shared_m));
    CHECK_OK(photon_sem_signal(done, 1));
    return NULL;
}

static void *wrlock_until_flag(void *arg) {
    (void)arg;
    CHECK_OK(photon_rwlock_wrlock(shared_rw, PHOTON_FOREVER));
    CHECK_OK(photon_sem_signal(done, 1));
    while (!atomic_load(&flag)) CHECK_OK(photon_thread_usleep(1000));
    CHECK_OK(photon_rwlock_unlock(shared_rw));
    CHECK_OK(photon_sem_signal(done, 1));
    return NULL;
}

static void *lock_mutex_once(void *arg) {
    (void)arg;
    CHECK_OK(photon_mutex_lock(shared_m, 5 * 1000 * 1000ULL));
    CHECK_OK(photon_mutex_unlock(shared_m));
    CHECK_OK(photon_sem_signal(done, 1));
    return NULL;
}

static photon_cond *shared_c;
static int cond_flag; /* guarded by shared_m */

static void *cond_waiter(void *arg) {
    (void)arg;
    CHECK_OK(photon_mutex_lock(shared_m, PHOTON_FOREVER));
    CHECK_OK(photon_sem_signal(done, 1)); /* about to wait */
    while (!cond_flag) CHECK_OK(photon_cond_wait(shared_c, shared_m, 5 * 1000 * 1000ULL));
    CHECK_OK(photon_mutex_unlock(shared_m));
    CHECK_OK(photon_sem_signal(done, 1));
    return NULL;
}

static photon_sem *shared_s;

static void *sem_waiter(void *arg) {
    (void)arg;
    CHECK_OK(photon_sem_signal(done, 1)); /* about to wait */
    CHECK_OK(photon_sem_wait(shared_s, 1, 5 * 1000 * 1000ULL));
    CHECK_OK(photon_sem_signal(done, 1));
    return NULL;
}

static void *rdlock_waiter(void *arg) {
    (void)arg;
    CHECK_OK(photon_sem_signal(done, 1)); /* about to wait */
    CHECK_OK(photon_rwlock_rdlock(shared_rw, 5 * 1000 * 1000ULL));
    CHECK_OK(photon_rwlock_unlock(shared_rw));
    CHECK_OK(photon_sem_signal(done, 1));
    return NULL;
}

/* --- the plain pthread part */

struct off_vcpu {
    photon_mutex *m;
    photon_cond *c;
    photon_sem *s;
    photon_rwlock *rw;
    int phase; /* 1: misuse checks; 2: notify/signal for the waiters */
};

static void *plain_pthread(void *arg) {
    struct off_vcpu *o = arg;
    if (o->phase == 1) {
        CHECK_NULL_ERRNO(photon_vcpu_current(), EPERM);
        CHECK_ERRNO(photon_mutex_lock(o->m, PHOTON_FOREVER), EPERM);
        CHECK_ERRNO(photon_mutex_lock(o->m, 0), EPERM);
        CHECK_ERRNO(photon_mutex_trylock(o->m), EPERM);
        CHECK_ERRNO(photon_mutex_unlock(o->m), EINVAL);
        CHECK_ERRNO(photon_cond_wait(o->c, o->m, 1000), EPERM);
        CHECK_ERRNO(photon_sem_wait(o->s, 1, PHOTON_FOREVER), EPERM);
        CHECK_ERRNO(photon_sem_wait(o->s, 1, 0), EPERM); /* even with count available */
        CHECK_ERRNO(photon_rwlock_rdlock(o->rw, PHOTON_FOREVER), EPERM);
        CHECK_ERRNO(photon_rwlock_wrlock(o->rw, 0), EPERM);
        CHECK_ERRNO(photon_rwlock_unlock(o->rw), EINVAL);
        /* needs no vcpu */
        photon_mutex *m = photon_mutex_new();
        photon_cond *c = photon_cond_new();
        photon_sem *s = photon_sem_new(3);
        photon_rwlock *rw = photon_rwlock_new();
        CHECK(m && c && s && rw, "a _new from a plain pthread failed: errno %d", errno);
        CHECK_OK(photon_cond_notify_one(c)); /* nobody waits: fine */
        CHECK_OK(photon_cond_notify_all(c));
        CHECK_OK(photon_sem_signal(s, 2));
        CHECK_OK(photon_mutex_free(m));
        CHECK_OK(photon_cond_free(c));
        CHECK_OK(photon_sem_free(s));
        CHECK_OK(photon_rwlock_free(rw));
    } else {
        /* wake photon waiters from here */
        CHECK_ERRNO(photon_mutex_lock(o->m, 0), EPERM);
        CHECK_OK(photon_cond_notify_one(o->c));
        usleep(20000);
        CHECK_OK(photon_cond_notify_all(o->c));
        CHECK_OK(photon_sem_signal(o->s, 2));
    }
    return NULL;
}

static void run_pthread(struct off_vcpu *o) {
    pthread_t pt;
    CHECK(pthread_create(&pt, NULL, plain_pthread, o) == 0, "pthread_create");
    CHECK(pthread_join(pt, NULL) == 0, "pthread_join"); /* blocks this vcpu briefly: fine here */
}

int main(void) {
    test_start("sync_misuse");
    test_init();
    pool = photon_workpool_new(1, PHOTON_EVENT_DEFAULT);
    CHECK(pool != NULL, "photon_workpool_new(1): errno %d", errno);
    done = photon_sem_new(0);
    photon_mutex *m = photon_mutex_new();
    photon_cond *c = photon_cond_new();
    photon_sem *s = photon_sem_new(0);
    photon_rwlock *rw = photon_rwlock_new();
    CHECK(done && m && c && s && rw, "new lock failed");

    SAY("NULL handles: EINVAL; _free(NULL) is a no-op");
    CHECK_ERRNO(photon_mutex_lock(NULL, PHOTON_FOREVER), EINVAL);
    CHECK_ERRNO(photon_mutex_lock(NULL, 0), EINVAL);
    CHECK_ERRNO(photon_mutex_trylock(NULL), EINVAL);
    CHECK_ERRNO(photon_mutex_unlock(NULL), EINVAL);
    CHECK_ERRNO(photon_cond_wait(NULL, m, 1000), EINVAL);
    CHECK_ERRNO(photon_cond_wait(c, NULL, 1000), EINVAL);
    CHECK_ERRNO(photon_cond_wait(NULL, NULL, 1000), EINVAL);
    CHECK_ERRNO(photon_cond_notify_one(NULL), EINVAL);
    CHECK_ERRNO(photon_cond_notify_all(NULL), EINVAL);
    CHECK_ERRNO(photon_sem_wait(NULL, 1, 0), EINVAL);
    CHECK_ERRNO(photon_sem_signal(NULL, 1), EINVAL);
    CHECK_ERRNO(photon_rwlock_rdlock(NULL, 0), EINVAL);
    CHECK_ERRNO(photon_rwlock_wrlock(NULL, PHOTON_FOREVER), EINVAL);
    CHECK_ERRNO(photon_rwlock_unlock(NULL), EINVAL);
    CHECK_OK(photon_mutex_free(NULL));
    CHECK_OK(photon_cond_free(NULL));
    CHECK_OK(photon_sem_free(NULL));
    CHECK_OK(photon_rwlock_free(NULL));

    SAY("unlock of what one does not hold: EINVAL");
    CHECK_ERRNO(photon_mutex_unlock(m), EINVAL);
    CHECK_ERRNO(photon_rwlock_unlock(rw), EINVAL);
    CHECK_ERRNO(photon_cond_wait(c, m, 1000), EINVAL); /* m not held */
    CHECK_OK(photon_mutex_lock(m, PHOTON_FOREVER));
    CHECK_OK(photon_mutex_unlock(m));
    CHECK_ERRNO(photon_mutex_unlock(m), EINVAL); /* twice */
    CHECK_OK(photon_rwlock_rdlock(rw, PHOTON_FOREVER));
    CHECK_OK(photon_rwlock_unlock(rw));
    CHECK_ERRNO(photon_rwlock_unlock(rw), EINVAL);
    CHECK_OK(photon_rwlock_wrlock(rw, PHOTON_FOREVER));
    CHECK_OK(photon_rwlock_unlock(rw));
    CHECK_ERRNO(photon_rwlock_unlock(rw), EINVAL);

    SAY("   ... held by another thread (main vcpu, then pool vcpu): EINVAL, theirs stays held");
    shared_m = m;
    shared_rw = rw;
    for (int where = 0; where < 2; where++) {
        atomic_store(&flag, 0);
        if (where == 0) {
            CHECK(photon_thread_create(hold_mutex_until_flag, NULL, 0), "create");
            CHECK(photon_thread_create(wrlock_until_flag, NULL, 0), "create");
        } else {
            CHECK_OK(photon_workpool_spawn(pool, hold_mutex_until_flag, NULL));
            CHECK_OK(photon_workpool_spawn(pool, wrlock_until_flag, NULL));
        }
        wait_done(2);
        CHECK_ERRNO(photon_mutex_unlock(m), EINVAL);
        CHECK_ERRNO(photon_rwlock_unlock(rw), EINVAL);
        CHECK_ERRNO(photon_cond_wait(c, m, 1000), EINVAL);
        CHECK_ERRNO(photon_mutex_trylock(m), EBUSY);
        CHECK_ERRNO(photon_mutex_lock(m, 2000), ETIMEDOUT);
        CHECK_ERRNO(photon_rwlock_rdlock(rw, 2000), ETIMEDOUT);
        SAY("   free of a lock another thread holds: EBUSY");
        CHECK_ERRNO(photon_mutex_free(m), EBUSY);
        CHECK_ERRNO(photon_rwlock_free(rw), EBUSY);
        atomic_store(&flag, 1);
        wait_done(2);
        CHECK_OK(photon_mutex_trylock(m));
        CHECK_OK(photon_mutex_unlock(m));
        CHECK_OK(photon_rwlock_wrlock(rw, 0));
        CHECK_OK(photon_rwlock_unlock(rw));
    }

    SAY("recursive locking: EDEADLK; trylock of one's own mutex: EBUSY");
    CHECK_OK(photon_mutex_lock(m, PHOTON_FOREVER));
    CHECK_ERRNO(photon_mutex_lock(m, PHOTON_FOREVER), EDEADLK);
    CHECK_ERRNO(photon_mutex_lock(m, 1000), EDEADLK);
    CHECK_ERRNO(photon_mutex_lock(m, 0), EDEADLK);
    CHECK_ERRNO(photon_mutex_trylock(m), EBUSY);
    CHECK_OK(photon_mutex_unlock(m));
    CHECK_ERRNO(photon_mutex_unlock(m), EINVAL); /* the failed relocks took nothing */
    CHECK_OK(photon_rwlock_wrlock(rw, PHOTON_FOREVER));
    CHECK_ERRNO(photon_rwlock_wrlock(rw, PHOTON_FOREVER), EDEADLK);
    CHECK_ERRNO(photon_rwlock_wrlock(rw, 1000), EDEADLK);
    CHECK_ERRNO(photon_rwlock_rdlock(rw, PHOTON_FOREVER), EDEADLK);
    CHECK_OK(photon_rwlock_unlock(rw));
    CHECK_ERRNO(photon_rwlock_unlock(rw), EINVAL);
    SAY("   two read locks by one thread are fine (shared)");
    CHECK_OK(photon_rwlock_rdlock(rw, PHOTON_FOREVER));
    CHECK_OK(photon_rwlock_rdlock(rw, PHOTON_FOREVER));
    CHECK_ERRNO(photon_rwlock_free(rw), EBUSY);
    CHECK_OK(photon_rwlock_unlock(rw));
    CHECK_OK(photon_rwlock_unlock(rw));
    CHECK_ERRNO(photon_rwlock_unlock(rw), EINVAL);

    SAY("free of a held or waited lock: EBUSY, and the lock still works");
    CHECK_OK(photon_mutex_lock(m, PHOTON_FOREVER));
    CHECK_ERRNO(photon_mutex_free(m), EBUSY);
    for (int where = 0; where < 2; where++) { /* a waiter on main, then on the pool */
        if (where == 0) {
            CHECK(photon_thread_create(lock_mutex_once, NULL, 0), "create");
        } else {
            CHECK_OK(photon_workpool_spawn(pool, lock_mutex_once, NULL));
        }
        CHECK_OK(photon_thread_usleep(20000)); /* it waits */
        CHECK_ERRNO(photon_mutex_free(m), EBUSY);
        CHECK_OK(photon_mutex_unlock(m));
        wait_done(1); /* the waiter got it and let go */
        CHECK_OK(photon_mutex_lock(m, PHOTON_FOREVER));
    }
    CHECK_OK(photon_mutex_unlock(m));

    shared_c = c;
    for (int where = 0; where < 2; where++) {
        CHECK_OK(photon_mutex_lock(m, PHOTON_FOREVER));
        cond_flag = 0;
        CHECK_OK(photon_mutex_unlock(m));
        if (where == 0) {
            CHECK(photon_thread_create(cond_waiter, NULL, 0), "create");
        } else {
            CHECK_OK(photon_workpool_spawn(pool, cond_waiter, NULL));
        }
        wait_done(1);
        CHECK_OK(photon_thread_usleep(20000)); /* it waits on c */
        CHECK_ERRNO(photon_cond_free(c), EBUSY);
        CHECK_OK(photon_mutex_lock(m, PHOTON_FOREVER));
        cond_flag = 1;
        CHECK_OK(photon_cond_notify_one(c));
        CHECK_OK(photon_mutex_unlock(m));
        wait_done(1);
    }

    shared_s = s;
    for (int where = 0; where < 2; where++) {
        if (where == 0) {
            CHECK(photon_thread_create(sem_waiter, NULL, 0), "create");
        } else {
            CHECK_OK(photon_workpool_spawn(pool, sem_waiter, NULL));
        }
        wait_done(1);
        CHECK_OK(photon_thread_usleep(20000)); /* it waits on s */
        CHECK_ERRNO(photon_sem_free(s), EBUSY);
        CHECK_OK(photon_sem_signal(s, 1));
        wait_done(1);
    }

    for (int where = 0; where < 2; where++) {
        CHECK_OK(photon_rwlock_wrlock(rw, PHOTON_FOREVER));
        CHECK_ERRNO(photon_rwlock_free(rw), EBUSY);
        if (where == 0) {
            CHECK(photon_thread_create(rdlock_waiter, NULL, 0), "create");
        } else {
            CHECK_OK(photon_workpool_spawn(pool, rdlock_waiter, NULL));
        }
        wait_done(1);
        CHECK_OK(photon_thread_usleep(20000)); /* it waits on rw */
        CHECK_ERRNO(photon_rwlock_free(rw), EBUSY);
        CHECK_OK(photon_rwlock_unlock(rw));
        wait_done(1);
    }
    CHECK_OK(photon_rwlock_rdlock(rw, 0));
    CHECK_ERRNO(photon_rwlock_free(rw), EBUSY);
    CHECK_OK(photon_rwlock_unlock(rw));

    SAY("sem_wait of count 0: EINVAL; sem_signal overflow: EOVERFLOW, count unchanged");
    CHECK_ERRNO(photon_sem_wait(s, 0, 0), EINVAL);
    CHECK_ERRNO(photon_sem_wait(s, 0, PHOTON_FOREVER), EINVAL);
    photon_sem *big = photon_sem_new(UINT64_MAX);
    CHECK(big != NULL, "photon_sem_new(UINT64_MAX): errno %d", errno);
    CHECK_ERRNO(photon_sem_signal(big, 1), EOVERFLOW);
    CHECK_OK(photon_sem_wait(big, UINT64_MAX, 0)); /* still all there */
    CHECK_ERRNO(photon_sem_wait(big, 1, 0), ETIMEDOUT);
    CHECK_OK(photon_sem_signal(big, 5));
    CHECK_ERRNO(photon_sem_signal(big, UINT64_MAX - 4), EOVERFLOW);
    CHECK_OK(photon_sem_signal(big, UINT64_MAX - 5)); /* exactly UINT64_MAX */
    CHECK_OK(photon_sem_wait(big, UINT64_MAX, 0));
    CHECK_OK(photon_sem_signal(big, 0)); /* adding nothing is fine */
    CHECK_OK(photon_sem_free(big));

    SAY("from a plain pthread: waits EPERM, unlock EINVAL, _new/_free/notify/signal work");
    struct off_vcpu o = {m, c, s, rw, 1};
    CHECK_OK(photon_sem_signal(s, 1)); /* count available: sem_wait is still EPERM */
    run_pthread(&o);
    CHECK_OK(photon_sem_wait(s, 1, 0));

    SAY("   cond_notify_one/all and sem_signal from a plain pthread wake waiters on both vcpus");
    CHECK_OK(photon_mutex_lock(m, PHOTON_FOREVER));
    cond_flag = 0;
    CHECK_OK(photon_mutex_unlock(m));
    CHECK(photon_thread_create(cond_waiter, NULL, 0), "create");
    CHECK_OK(photon_workpool_spawn(pool, cond_waiter, NULL));
    CHECK(photon_thread_create(sem_waiter, NULL, 0), "create");
    CHECK_OK(photon_workpool_spawn(pool, sem_waiter, NULL));
    wait_done(4);
    CHECK_OK(photon_thread_usleep(20000)); /* all four wait */
    CHECK_OK(photon_mutex_lock(m, PHOTON_FOREVER));
    cond_flag = 1; /* the notifies below are what wakes them */
    CHECK_OK(photon_mutex_unlock(m));
    o.phase = 2;
    pthread_t pt;
    CHECK(pthread_create(&pt, NULL, plain_pthread, &o) == 0, "pthread_create");
    uint64_t t0 = photon_now_us();
    wait_done(4); /* waits as a photon thread, so main's own waiters run */
    CHECK(elapsed_us(t0) < 2000000, "the waiters took %llu us to wake", (unsigned long long)elapsed_us(t0));
    CHECK(pthread_join(pt, NULL) == 0, "pthread_join");

    SAY("everything idle: each _free returns 0");
    CHECK_OK(photon_mutex_free(m));
    CHECK_OK(photon_cond_free(c));
    CHECK_OK(photon_sem_free(s));
    CHECK_OK(photon_rwlock_free(rw));
    CHECK_OK(photon_sem_free(done));
    photon_workpool_free(pool);
    test_fini();
    SAY("ok");
    return 0;
}
