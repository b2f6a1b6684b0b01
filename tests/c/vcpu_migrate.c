/*
 * photon_thread_migrate between the main vcpu and a work pool of two:
 *  - a thread moves itself to pool vcpu 0, to pool vcpu 1 and back home,
 *    2,000 times; photon_vcpu_current() follows every move, and its stack,
 *    its thread-local value (photon_setspecific) and a mutex it holds come
 *    along (it unlocks on another vcpu than the one it locked on);
 *  - the main thread moves another, runnable thread of its vcpu (not yet
 *    started) to the pool, where it runs, and joins it from home;
 *  - a migrated thread can be interrupted and joined on its new vcpu;
 *  - errors: a blocked thread (sleeping, or waiting on a mutex) -> EBUSY,
 *    and it stays where it is and works on; a vcpu's main thread (the
 *    caller itself, or named by another thread) -> EINVAL; a thread of
 *    another vcpu -> EINVAL; NULL thread or vcpu, or a vcpu that does not
 *    exist -> EINVAL; a thread that has ended -> ESRCH; from a plain
 *    pthread -> EPERM; moving to one's own vcpu -> 0, a no-op;
 *  - 6 threads hop between the three vcpus 20,000 times each while
 *    incrementing a mutex-guarded counter: the total is exact.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>

#include "check.h"

#define HOPS 2000
#define HOPPERS 6
#define HOPPER_HOPS 20000
#define WATCHDOG_S 40

static photon_workpool *pool;
static photon_vcpu *home, *pv[2];
static photon_thread *main_thread;
static uint32_t key;
static photon_mutex *mtx;
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

/*
 * C caveat of migration: glibc declares __errno_location() const, so at -O2
 * the compiler computes errno's address once per function and reuses it
 * after a call that moved the thread to another OS thread: errno read in the
 * same function then is the old OS thread's. So errno is only checked in
 * functions that did not migrate (these, not inlined).
 */
__attribute__((noinline)) static void check_relock_edeadlk(void) {
    CHECK_ERRNO(photon_mutex_lock(mtx, PHOTON_FOREVER), EDEADLK); /* still its owner */
}

__attribute__((noinline)) static void check_main_thread_einval(void) {
    CHECK_ERRNO(photon_thread_migrate(main_thread, pv[0]), EINVAL);
}

static void *traveller(void *arg) {
    (void)arg;
    volatile uint64_t on_stack = 0x1234567890abcdefULL;
    int local = 42;
    CHECK(photon_vcpu_current() == home, "does not start at home");
    CHECK_OK(photon_setspecific(key, &local));
    photon_vcpu *route[3] = {pv[0], pv[1], home};
    for (int i = 0; i < HOPS; i++) {
        for (int j = 0; j < 3; j++) {
            CHECK_OK(photon_thread_migrate(photon_thread_self(), route[j]));
            photon_vcpu *now = photon_vcpu_current();
            CHECK(now == route[j], "hop %d.%d: on vcpu %p, want %p", i, j, (void *)now,
                  (void *)route[j]);
            CHECK(photon_getspecific(key) == &local, "the thread-local value changed");
            CHECK(on_stack == 0x1234567890abcdefULL && local == 42, "the stack changed");
            photon_thread_yield();
            CHECK(photon_vcpu_current() == route[j], "moved by a yield");
        }
    }
    SAY("   a held mutex comes along: lock at home, unlock on pool vcpu 1");
    CHECK_OK(photon_mutex_lock(mtx, PHOTON_FOREVER));
    CHECK_OK(photon_thread_migrate(photon_thread_self(), pv[1]));
    check_relock_edeadlk();
    CHECK_OK(photon_mutex_unlock(mtx));
    CHECK_OK(photon_thread_migrate(photon_thread_self(), home));
    SAY("   migrating a vcpu's main thread: EINVAL");
    check_main_thread_einval();
    return (void *)(uintptr_t)0x600d;
}

static void *where_am_i(void *arg) {
    (void)arg;
    return photon_vcpu_current();
}

static _Atomic(photon_thread *) remote_handle;
static atomic_int remote_may_end;

static void *remote_sleeper(void *arg) {
    (void)arg;
    atomic_store(&remote_handle, photon_thread_self());
    errno = 0;
    int r = photon_thread_usleep(PHOTON_FOREVER); /* interrupted from home */
    int e = errno;
    CHECK(r == -1 && e == ECONNABORTED, "remote sleeper: %d errno %d", r, e);
    while (!atomic_load(&remote_may_end)) CHECK_OK(photon_thread_usleep(1000));
    return (void *)(uintptr_t)e;
}

static void *blocked_sleeper(void *arg) {
    (void)arg;
    errno = 0;
    int r = photon_thread_usleep(PHOTON_FOREVER);
    CHECK(r == -1 && errno == ECANCELED, "blocked sleeper: %d errno %d", r, errno);
    return photon_vcpu_current();
}

static void *blocked_locker(void *arg) {
    (void)arg;
    CHECK_OK(photon_mutex_lock(mtx, PHOTON_FOREVER));
    CHECK_OK(photon_mutex_unlock(mtx));
    return photon_vcpu_current();
}

static void *ends_at_once(void *arg) { return arg; }

static void *pthread_migrate(void *arg) {
    photon_thread *th = arg;
    CHECK_NULL_ERRNO(photon_vcpu_current(), EPERM);
    CHECK_ERRNO(photon_thread_migrate(th, pv[0]), EPERM);
    return NULL;
}

static uint64_t hop_counter; /* guarded by mtx */

static void *hopper(void *arg) {
    int id = (int)(intptr_t)arg;
    photon_vcpu *all[3] = {home, pv[0], pv[1]};
    uint64_t x = 88172645463325252ULL + (uint64_t)id;
    for (int i = 0; i < HOPPER_HOPS; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        photon_vcpu *to = all[x % 3];
        CHECK_OK(photon_thread_migrate(photon_thread_self(), to));
        CHECK(photon_vcpu_current() == to, "hopper %d: not where it moved", id);
        CHECK_OK(photon_mutex_lock(mtx, PHOTON_FOREVER));
        hop_counter++;
        if (x % 7 == 0) photon_thread_yield();
        CHECK_OK(photon_mutex_unlock(mtx));
    }
    return NULL;
}

int main(void) {
    test_start("vcpu_migrate");
    test_init();
    pthread_t wd;
    CHECK(pthread_create(&wd, NULL, watchdog, NULL) == 0, "pthread_create watchdog");
    pool = photon_workpool_new(2, PHOTON_EVENT_DEFAULT);
    CHECK(pool != NULL, "photon_workpool_new(2): errno %d", errno);
    home = photon_vcpu_current();
    pv[0] = photon_workpool_vcpu(pool, 0);
    pv[1] = photon_workpool_vcpu(pool, 1);
    main_thread = photon_thread_self();
    CHECK(home && pv[0] && pv[1] && main_thread, "vcpus");
    CHECK_OK(photon_key_create(&key, NULL));
    mtx = photon_mutex_new();
    CHECK(mtx != NULL, "photon_mutex_new");

    stage = "self migration";
    SAY("a thread moves itself home -> pool 0 -> pool 1 -> home, %d times", HOPS);
    uint64_t t0 = photon_now_us();
    photon_thread *t = spawn_joinable(traveller, NULL, 0);
    CHECK((uintptr_t)join_ok(t) == 0x600d, "traveller failed");
    SAY("   %d moves in %.1f ms", 3 * HOPS + 2, elapsed_us(t0) / 1e3);

    stage = "moving another thread";
    SAY("the main thread moves a runnable thread of its vcpu to pool vcpu 1; joined from home");
    t = spawn_joinable(where_am_i, NULL, 0);
    CHECK_OK(photon_thread_migrate(t, pv[1]));
    void *ran_on = join_ok(t);
    CHECK(ran_on == pv[1], "it ran on %p, want pool vcpu 1 %p", ran_on, (void *)pv[1]);
    SAY("   moving a thread to its own vcpu: 0, it stays");
    t = spawn_joinable(where_am_i, NULL, 0);
    CHECK_OK(photon_thread_migrate(t, home));
    CHECK(join_ok(t) == home, "it did not stay home");

    stage = "interrupt and join after a move";
    SAY("a moved thread is interrupted (ECONNABORTED) and joined on its new vcpu");
    t = spawn_joinable(remote_sleeper, NULL, 0);
    CHECK_OK(photon_thread_migrate(t, pv[0]));
    for (int i = 0; i < 5000 && !atomic_load(&remote_handle); i++) CHECK_OK(photon_thread_usleep(1000));
    CHECK(atomic_load(&remote_handle) == t, "the handle changed with the move");
    CHECK_OK(photon_thread_usleep(10000)); /* it sleeps on pool vcpu 0 */
    CHECK_ERRNO(photon_thread_migrate(t, home), EINVAL); /* another vcpu's thread now */
    CHECK_OK(photon_thread_interrupt(t, ECONNABORTED));
    atomic_store(&remote_may_end, 1);
    CHECK((uintptr_t)join_ok(t) == ECONNABORTED, "remote sleeper result");

    stage = "errors";
    SAY("a blocked thread: EBUSY; it stays home and works on");
    t = spawn_joinable(blocked_sleeper, NULL, 0);
    CHECK_OK(photon_thread_usleep(5000)); /* it sleeps */
    CHECK_ERRNO(photon_thread_migrate(t, pv[0]), EBUSY);
    CHECK_ERRNO(photon_thread_migrate(t, pv[1]), EBUSY);
    CHECK_OK(photon_thread_interrupt(t, ECANCELED));
    CHECK(join_ok(t) == home, "the blocked sleeper moved");
    CHECK_OK(photon_mutex_lock(mtx, PHOTON_FOREVER));
    t = spawn_joinable(blocked_locker, NULL, 0);
    CHECK_OK(photon_thread_usleep(5000)); /* it waits for mtx */
    CHECK_ERRNO(photon_thread_migrate(t, pv[0]), EBUSY);
    CHECK_OK(photon_mutex_unlock(mtx));
    CHECK(join_ok(t) == home, "the blocked locker moved");

    SAY("a vcpu's main thread: EINVAL (itself, or named by another thread)");
    CHECK_ERRNO(photon_thread_migrate(photon_thread_self(), pv[0]), EINVAL);
    CHECK_ERRNO(photon_thread_migrate(main_thread, pv[1]), EINVAL);
    CHECK(photon_vcpu_current() == home, "the main thread moved");

    SAY("NULL thread or vcpu, a vcpu that does not exist: EINVAL");
    t = spawn_joinable(where_am_i, NULL, 0);
    CHECK_ERRNO(photon_thread_migrate(NULL, pv[0]), EINVAL);
    CHECK_ERRNO(photon_thread_migrate(t, NULL), EINVAL);
    CHECK_ERRNO(photon_thread_migrate(t, (photon_vcpu *)(uintptr_t)0x7fff1234), EINVAL);
    CHECK_ERRNO(photon_thread_migrate(t, (photon_vcpu *)(uintptr_t)UINTPTR_MAX), EINVAL);
    CHECK(join_ok(t) == home, "it moved");

    SAY("a thread that has ended: ESRCH; from a plain pthread: EPERM");
    t = photon_thread_create(ends_at_once, NULL, 0);
    CHECK(t != NULL, "create");
    for (int i = 0; i < 5; i++) photon_thread_yield(); /* it ran and ended, detached */
    CHECK_ERRNO(photon_thread_migrate(t, pv[0]), ESRCH);
    t = spawn_joinable(where_am_i, NULL, 0);
    pthread_t pt;
    CHECK(pthread_create(&pt, NULL, pthread_migrate, t) == 0, "pthread_create");
    CHECK(pthread_join(pt, NULL) == 0, "pthread_join");
    CHECK(join_ok(t) == home, "it moved");

    stage = "hoppers";
    SAY("%d threads hop between the 3 vcpus %d times each, counting under a mutex", HOPPERS,
        HOPPER_HOPS);
    t0 = photon_now_us();
    photon_thread *hs[HOPPERS];
    for (int i = 0; i < HOPPERS; i++) hs[i] = spawn_joinable(hopper, (void *)(intptr_t)i, 0);
    for (int i = 0; i < HOPPERS; i++) join_ok(hs[i]);
    CHECK(hop_counter == (uint64_t)HOPPERS * HOPPER_HOPS, "counter %llu, want %d",
          (unsigned long long)hop_counter, HOPPERS * HOPPER_HOPS);
    SAY("   %d hops in %.1f ms, counter exact", HOPPERS * HOPPER_HOPS, elapsed_us(t0) / 1e3);

    CHECK_OK(photon_mutex_free(mtx));
    CHECK_OK(photon_key_delete(key));
    photon_workpool_free(pool);
    atomic_store(&finished, 1);
    CHECK(pthread_join(wd, NULL) == 0, "pthread_join watchdog");
    test_fini();
    SAY("ok");
    return 0;
}
