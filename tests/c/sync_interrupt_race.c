/*
 * photon_thread_interrupt racing with a lock's own wake-ups must not be
 * lost (photon.h, photon_thread_interrupt: "so an interrupt is never lost
 * to a race"): the interrupted call either fails with the interrupter's
 * errno, or, when it got what it waited for at that very moment and
 * returns 0, the interrupt stays pending and fails the thread's next
 * blocking call. Each case is deterministic (one vcpu, no timing races):
 *
 *  1a. W waits on a mutex that H holds. H interrupts W (ECANCELED), then
 *      at once unlocks (W has waited < 1 ms: it is woken to compete, not
 *      handed the lock) and locks again before W runs, then holds the
 *      mutex for 300 ms. Want: W's lock fails with ECANCELED at once.
 *  1b. The same, but H spins 2 ms before interrupting, so the unlock hands
 *      W the mutex (W waited > 1 ms). W's lock may return 0 then, but the
 *      interrupt must stay pending: W's next usleep must fail with it.
 *  2.  W waits on a cond; N, holding the mutex, notifies W, then
 *      interrupts W while W blocks re-taking the mutex inside
 *      photon_cond_wait, waits 10 ms, unlocks. Want: cond_wait returns -1
 *      with ECANCELED (holding the mutex, as always), or 0 with the
 *      interrupt left pending for W's next blocking call.
 *
 * (1a also happens across vcpus: a waiter on one vcpu, the holder on
 * another, whose interrupt and unlock reach the waiter's vcpu together.)
 */
#include <stdatomic.h>

#include "check.h"

#define HOLD_US 300000

static photon_mutex *m;
static photon_cond *c;
static photon_thread *waiter_th;
static int w_queued;      /* same vcpu: plain int */
static uint64_t spin_before_interrupt_us;

static void spin_us(uint64_t us) {
    uint64_t t = photon_now_us();
    while (photon_now_us() - t < us) {
    }
}

/* 1. the holder, on the waiter's vcpu */
static void *holder(void *arg) {
    (void)arg;
    CHECK_OK(photon_mutex_lock(m, PHOTON_FOREVER));
    while (!w_queued) photon_thread_yield(); /* until W is parked on m */
    spin_us(spin_before_interrupt_us);
    CHECK_OK(photon_thread_interrupt(waiter_th, ECANCELED));
    CHECK_OK(photon_mutex_unlock(m));
    errno = 0;
    int r = photon_mutex_lock(m, PHOTON_FOREVER); /* barge back in (or wait, if W was handed it) */
    CHECK(r == 0, "holder relock: errno %d", errno);
    CHECK_OK(photon_thread_usleep(HOLD_US));
    CHECK_OK(photon_mutex_unlock(m));
    return NULL;
}

/* Returns 1 if the interrupt was honoured, 0 if it was lost. */
static int mutex_case(const char *name, uint64_t spin_us_before) {
    spin_before_interrupt_us = spin_us_before;
    w_queued = 0;
    waiter_th = photon_thread_self();
    photon_thread *h = spawn_joinable(holder, NULL, 0);
    photon_thread_yield(); /* H takes m */
    w_queued = 1;
    uint64_t t0 = photon_now_us();
    errno = 0;
    int r = photon_mutex_lock(m, PHOTON_FOREVER);
    int e = errno;
    uint64_t took = elapsed_us(t0);
    int ok;
    if (r == -1) {
        CHECK(e == ECANCELED, "%s: lock failed with errno %d, want ECANCELED", name, e);
        ok = took < HOLD_US / 2;
        SAY("   %s: photon_mutex_lock returned -1/ECANCELED after %llu us -> %s", name,
            (unsigned long long)took, ok ? "ok" : "late");
    } else {
        CHECK_OK(photon_mutex_unlock(m));
        errno = 0;
        int r2 = photon_thread_usleep(1000);
        int pending = r2 == -1 && errno == ECANCELED;
        ok = took < HOLD_US / 2 && pending;
        SAY("   %s: photon_mutex_lock returned 0 after %llu us; the next usleep returned %d (errno %d) "
            "-> %s",
            name, (unsigned long long)took, r2, r2 ? errno : 0,
            ok ? "ok (interrupt left pending)"
               : took >= HOLD_US / 2 ? "LOST: it parked again after the interrupt until the holder let go"
                                     : "LOST: the lock was granted and the interrupt vanished");
    }
    join_ok(h);
    return ok;
}

/* 2. */
static int c_ret = 99, c_err, next_ret = 99, next_err;

static void *cond_waiter(void *arg) {
    (void)arg;
    CHECK_OK(photon_mutex_lock(m, PHOTON_FOREVER));
    errno = 0;
    c_ret = photon_cond_wait(c, m, PHOTON_FOREVER);
    c_err = errno;
    CHECK_OK(photon_mutex_unlock(m));
    errno = 0;
    next_ret = photon_thread_usleep(100000); /* a pending interrupt fails this */
    next_err = errno;
    return NULL;
}

int main(void) {
    test_start("sync_interrupt_race");
    test_init();
    m = photon_mutex_new();
    c = photon_cond_new();
    CHECK(m && c, "new");

    SAY("1a. a mutex waiter interrupted, then woken to compete, and the holder barges back in");
    int ok_1a = mutex_case("1a", 0);
    SAY("1b. a mutex waiter interrupted, then handed the mutex (it waited > 1 ms)");
    int ok_1b = mutex_case("1b", 2000);

    SAY("2. cond_wait interrupted while re-taking the mutex after a notify");
    photon_thread *w = spawn_joinable(cond_waiter, NULL, 0);
    CHECK_OK(photon_thread_usleep(10000)); /* w waits on c */
    CHECK_OK(photon_mutex_lock(m, PHOTON_FOREVER));
    CHECK_OK(photon_cond_notify_one(c));
    CHECK_OK(photon_thread_usleep(10000)); /* w woke and now blocks on m */
    CHECK_OK(photon_thread_interrupt(w, ECANCELED));
    CHECK_OK(photon_thread_usleep(10000));
    CHECK_OK(photon_mutex_unlock(m));
    join_ok(w);
    int ok_2 = (c_ret == -1 && c_err == ECANCELED) || (c_ret == 0 && next_ret == -1 && next_err == ECANCELED);
    SAY("   2: cond_wait returned %d (errno %d); the next usleep returned %d (errno %d) -> %s", c_ret,
        c_ret ? c_err : 0, next_ret, next_ret ? next_err : 0, ok_2 ? "ok" : "LOST");

    CHECK(ok_1a,
          "1a: the interrupt was lost: the waiter, woken to compete and beaten by the barging holder, "
          "consumed the interrupt and parked again until the holder let go 300 ms later "
          "(src/sync/mutex.rs lock(): park's withdraw finds it dequeued -> Ok, then `retry`)");
    CHECK(ok_1b,
          "1b: the interrupt was lost: the mutex was handed to the interrupted waiter and the "
          "interrupt was discarded instead of staying pending (src/sync/mod.rs park(): Err(e) from "
          "block, withdraw returns false -> Ok(()), e dropped)");
    CHECK(ok_2,
          "2: the interrupt was lost: cond_wait returned %d and the next blocking call %d (errno %d); "
          "src/sync/cond.rs re-takes the mutex with `while m.lock(FOREVER).is_err() {}`, which "
          "consumes the interrupt",
          c_ret, next_ret, next_err);

    CHECK_OK(photon_mutex_free(m));
    CHECK_OK(photon_cond_free(c));
    test_fini();
    SAY("ok");
    return 0;
}
