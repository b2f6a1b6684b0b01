/*
 * Bad input: every call given a bad argument returns -1 (or NULL) with the
 * errno photon.h documents, and never crashes.
 */
#include "check.h"

/* photon.h: photon_init gives EALREADY when the OS thread is already a vcpu. */
#define INIT_TWICE_ERRNO EALREADY
/* photon.h: "a second join of a joined thread gives EINVAL until its slot is
 * reused, ESRCH after" (no thread is created in between here). */
#define JOIN_TWICE_ERRNO EINVAL

static int ran;

static void *count_and_return(void *arg) {
    ran++;
    return arg;
}

static void *sleep_20ms(void *arg) {
    CHECK_OK(photon_thread_usleep(20000));
    return arg;
}

static void *do_nothing(void *arg) { return arg; }

static void *join_arg(void *arg) {
    void *ret = NULL;
    CHECK_OK(photon_thread_join((photon_thread *)arg, &ret));
    return ret;
}

static void *join_self(void *arg) {
    (void)arg;
    photon_thread *me = photon_thread_self(); /* joinable: spawn_joinable made it so */
    errno = 0;
    int r = photon_thread_join(me, NULL);
    return (void *)(uintptr_t)(r == -1 && errno == EINVAL);
}

/* A call on a handle that is not a thread: -1 with ESRCH or EINVAL. */
#define CHECK_REJECTS_HANDLE(expr)                                                      \
    do {                                                                                \
        errno = 0;                                                                      \
        int r_ = (expr);                                                                \
        int e_ = errno;                                                                 \
        CHECK(r_ == -1 && (e_ == ESRCH || e_ == EINVAL),                                \
              "%s: want -1 with ESRCH or EINVAL, got %d with errno %d (%s)", #expr, r_, \
              e_, strerror(e_));                                                        \
    } while (0)

int main(void) {
    test_start("bad_input");

    SAY("photon_init with an invalid engine or unknown flags gives EINVAL");
    CHECK_ERRNO(photon_init(99, 0), EINVAL);
    CHECK_ERRNO(photon_init(PHOTON_EVENT_IOURING + 1, 0), EINVAL);
    CHECK_ERRNO(photon_init(UINT64_MAX, 0), EINVAL);
    CHECK_ERRNO(photon_init(PHOTON_EVENT_DEFAULT, 2), EINVAL);
    CHECK_ERRNO(photon_init(PHOTON_EVENT_DEFAULT, PHOTON_INIT_IOURING_SQPOLL | 4), EINVAL);
    CHECK_ERRNO(photon_init(PHOTON_EVENT_EPOLL, UINT64_MAX), EINVAL);
    CHECK(photon_thread_self() == NULL, "a failed photon_init left a vcpu behind");

    test_init();
    SAY("photon_init twice on one OS thread gives -1 with errno %d (%s)", INIT_TWICE_ERRNO,
        strerror(INIT_TWICE_ERRNO));
    CHECK_ERRNO(photon_init(PHOTON_EVENT_DEFAULT, 0), INIT_TWICE_ERRNO);
    CHECK(photon_thread_self() != NULL, "the second photon_init broke the first");

    SAY("photon_thread_create(NULL entry) gives NULL/EINVAL");
    CHECK_NULL_ERRNO(photon_thread_create(NULL, NULL, 0), EINVAL);

    SAY("photon_thread_create with an absurd stack size gives NULL/EINVAL");
    {
        errno = 0;
        photon_thread *th = photon_thread_create(do_nothing, NULL, SIZE_MAX);
        int err = errno;
        CHECK(th == NULL && err == EINVAL,
              "stack SIZE_MAX: want NULL with EINVAL, got %p with errno %d (%s)",
              (void *)th, err, strerror(err));
    }

    SAY("NULL handles give EINVAL");
    CHECK_ERRNO(photon_thread_join(NULL, NULL), EINVAL);
    void *ret = NULL;
    CHECK_ERRNO(photon_thread_join(NULL, &ret), EINVAL);
    CHECK_ERRNO(photon_thread_enable_join(NULL), EINVAL);
    CHECK_ERRNO(photon_thread_detach(NULL), EINVAL);
    CHECK_ERRNO(photon_thread_interrupt(NULL, ECANCELED), EINVAL);

    SAY("join a thread that was not made joinable gives EINVAL");
    {
        ran = 0;
        photon_thread *th = photon_thread_create(sleep_20ms, NULL, 0);
        CHECK(th != NULL, "create failed: errno %d", errno);
        CHECK_ERRNO(photon_thread_join(th, &ret), EINVAL);
        photon_thread_yield(); /* now it is asleep, alive and still not joinable */
        CHECK_ERRNO(photon_thread_join(th, &ret), EINVAL);
        CHECK_OK(photon_thread_usleep(40000)); /* and now it has ended */
    }

    SAY("join after enable_join + detach gives EINVAL");
    {
        photon_thread *th = spawn_joinable(sleep_20ms, NULL, 0);
        CHECK_OK(photon_thread_detach(th));
        CHECK_ERRNO(photon_thread_join(th, &ret), EINVAL);
        CHECK_OK(photon_thread_usleep(40000));
    }

    SAY("join twice gives -1 with errno %d (%s)", JOIN_TWICE_ERRNO, strerror(JOIN_TWICE_ERRNO));
    {
        photon_thread *th = spawn_joinable(count_and_return, (void *)5, 0);
        CHECK((uintptr_t)join_ok(th) == 5, "wrong return value");
        CHECK_ERRNO(photon_thread_join(th, &ret), JOIN_TWICE_ERRNO);
        CHECK_ERRNO(photon_thread_join(th, NULL), JOIN_TWICE_ERRNO);
        SAY("  and enable_join/detach/interrupt of the joined thread give ESRCH");
        CHECK_ERRNO(photon_thread_enable_join(th), ESRCH);
        CHECK_ERRNO(photon_thread_detach(th), ESRCH);
        CHECK_ERRNO(photon_thread_interrupt(th, EINTR), ESRCH);
    }

    SAY("interrupt with error_number <= 0 gives EINVAL");
    {
        photon_thread *th = spawn_joinable(sleep_20ms, (void *)3, 0);
        photon_thread_yield();
        CHECK_ERRNO(photon_thread_interrupt(th, 0), EINVAL);
        CHECK_ERRNO(photon_thread_interrupt(th, -EINTR), EINVAL);
        CHECK((uintptr_t)join_ok(th) == 3, "the thread was disturbed");
    }

    SAY("interrupt of a joinable thread that ended (not yet joined) gives ESRCH");
    {
        photon_thread *th = spawn_joinable(count_and_return, (void *)4, 0);
        CHECK_OK(photon_thread_usleep(5000));
        CHECK_ERRNO(photon_thread_interrupt(th, EINTR), ESRCH);
        CHECK((uintptr_t)join_ok(th) == 4, "wrong return value");
    }

    SAY("a second join while a join is under way gives EINVAL; so does detach");
    {
        photon_thread *target = spawn_joinable(sleep_20ms, (void *)6, 0);
        photon_thread *joiner = spawn_joinable(join_arg, target, 0);
        photon_thread_yield(); /* joiner is now blocked joining target */
        CHECK_ERRNO(photon_thread_join(target, &ret), EINVAL);
        CHECK_ERRNO(photon_thread_detach(target), EINVAL);
        CHECK((uintptr_t)join_ok(joiner) == 6, "the first join got the wrong value");
    }

    SAY("a thread joining itself gives EINVAL");
    {
        photon_thread *th = spawn_joinable(join_self, NULL, 0);
        CHECK((uintptr_t)join_ok(th) == 1, "join(self) did not give -1/EINVAL");
    }

    SAY("detach of a thread that is not joinable gives EINVAL");
    {
        photon_thread *th = photon_thread_create(sleep_20ms, NULL, 0);
        CHECK(th != NULL, "create failed: errno %d", errno);
        CHECK_ERRNO(photon_thread_detach(th), EINVAL);
        CHECK_OK(photon_thread_usleep(40000));
    }

    SAY("stale handle (ended detached thread): enable_join, detach, interrupt, join give ESRCH");
    {
        ran = 0;
        photon_thread *th = photon_thread_create(count_and_return, NULL, 0);
        CHECK(th != NULL, "create failed: errno %d", errno);
        CHECK_OK(photon_thread_usleep(5000));
        CHECK(ran == 1, "the detached thread did not run");
        CHECK_ERRNO(photon_thread_enable_join(th), ESRCH);
        CHECK_ERRNO(photon_thread_detach(th), ESRCH);
        CHECK_ERRNO(photon_thread_interrupt(th, ECANCELED), ESRCH);
        CHECK_ERRNO(photon_thread_join(th, &ret), ESRCH);
        /* a new thread may reuse the ended one's slot; the old handle stays stale */
        photon_thread *fresh = spawn_joinable(sleep_20ms, (void *)9, 0);
        photon_thread_yield();
        CHECK_ERRNO(photon_thread_enable_join(th), ESRCH);
        CHECK_ERRNO(photon_thread_interrupt(th, ECANCELED), ESRCH);
        CHECK((uintptr_t)join_ok(fresh) == 9, "the fresh thread was disturbed");
    }

    SAY("forged handles give ESRCH or EINVAL, never a crash");
    {
        photon_thread *forged[] = {
            (photon_thread *)(uintptr_t)0x12345,
            (photon_thread *)(uintptr_t)0x1,
            (photon_thread *)(uintptr_t)0xdeadbeef0ULL,
            (photon_thread *)(uintptr_t)UINTPTR_MAX,
        };
        for (size_t i = 0; i < sizeof forged / sizeof forged[0]; i++) {
            SAY("  handle %p", (void *)forged[i]);
            CHECK_REJECTS_HANDLE(photon_thread_enable_join(forged[i]));
            CHECK_REJECTS_HANDLE(photon_thread_detach(forged[i]));
            CHECK_REJECTS_HANDLE(photon_thread_interrupt(forged[i], EINTR));
            CHECK_REJECTS_HANDLE(photon_thread_join(forged[i], &ret));
        }
    }

    SAY("photon_key_create(NULL key) gives EINVAL");
    CHECK_ERRNO(photon_key_create(NULL, NULL), EINVAL);

    SAY("the vcpu still works after all that");
    {
        photon_thread *th = spawn_joinable(count_and_return, (void *)77, 0);
        CHECK((uintptr_t)join_ok(th) == 77, "wrong return value");
    }

    test_fini();
    SAY("bad_input: OK");
    return 0;
}
