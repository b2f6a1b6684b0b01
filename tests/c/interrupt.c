/*
 * photon_thread_interrupt: wakes a thread blocked in photon_thread_usleep or
 * photon_thread_join promptly, with the interrupter's errno; works from a
 * plain pthread that is not a vcpu; and on a thread that is not blocked, it
 * stays pending and fails that thread's next blocking call (photon.h).
 */
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

#include "check.h"

#define LONG_SLEEP_US 10000000ULL /* 10 s: only an interrupt ends it early */
#define PROMPT_US 100000ULL       /* an interrupted sleep must end within 100 ms */

struct sleeper {
    atomic_int sleeping;
    int ret;
    int err;
    uint64_t slept_us;
};

static void *long_sleeper(void *arg) {
    struct sleeper *s = arg;
    uint64_t t0 = photon_now_us();
    atomic_store(&s->sleeping, 1);
    errno = 0;
    s->ret = photon_thread_usleep(LONG_SLEEP_US);
    s->err = errno;
    s->slept_us = elapsed_us(t0);
    return (void *)(uintptr_t)0x51;
}

static void interrupt_a_sleep(int code) {
    struct sleeper s = {.ret = 99};
    photon_thread *th = spawn_joinable(long_sleeper, &s, 0);
    CHECK_OK(photon_thread_usleep(10000)); /* th is now in its 10 s sleep */
    CHECK(atomic_load(&s.sleeping) == 1, "the sleeper did not start");
    uint64_t t0 = photon_now_us();
    CHECK_OK(photon_thread_interrupt(th, code));
    void *ret = join_ok(th);
    uint64_t took = elapsed_us(t0);
    CHECK((uintptr_t)ret == 0x51, "the sleeper returned %p", ret);
    CHECK(s.ret == -1 && s.err == code,
          "usleep interrupted with %d: want -1 with errno %d, got %d with errno %d", code,
          code, s.ret, s.err);
    CHECK(took < PROMPT_US, "interrupt(%d) woke the sleeper after %" PRIu64 " us", code,
          took);
}

/* --- interrupting a thread blocked in photon_thread_join --- */

struct joiner {
    photon_thread *target;
    int ret;
    int err;
    void *target_ret;
};

static void *join_target(void *arg) {
    struct joiner *j = arg;
    j->target_ret = (void *)(uintptr_t)0xbad;
    errno = 0;
    j->ret = photon_thread_join(j->target, &j->target_ret);
    j->err = errno;
    return NULL;
}

static void interrupt_a_join(void) {
    struct sleeper target_state = {.ret = 99};
    photon_thread *target = spawn_joinable(long_sleeper, &target_state, 0);
    struct joiner j = {.target = target, .ret = 99};
    photon_thread *joiner = spawn_joinable(join_target, &j, 0);
    CHECK_OK(photon_thread_usleep(10000)); /* joiner blocks in join, target in sleep */

    uint64_t t0 = photon_now_us();
    CHECK_OK(photon_thread_interrupt(joiner, EINTR));
    join_ok(joiner);
    uint64_t took = elapsed_us(t0);
    CHECK(j.ret == -1 && j.err == EINTR,
          "interrupted join: want -1 with errno EINTR, got %d with errno %d (%s)", j.ret,
          j.err, strerror(j.err));
    CHECK(j.target_ret == (void *)(uintptr_t)0xbad,
          "interrupted join wrote %p to retval", j.target_ret);
    CHECK(took < PROMPT_US, "interrupting the join took %" PRIu64 " us", took);
    CHECK(target_state.ret == 99, "the join target was woken too");

    SAY("  the target of an interrupted join is still joinable");
    CHECK_OK(photon_thread_interrupt(target, ECANCELED));
    void *ret = join_ok(target);
    CHECK((uintptr_t)ret == 0x51, "target returned %p", ret);
    CHECK(target_state.ret == -1 && target_state.err == ECANCELED,
          "target's usleep: got %d with errno %d", target_state.ret, target_state.err);
}

/* --- interrupting a thread that is not blocked --- */

struct runnable {
    int first_ret, first_err;
    uint64_t first_us;
    int second_ret, second_err;
};

static void *sleep_twice(void *arg) {
    struct runnable *r = arg;
    uint64_t t0 = photon_now_us();
    errno = 0;
    r->first_ret = photon_thread_usleep(20000);
    r->first_err = errno;
    r->first_us = elapsed_us(t0);
    errno = 0;
    r->second_ret = photon_thread_usleep(1000);
    r->second_err = errno;
    return NULL;
}

static void interrupt_a_runnable_thread(void) {
    struct runnable r = {.first_ret = 99, .second_ret = 99};
    /* th is runnable (created, not yet run), not blocked */
    photon_thread *th = spawn_joinable(sleep_twice, &r, 0);
    CHECK_OK(photon_thread_interrupt(th, EINTR));
    join_ok(th);
    /* photon.h: "If it is not blocked, the interrupt stays pending and its
     * next blocking call fails with it at once." */
    CHECK(r.first_ret == -1 && r.first_err == EINTR,
          "first usleep after a pending interrupt: want -1/EINTR, got %d with errno %d",
          r.first_ret, r.first_err);
    CHECK(r.first_us < PROMPT_US, "first usleep took %" PRIu64 " us", r.first_us);
    CHECK(r.second_ret == 0, "the pending interrupt was not consumed: second usleep got %d "
          "with errno %d", r.second_ret, r.second_err);
}

/* --- interrupting from a plain pthread (not a vcpu) --- */

struct remote {
    photon_thread *target;
    atomic_int *target_sleeping;
    int ret;
    int err;
};

static void *pthread_interrupter(void *arg) {
    struct remote *r = arg;
    struct timespec ms = {0, 1000000};
    for (int i = 0; i < 5000 && !atomic_load(r->target_sleeping); i++) {
        nanosleep(&ms, NULL);
    }
    struct timespec settle = {0, 20000000}; /* 20 ms: the target is in its sleep */
    nanosleep(&settle, NULL);
    errno = 0;
    r->ret = photon_thread_interrupt(r->target, EINTR);
    r->err = errno;
    return NULL;
}

static void interrupt_from_a_pthread(void) {
    struct sleeper s = {.ret = 99};
    photon_thread *th = spawn_joinable(long_sleeper, &s, 0);
    struct remote r = {.target = th, .target_sleeping = &s.sleeping, .ret = 99};
    pthread_t pt;
    CHECK(pthread_create(&pt, NULL, pthread_interrupter, &r) == 0, "pthread_create failed");
    uint64_t t0 = photon_now_us();
    join_ok(th); /* the vcpu sleeps in its engine until the remote wake-up */
    uint64_t took = elapsed_us(t0);
    CHECK(pthread_join(pt, NULL) == 0, "pthread_join failed");
    CHECK(r.ret == 0, "photon_thread_interrupt from a pthread: got %d with errno %d (%s)",
          r.ret, r.err, strerror(r.err));
    CHECK(s.ret == -1 && s.err == EINTR,
          "usleep interrupted from a pthread: want -1 with errno EINTR, got %d with errno %d",
          s.ret, s.err);
    CHECK(took < 20000 + 5 * PROMPT_US,
          "the remote interrupt woke the sleeper after %" PRIu64 " us (20 ms expected)", took);
}

static void *interrupt_after_10ms(void *arg) {
    CHECK_OK(photon_thread_usleep(10000));
    CHECK_OK(photon_thread_interrupt((photon_thread *)arg, ECANCELED));
    return NULL;
}

int main(void) {
    test_start("interrupt");
    test_init();

    SAY("interrupt(ECANCELED) wakes a 10 s usleep promptly, usleep gives -1/ECANCELED");
    interrupt_a_sleep(ECANCELED);
    SAY("interrupt(EINTR) likewise");
    interrupt_a_sleep(EINTR);
    SAY("interrupt with a custom positive code (1234) likewise");
    interrupt_a_sleep(1234);

    SAY("interrupting a thread blocked in photon_thread_join");
    interrupt_a_join();

    SAY("interrupting a runnable thread (not blocked)");
    interrupt_a_runnable_thread();

    SAY("a thread interrupting itself: its next blocking call fails at once");
    CHECK_OK(photon_thread_interrupt(photon_thread_self(), 4321));
    {
        uint64_t t0 = photon_now_us();
        CHECK_ERRNO(photon_thread_usleep(LONG_SLEEP_US), 4321);
        CHECK(elapsed_us(t0) < PROMPT_US, "the pending interrupt did not fail usleep at once");
        CHECK_OK(photon_thread_usleep(1000));
    }

    SAY("photon_thread_interrupt from a plain pthread wakes a sleeping photon thread");
    interrupt_from_a_pthread();

    SAY("a photon thread interrupts the main thread's sleep");
    {
        photon_thread *main_self = photon_thread_self();
        CHECK(main_self != NULL, "photon_thread_self() is NULL in main");
        photon_thread *th = spawn_joinable(interrupt_after_10ms, main_self, 0);
        uint64_t t0 = photon_now_us();
        CHECK_ERRNO(photon_thread_usleep(LONG_SLEEP_US), ECANCELED);
        uint64_t took = elapsed_us(t0);
        CHECK(took >= 10000 && took < 10000 + PROMPT_US, "main slept %" PRIu64 " us", took);
        void *ret = join_ok(th);
        CHECK(ret == NULL, "the interrupter returned %p", ret);
    }

    test_fini();
    SAY("interrupt: OK");
    return 0;
}
