/*
 * Thread keys: per-thread values, destructors that run once per non-NULL
 * value when a thread ends and before its joiner's photon_thread_join
 * returns, no destructor call for NULL values, and EINVAL for deleted or
 * invalid keys.
 */
#include "check.h"

#define N 16
#define MAX_KEYS 1024 /* photon.h: "Up to 1024 keys exist at once" */

static uint32_t key;
static uint32_t plain_key; /* no destructor */
static uint32_t reset_key; /* its destructor sets a new value once */
static int values[N];
static int dtor_calls[N];
static int dtor_bad_calls;
static int joined[N]; /* set by main after each join returns */

static void destructor(void *value) {
    int *v = value;
    if (v < &values[0] || v >= &values[N]) {
        dtor_bad_calls++;
        return;
    }
    int i = (int)(v - values);
    /* the joiner must not have returned yet */
    CHECK(!joined[i], "destructor for thread %d ran after its join returned", i);
    dtor_calls[i]++;
}

/* Threads with an even index set a value; odd ones set NULL or nothing. */
static void *use_keys(void *arg) {
    int i = (int)(uintptr_t)arg;
    CHECK(photon_getspecific(key) == NULL, "thread %d: a fresh thread's value is not NULL", i);
    if (i % 2 == 0) {
        CHECK_OK(photon_setspecific(key, &values[i]));
    } else if (i % 4 == 1) {
        CHECK_OK(photon_setspecific(key, NULL));
    } else {
        /* set then cleared: no destructor call either */
        CHECK_OK(photon_setspecific(key, &values[i]));
        CHECK_OK(photon_setspecific(key, NULL));
    }
    CHECK_OK(photon_setspecific(plain_key, &values[(i + 1) % N]));
    for (int r = 0; r < 3; r++) {
        photon_thread_yield(); /* the other threads set their values meanwhile */
        void *want = i % 2 == 0 ? &values[i] : NULL;
        void *got = photon_getspecific(key);
        CHECK(got == want, "thread %d: getspecific gave %p, want %p", i, got, want);
        got = photon_getspecific(plain_key);
        CHECK(got == &values[(i + 1) % N], "thread %d: plain key gave %p", i, got);
    }
    return arg;
}

static int detached_done;

static void *detached_with_value(void *arg) {
    (void)arg;
    CHECK_OK(photon_setspecific(key, &values[0]));
    detached_done = 1;
    return NULL;
}

/* Sets a value whose destructor sets a new value once. */
static int reset_rounds;

static void resetting_destructor(void *value) {
    reset_rounds++;
    if (reset_rounds == 1) {
        CHECK_OK(photon_setspecific(reset_key, value));
    }
}

static void *set_resetting_value(void *arg) {
    (void)arg;
    CHECK_OK(photon_setspecific(reset_key, &values[5]));
    return NULL;
}

/* Sets a value of `key`, then lets main delete the key before it ends. */
static void *set_value_then_wait(void *arg) {
    (void)arg;
    CHECK_OK(photon_setspecific(key, &values[3]));
    CHECK_OK(photon_thread_usleep(10000));
    return NULL;
}

int main(void) {
    test_start("keys");
    test_init();

    SAY("photon_key_create");
    CHECK_OK(photon_key_create(&key, destructor));
    CHECK_OK(photon_key_create(&plain_key, NULL));
    CHECK_OK(photon_key_create(&reset_key, resetting_destructor));
    CHECK(key != plain_key, "two keys got the same id %" PRIu32, key);

    SAY("main's value of a fresh key is NULL; main sets and reads its own");
    CHECK(photon_getspecific(key) == NULL, "main's fresh value is not NULL");
    static int main_value;
    CHECK_OK(photon_setspecific(plain_key, &main_value));
    CHECK(photon_getspecific(plain_key) == &main_value, "main's value did not stick");

    SAY("%d threads: per-thread values; destructors once per non-NULL value, before join returns", N);
    photon_thread *th[N];
    for (int i = 0; i < N; i++) {
        th[i] = spawn_joinable(use_keys, (void *)(uintptr_t)i, 0);
    }
    for (int i = 0; i < N; i++) {
        void *ret = join_ok(th[i]);
        joined[i] = 1;
        CHECK((uintptr_t)ret == (uintptr_t)i, "thread %d returned %p", i, ret);
        int want = i % 2 == 0 ? 1 : 0;
        CHECK(dtor_calls[i] == want,
              "thread %d: destructor ran %d times by the time join returned, want %d", i,
              dtor_calls[i], want);
    }
    CHECK(dtor_bad_calls == 0, "destructor got %d values no thread set", dtor_bad_calls);
    CHECK(photon_getspecific(plain_key) == &main_value, "threads changed main's value");
    CHECK(photon_getspecific(key) == NULL, "threads changed main's value of key");

    SAY("a detached thread's value is destroyed when it ends");
    memset(joined, 0, sizeof joined);
    memset(dtor_calls, 0, sizeof dtor_calls);
    photon_thread *d = photon_thread_create(detached_with_value, NULL, 0);
    CHECK(d != NULL, "create failed: errno %d", errno);
    CHECK_OK(photon_thread_usleep(10000));
    CHECK(detached_done == 1, "the detached thread did not run");
    CHECK(dtor_calls[0] == 1, "destructor ran %d times for the detached thread", dtor_calls[0]);

    SAY("many keys get distinct ids");
    uint32_t many[64];
    for (int i = 0; i < 64; i++) {
        CHECK_OK(photon_key_create(&many[i], NULL));
        CHECK(many[i] != key && many[i] != plain_key, "key %d reuses a live id", i);
        for (int k = 0; k < i; k++) {
            CHECK(many[k] != many[i], "keys %d and %d share id %" PRIu32, k, i, many[i]);
        }
        CHECK_OK(photon_setspecific(many[i], &values[i % N]));
    }
    for (int i = 0; i < 64; i++) {
        CHECK(photon_getspecific(many[i]) == &values[i % N], "key %d lost its value", i);
        CHECK_OK(photon_key_delete(many[i]));
    }

    SAY("getspecific of a NULL value leaves errno unchanged");
    errno = 12345;
    CHECK(photon_getspecific(key) == NULL, "main's value of key is not NULL");
    CHECK(errno == 12345, "getspecific of a NULL value changed errno to %d", errno);

    SAY("a destructor that sets a new value runs again (pthread order)");
    memset(dtor_calls, 0, sizeof dtor_calls);
    reset_rounds = 0;
    {
        photon_thread *t = spawn_joinable(set_resetting_value, NULL, 0);
        join_ok(t);
        CHECK(reset_rounds == 2, "the resetting destructor ran %d times, want 2",
              reset_rounds);
    }

    SAY("photon_key_delete while a thread holds a value: no destructor runs for it");
    memset(dtor_calls, 0, sizeof dtor_calls);
    {
        photon_thread *t = spawn_joinable(set_value_then_wait, NULL, 0);
        photon_thread_yield(); /* t has set its value and waits */
        CHECK(photon_getspecific(key) == NULL, "main sees t's value");
        CHECK_OK(photon_key_delete(key));
        join_ok(t);
        CHECK(dtor_calls[3] == 0, "the destructor of a deleted key ran %d times",
              dtor_calls[3]);
        CHECK(dtor_bad_calls == 0, "destructor got a value no thread set");
    }

    SAY("after photon_key_delete any use of the key gives EINVAL");
    CHECK_ERRNO(photon_setspecific(key, &values[1]), EINVAL);
    CHECK_NULL_ERRNO(photon_getspecific(key), EINVAL);
    CHECK_ERRNO(photon_key_delete(key), EINVAL);

    CHECK_OK(photon_setspecific(plain_key, NULL));
    CHECK_OK(photon_key_delete(plain_key));
    CHECK_OK(photon_key_delete(reset_key));

    SAY("photon_setspecific / getspecific / key_delete with an invalid key");
    CHECK_ERRNO(photon_setspecific(UINT32_MAX, &values[0]), EINVAL);
    CHECK_ERRNO(photon_setspecific(123456789u, &values[0]), EINVAL);
    CHECK_NULL_ERRNO(photon_getspecific(UINT32_MAX), EINVAL);
    CHECK_ERRNO(photon_key_delete(UINT32_MAX), EINVAL);

    SAY("photon_key_create(NULL, ...) gives EINVAL");
    CHECK_ERRNO(photon_key_create(NULL, destructor), EINVAL);

    SAY("up to %d keys exist at once; one more gives EAGAIN", MAX_KEYS);
    {
        static uint32_t all[MAX_KEYS];
        for (int i = 0; i < MAX_KEYS; i++) {
            errno = 0;
            int r = photon_key_create(&all[i], NULL);
            CHECK(r == 0, "key #%d of %d: got %d with errno %d (%s)", i + 1, MAX_KEYS, r,
                  errno, strerror(errno));
        }
        uint32_t extra;
        CHECK_ERRNO(photon_key_create(&extra, NULL), EAGAIN);
        CHECK_OK(photon_setspecific(all[7], &values[6]));
        CHECK_OK(photon_key_delete(all[7]));
        CHECK_OK(photon_key_create(&all[7], NULL)); /* a deleted key's id is free again */
        CHECK(photon_getspecific(all[7]) == NULL,
              "a new key shows a value set under a deleted key");
        CHECK_OK(photon_setspecific(all[7], &values[7]));
        CHECK(photon_getspecific(all[7]) == &values[7], "a reused key lost its value");
        for (int i = 0; i < MAX_KEYS; i++) {
            CHECK_OK(photon_key_delete(all[i]));
        }
    }

    test_fini();
    SAY("keys: OK");
    return 0;
}
