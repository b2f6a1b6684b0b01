/*
 * An interrupt sent to a thread while it migrates must not be lost
 * (photon.h, photon_thread_interrupt: "If it is not blocked, the interrupt
 * stays pending and its next blocking call fails with it at once (so an
 * interrupt is never lost to a race)").
 *
 * A thread T moves itself from the main vcpu to a pool vcpu P, 20 times.
 * Each time, a photon thread I that runs on P interrupts T with ECANCELED
 * while T is in flight: I sees T announce the move, spins 2 ms without
 * yielding (so P does not read its inbox, where T's arrival waits), then
 * calls photon_thread_interrupt(T). Once T runs on P, its next blocking call
 * (a 100 ms usleep) must fail with ECANCELED.
 */
#include <stdatomic.h>

#include "check.h"

#define ROUNDS 20

static photon_workpool *pool;
static _Atomic(photon_thread *) mover_th;
static atomic_int about_to_migrate, interrupted;

static void spin_us(uint64_t us) {
    uint64_t t = photon_now_us();
    while (photon_now_us() - t < us) {
    }
}

static void *interrupter(void *arg) {
    (void)arg;
    for (int round = 0; round < ROUNDS; round++) {
        while (atomic_load(&about_to_migrate) != round + 1) photon_thread_yield();
        spin_us(2000);
        CHECK_OK(photon_thread_interrupt(atomic_load(&mover_th), ECANCELED));
        atomic_store(&interrupted, round + 1);
    }
    return NULL;
}

/* errno is read in this non-inlined function only: see vcpu_migrate.c */
static __attribute__((noinline)) int sleep_errno(int *err) {
    errno = 0;
    int r = photon_thread_usleep(100000);
    *err = errno;
    return r;
}

static void *mover(void *arg) {
    (void)arg;
    photon_vcpu *home = photon_vcpu_current();
    photon_vcpu *p0 = photon_workpool_vcpu(pool, 0);
    atomic_store(&mover_th, photon_thread_self());
    int lost = 0;
    for (int round = 0; round < ROUNDS; round++) {
        atomic_store(&about_to_migrate, round + 1);
        CHECK_OK(photon_thread_migrate(photon_thread_self(), p0));
        CHECK(photon_vcpu_current() == p0, "not on the pool vcpu");
        /* No blocking call before the check; a yield is not one (it leaves a
         * pending interrupt alone) and lets the interrupter run when the
         * pool vcpu adopted this thread before the interrupter got its turn
         * (a busy wait here deadlocked about once in 40 runs). */
        while (atomic_load(&interrupted) != round + 1) photon_thread_yield();
        int err = 0;
        int r = sleep_errno(&err);
        int ok = r == -1 && err == ECANCELED;
        if (!ok) {
            SAY("   round %d: the usleep after the interrupt returned %d (errno %d): interrupt lost",
                round, r, r ? err : 0);
        }
        lost += !ok;
        CHECK_OK(photon_thread_migrate(photon_thread_self(), home));
    }
    return (void *)(intptr_t)lost;
}

int main(void) {
    test_start("vcpu_migrate_interrupt");
    test_init();
    pool = photon_workpool_new(1, PHOTON_EVENT_DEFAULT);
    CHECK(pool != NULL, "photon_workpool_new(1): errno %d", errno);
    SAY("a thread interrupted from its target vcpu while it migrates there, %d times", ROUNDS);
    CHECK_OK(photon_workpool_spawn(pool, interrupter, NULL));
    photon_thread *t = spawn_joinable(mover, NULL, 0);
    int lost = (int)(intptr_t)join_ok(t);
    CHECK(lost == 0,
          "%d of %d interrupts were lost: an interrupt that reaches a thread in state Migrating "
          "is dropped (src/sched/vcpu.rs interrupt_local: `State::Dead | State::Migrating => {}`)",
          lost, ROUNDS);
    photon_workpool_free(pool);
    test_fini();
    SAY("ok");
    return 0;
}
