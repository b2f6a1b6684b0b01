/* pthread keys per photon thread under libphoton_preload.so.
 *
 * 100 photon threads on one vcpu each set their own values, sleep (hooked
 * usleep, so the others run meanwhile) and read them back; at their end
 * each key's destructor runs exactly as glibc runs it for a plain pthread
 * (POSIX rounds: a destructor that sets its key again runs again, at most
 * 4 times); a plain pthread's values and the vcpu main thread's values are
 * untouched; a key deleted from a photon thread reads NULL in the others
 * and its destructor never runs; values survive a migration to another
 * vcpu. With PHOTON_PRELOAD_PTHREAD=0 (keys off) this program fails.
 * Exit status 0 when every check passed. */
#define _GNU_SOURCE
#include <errno.h>
#include <photon.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define THREADS 100
#define ROUNDS 5

static int failures;

#define CHECK(cond, ...)                                                   \
    do {                                                                   \
        if (!(cond)) {                                                     \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);           \
            fprintf(stderr, __VA_ARGS__);                                  \
            fprintf(stderr, "\n");                                         \
            __atomic_add_fetch(&failures, 1, __ATOMIC_RELAXED);            \
        }                                                                  \
    } while (0)

static pthread_key_t k_plain;    /* destructor once per value */
static pthread_key_t k_again;    /* destructor sets the key again once */
static pthread_key_t k_stubborn; /* destructor always sets it again */
static pthread_key_t k_nodtor;   /* no destructor */
static pthread_key_t k_deleted;  /* deleted by a photon thread */

static long vals[THREADS], vals2[THREADS];
static int plain_seen[THREADS];
static long again_calls, stubborn_calls, deleted_calls;
static long main_val = 7, pthread_val = 8;

static void dtor_plain(void *v) {
    long *p = v;
    if (p >= vals && p < vals + THREADS)
        __atomic_add_fetch(&plain_seen[p - vals], 1, __ATOMIC_RELAXED);
    else
        CHECK(0, "dtor_plain got a foreign value %p", v);
    CHECK(pthread_getspecific(k_plain) == NULL, "value not cleared before its destructor");
}

static void dtor_again(void *v) {
    long n = __atomic_add_fetch(&again_calls, 1, __ATOMIC_RELAXED);
    (void)n;
    /* the first call sets it again (a distinct marker), the second not */
    if (((uintptr_t)v & 1) == 0)
        CHECK(pthread_setspecific(k_again, (char *)v + 1) == 0, "set in a destructor");
}

static void dtor_stubborn(void *v) {
    __atomic_add_fetch(&stubborn_calls, 1, __ATOMIC_RELAXED);
    CHECK(pthread_setspecific(k_stubborn, v) == 0, "set in a destructor");
    CHECK(pthread_getspecific(k_stubborn) == v, "get in a destructor");
}

static void dtor_deleted(void *v) {
    (void)v;
    __atomic_add_fetch(&deleted_calls, 1, __ATOMIC_RELAXED);
}

/* ---- a plain pthread keeps its own values meanwhile ---- */

static volatile int photon_phase_done;
static volatile int pthread_ready;

static void *plain_thread(void *arg) {
    (void)arg;
    CHECK(pthread_setspecific(k_plain, &pthread_val) == 0, "pthread set");
    pthread_ready = 1;
    while (!photon_phase_done) {
        CHECK(pthread_getspecific(k_plain) == &pthread_val, "pthread value changed under it");
        usleep(200);
    }
    CHECK(pthread_getspecific(k_plain) == &pthread_val, "pthread value changed under it");
    CHECK(pthread_setspecific(k_plain, NULL) == 0, "pthread clear");
    return NULL;
}

/* ---- 100 photon threads ---- */

static void *worker(void *arg) {
    long i = (long)arg;
    CHECK(pthread_getspecific(k_plain) == NULL, "thread %ld: a new photon thread reads non-NULL", i);
    for (int r = 0; r < ROUNDS; r++) {
        CHECK(pthread_setspecific(k_plain, &vals[i]) == 0, "set");
        CHECK(pthread_setspecific(k_nodtor, &vals2[i]) == 0, "set");
        usleep(500 + (i % 7) * 100);
        CHECK(pthread_getspecific(k_plain) == &vals[i], "thread %ld round %d: sees %p, not its own %p", i,
              r, pthread_getspecific(k_plain), (void *)&vals[i]);
        CHECK(pthread_getspecific(k_nodtor) == &vals2[i], "thread %ld round %d: nodtor value", i, r);
    }
    CHECK(pthread_setspecific(k_again, &vals2[i]) == 0, "set");
    CHECK(pthread_setspecific(k_stubborn, &vals2[i]) == 0, "set");
    /* bad keys: glibc's answers */
    CHECK(pthread_setspecific(5000, &vals[i]) == EINVAL, "set of key 5000");
    CHECK(pthread_getspecific(5000) == NULL, "get of key 5000");
    return NULL;
}

/* ---- deletion from a photon thread ---- */

static volatile int del_set, del_done;

static void *del_holder(void *arg) {
    (void)arg;
    CHECK(pthread_setspecific(k_deleted, &vals[0]) == 0, "set");
    del_set = 1;
    while (!del_done)
        usleep(200);
    CHECK(pthread_getspecific(k_deleted) == NULL, "a deleted key reads its stale value");
    CHECK(pthread_setspecific(k_deleted, &vals[1]) == EINVAL, "set of a deleted key");
    return NULL;
}

static void *del_deleter(void *arg) {
    (void)arg;
    while (!del_set)
        usleep(200);
    CHECK(pthread_key_delete(k_deleted) == 0, "key_delete from a photon thread");
    CHECK(pthread_key_delete(k_deleted) == EINVAL, "second key_delete");
    del_done = 1;
    return NULL;
}

/* ---- migration keeps the values ---- */

static photon_vcpu *other_vcpu;
static long mig_val;

__attribute__((noinline)) static void *read_plain(void) { return pthread_getspecific(k_plain); }

static void *migrator(void *arg) {
    (void)arg;
    CHECK(pthread_setspecific(k_plain, &mig_val) == 0, "set before migrating");
    usleep(1000);
    CHECK(photon_thread_migrate(photon_thread_self(), other_vcpu) == 0, "migrate");
    CHECK(photon_vcpu_current() == other_vcpu, "runs on the other vcpu");
    CHECK(read_plain() == &mig_val, "value lost in migration");
    CHECK(pthread_setspecific(k_plain, NULL) == 0, "clear");
    return NULL;
}

static photon_thread *spawn(photon_entry f, void *arg) {
    photon_thread *t = photon_thread_create(f, arg, 64 * 1024);
    if (!t || photon_thread_enable_join(t) != 0) {
        perror("photon_thread_create");
        exit(2);
    }
    return t;
}

static void *in_pool(void *arg) {
    photon_workpool *pool = arg;
    other_vcpu = photon_workpool_vcpu(pool, 0) == photon_vcpu_current() ? photon_workpool_vcpu(pool, 1)
                                                                        : photon_workpool_vcpu(pool, 0);
    photon_thread *t = spawn(migrator, NULL);
    photon_thread_join(t, NULL);
    return NULL;
}

/* glibc's count of stubborn destructor calls for one plain pthread */
static void *stubborn_pthread(void *arg) {
    (void)arg;
    pthread_setspecific(k_stubborn, &vals[0]);
    return NULL;
}

int main(void) {
    if (photon_init(0, 0) != 0) {
        perror("photon_init");
        return 2;
    }
    CHECK(pthread_key_create(&k_plain, dtor_plain) == 0, "create");
    CHECK(pthread_key_create(&k_again, dtor_again) == 0, "create");
    CHECK(pthread_key_create(&k_stubborn, dtor_stubborn) == 0, "create");
    CHECK(pthread_key_create(&k_nodtor, NULL) == 0, "create");
    CHECK(pthread_key_create(&k_deleted, dtor_deleted) == 0, "create");

    /* glibc's own number of rounds, measured on a plain pthread */
    pthread_t pt;
    pthread_create(&pt, NULL, stubborn_pthread, NULL);
    pthread_join(pt, NULL);
    long glibc_rounds = stubborn_calls;
    stubborn_calls = 0;
    CHECK(glibc_rounds == 4, "glibc ran a stubborn destructor %ld times", glibc_rounds);

    CHECK(pthread_setspecific(k_plain, &main_val) == 0, "main set");
    pthread_create(&pt, NULL, plain_thread, NULL);
    while (!pthread_ready)
        usleep(100);

    photon_thread *ts[THREADS];
    for (long i = 0; i < THREADS; i++)
        ts[i] = spawn(worker, (void *)i);
    for (int i = 0; i < THREADS; i++)
        photon_thread_join(ts[i], NULL);
    photon_phase_done = 1;
    pthread_join(pt, NULL);

    CHECK(pthread_getspecific(k_plain) == &main_val, "main's value changed: %p", pthread_getspecific(k_plain));
    for (int i = 0; i < THREADS; i++)
        CHECK(plain_seen[i] == 1, "thread %d: destructor ran %d times with its value", i, plain_seen[i]);
    CHECK(again_calls == 2 * THREADS, "re-setting destructor: %ld calls, want %d", again_calls, 2 * THREADS);
    CHECK(stubborn_calls == glibc_rounds * THREADS, "stubborn destructor: %ld calls, want %ld",
          stubborn_calls, glibc_rounds * THREADS);

    photon_thread *h = spawn(del_holder, NULL), *d = spawn(del_deleter, NULL);
    photon_thread_join(h, NULL);
    photon_thread_join(d, NULL);
    CHECK(deleted_calls == 0, "destructor of a deleted key ran %ld times", deleted_calls);
    CHECK(pthread_getspecific(k_plain) == &main_val, "main's value changed");

    photon_workpool *pool = photon_workpool_new(2, 0);
    CHECK(pool != NULL, "workpool");
    if (pool) {
        photon_workpool_call(pool, in_pool, pool, NULL);
        photon_workpool_free(pool);
    }

    CHECK(pthread_setspecific(k_plain, NULL) == 0, "main clear");
    photon_fini();
    if (failures) {
        fprintf(stderr, "%d checks failed\n", failures);
        return 1;
    }
    printf("keys: 100 photon threads, destructor rounds %ld, plain pthread, main, delete, migration: ok\n",
           glibc_rounds);
    return 0;
}
