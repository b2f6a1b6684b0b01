/* pthread thread management, written for plain pthreads; run under
 * libphoton_preload.so with and without PHOTON_PRELOAD_THREADS=photon.
 *
 * Join results (returned and pthread_exit), join errors, detached threads,
 * pthread_self stable across sleeps and yields, a stack size attribute that
 * a deep recursion needs, timed and try joins, names, pthread_kill(0), and
 * cancellation: refused with ENOTSUP (the thread runs on) in photon mode,
 * acted on without it. In photon mode the OS thread count stays at most
 * MAX_OS_THREADS (environment) while 200 threads sleep.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/wait.h>
#include <unistd.h>

static int photon_mode;
static int failures;

#define CHECK(cond, ...)                                                                                               \
    do {                                                                                                               \
        if (!(cond)) {                                                                                                 \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                                                       \
            fprintf(stderr, __VA_ARGS__);                                                                              \
            fprintf(stderr, "\n");                                                                                     \
            failures++;                                                                                                \
        }                                                                                                              \
    } while (0)

static long os_threads(void) {
    char line[256];
    long t = -1;
    FILE *f = fopen("/proc/self/status", "r");
    if (!f)
        return -1;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "Threads:", 8) == 0)
            t = atol(line + 8);
    fclose(f);
    return t;
}

/* ---- join results */

static void *returns_value(void *arg) {
    long i = (long)(intptr_t)arg;
    usleep((useconds_t)(1000 * (i % 5)));
    return (void *)(intptr_t)(3 * i + 1);
}

/* Called through a volatile pointer: frames below the pthread_exit. */
static void exit_deep(int depth, long value);
static void (*volatile exit_next)(int, long) = exit_deep;
static void exit_deep(int depth, long value) {
    if (depth > 0)
        exit_next(depth - 1, value);
    pthread_exit((void *)(intptr_t)value);
}

static void *exits_value(void *arg) {
    usleep(1000);
    exit_deep(5, (long)(intptr_t)arg);
    return NULL; /* not reached */
}

static void test_join_results(void) {
    pthread_t th[50];
    for (long i = 0; i < 50; i++)
        CHECK(pthread_create(&th[i], NULL, i % 2 ? exits_value : returns_value, (void *)(intptr_t)i) == 0,
              "create %ld", i);
    for (long i = 0; i < 50; i++) {
        void *rv = NULL;
        CHECK(pthread_join(th[i], &rv) == 0, "join %ld", i);
        long want = i % 2 ? i : 3 * i + 1;
        CHECK(rv == (void *)(intptr_t)want, "thread %ld gave %ld, want %ld", i, (long)(intptr_t)rv, want);
    }
    printf("join results: 50 threads, returned and pthread_exit values delivered\n");
}

/* ---- the end is reported after key destructors (POSIX order) */

static pthread_key_t slow_key;
static atomic_int slow_dtor_done;

static pthread_t self_in_thread, self_in_dtor;

static void slow_dtor(void *value) {
    (void)value;
    usleep(20000); /* a joiner woken too early sees the flag unset */
    self_in_dtor = pthread_self();
    atomic_store(&slow_dtor_done, 1);
}

static void *sets_key(void *arg) {
    self_in_thread = pthread_self();
    pthread_setspecific(slow_key, arg);
    return (void *)(intptr_t)9;
}

static void test_key_order(void) {
    pthread_t th;
    void *rv = NULL;
    CHECK(pthread_key_create(&slow_key, slow_dtor) == 0, "key_create");
    CHECK(pthread_create(&th, NULL, sets_key, &slow_key) == 0, "create");
    CHECK(pthread_join(th, &rv) == 0 && rv == (void *)(intptr_t)9, "join");
    CHECK(atomic_load(&slow_dtor_done) == 1, "join returned before the key destructor finished");
    CHECK(pthread_equal(self_in_dtor, th) && pthread_equal(self_in_thread, th),
          "pthread_self in the thread or its key destructor is not its id");
    pthread_key_delete(slow_key);
    printf("key destructors: finished before pthread_join returned; pthread_self there is the thread's id\n");
}

/* ---- join errors */

static void *self_join(void *arg) {
    (void)arg;
    return (void *)(intptr_t)pthread_join(pthread_self(), NULL);
}

static void *sleeper(void *arg) {
    usleep((useconds_t)(intptr_t)arg);
    return (void *)(intptr_t)7;
}

static void *joins_other(void *arg) {
    void *rv = NULL;
    int rc = pthread_join(*(pthread_t *)arg, &rv);
    return (void *)(intptr_t)(rc == 0 ? (long)(intptr_t)rv : -rc);
}

static void test_join_errors(void) {
    pthread_t a, b, c;
    void *rv = NULL;
    CHECK(pthread_create(&a, NULL, self_join, NULL) == 0, "create");
    CHECK(pthread_join(a, &rv) == 0 && rv == (void *)(intptr_t)EDEADLK, "self-join gave %ld, want EDEADLK",
          (long)(intptr_t)rv);

    CHECK(pthread_create(&b, NULL, sleeper, (void *)(intptr_t)50000) == 0, "create");
    CHECK(pthread_detach(b) == 0, "detach");
    if (photon_mode) { /* glibc: undefined once detached */
        CHECK(pthread_join(b, NULL) == EINVAL, "join of a detached thread");
        CHECK(pthread_detach(b) == EINVAL, "detach twice");
    }

    /* A thread joined by another thread (a photon wait in photon mode). */
    CHECK(pthread_create(&b, NULL, sleeper, (void *)(intptr_t)20000) == 0, "create");
    CHECK(pthread_create(&c, NULL, joins_other, &b) == 0, "create");
    CHECK(pthread_join(c, &rv) == 0 && rv == (void *)(intptr_t)7, "join through a thread gave %ld",
          (long)(intptr_t)rv);
    if (photon_mode)
        CHECK(pthread_join(b, NULL) == EINVAL, "join of a joined thread");

    /* try and timed joins */
    struct timespec ts;
    CHECK(pthread_create(&a, NULL, sleeper, (void *)(intptr_t)300000) == 0, "create");
    CHECK(pthread_tryjoin_np(a, NULL) == EBUSY, "tryjoin of a running thread");
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += 50000000;
    if (ts.tv_nsec >= 1000000000) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000;
    }
    CHECK(pthread_timedjoin_np(a, NULL, &ts) == ETIMEDOUT, "timedjoin before the end");
    CHECK(pthread_kill(a, 0) == 0, "pthread_kill(0) of a running thread");
    CHECK(pthread_join(a, &rv) == 0 && rv == (void *)(intptr_t)7, "join after a timed join");
    printf("join errors: EDEADLK on oneself, EINVAL detached/joined, tryjoin EBUSY, timedjoin ETIMEDOUT\n");
}

/* ---- detached threads */

static atomic_int detached_done;

static void *detached_body(void *arg) {
    usleep((useconds_t)(intptr_t)arg);
    atomic_fetch_add(&detached_done, 1);
    return NULL;
}

static void test_detach(void) {
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    for (int i = 0; i < 100; i++) {
        pthread_t th;
        if (i % 2) {
            CHECK(pthread_create(&th, &attr, detached_body, (void *)(intptr_t)(i * 100)) == 0, "create");
        } else {
            CHECK(pthread_create(&th, NULL, detached_body, (void *)(intptr_t)(i * 100)) == 0, "create");
            CHECK(pthread_detach(th) == 0, "detach");
        }
    }
    pthread_attr_destroy(&attr);
    for (int i = 0; i < 500 && atomic_load(&detached_done) < 100; i++)
        usleep(10000);
    CHECK(atomic_load(&detached_done) == 100, "%d of 100 detached threads ended", atomic_load(&detached_done));
    /* Records of ended detached threads are reused without harm. */
    for (int round = 0; round < 3; round++) {
        pthread_t th[20];
        for (long i = 0; i < 20; i++)
            CHECK(pthread_create(&th[i], NULL, returns_value, (void *)(intptr_t)i) == 0, "create");
        for (long i = 0; i < 20; i++) {
            void *rv = NULL;
            CHECK(pthread_join(th[i], &rv) == 0 && rv == (void *)(intptr_t)(3 * i + 1), "join");
        }
    }
    printf("detach: 100 detached threads (attribute and pthread_detach) ended; ids reused cleanly\n");
}

/* ---- pthread_self */

struct self_slot {
    pthread_t given; /* what pthread_create stored */
    atomic_int ready;
    int ok;
};

static void *self_body(void *arg) {
    struct self_slot *s = arg;
    pthread_t me = pthread_self();
    while (!atomic_load(&s->ready))
        usleep(100);
    s->ok = pthread_equal(me, s->given);
    for (int i = 0; i < 50; i++) {
        if (i % 2)
            usleep(200);
        else
            sched_yield();
        if (!pthread_equal(pthread_self(), me))
            s->ok = 0;
    }
    return NULL;
}

static void test_self(void) {
    struct self_slot slots[40];
    pthread_t ids[40];
    memset(slots, 0, sizeof slots);
    for (int i = 0; i < 40; i++) {
        CHECK(pthread_create(&ids[i], NULL, self_body, &slots[i]) == 0, "create");
        slots[i].given = ids[i];
        atomic_store(&slots[i].ready, 1);
    }
    for (int i = 0; i < 40; i++) {
        CHECK(pthread_join(ids[i], NULL) == 0, "join");
        CHECK(slots[i].ok, "thread %d saw another pthread_self", i);
        for (int j = 0; j < i; j++)
            CHECK(!pthread_equal(ids[i], ids[j]), "threads %d and %d share an id", i, j);
        CHECK(!pthread_equal(ids[i], pthread_self()), "a thread has main's id");
    }
    printf("pthread_self: 40 threads, each sees its own id across 50 sleeps and yields\n");
}

/* ---- stack size */

static long recurse(int depth) {
    volatile char frame[4096];
    frame[0] = (char)depth;
    frame[4095] = (char)depth;
    if (depth == 0)
        return frame[0];
    return recurse(depth - 1) + frame[4095] - (char)depth + 1;
}

static void *deep(void *arg) {
    return (void *)(intptr_t)recurse((int)(intptr_t)arg);
}

static void test_stack_size(void) {
    pthread_attr_t attr;
    pthread_t th;
    void *rv = NULL;
    size_t got = 0;
    pthread_attr_init(&attr);
    CHECK(pthread_attr_setstacksize(&attr, 64u << 20) == 0, "setstacksize");
    pthread_attr_getstacksize(&attr, &got);
    /* 5000 frames of 4 KiB and more: about 20 MiB, over the 8 MiB default. */
    CHECK(pthread_create(&th, &attr, deep, (void *)(intptr_t)5000) == 0, "create with 64 MiB");
    CHECK(pthread_join(th, &rv) == 0 && rv == (void *)(intptr_t)5000, "deep recursion gave %ld",
          (long)(intptr_t)rv);
    pthread_attr_destroy(&attr);
    printf("stack size: a %zu MiB stack attribute carried a 20 MiB recursion\n", got >> 20);
}

/* ---- cancellation, signals, names */

static atomic_int cancel_target_finished;

static void *cancel_target(void *arg) {
    (void)arg;
    usleep(100000);
    atomic_store(&cancel_target_finished, 1);
    return (void *)(intptr_t)5;
}

static void test_cancel(void) {
    pthread_t th;
    void *rv = NULL;
    char name[32];
    CHECK(pthread_create(&th, NULL, cancel_target, NULL) == 0, "create");
    CHECK(pthread_setname_np(th, "worker-7") == 0, "setname");
    CHECK(pthread_getname_np(th, name, sizeof name) == 0 && strcmp(name, "worker-7") == 0, "getname gave %s", name);
    int rc = pthread_cancel(th);
    if (photon_mode) {
        pthread_attr_t attr;
        CHECK(rc == ENOTSUP, "pthread_cancel gave %d, want ENOTSUP", rc);
        CHECK(pthread_kill(th, SIGUSR1) == ENOTSUP, "pthread_kill with a signal");
        CHECK(pthread_getattr_np(th, &attr) == ENOTSUP, "pthread_getattr_np");
        for (int i = 0; i < 300 && !atomic_load(&cancel_target_finished); i++)
            usleep(10000);
        usleep(20000);
        CHECK(pthread_kill(th, 0) == ESRCH, "pthread_kill(0) of an ended thread");
        CHECK(pthread_join(th, &rv) == 0 && rv == (void *)(intptr_t)5, "the refused thread ran on");
        printf("cancellation refused: ENOTSUP, the thread ran to its end; pthread_kill(sig) ENOTSUP; names kept\n");
    } else {
        CHECK(rc == 0, "pthread_cancel gave %d", rc);
        CHECK(pthread_join(th, &rv) == 0 && rv == PTHREAD_CANCELED, "cancelled thread");
        printf("cancellation (plain pthreads): acted on\n");
    }
}

/* ---- OS threads */

static void *sleeps_300ms(void *arg) {
    (void)arg;
    usleep(300000);
    return NULL;
}

static void test_os_threads(void) {
    pthread_t th[200];
    for (int i = 0; i < 200; i++)
        CHECK(pthread_create(&th[i], NULL, sleeps_300ms, NULL) == 0, "create");
    usleep(100000);
    long n = os_threads();
    for (int i = 0; i < 200; i++)
        CHECK(pthread_join(th[i], NULL) == 0, "join");
    const char *max = getenv("MAX_OS_THREADS");
    if (photon_mode && max)
        CHECK(n <= atol(max), "%ld OS threads with 200 sleeping threads; at most %s expected", n, max);
    if (!photon_mode)
        CHECK(n > 200, "plain pthreads: only %ld OS threads", n);
    printf("200 sleeping threads: %ld OS threads in the process\n", n);
}

/* ---- fork: the child forgets the parent's pool and starts its own */

static void test_fork(void) {
    pid_t pid = fork();
    if (pid == 0) {
        pthread_t th;
        void *rv = NULL;
        int ok = pthread_create(&th, NULL, returns_value, (void *)(intptr_t)4) == 0 && pthread_join(th, &rv) == 0 &&
                 rv == (void *)(intptr_t)13;
        _exit(ok ? 0 : 1);
    }
    int status = -1;
    CHECK(pid > 0 && waitpid(pid, &status, 0) == pid, "fork/waitpid");
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the forked child's thread failed (status %d)", status);
    printf("fork: a child's pthread_create and pthread_join work\n");
}

int main(void) {
    if (getenv("EXPECT_EXCEPTED")) {
        /* PHOTON_PRELOAD_THREADS_EXCEPT names this program: OS threads. */
        photon_mode = 0;
        test_os_threads();
        return failures ? 1 : 0;
    }
    const char *mode = getenv("PHOTON_PRELOAD_THREADS");
    photon_mode = mode && strcmp(mode, "photon") == 0 && getenv("LD_PRELOAD");
    printf("mode: %s\n", photon_mode ? "photon threads" : "plain pthreads");
    test_join_results();
    test_join_errors();
    test_key_order();
    test_detach();
    test_self();
    test_stack_size();
    test_cancel();
    test_os_threads();
    test_fork();
    if (failures) {
        fprintf(stderr, "%d failures\n", failures);
        return 1;
    }
    printf("all passed\n");
    return 0;
}
