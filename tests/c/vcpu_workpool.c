/*
 * Work pools (photon_workpool_*) and vcpu identities:
 *  - photon_workpool_new: 0 or 1025 vcpus, or an unknown engine -> EINVAL;
 *    photon_workpool_vcpu gives distinct, stable ids (also what
 *    photon_vcpu_current says on that vcpu), NULL/EINVAL past the end or
 *    for a NULL pool; two pools have distinct vcpus;
 *  - photon_workpool_call from a plain pthread (it blocks) and from photon
 *    threads (they park: the main vcpu keeps running its other threads
 *    meanwhile): the return value comes back, the work ran on the pool's
 *    vcpus (round robin: both are used), retval may be NULL; 4 pthreads
 *    and 8 photon threads call at once, 200 times each;
 *  - a photon caller of photon_workpool_call interrupted while it waits:
 *    -1 with the interrupter's errno, and the work still runs to its end;
 *  - a call from a thread of the pool itself into the same pool;
 *  - photon_workpool_spawn from the main thread, from a plain pthread and
 *    from a pool thread: 3 x 1,000 spawned threads all run, on pool vcpus;
 *  - NULL pool or NULL function -> EINVAL; photon_workpool_free(NULL);
 *  - photon_workpool_free while pool threads are blocked without a timeout
 *    (sleeping, waiting on a semaphore): they get ECANCELED and it returns;
 *    the semaphore has no waiter left afterwards (free returns 0).
 */
#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>

#include "check.h"

#define CALLERS_PT 4
#define CALLERS_PH 8
#define CALLS 200
#define SPAWNS 1000
#define WATCHDOG_S 40

static photon_workpool *pool;
static photon_vcpu *home, *pv[2];
static atomic_int finished;
static const char *stage = "start";

static void *watchdog(void *arg) {
    (void)arg;
    for (int i = 0; i < WATCHDOG_S * 10; i++) {
        if (atomic_load(&finished)) return NULL;
        usleep(100000);
    }
    fprintf(stderr, "WATCHDOG: stalled for %d s in: %s\n", WATCHDOG_S, stage);
    abort();
}

static int pool_index(photon_vcpu *v) {
    return v == pv[0] ? 0 : v == pv[1] ? 1 : -1;
}

/* Work: returns arg * 3 + (index of the vcpu it ran on), after a yield. */
static void *triple(void *arg) {
    photon_thread_yield();
    int idx = pool_index(photon_vcpu_current());
    CHECK(idx >= 0, "work ran off the pool (vcpu %p)", (void *)photon_vcpu_current());
    return (void *)((uintptr_t)arg * 3 + (uintptr_t)idx);
}

static void *current_vcpu(void *arg) {
    (void)arg;
    return photon_vcpu_current();
}

static void *sleepy(void *arg) {
    CHECK_OK(photon_thread_usleep(50000));
    return arg;
}

static atomic_int ran_on[2];

static void check_calls(const char *who, int id) {
    for (int i = 0; i < CALLS; i++) {
        uintptr_t x = (uintptr_t)(id * 100000 + i);
        void *ret = (void *)(uintptr_t)0xbad;
        errno = 0;
        int r = photon_workpool_call(pool, triple, (void *)x, &ret);
        CHECK(r == 0, "%s %d: photon_workpool_call: %d errno %d", who, id, r, errno);
        uintptr_t got = (uintptr_t)ret;
        CHECK(got / 3 == x && got % 3 <= 1, "%s %d: call returned %lu for %lu", who, id,
              (unsigned long)got, (unsigned long)x);
        atomic_fetch_add(&ran_on[got % 3], 1);
    }
    CHECK_OK(photon_workpool_call(pool, triple, (void *)1, NULL)); /* retval NULL */
}

static void *pthread_caller(void *arg) {
    CHECK_NULL_ERRNO(photon_vcpu_current(), EPERM);
    check_calls("pthread", (int)(intptr_t)arg);
    return NULL;
}

static photon_sem *done;

static void *photon_caller(void *arg) {
    check_calls("photon thread", (int)(intptr_t)arg);
    CHECK_OK(photon_sem_signal(done, 1));
    return NULL;
}

static atomic_int ticks;
static atomic_int ticking;

static void *ticker(void *arg) {
    (void)arg;
    while (atomic_load(&ticking)) {
        atomic_fetch_add(&ticks, 1);
        CHECK_OK(photon_thread_usleep(1000));
    }
    return NULL;
}

static atomic_int slow_work_done;

static void *slow_work(void *arg) {
    CHECK_OK(photon_thread_usleep(100000));
    atomic_store(&slow_work_done, 1);
    return arg;
}

static void *interrupted_caller(void *arg) {
    (void)arg;
    void *ret = NULL;
    errno = 0;
    int r = photon_workpool_call(pool, slow_work, (void *)7, &ret);
    int e = errno;
    CHECK(r == -1 && e == ENOTCONN, "interrupted call: %d errno %d, want -1/ENOTCONN", r, e);
    CHECK(!atomic_load(&slow_work_done), "the call returned after the work ended");
    return NULL;
}

static void *call_from_inside(void *arg) {
    (void)arg;
    CHECK(pool_index(photon_vcpu_current()) >= 0, "not on the pool");
    void *ret = NULL;
    for (int i = 0; i < 10; i++) {
        CHECK_OK(photon_workpool_call(pool, triple, (void *)(uintptr_t)(1000 + i), &ret));
        CHECK((uintptr_t)ret / 3 == (uintptr_t)(1000 + i), "inner call result");
    }
    return (void *)(uintptr_t)0x1e;
}

static atomic_int spawned_ran, spawned_off_pool;

static void *spawned(void *arg) {
    (void)arg;
    if (pool_index(photon_vcpu_current()) < 0) atomic_fetch_add(&spawned_off_pool, 1);
    atomic_fetch_add(&spawned_ran, 1);
    return NULL;
}

static void *spawn_many(void *arg) {
    (void)arg;
    for (int i = 0; i < SPAWNS; i++) CHECK_OK(photon_workpool_spawn(pool, spawned, NULL));
    return NULL;
}

/* for the free-while-blocked part */
static photon_workpool *pool2;
static photon_sem *never;
static atomic_int blocked_started;
static atomic_int sleeper_errno, sem_waiter_errno;

static void *sleeps_forever(void *arg) {
    (void)arg;
    atomic_fetch_add(&blocked_started, 1);
    errno = 0;
    int r = photon_thread_usleep(PHOTON_FOREVER);
    atomic_store(&sleeper_errno, r == -1 ? errno : -100);
    return NULL;
}

static void *waits_forever(void *arg) {
    (void)arg;
    atomic_fetch_add(&blocked_started, 1);
    errno = 0;
    int r = photon_sem_wait(never, 1, PHOTON_FOREVER);
    atomic_store(&sem_waiter_errno, r == -1 ? errno : -100);
    return NULL;
}

int main(void) {
    test_start("vcpu_workpool");
    test_init();
    pthread_t wd;
    CHECK(pthread_create(&wd, NULL, watchdog, NULL) == 0, "pthread_create watchdog");
    home = photon_vcpu_current();
    CHECK(home != NULL, "photon_vcpu_current");

    stage = "new";
    SAY("photon_workpool_new: bad sizes or engine -> EINVAL");
    CHECK_NULL_ERRNO(photon_workpool_new(0, PHOTON_EVENT_DEFAULT), EINVAL);
    CHECK_NULL_ERRNO(photon_workpool_new(1025, PHOTON_EVENT_DEFAULT), EINVAL);
    CHECK_NULL_ERRNO(photon_workpool_new(1, 77), EINVAL);
    pool = photon_workpool_new(2, PHOTON_EVENT_DEFAULT);
    CHECK(pool != NULL, "photon_workpool_new(2): errno %d", errno);
    pv[0] = photon_workpool_vcpu(pool, 0);
    pv[1] = photon_workpool_vcpu(pool, 1);
    CHECK(pv[0] && pv[1] && pv[0] != pv[1] && pv[0] != home && pv[1] != home, "pool vcpus %p %p",
          (void *)pv[0], (void *)pv[1]);
    CHECK(photon_workpool_vcpu(pool, 0) == pv[0], "vcpu id not stable");
    CHECK_NULL_ERRNO(photon_workpool_vcpu(pool, 2), EINVAL);
    CHECK_NULL_ERRNO(photon_workpool_vcpu(pool, UINT32_MAX), EINVAL);
    CHECK_NULL_ERRNO(photon_workpool_vcpu(NULL, 0), EINVAL);
    photon_workpool *other = photon_workpool_new(1, PHOTON_EVENT_DEFAULT);
    CHECK(other != NULL, "a second pool: errno %d", errno);
    photon_vcpu *ov = photon_workpool_vcpu(other, 0);
    CHECK(ov && ov != pv[0] && ov != pv[1] && ov != home, "the second pool's vcpu is not distinct");
    void *ret = NULL;
    CHECK_OK(photon_workpool_call(other, current_vcpu, NULL, &ret));
    CHECK(ret == ov, "photon_vcpu_current on the pool's vcpu %p, photon_workpool_vcpu %p", ret,
          (void *)ov);
    photon_workpool_free(other);
    photon_workpool_free(NULL);

    SAY("NULL pool or function: EINVAL");
    CHECK_ERRNO(photon_workpool_call(NULL, triple, NULL, &ret), EINVAL);
    CHECK_ERRNO(photon_workpool_call(pool, NULL, NULL, &ret), EINVAL);
    CHECK_ERRNO(photon_workpool_spawn(NULL, spawned, NULL), EINVAL);
    CHECK_ERRNO(photon_workpool_spawn(pool, NULL, NULL), EINVAL);

    stage = "call";
    SAY("photon_workpool_call from the main thread: the main vcpu runs on meanwhile");
    atomic_store(&ticking, 1);
    photon_thread *tk = spawn_joinable(ticker, NULL, 0);
    ret = NULL;
    CHECK_OK(photon_workpool_call(pool, sleepy, (void *)(uintptr_t)0xabc, &ret));
    CHECK((uintptr_t)ret == 0xabc, "sleepy returned %p", ret);
    int t = atomic_load(&ticks);
    CHECK(t >= 5, "the main vcpu's ticker ran %d times during a 50 ms call", t);
    atomic_store(&ticking, 0);
    join_ok(tk);
    SAY("   the ticker ran %d times during the 50 ms call", t);

    SAY("%d pthreads and %d photon threads call %d times each, at once", CALLERS_PT, CALLERS_PH,
        CALLS);
    done = photon_sem_new(0);
    CHECK(done != NULL, "photon_sem_new");
    pthread_t pts[CALLERS_PT];
    for (int i = 0; i < CALLERS_PT; i++) {
        CHECK(pthread_create(&pts[i], NULL, pthread_caller, (void *)(intptr_t)i) == 0, "pthread_create");
    }
    for (int i = 0; i < CALLERS_PH; i++) {
        CHECK(photon_thread_create(photon_caller, (void *)(intptr_t)(100 + i), 0), "create");
    }
    errno = 0;
    CHECK(photon_sem_wait(done, CALLERS_PH, 20 * 1000 * 1000ULL) == 0, "photon callers: errno %d", errno);
    for (int i = 0; i < CALLERS_PT; i++) CHECK(pthread_join(pts[i], NULL) == 0, "pthread_join");
    SAY("   work ran %d times on pool vcpu 0, %d on pool vcpu 1", atomic_load(&ran_on[0]),
        atomic_load(&ran_on[1]));
    CHECK(atomic_load(&ran_on[0]) + atomic_load(&ran_on[1]) == (CALLERS_PT + CALLERS_PH) * CALLS,
          "calls counted");
    CHECK(atomic_load(&ran_on[0]) > 0 && atomic_load(&ran_on[1]) > 0, "one pool vcpu never ran work");

    SAY("a photon caller interrupted while waiting: -1/ENOTCONN; the work still ends");
    photon_thread *ic = spawn_joinable(interrupted_caller, NULL, 0);
    CHECK_OK(photon_thread_usleep(20000));
    CHECK_OK(photon_thread_interrupt(ic, ENOTCONN));
    join_ok(ic);
    for (int i = 0; i < 2000 && !atomic_load(&slow_work_done); i++) CHECK_OK(photon_thread_usleep(1000));
    CHECK(atomic_load(&slow_work_done), "the interrupted call's work never ended");

    SAY("a call from a pool thread into its own pool");
    ret = NULL;
    CHECK_OK(photon_workpool_call(pool, call_from_inside, NULL, &ret));
    CHECK((uintptr_t)ret == 0x1e, "inner calls failed");

    stage = "spawn";
    SAY("photon_workpool_spawn x %d from the main thread, a plain pthread, and a pool thread", SPAWNS);
    spawn_many(NULL);
    pthread_t sp;
    CHECK(pthread_create(&sp, NULL, spawn_many, NULL) == 0, "pthread_create");
    CHECK(pthread_join(sp, NULL) == 0, "pthread_join");
    CHECK_OK(photon_workpool_call(pool, spawn_many, NULL, NULL));
    for (int i = 0; i < 5000 && atomic_load(&spawned_ran) < 3 * SPAWNS; i++) {
        CHECK_OK(photon_thread_usleep(1000));
    }
    CHECK(atomic_load(&spawned_ran) == 3 * SPAWNS, "%d of %d spawned threads ran",
          atomic_load(&spawned_ran), 3 * SPAWNS);
    CHECK(atomic_load(&spawned_off_pool) == 0, "%d spawned threads ran off the pool",
          atomic_load(&spawned_off_pool));

    stage = "free while blocked";
    SAY("photon_workpool_free while pool threads block forever: ECANCELED, and it returns");
    pool2 = photon_workpool_new(2, PHOTON_EVENT_DEFAULT);
    never = photon_sem_new(0);
    CHECK(pool2 && never, "pool2");
    for (int i = 0; i < 2; i++) {
        CHECK_OK(photon_workpool_spawn(pool2, sleeps_forever, NULL));
        CHECK_OK(photon_workpool_spawn(pool2, waits_forever, NULL));
    }
    for (int i = 0; i < 5000 && atomic_load(&blocked_started) < 4; i++) CHECK_OK(photon_thread_usleep(1000));
    CHECK_OK(photon_thread_usleep(10000));
    CHECK_ERRNO(photon_sem_free(never), EBUSY);
    uint64_t t0 = photon_now_us();
    photon_workpool_free(pool2); /* blocks this OS thread: nothing of main's needs it */
    SAY("   photon_workpool_free took %.1f ms", elapsed_us(t0) / 1e3);
    CHECK(atomic_load(&sleeper_errno) == ECANCELED, "sleeper: errno %d", atomic_load(&sleeper_errno));
    CHECK(atomic_load(&sem_waiter_errno) == ECANCELED, "sem waiter: errno %d",
          atomic_load(&sem_waiter_errno));
    CHECK_OK(photon_sem_free(never));

    CHECK_OK(photon_sem_free(done));
    photon_workpool_free(pool);
    atomic_store(&finished, 1);
    CHECK(pthread_join(wd, NULL) == 0, "pthread_join watchdog");
    test_fini();
    SAY("ok");
    return 0;
}
