/*
 * Calls from an OS thread that is not a vcpu (main before photon_init, and a
 * separate pthread while main is a vcpu): everything that can block or needs
 * a vcpu gives -1/NULL with EPERM; photon_thread_self and photon_engine_name
 * give NULL; photon_now_us and photon_version work anywhere; yield does
 * nothing. None of this disturbs the vcpu that main runs.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

#include "check.h"

static void *return_arg(void *arg) { return arg; }

static uint32_t live_key; /* created before photon_init: keys need no vcpu */

static void check_off_vcpu(const char *where) {
    SAY("%s: photon_thread_self() and photon_engine_name() are NULL with EPERM", where);
    CHECK_NULL_ERRNO(photon_thread_self(), EPERM);
    CHECK_NULL_ERRNO(photon_engine_name(), EPERM);

    SAY("%s: photon_now_us and photon_version work", where);
    uint64_t a = photon_now_us();
    struct timespec ms = {0, 2000000};
    nanosleep(&ms, NULL);
    uint64_t b = photon_now_us();
    CHECK(a > 0 && b >= a + 2000, "%s: photon_now_us gave %" PRIu64 " then %" PRIu64
          " around a 2 ms nanosleep", where, a, b);
    const char *v = photon_version();
    CHECK(v != NULL && v[0] != '\0', "%s: photon_version() is NULL or empty", where);

    SAY("%s: create, usleep, sleep, fini give EPERM", where);
    CHECK_NULL_ERRNO(photon_thread_create(return_arg, NULL, 0), EPERM);
    CHECK_ERRNO(photon_thread_usleep(1000), EPERM);
    CHECK_ERRNO(photon_thread_sleep(1), EPERM);
    CHECK_ERRNO(photon_fini(), EPERM);

    SAY("%s: photon_setspecific / getspecific give EPERM", where);
    CHECK_ERRNO(photon_setspecific(live_key, &where), EPERM);
    CHECK_NULL_ERRNO(photon_getspecific(live_key), EPERM);

    SAY("%s: photon_thread_yield does nothing and returns", where);
    photon_thread_yield();
    photon_thread_yield();
}

struct from_pthread {
    photon_thread *joinable; /* a live joinable thread of main's vcpu */
    atomic_int done;
};

static void *off_vcpu_pthread(void *arg) {
    struct from_pthread *p = arg;
    check_off_vcpu("pthread");
    SAY("pthread: joining a live joinable thread of another vcpu gives EPERM");
    void *ret = (void *)(uintptr_t)0xbad;
    CHECK_ERRNO(photon_thread_join(p->joinable, &ret), EPERM);
    CHECK(ret == (void *)(uintptr_t)0xbad, "a failed join wrote retval");
    CHECK_ERRNO(photon_thread_join(p->joinable, NULL), EPERM);
    atomic_store(&p->done, 1);
    return NULL;
}

static int slept_ret = 99;

static void *sleep_until_interrupted(void *arg) {
    errno = 0;
    slept_ret = photon_thread_usleep(10000000);
    CHECK(slept_ret == -1 && errno == ECANCELED, "usleep: got %d with errno %d", slept_ret,
          errno);
    return arg;
}

int main(void) {
    test_start("off_vcpu");

    SAY("photon_key_create works before photon_init (photon.h lists no EPERM for it)");
    CHECK_OK(photon_key_create(&live_key, NULL));

    check_off_vcpu("main before photon_init");

    test_init();
    SAY("main is a vcpu now; a pthread checks the same from outside");
    photon_thread *th = spawn_joinable(sleep_until_interrupted, (void *)42, 0);
    photon_thread_yield(); /* th is asleep */
    struct from_pthread p = {.joinable = th};
    pthread_t pt;
    CHECK(pthread_create(&pt, NULL, off_vcpu_pthread, &p) == 0, "pthread_create failed");
    for (int i = 0; i < 10000 && !atomic_load(&p.done); i++) {
        CHECK_OK(photon_thread_usleep(1000)); /* the vcpu keeps running meanwhile */
    }
    CHECK(atomic_load(&p.done), "the pthread did not finish in 10 s");
    CHECK(pthread_join(pt, NULL) == 0, "pthread_join failed");

    SAY("main's vcpu is undisturbed: its sleeper is still asleep and still joinable");
    CHECK(slept_ret == 99, "the sleeper woke with %d", slept_ret);
    CHECK(photon_thread_self() != NULL, "main is no longer a photon thread");
    CHECK_OK(photon_thread_interrupt(th, ECANCELED));
    CHECK((uintptr_t)join_ok(th) == 42, "wrong return value");

    test_fini();
    check_off_vcpu("main after photon_fini");
    SAY("off_vcpu: OK");
    return 0;
}
