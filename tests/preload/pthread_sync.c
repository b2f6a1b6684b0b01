/*
 * pthread_sync.c: pthread synchronisation in photon threads under the shim
 * (libphoton_preload.so) waits as a photon wait.
 *
 * Each group makes photon threads of one vcpu contend on a pthread object
 * whose holder is suspended in a hooked call (usleep), or held by a plain
 * pthread or a photon thread of another vcpu. Without the shim's hooks the
 * contender blocks the whole vcpu: the program deadlocks (the watchdog
 * ends it with exit 3) or a check fails (the ticker photon thread stood
 * still, a recursive mutex had two owners, no EBUSY/EDEADLK/EPERM).
 *
 * Groups: mutex recursive errorcheck timed plainmutex cond plaincond rwlock
 * spin once barrier sem yield vcpus. Arguments (optional): group names;
 * default all. SYNC_WATCHDOG_S sets the watchdog (default 60 s).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "photon.h"

#define MS 1000ULL
/* Ticks (1 ms photon sleeps) that prove the vcpu ran other photon threads
 * during a wait of >= 20 ms (0 when the vcpu is blocked). */
#define MIN_TICKS 3

static atomic_int failures;
static const char *group = "setup";

#define EXPECT(cond, ...)                                                     \
    do {                                                                      \
        if (!(cond)) {                                                        \
            fprintf(stderr, "FAILED [%s] %s:%d: %s\n    ", group, __FILE__,   \
                    __LINE__, #cond);                                         \
            fprintf(stderr, __VA_ARGS__);                                     \
            fprintf(stderr, "\n");                                            \
            fflush(stderr);                                                   \
            atomic_fetch_add(&failures, 1);                                   \
        }                                                                     \
    } while (0)

static uint64_t now_us(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000 + (uint64_t)t.tv_nsec / 1000;
}

static struct timespec abs_in(clockid_t clock, uint64_t us) {
    struct timespec t;
    clock_gettime(clock, &t);
    t.tv_sec += (time_t)(us / 1000000);
    t.tv_nsec += (long)(us % 1000000) * 1000;
    if (t.tv_nsec >= 1000000000) {
        t.tv_sec++;
        t.tv_nsec -= 1000000000;
    }
    return t;
}

/* ---- the ticker: counts 1 ms photon sleeps while others wait */
static atomic_int ticks, ticker_stop;
static void *ticker(void *arg) {
    (void)arg;
    while (!atomic_load(&ticker_stop)) {
        usleep(1000); /* hooked: a photon sleep */
        atomic_fetch_add(&ticks, 1);
    }
    return NULL;
}
static photon_thread *ticker_th;
static void ticker_start(void) {
    atomic_store(&ticks, 0);
    atomic_store(&ticker_stop, 0);
    ticker_th = photon_thread_create(ticker, NULL, 0);
    photon_thread_enable_join(ticker_th);
}
static int ticker_end(void) {
    atomic_store(&ticker_stop, 1);
    photon_thread_join(ticker_th, NULL);
    return atomic_load(&ticks);
}

static photon_thread *spawn(photon_entry f, void *arg) {
    photon_thread *th = photon_thread_create(f, arg, 0);
    if (th) photon_thread_enable_join(th);
    return th;
}
static void join(photon_thread *th) { photon_thread_join(th, NULL); }

/* ---- mutual exclusion with a hooked sleep inside the critical section */
static pthread_mutex_t mx;
static int counter;
static atomic_int inside, max_inside;
static void enter(void) {
    int n = atomic_fetch_add(&inside, 1) + 1;
    int m = atomic_load(&max_inside);
    while (n > m && !atomic_compare_exchange_weak(&max_inside, &m, n)) {
    }
}
static void leave(void) { atomic_fetch_sub(&inside, 1); }

static void *count_worker(void *arg) {
    (void)arg;
    for (int i = 0; i < 5; i++) {
        int r = pthread_mutex_lock(&mx);
        EXPECT(r == 0, "lock: %d", r);
        enter();
        int v = counter;
        usleep(2000); /* the holder suspends */
        counter = v + 1;
        leave();
        pthread_mutex_unlock(&mx);
    }
    return NULL;
}

static void exclusion(int type, const char *what) {
    pthread_mutexattr_t a;
    pthread_mutexattr_init(&a);
    pthread_mutexattr_settype(&a, type);
    pthread_mutex_init(&mx, &a);
    counter = 0;
    atomic_store(&max_inside, 0);
    ticker_start();
    photon_thread *th[4];
    for (int i = 0; i < 4; i++) th[i] = spawn(count_worker, NULL);
    for (int i = 0; i < 4; i++) join(th[i]);
    int t = ticker_end();
    EXPECT(counter == 20, "%s: counter %d, want 20", what, counter);
    EXPECT(atomic_load(&max_inside) == 1, "%s: %d threads inside at once", what, atomic_load(&max_inside));
    EXPECT(t >= MIN_TICKS, "%s: ticker ran %d times", what, t);
    EXPECT(pthread_mutex_destroy(&mx) == 0, "%s: destroy", what);
}

static void *trylock_it(void *m) { return (void *)(intptr_t)pthread_mutex_trylock(m); }
static void *lock_it(void *m) { return (void *)(intptr_t)pthread_mutex_lock(m); }

static void g_mutex(void) {
    exclusion(PTHREAD_MUTEX_NORMAL, "normal");
    exclusion(PTHREAD_MUTEX_ADAPTIVE_NP, "adaptive");
    exclusion(PTHREAD_MUTEX_RECURSIVE, "recursive");
    exclusion(PTHREAD_MUTEX_ERRORCHECK, "errorcheck");
    /* trylock: EBUSY against another photon thread of the same vcpu */
    pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
    pthread_mutex_lock(&m);
    int busy = -1;
    photon_thread *th = spawn(trylock_it, &m);
    void *ret = NULL;
    photon_thread_join(th, &ret);
    busy = (int)(intptr_t)ret;
    EXPECT(busy == EBUSY, "trylock by another photon thread: %d", busy);
    EXPECT(pthread_mutex_destroy(&m) == EBUSY, "destroy of a locked mutex");
    pthread_mutex_unlock(&m);
    EXPECT(pthread_mutex_destroy(&m) == 0, "destroy");
}

/* ---- recursion and errorcheck per photon thread */
static atomic_int step;
static int rec_result[4];
static void *rec_other(void *arg) {
    pthread_mutex_t *m = arg;
    rec_result[0] = pthread_mutex_trylock(m); /* EBUSY: A owns it */
    rec_result[1] = pthread_mutex_unlock(m);  /* EPERM: not ours */
    atomic_store(&step, 1);
    uint64_t t0 = now_us();
    rec_result[2] = pthread_mutex_lock(m);    /* waits until A unlocks twice */
    rec_result[3] = (int)((now_us() - t0) / 1000);
    pthread_mutex_unlock(m);
    return NULL;
}
static void g_recursive(void) {
    pthread_mutexattr_t a;
    pthread_mutexattr_init(&a);
    pthread_mutexattr_settype(&a, PTHREAD_MUTEX_RECURSIVE);
    pthread_mutex_t m;
    pthread_mutex_init(&m, &a);
    EXPECT(pthread_mutex_lock(&m) == 0, "lock");
    EXPECT(pthread_mutex_lock(&m) == 0, "relock (recursion)");
    EXPECT(pthread_mutex_trylock(&m) == 0, "trylock (recursion)");
    atomic_store(&step, 0);
    ticker_start();
    photon_thread *th = spawn(rec_other, &m);
    while (!atomic_load(&step)) usleep(1000);
    usleep(30 * MS);
    pthread_mutex_unlock(&m);
    pthread_mutex_unlock(&m);
    usleep(5 * MS);
    pthread_mutex_unlock(&m); /* now B gets it */
    join(th);
    int t = ticker_end();
    EXPECT(rec_result[0] == EBUSY, "trylock by the other photon thread: %d", rec_result[0]);
    EXPECT(rec_result[1] == EPERM, "unlock by the other photon thread: %d", rec_result[1]);
    EXPECT(rec_result[2] == 0, "lock by the other photon thread: %d", rec_result[2]);
    EXPECT(rec_result[3] >= 30, "the other got it after %d ms (before the third unlock)", rec_result[3]);
    EXPECT(t >= MIN_TICKS, "ticker ran %d times", t);
    EXPECT(pthread_mutex_unlock(&m) == EPERM, "unlock of an unlocked recursive mutex");
    EXPECT(pthread_mutex_destroy(&m) == 0, "destroy");
}

static int ec_result[3];
static void *ec_other(void *arg) {
    pthread_mutex_t *m = arg;
    ec_result[0] = pthread_mutex_unlock(m);  /* EPERM */
    ec_result[1] = pthread_mutex_trylock(m); /* EBUSY */
    ec_result[2] = pthread_mutex_lock(m);    /* waits */
    if (ec_result[2] == 0) {
        EXPECT(pthread_mutex_lock(m) == EDEADLK, "relock by the new owner");
        pthread_mutex_unlock(m);
    }
    return NULL;
}
static void g_errorcheck(void) {
    pthread_mutexattr_t a;
    pthread_mutexattr_init(&a);
    pthread_mutexattr_settype(&a, PTHREAD_MUTEX_ERRORCHECK);
    pthread_mutex_t m;
    pthread_mutex_init(&m, &a);
    EXPECT(pthread_mutex_lock(&m) == 0, "lock");
    EXPECT(pthread_mutex_lock(&m) == EDEADLK, "self-relock");
    ticker_start();
    photon_thread *th = spawn(ec_other, &m);
    usleep(30 * MS);
    EXPECT(pthread_mutex_unlock(&m) == 0, "unlock");
    join(th);
    int t = ticker_end();
    EXPECT(ec_result[0] == EPERM, "unlock by another photon thread: %d", ec_result[0]);
    EXPECT(ec_result[1] == EBUSY, "trylock by another photon thread: %d", ec_result[1]);
    EXPECT(ec_result[2] == 0, "lock by another photon thread: %d", ec_result[2]);
    EXPECT(t >= MIN_TICKS, "ticker ran %d times", t);
    EXPECT(pthread_mutex_unlock(&m) == EPERM, "unlock of an unlocked errorcheck mutex");
}

/* ---- timed locks time out with ETIMEDOUT as photon waits */
static void *hold_mutex_100ms(void *arg) {
    pthread_mutex_lock(arg);
    usleep(100 * MS);
    pthread_mutex_unlock(arg);
    return NULL;
}
static void g_timed(void) {
    pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
    ticker_start();
    photon_thread *th = spawn(hold_mutex_100ms, &m);
    photon_thread_yield();
    struct timespec ts = abs_in(CLOCK_REALTIME, 20 * MS);
    uint64_t t0 = now_us();
    int r = pthread_mutex_timedlock(&m, &ts);
    uint64_t el = now_us() - t0;
    EXPECT(r == ETIMEDOUT, "timedlock: %d", r);
    EXPECT(el >= 19 * MS && el < 90 * MS, "timedlock waited %llu us", (unsigned long long)el);
    ts = abs_in(CLOCK_MONOTONIC, 20 * MS);
    r = pthread_mutex_clocklock(&m, CLOCK_MONOTONIC, &ts);
    EXPECT(r == ETIMEDOUT, "clocklock: %d", r);
    EXPECT(pthread_mutex_clocklock(&m, CLOCK_PROCESS_CPUTIME_ID, &ts) == EINVAL, "clocklock, bad clock");
    ts.tv_nsec = 2000000000L;
    EXPECT(pthread_mutex_timedlock(&m, &ts) == EINVAL, "timedlock, bad nanoseconds");
    ts = abs_in(CLOCK_REALTIME, 1000 * MS);
    r = pthread_mutex_timedlock(&m, &ts);
    EXPECT(r == 0, "timedlock after the holder unlocks: %d", r);
    pthread_mutex_unlock(&m);
    join(th);
    int t = ticker_end();
    EXPECT(t >= 2 * MIN_TICKS, "ticker ran %d times", t);
}

/* ---- the holder a plain pthread */
static atomic_ullong released_at;
static pthread_mutex_t pm = PTHREAD_MUTEX_INITIALIZER;
static atomic_int plain_has_it;
static void *plain_holder(void *arg) {
    (void)arg;
    pthread_mutex_lock(&pm);
    atomic_store(&plain_has_it, 1);
    struct timespec d = {0, 50 * 1000000L};
    nanosleep(&d, NULL); /* a plain thread: libc's sleep */
    atomic_store(&released_at, now_us());
    pthread_mutex_unlock(&pm);
    return NULL;
}
static void g_plainmutex(void) {
    atomic_store(&plain_has_it, 0);
    pthread_t p;
    pthread_create(&p, NULL, plain_holder, NULL);
    while (!atomic_load(&plain_has_it)) usleep(500);
    ticker_start();
    EXPECT(pthread_mutex_trylock(&pm) == EBUSY, "trylock against a plain holder");
    int r = pthread_mutex_lock(&pm);
    uint64_t got = now_us();
    int t = ticker_end();
    EXPECT(r == 0, "lock: %d", r);
    uint64_t lat = got - atomic_load(&released_at);
    EXPECT(lat < 100 * MS, "woke %llu us after the pthread unlocked", (unsigned long long)lat);
    EXPECT(t >= MIN_TICKS, "ticker ran %d times", t);
    pthread_mutex_unlock(&pm);
    pthread_join(p, NULL);
    printf("  plain pthread unlock -> photon waiter: %llu us\n", (unsigned long long)lat);
    /* and the other way round: a plain thread waits for a photon holder */
    pthread_mutex_lock(&pm);
    atomic_store(&plain_has_it, 0);
    pthread_create(&p, NULL, lock_it, &pm);
    usleep(20 * MS);
    pthread_mutex_unlock(&pm);
    void *ret = (void *)1;
    pthread_join(p, &ret);
    EXPECT(ret == NULL, "the pthread's lock returned %p", ret);
    EXPECT(pthread_mutex_trylock(&pm) == EBUSY, "held by the (ended) pthread");
}

/* ---- condition variables */
static pthread_mutex_t cm = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int ready;
static void *cond_waiter(void *arg) {
    (void)arg;
    pthread_mutex_lock(&cm);
    while (!ready) pthread_cond_wait(&cv, &cm);
    ready++;
    pthread_mutex_unlock(&cm);
    return NULL;
}
static void g_cond(void) {
    ready = 0;
    ticker_start();
    photon_thread *w[3];
    for (int i = 0; i < 3; i++) w[i] = spawn(cond_waiter, NULL);
    usleep(30 * MS);
    pthread_mutex_lock(&cm);
    ready = 1;
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&cm);
    for (int i = 0; i < 3; i++) join(w[i]);
    EXPECT(ready == 4, "woken waiters: %d", ready - 1);
    /* a waiter whose mutex holder suspends */
    pthread_mutex_lock(&cm);
    struct timespec ts = abs_in(CLOCK_REALTIME, 20 * MS);
    uint64_t t0 = now_us();
    int r = pthread_cond_timedwait(&cv, &cm, &ts);
    EXPECT(r == ETIMEDOUT, "timedwait: %d", r);
    EXPECT(now_us() - t0 >= 19 * MS, "timedwait returned early");
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_t mono;
    pthread_cond_init(&mono, &ca);
    ts = abs_in(CLOCK_MONOTONIC, 20 * MS);
    EXPECT(pthread_cond_timedwait(&mono, &cm, &ts) == ETIMEDOUT, "monotonic timedwait");
    ts = abs_in(CLOCK_MONOTONIC, 20 * MS);
    EXPECT(pthread_cond_clockwait(&cv, &cm, CLOCK_MONOTONIC, &ts) == ETIMEDOUT, "clockwait");
    EXPECT(pthread_cond_clockwait(&cv, &cm, CLOCK_THREAD_CPUTIME_ID, &ts) == EINVAL, "clockwait, bad clock");
    pthread_cond_destroy(&mono);
    pthread_mutex_unlock(&cm);
    int t = ticker_end();
    EXPECT(t >= 2 * MIN_TICKS, "ticker ran %d times", t);
    /* wait with an errorcheck mutex the caller does not hold: EPERM */
    pthread_mutexattr_t a;
    pthread_mutexattr_init(&a);
    pthread_mutexattr_settype(&a, PTHREAD_MUTEX_ERRORCHECK);
    pthread_mutex_t em;
    pthread_mutex_init(&em, &a);
    EXPECT(pthread_cond_wait(&cv, &em) == EPERM, "wait with an unheld errorcheck mutex");
}

static atomic_ullong signalled_at;
static void *plain_signaller(void *arg) {
    (void)arg;
    struct timespec d = {0, 40 * 1000000L};
    nanosleep(&d, NULL);
    pthread_mutex_lock(&cm);
    ready = 1;
    atomic_store(&signalled_at, now_us());
    pthread_cond_signal(&cv);
    pthread_mutex_unlock(&cm);
    return NULL;
}
static void *plain_cond_waiter(void *arg) {
    (void)arg;
    pthread_mutex_lock(&cm);
    while (ready != 2) pthread_cond_wait(&cv, &cm);
    ready = 3;
    pthread_mutex_unlock(&cm);
    return NULL;
}
static void g_plaincond(void) {
    ready = 0;
    pthread_t p;
    pthread_create(&p, NULL, plain_signaller, NULL);
    ticker_start();
    pthread_mutex_lock(&cm);
    while (!ready) pthread_cond_wait(&cv, &cm);
    uint64_t lat = now_us() - atomic_load(&signalled_at);
    pthread_mutex_unlock(&cm);
    int t = ticker_end();
    pthread_join(p, NULL);
    EXPECT(lat < 100 * MS, "woke %llu us after the pthread's signal", (unsigned long long)lat);
    EXPECT(t >= MIN_TICKS, "ticker ran %d times", t);
    printf("  plain pthread signal -> photon waiter: %llu us\n", (unsigned long long)lat);
    /* a plain waiter signalled by a photon thread */
    pthread_create(&p, NULL, plain_cond_waiter, NULL);
    usleep(20 * MS);
    pthread_mutex_lock(&cm);
    ready = 2;
    pthread_cond_signal(&cv);
    pthread_mutex_unlock(&cm);
    pthread_join(p, NULL);
    EXPECT(ready == 3, "the plain waiter did not run: %d", ready);
}

/* ---- rwlocks */
static pthread_rwlock_t rw = PTHREAD_RWLOCK_INITIALIZER;
static atomic_int readers_in, max_readers, writer_in, rw_bad;
static void *reader(void *arg) {
    (void)arg;
    for (int i = 0; i < 3; i++) {
        EXPECT(pthread_rwlock_rdlock(&rw) == 0, "rdlock");
        int n = atomic_fetch_add(&readers_in, 1) + 1;
        int m = atomic_load(&max_readers);
        if (n > m) atomic_store(&max_readers, n);
        if (atomic_load(&writer_in)) atomic_fetch_add(&rw_bad, 1);
        usleep(3000);
        atomic_fetch_sub(&readers_in, 1);
        pthread_rwlock_unlock(&rw);
    }
    return NULL;
}
static void *writer(void *arg) {
    (void)arg;
    for (int i = 0; i < 3; i++) {
        EXPECT(pthread_rwlock_wrlock(&rw) == 0, "wrlock");
        if (atomic_fetch_add(&writer_in, 1) != 0 || atomic_load(&readers_in)) atomic_fetch_add(&rw_bad, 1);
        usleep(3000);
        atomic_fetch_sub(&writer_in, 1);
        pthread_rwlock_unlock(&rw);
        usleep(1000);
    }
    return NULL;
}
static int rw_other[2];
static void *rw_try(void *arg) {
    (void)arg;
    rw_other[0] = pthread_rwlock_tryrdlock(&rw);
    rw_other[1] = pthread_rwlock_trywrlock(&rw);
    return NULL;
}
static void g_rwlock(void) {
    ticker_start();
    photon_thread *th[5];
    for (int i = 0; i < 3; i++) th[i] = spawn(reader, NULL);
    for (int i = 3; i < 5; i++) th[i] = spawn(writer, NULL);
    for (int i = 0; i < 5; i++) join(th[i]);
    int t = ticker_end();
    EXPECT(atomic_load(&rw_bad) == 0, "a writer overlapped %d times", atomic_load(&rw_bad));
    EXPECT(atomic_load(&max_readers) >= 2, "readers never shared the lock (max %d)", atomic_load(&max_readers));
    EXPECT(t >= MIN_TICKS, "ticker ran %d times", t);
    EXPECT(pthread_rwlock_wrlock(&rw) == 0, "wrlock");
    EXPECT(pthread_rwlock_wrlock(&rw) == EDEADLK, "wrlock twice");
    EXPECT(pthread_rwlock_rdlock(&rw) == EDEADLK, "rdlock while writing");
    photon_thread *o = spawn(rw_try, NULL);
    join(o);
    EXPECT(rw_other[0] == EBUSY && rw_other[1] == EBUSY, "try by another photon thread: %d %d", rw_other[0], rw_other[1]);
    struct timespec ts = abs_in(CLOCK_REALTIME, 20 * MS);
    /* another photon thread's timed lock times out; this one is the writer */
    pthread_rwlock_unlock(&rw);
    EXPECT(pthread_rwlock_rdlock(&rw) == 0, "rdlock");
    EXPECT(pthread_rwlock_timedwrlock(&rw, &ts) == ETIMEDOUT, "timedwrlock against a reader");
    ts = abs_in(CLOCK_MONOTONIC, 10 * MS);
    EXPECT(pthread_rwlock_clockwrlock(&rw, CLOCK_MONOTONIC, &ts) == ETIMEDOUT, "clockwrlock against a reader");
    EXPECT(pthread_rwlock_tryrdlock(&rw) == 0, "second read lock");
    pthread_rwlock_unlock(&rw);
    pthread_rwlock_unlock(&rw);
    EXPECT(pthread_rwlock_trywrlock(&rw) == 0, "trywrlock when free");
    pthread_rwlock_unlock(&rw);
    EXPECT(pthread_rwlock_destroy(&rw) == 0, "destroy");
}

/* ---- spinlocks */
static pthread_spinlock_t spin;
static int spin_counter;
static void *spin_worker(void *arg) {
    (void)arg;
    for (int i = 0; i < 5; i++) {
        pthread_spin_lock(&spin);
        int v = spin_counter;
        usleep(2000);
        spin_counter = v + 1;
        pthread_spin_unlock(&spin);
    }
    return NULL;
}
static void g_spin(void) {
    pthread_spin_init(&spin, PTHREAD_PROCESS_PRIVATE);
    ticker_start();
    photon_thread *th[3];
    for (int i = 0; i < 3; i++) th[i] = spawn(spin_worker, NULL);
    for (int i = 0; i < 3; i++) join(th[i]);
    int t = ticker_end();
    EXPECT(spin_counter == 15, "counter %d, want 15", spin_counter);
    EXPECT(t >= MIN_TICKS, "ticker ran %d times", t);
}

/* ---- once */
static pthread_once_t once = PTHREAD_ONCE_INIT;
static atomic_int once_runs, once_done;
static void once_routine(void) {
    atomic_fetch_add(&once_runs, 1);
    usleep(30 * MS);
    atomic_store(&once_done, 1);
}
static atomic_int once_early;
static void *once_caller(void *arg) {
    (void)arg;
    pthread_once(&once, once_routine);
    if (!atomic_load(&once_done)) atomic_fetch_add(&once_early, 1);
    return NULL;
}
static void g_once(void) {
    ticker_start();
    photon_thread *th[10];
    for (int i = 0; i < 10; i++) th[i] = spawn(once_caller, NULL);
    for (int i = 0; i < 10; i++) join(th[i]);
    int t = ticker_end();
    EXPECT(atomic_load(&once_runs) == 1, "routine ran %d times", atomic_load(&once_runs));
    EXPECT(atomic_load(&once_early) == 0, "%d callers returned before the routine ended", atomic_load(&once_early));
    EXPECT(t >= MIN_TICKS, "ticker ran %d times", t);
}

/* ---- barriers */
static pthread_barrier_t bar;
static atomic_int serial, passed;
static void *bar_worker(void *arg) {
    usleep((useconds_t)(intptr_t)arg * 10 * MS);
    int r = pthread_barrier_wait(&bar);
    if (r == PTHREAD_BARRIER_SERIAL_THREAD) atomic_fetch_add(&serial, 1);
    else EXPECT(r == 0, "barrier_wait: %d", r);
    atomic_fetch_add(&passed, 1);
    return NULL;
}
static void *plain_bar_worker(void *arg) { return bar_worker(arg); }
static void g_barrier(void) {
    EXPECT(pthread_barrier_init(&bar, NULL, 0) == EINVAL, "count 0");
    pthread_barrier_init(&bar, NULL, 4);
    ticker_start();
    for (int round = 0; round < 2; round++) {
        atomic_store(&serial, 0);
        atomic_store(&passed, 0);
        photon_thread *th[3];
        for (int i = 0; i < 3; i++) th[i] = spawn(bar_worker, (void *)(intptr_t)(i + 1));
        pthread_t p;
        pthread_create(&p, NULL, plain_bar_worker, (void *)(intptr_t)(round ? 5 : 0));
        for (int i = 0; i < 3; i++) join(th[i]);
        pthread_join(p, NULL);
        EXPECT(atomic_load(&serial) == 1, "round %d: %d serial threads", round, atomic_load(&serial));
        EXPECT(atomic_load(&passed) == 4, "round %d: %d passed", round, atomic_load(&passed));
    }
    int t = ticker_end();
    EXPECT(t >= MIN_TICKS, "ticker ran %d times", t);
    EXPECT(pthread_barrier_destroy(&bar) == 0, "destroy");
}

/* ---- semaphores */
static sem_t sem;
static atomic_ullong posted_at;
static void *plain_poster(void *arg) {
    (void)arg;
    struct timespec d = {0, 40 * 1000000L};
    nanosleep(&d, NULL);
    atomic_store(&posted_at, now_us());
    sem_post(&sem);
    return NULL;
}
static void *photon_poster(void *arg) {
    (void)arg;
    usleep(20 * MS);
    sem_post(&sem);
    return NULL;
}
static void *plain_sem_waiter(void *arg) {
    (void)arg;
    return (void *)(intptr_t)sem_wait(&sem);
}
static void g_sem(void) {
    sem_init(&sem, 0, 0);
    ticker_start();
    pthread_t p;
    pthread_create(&p, NULL, plain_poster, NULL);
    int r = sem_wait(&sem);
    uint64_t lat = now_us() - atomic_load(&posted_at);
    pthread_join(p, NULL);
    EXPECT(r == 0, "sem_wait: %d errno %d", r, errno);
    EXPECT(lat < 100 * MS, "woke %llu us after the pthread's post", (unsigned long long)lat);
    printf("  plain pthread sem_post -> photon waiter: %llu us\n", (unsigned long long)lat);
    photon_thread *th = spawn(photon_poster, NULL);
    EXPECT(sem_wait(&sem) == 0, "sem_wait posted by a photon thread");
    join(th);
    struct timespec ts = abs_in(CLOCK_REALTIME, 20 * MS);
    errno = 0;
    EXPECT(sem_timedwait(&sem, &ts) == -1 && errno == ETIMEDOUT, "sem_timedwait: errno %d", errno);
    ts = abs_in(CLOCK_MONOTONIC, 10 * MS);
    errno = 0;
    EXPECT(sem_clockwait(&sem, CLOCK_MONOTONIC, &ts) == -1 && errno == ETIMEDOUT, "sem_clockwait: errno %d", errno);
    ts.tv_nsec = -1;
    errno = 0;
    EXPECT(sem_timedwait(&sem, &ts) == -1 && errno == EINVAL, "sem_timedwait bad time: errno %d", errno);
    EXPECT(sem_trywait(&sem) == -1 && errno == EAGAIN, "sem_trywait");
    /* a plain waiter posted by a photon thread */
    pthread_create(&p, NULL, plain_sem_waiter, NULL);
    usleep(20 * MS);
    sem_post(&sem);
    void *ret = (void *)1;
    pthread_join(p, &ret);
    EXPECT(ret == NULL, "plain sem_wait: %p", ret);
    int t = ticker_end();
    EXPECT(t >= 2 * MIN_TICKS, "ticker ran %d times", t);
    sem_destroy(&sem);
}

/* ---- sched_yield lets the vcpu's other photon threads run */
static atomic_int flag;
static void *set_flag(void *arg) {
    (void)arg;
    atomic_store(&flag, 1);
    return NULL;
}
static void g_yield(void) {
    atomic_store(&flag, 0);
    photon_thread *th = spawn(set_flag, NULL);
    uint64_t t0 = now_us();
    while (!atomic_load(&flag) && now_us() - t0 < 2000 * MS) sched_yield();
    EXPECT(atomic_load(&flag), "the other photon thread never ran");
    join(th);
}

/* ---- 2 vcpus: a mutex and a cond shared by photon threads of both */
static pthread_mutex_t vm = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t vc = PTHREAD_COND_INITIALIZER;
static int vcount, vturn;
static void *vcpu_worker(void *arg) {
    int me = (int)(intptr_t)arg;
    for (int i = 0; i < 20; i++) {
        pthread_mutex_lock(&vm);
        while (vturn != me) pthread_cond_wait(&vc, &vm);
        int v = vcount;
        if (me == 1) usleep(2000); /* vcpu 0 waits for the pool's thread */
        vcount = v + 1;
        vturn = 1 - me;
        pthread_cond_broadcast(&vc);
        pthread_mutex_unlock(&vm);
    }
    return NULL;
}
static void g_vcpus(void) {
    photon_workpool *pool = photon_workpool_new(1, PHOTON_EVENT_DEFAULT);
    EXPECT(pool != NULL, "workpool: errno %d", errno);
    if (!pool) return;
    vcount = 0;
    vturn = 0;
    ticker_start();
    photon_workpool_spawn(pool, vcpu_worker, (void *)(intptr_t)1);
    vcpu_worker((void *)0);
    /* the other side's last iteration */
    pthread_mutex_lock(&vm);
    while (vcount != 40) pthread_cond_wait(&vc, &vm);
    pthread_mutex_unlock(&vm);
    int t = atomic_load(&ticks);
    ticker_end();
    EXPECT(vcount == 40, "count %d", vcount);
    EXPECT(t >= MIN_TICKS, "ticker ran %d times", t);
    photon_workpool_free(pool);
}

static void *watchdog(void *arg) {
    int s = (int)(intptr_t)arg;
    sleep((unsigned)s);
    fprintf(stderr, "WATCHDOG: group %s hung for %d s\n", group, s);
    _exit(3);
}

struct grp {
    const char *name;
    void (*fn)(void);
};
static const struct grp groups[] = {
    {"mutex", g_mutex},   {"recursive", g_recursive}, {"errorcheck", g_errorcheck},
    {"timed", g_timed},   {"plainmutex", g_plainmutex}, {"cond", g_cond},
    {"plaincond", g_plaincond}, {"rwlock", g_rwlock}, {"spin", g_spin},
    {"once", g_once},     {"barrier", g_barrier},     {"sem", g_sem},
    {"yield", g_yield},   {"vcpus", g_vcpus},
};

int main(int argc, char **argv) {
    const char *w = getenv("SYNC_WATCHDOG_S");
    pthread_t wd;
    pthread_create(&wd, NULL, watchdog, (void *)(intptr_t)(w ? atoi(w) : 60));
    pthread_detach(wd);
    if (photon_init(PHOTON_EVENT_DEFAULT, 0) != 0) {
        perror("photon_init");
        return 2;
    }
    for (size_t i = 0; i < sizeof groups / sizeof groups[0]; i++) {
        int run = argc < 2;
        for (int a = 1; a < argc; a++) run |= strcmp(argv[a], groups[i].name) == 0;
        if (!run) continue;
        group = groups[i].name;
        int before = atomic_load(&failures);
        uint64_t t0 = now_us();
        groups[i].fn();
        printf("%-11s %s (%llu ms)\n", groups[i].name, atomic_load(&failures) == before ? "ok" : "FAILED",
               (unsigned long long)((now_us() - t0) / 1000));
        fflush(stdout);
    }
    photon_fini();
    return atomic_load(&failures) ? 1 : 0;
}
