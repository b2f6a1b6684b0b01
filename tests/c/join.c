/*
 * Joining: photon_thread_join hands back the entry's return value, works with
 * retval NULL and on a thread that already ended, blocks until the thread
 * ends, and works from any photon thread. A new thread does not run until
 * its creator yields or blocks.
 */
#include "check.h"

static int ran;

static void *twice_plus_one(void *arg) {
    ran++;
    return (void *)((uintptr_t)arg * 2 + 1);
}

static void *return_null(void *arg) {
    (void)arg;
    ran++;
    return NULL;
}

static void *sleep_then_return(void *arg) {
    CHECK_OK(photon_thread_usleep(20000));
    return arg;
}

/* A photon thread that creates and joins its own child. */
static void *join_a_child(void *arg) {
    photon_thread *child = spawn_joinable(sleep_then_return, arg, 0);
    void *ret = join_ok(child);
    return (void *)((uintptr_t)ret + 1000);
}

int main(void) {
    test_start("join");
    test_init();

    SAY("join gives the entry's return value");
    for (uintptr_t i = 0; i < 10; i++) {
        photon_thread *th = spawn_joinable(twice_plus_one, (void *)i, 0);
        void *ret = join_ok(th);
        CHECK((uintptr_t)ret == i * 2 + 1, "thread %" PRIuPTR " returned %p, want %" PRIuPTR,
              i, ret, i * 2 + 1);
    }

    SAY("join gives a NULL return value as NULL");
    {
        photon_thread *th = spawn_joinable(return_null, NULL, 0);
        void *ret = join_ok(th);
        CHECK(ret == NULL, "want NULL, got %p", ret);
    }

    SAY("join with retval NULL");
    {
        ran = 0;
        photon_thread *th = spawn_joinable(twice_plus_one, (void *)7, 0);
        CHECK_OK(photon_thread_join(th, NULL));
        CHECK(ran == 1, "the thread ran %d times", ran);
    }

    SAY("a new thread does not run until its creator yields");
    {
        ran = 0;
        photon_thread *th = spawn_joinable(twice_plus_one, (void *)3, 0);
        CHECK(ran == 0, "the new thread ran before its creator yielded");
        photon_thread_yield();
        CHECK(ran == 1, "after one yield, the new thread ran %d times", ran);
        void *ret = join_ok(th);
        CHECK((uintptr_t)ret == 7, "got %p, want 7", ret);
    }

    SAY("a new thread does not run until its creator blocks (usleep)");
    {
        ran = 0;
        photon_thread *th = spawn_joinable(twice_plus_one, (void *)4, 0);
        CHECK(ran == 0, "the new thread ran before its creator blocked");
        CHECK_OK(photon_thread_usleep(1000));
        CHECK(ran == 1, "after usleep, the new thread ran %d times", ran);
        void *ret = join_ok(th);
        CHECK((uintptr_t)ret == 9, "got %p, want 9", ret);
    }

    SAY("join a thread that already ended");
    {
        ran = 0;
        photon_thread *th = spawn_joinable(twice_plus_one, (void *)20, 0);
        for (int i = 0; i < 10; i++) {
            photon_thread_yield();
        }
        CHECK_OK(photon_thread_usleep(5000));
        CHECK(ran == 1, "the thread ran %d times", ran);
        void *ret = join_ok(th);
        CHECK((uintptr_t)ret == 41, "got %p, want 41", ret);
    }

    SAY("join blocks until the thread ends (20 ms sleep)");
    {
        uint64_t t0 = photon_now_us();
        photon_thread *th = spawn_joinable(sleep_then_return, (void *)55, 0);
        void *ret = join_ok(th);
        uint64_t took = elapsed_us(t0);
        CHECK((uintptr_t)ret == 55, "got %p, want 55", ret);
        CHECK(took >= 20000, "join returned after %" PRIu64 " us", took);
    }

    SAY("a photon thread joins its own child");
    {
        photon_thread *th = spawn_joinable(join_a_child, (void *)5, 0);
        void *ret = join_ok(th);
        CHECK((uintptr_t)ret == 1005, "got %p, want 1005", ret);
    }

    SAY("threads joined in reverse order of creation");
    {
        photon_thread *th[16];
        for (uintptr_t i = 0; i < 16; i++) {
            th[i] = spawn_joinable(twice_plus_one, (void *)i, 0);
        }
        for (int i = 15; i >= 0; i--) {
            void *ret = join_ok(th[i]);
            CHECK((uintptr_t)ret == (uintptr_t)i * 2 + 1, "thread %d returned %p", i, ret);
        }
    }

    SAY("enable_join is allowed after the thread ran but before it ended");
    {
        photon_thread *th = photon_thread_create(sleep_then_return, (void *)66, 0);
        CHECK(th != NULL, "create failed, errno %d", errno);
        photon_thread_yield(); /* th runs and is now asleep */
        CHECK_OK(photon_thread_enable_join(th));
        void *ret = join_ok(th);
        CHECK((uintptr_t)ret == 66, "got %p, want 66", ret);
    }

    SAY("a thread with a custom stack size runs and is joined");
    {
        photon_thread *th = spawn_joinable(twice_plus_one, (void *)8, 256 * 1024);
        void *ret = join_ok(th);
        CHECK((uintptr_t)ret == 17, "got %p, want 17", ret);
    }

    test_fini();
    SAY("join: OK");
    return 0;
}
