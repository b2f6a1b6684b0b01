/*
 * photon_fini: waits for this vcpu's other threads to end, interrupts the
 * threads blocked without a timeout with ECANCELED so it never hangs, and
 * leaves the OS thread ready for another photon_init.
 */
#include "check.h"

static int detached_done;

static void *sleep_50ms_then_finish(void *arg) {
    (void)arg;
    CHECK_OK(photon_thread_usleep(50000));
    detached_done = 1;
    return NULL;
}

/* B sleeps without a timeout; once interrupted it sleeps 100 ms more (a
 * timed sleep, which fini lets run out) so that A, which joins B, is still
 * blocked without a timeout when fini interrupts it. */
static int b_ret = 99, b_err, b_second_ret = 99;
static int a_ret = 99, a_err;
static int a_done, b_done;

static void *b_sleep_forever(void *arg) {
    errno = 0;
    b_ret = photon_thread_usleep(PHOTON_FOREVER);
    b_err = errno;
    b_second_ret = photon_thread_usleep(100000);
    b_done = 1;
    return arg;
}

static void *a_join_b(void *arg) {
    void *b_result = (void *)(uintptr_t)0xbad;
    errno = 0;
    a_ret = photon_thread_join((photon_thread *)arg, &b_result);
    a_err = errno;
    a_done = 1;
    return NULL;
}

static void *return_arg(void *arg) { return arg; }

static void *call_fini(void *arg) {
    (void)arg;
    errno = 0;
    int r = photon_fini();
    return (void *)(uintptr_t)(r == -1 && errno == EPERM);
}

int main(void) {
    test_start("fini");

    SAY("fini waits for a detached thread sleeping 50 ms");
    test_init();
    photon_thread *d = photon_thread_create(sleep_50ms_then_finish, NULL, 0);
    CHECK(d != NULL, "create failed: errno %d", errno);
    uint64_t t0 = photon_now_us();
    CHECK_OK(photon_fini());
    uint64_t took = elapsed_us(t0);
    CHECK(detached_done == 1, "fini returned before the detached thread finished");
    CHECK(took >= 50000, "fini returned after %" PRIu64 " us", took);
    CHECK(photon_thread_self() == NULL, "photon_thread_self() is not NULL after fini");
    CHECK(photon_engine_name() == NULL, "photon_engine_name() is not NULL after fini");
    CHECK_ERRNO(photon_thread_usleep(1000), EPERM);
    CHECK_ERRNO(photon_fini(), EPERM);

    SAY("photon_init works again on the same OS thread");
    test_init();

    SAY("fini interrupts threads blocked without a timeout with ECANCELED");
    photon_thread *b = spawn_joinable(b_sleep_forever, (void *)0xb, 0);
    photon_thread *a = photon_thread_create(a_join_b, b, 0);
    CHECK(a != NULL, "create failed: errno %d", errno);
    CHECK_OK(photon_thread_usleep(10000)); /* A is in join, B in its endless sleep */
    CHECK(a_ret == 99 && b_ret == 99, "A or B returned early: A %d, B %d", a_ret, b_ret);
    /* a joinable thread that ends and is never joined must not hold fini up */
    photon_thread *unjoined = spawn_joinable(return_arg, NULL, 0);
    (void)unjoined;
    t0 = photon_now_us();
    CHECK_OK(photon_fini());
    took = elapsed_us(t0);
    CHECK(b_done && a_done, "fini returned before A (%d) and B (%d) ended", a_done, b_done);
    CHECK(b_ret == -1 && b_err == ECANCELED,
          "B's usleep(PHOTON_FOREVER): want -1 with ECANCELED, got %d with errno %d (%s)",
          b_ret, b_err, strerror(b_err));
    CHECK(b_second_ret == 0, "B's timed sleep during fini gave %d", b_second_ret);
    CHECK(a_ret == -1 && a_err == ECANCELED,
          "A's join of B: want -1 with ECANCELED, got %d with errno %d (%s)", a_ret, a_err,
          strerror(a_err));
    CHECK(took >= 100000 && took < 2000000, "fini took %" PRIu64 " us", took);

    SAY("and photon_init works a third time; threads run as usual");
    test_init();
    photon_thread *th = spawn_joinable(return_arg, (void *)33, 0);
    CHECK((uintptr_t)join_ok(th) == 33, "wrong return value");

    SAY("photon_fini from a photon thread other than the vcpu's main gives EPERM");
    th = spawn_joinable(call_fini, NULL, 0);
    CHECK((uintptr_t)join_ok(th) == 1, "photon_fini in a thread did not give -1/EPERM");
    CHECK(photon_thread_self() != NULL, "the vcpu went away");
    test_fini();

    SAY("init/fini cycles with an explicit engine");
    for (int i = 0; i < 20; i++) {
        errno = 0;
        CHECK_OK(photon_init(PHOTON_EVENT_EPOLL, 0));
        CHECK(strcmp(photon_engine_name(), "epoll") == 0,
              "photon_init(PHOTON_EVENT_EPOLL): engine is %s", photon_engine_name());
        photon_thread *t = spawn_joinable(return_arg, (void *)(uintptr_t)i, 0);
        CHECK((uintptr_t)join_ok(t) == (uintptr_t)i, "cycle %d: wrong return value", i);
        CHECK_OK(photon_fini());
    }

    SAY("fini: OK");
    return 0;
}
