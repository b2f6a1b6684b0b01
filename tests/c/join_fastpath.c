/*
 * The join protocol's two paths: a joiner on the joined thread's own vcpu
 * (the thread's end marks it ended with a plain store and wakes the joiner
 * directly) and a joiner on another vcpu (compare-and-swap against a joiner
 * that withdraws when interrupted). Both under interrupts that race with the
 * end: every join either returns the thread's own value or fails with EINTR
 * leaving the thread joinable; a retried join then returns the value. A
 * wrong fast path shows up as a hang, a wrong value, or EINVAL on the retry
 * (an ENDED word written over a withdrawn join re-marks it as waiting).
 * Detached threads mixed in must be reclaimed (their handles go stale).
 */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>

#include "check.h"

#define BATCH 32
#define ROUNDS 150

/* Yields (arg >> 8) % 4 times, sometimes sleeps a little, returns arg. */
static void *worker(void *arg) {
    uintptr_t a = (uintptr_t)arg;
    for (uintptr_t k = 0; k < (a >> 8) % 4; k++) {
        photon_thread_yield();
    }
    if ((a >> 8) % 7 == 3) {
        CHECK_OK(photon_thread_usleep(20));
    }
    return arg;
}

/* Joins `th` (which returns `want`), retrying while interrupted. */
static uint64_t interrupted;
static void join_retrying(photon_thread *th, uintptr_t want) {
    for (;;) {
        void *ret = (void *)1;
        errno = 0;
        int r = photon_thread_join(th, &ret);
        if (r == 0) {
            CHECK((uintptr_t)ret == want, "join returned %p, want %#lx", ret, (unsigned long)want);
            return;
        }
        CHECK(errno == EINTR, "join failed with errno %d, want EINTR (or success)", errno);
        CHECK(photon_thread_joinable(th) == 1, "an interrupted join must leave the thread joinable");
        interrupted++;
    }
}

/* ---- the other vcpu: creates batches of joinable threads for main ---- */
static _Atomic(photon_thread *) remote_th[BATCH];
static atomic_long joining; /* round * BATCH + index of the thread main joins now */

/* Runs until main is about to join it (so the join mostly finds it alive
 * and blocks), then yields a little and returns its argument. */
static void *remote_worker(void *arg) {
    uintptr_t a = (uintptr_t)arg;
    long me = (long)(a >> 16) * BATCH + (long)((a >> 8) & 0xff);
    for (long spins = 0; atomic_load(&joining) < me; spins++) {
        CHECK(spins < 50000000, "main never came to join %ld", me);
        photon_thread_yield();
    }
    for (long k = 0; k < me % 3; k++) {
        photon_thread_yield();
    }
    return arg;
}
static atomic_int batch_ready;  /* round number published by the other vcpu */
static atomic_int batch_joined; /* round number main has joined */
static atomic_int stop_interrupts;
static _Atomic(photon_thread *) joiner_handle;

static void *other_vcpu(void *arg) {
    (void)arg;
    CHECK_OK(photon_init(PHOTON_EVENT_DEFAULT, 0));
    for (int round = 1; round <= ROUNDS; round++) {
        for (int i = 0; i < BATCH; i++) {
            uintptr_t v = ((uintptr_t)round << 16) | ((uintptr_t)i << 8) | 0x5a;
            atomic_store(&remote_th[i], spawn_joinable(remote_worker, (void *)v, 0));
        }
        atomic_store(&batch_ready, round);
        /* the threads run while this one sleeps; main joins them meanwhile */
        for (long spins = 0; atomic_load(&batch_joined) != round; spins++) {
            CHECK(spins < 2000000, "main did not join round %d", round);
            if (spins % 8 == 0) {
                CHECK_OK(photon_thread_usleep(10));
            } else {
                photon_thread_yield();
            }
        }
    }
    CHECK_OK(photon_fini());
    return NULL;
}

/* A plain pthread interrupting the joiner over and over. */
static void *interrupter(void *arg) {
    (void)arg;
    while (!atomic_load(&stop_interrupts)) {
        photon_thread *j = atomic_load(&joiner_handle);
        if (j) {
            int r = photon_thread_interrupt(j, EINTR);
            CHECK(r == 0 || errno == ESRCH, "interrupt failed: errno %d", errno);
        }
        for (volatile int k = 0; k < 2000; k++) {
        }
        sched_yield();
    }
    return NULL;
}

/* Same vcpu: this photon thread creates and joins its own children. */
static void *local_joiner(void *arg) {
    (void)arg;
    for (uintptr_t i = 0; i < 4000; i++) {
        uintptr_t v = (i << 8) | 0xa5;
        photon_thread *det = NULL;
        if (i % 5 == 0) { /* a detached thread alongside: reclaimed at its end */
            det = photon_thread_create(worker, (void *)((i % 3) << 8), 0); /* no sleep */
            CHECK(det != NULL, "create failed: errno %d", errno);
        }
        photon_thread *th = spawn_joinable(worker, (void *)v, 0);
        if (i % 3 == 0) {
            photon_thread_yield(); /* th may already have ended: join finds it ended */
        }
        join_retrying(th, v);
        errno = 0;
        CHECK(photon_thread_join(th, NULL) == -1 && errno == EINVAL, "a second join must fail with EINVAL");
        if (det) {
            for (int k = 0; k < 8; k++) {
                photon_thread_yield();
            }
            CHECK(photon_thread_joinable(det) == -1 && errno == ESRCH,
                  "a detached thread that ended must be reclaimed");
        }
    }
    return NULL;
}

/* Other vcpu: this photon thread joins the other vcpu's batches. */
static void *remote_joiner(void *arg) {
    (void)arg;
    for (int round = 1; round <= ROUNDS; round++) {
        for (long spins = 0; atomic_load(&batch_ready) != round; spins++) {
            CHECK(spins < 2000000, "round %d never came", round);
            int r = photon_thread_usleep(10); /* the interrupter may cut it short */
            CHECK(r == 0 || errno == EINTR, "usleep failed: errno %d", errno);
        }
        for (int i = 0; i < BATCH; i++) {
            uintptr_t v = ((uintptr_t)round << 16) | ((uintptr_t)i << 8) | 0x5a;
            atomic_store(&joining, (long)round * BATCH + i); /* it ends while joined, mostly */
            join_retrying(atomic_load(&remote_th[i]), v);
        }
        atomic_store(&batch_joined, round);
    }
    return NULL;
}

int main(void) {
    test_start("join_fastpath");
    test_init();

    SAY("same vcpu: the joiner is a photon thread, interrupted from a pthread");
    {
        pthread_t p;
        photon_thread *j = spawn_joinable(local_joiner, NULL, 0);
        atomic_store(&joiner_handle, j);
        CHECK(pthread_create(&p, NULL, interrupter, NULL) == 0, "pthread_create");
        (void)join_ok(j);
        atomic_store(&joiner_handle, NULL);
        atomic_store(&stop_interrupts, 1);
        pthread_join(p, NULL);
        SAY("  %llu joins interrupted and retried", (unsigned long long)interrupted);
    }

    SAY("same vcpu, main joins: a joiner interrupted before the end, then the end");
    {
        photon_thread *th = spawn_joinable(worker, (void *)(uintptr_t)((7 << 8) | 1), 0); /* 3 yields */
        CHECK_OK(photon_thread_interrupt(photon_thread_self(), EINTR));
        errno = 0;
        CHECK(photon_thread_join(th, NULL) == -1 && errno == EINTR, "a pending interrupt fails the join");
        CHECK(photon_thread_joinable(th) == 1, "still joinable");
        void *ret = join_ok(th);
        CHECK((uintptr_t)ret == ((7 << 8) | 1), "got %p", ret);
    }

    SAY("other vcpu: %d rounds of %d threads joined from main's vcpu under interrupts", ROUNDS, BATCH);
    {
        pthread_t o, p;
        interrupted = 0;
        atomic_store(&stop_interrupts, 0);
        photon_thread *j = spawn_joinable(remote_joiner, NULL, 0);
        atomic_store(&joiner_handle, j);
        CHECK(pthread_create(&o, NULL, other_vcpu, NULL) == 0, "pthread_create");
        CHECK(pthread_create(&p, NULL, interrupter, NULL) == 0, "pthread_create");
        (void)join_ok(j);
        atomic_store(&joiner_handle, NULL);
        atomic_store(&stop_interrupts, 1);
        pthread_join(p, NULL);
        pthread_join(o, NULL);
        SAY("  %llu joins interrupted and retried", (unsigned long long)interrupted);
    }

    test_fini();
    SAY("join_fastpath: OK");
    return 0;
}
