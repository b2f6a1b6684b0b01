/*
 * Two vcpus: a pthread becomes a second vcpu (photon_init) and creates
 * threads there. Main's vcpu joins one of them ("the thread may live on any
 * vcpu"), and interrupts another that sleeps without a timeout; each wakes
 * the other vcpu from its engine wait.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

#include "check.h"

static _Atomic(photon_thread *) sleeper_handle; /* runs 30 ms, returns 77 */
static _Atomic(photon_thread *) forever_handle; /* sleeps until interrupted */
static int forever_ret = 99, forever_err;
static atomic_int second_fini_ret = 99;
static atomic_int may_fini; /* set by main once it is done with b */

static void *sleep_30ms(void *arg) {
    CHECK_OK(photon_thread_usleep(30000));
    return arg;
}

static void *sleep_forever(void *arg) {
    errno = 0;
    forever_ret = photon_thread_usleep(PHOTON_FOREVER);
    forever_err = errno;
    return arg;
}

static void *second_vcpu(void *arg) {
    (void)arg;
    CHECK_OK(photon_init(PHOTON_EVENT_DEFAULT, 0));
    photon_thread *a = spawn_joinable(sleep_30ms, (void *)77, 0);
    photon_thread *b = photon_thread_create(sleep_forever, NULL, 0);
    CHECK(b != NULL, "create failed: errno %d", errno);
    atomic_store(&sleeper_handle, a);
    atomic_store(&forever_handle, b);
    /* fini would interrupt b itself: wait until main has done so */
    for (int i = 0; i < 10000 && !atomic_load(&may_fini); i++) {
        CHECK_OK(photon_thread_usleep(1000));
    }
    atomic_store(&second_fini_ret, photon_fini());
    return NULL;
}

int main(void) {
    test_start("cross_vcpu");
    test_init();

    pthread_t pt;
    CHECK(pthread_create(&pt, NULL, second_vcpu, NULL) == 0, "pthread_create failed");
    photon_thread *a = NULL, *b = NULL;
    for (int i = 0; i < 5000 && (a == NULL || b == NULL); i++) {
        CHECK_OK(photon_thread_usleep(1000));
        a = atomic_load(&sleeper_handle);
        b = atomic_load(&forever_handle);
    }
    CHECK(a != NULL && b != NULL, "the second vcpu did not start its threads");

    SAY("join a thread that lives on another vcpu");
    uint64_t t0 = photon_now_us();
    void *ret = join_ok(a);
    uint64_t took = elapsed_us(t0);
    CHECK((uintptr_t)ret == 77, "got %p, want 77", ret);
    CHECK(took < 1000000, "the cross-vcpu join took %" PRIu64 " us", took);

    SAY("interrupt a thread sleeping forever on another vcpu");
    CHECK_OK(photon_thread_usleep(10000)); /* b is in its endless sleep */
    t0 = photon_now_us();
    CHECK_OK(photon_thread_interrupt(b, ECANCELED));
    atomic_store(&may_fini, 1);
    /* wait for the second vcpu to end, without blocking this vcpu */
    for (int i = 0; i < 5000 && atomic_load(&second_fini_ret) == 99; i++) {
        CHECK_OK(photon_thread_usleep(1000));
    }
    took = elapsed_us(t0);
    CHECK(pthread_join(pt, NULL) == 0, "pthread_join failed");
    CHECK(forever_ret == -1 && forever_err == ECANCELED,
          "the remote sleeper: want -1 with ECANCELED, got %d with errno %d", forever_ret,
          forever_err);
    CHECK(atomic_load(&second_fini_ret) == 0, "the second vcpu's photon_fini gave %d",
          atomic_load(&second_fini_ret));
    CHECK(took < 1000000, "the remote interrupt and fini took %" PRIu64 " us", took);

    test_fini();
    SAY("cross_vcpu: OK");
    return 0;
}
