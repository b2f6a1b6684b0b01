/*
 * photon_thread_interrupt of a thread blocked on each kind of lock wait:
 * photon_mutex_lock, photon_cond_wait, photon_sem_wait, photon_rwlock_rdlock
 * and photon_rwlock_wrlock. For each, three waiters queue up (FOREVER) and
 * the middle one is interrupted with a chosen errno; it must return -1 with
 * exactly that errno (cond_wait: holding the mutex again), promptly, while
 * the other two stay queued. Then the lock is released and the two others
 * get it; the interrupted thread takes the lock again normally (its queue
 * entry is gone); and the lock can be freed (no phantom waiter: not EBUSY).
 *
 * Each case runs three ways: waiters on the main vcpu interrupted by the
 * main thread (same vcpu), waiters on a pool vcpu interrupted by the main
 * thread (another vcpu), and waiters on a pool vcpu interrupted by a plain
 * pthread (photon_thread_interrupt is callable from any OS thread).
 * Last, an interrupt sent before a thread blocks stays pending: its next
 * lock wait fails at once with it.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>

#include "check.h"

#define WAITERS 3
#define VICTIM 1
#define WATCHDOG_S 40
#define PROMPT_US 1000000ULL

enum kind { K_MUTEX, K_COND, K_SEM, K_RDLOCK, K_WRLOCK, K_COUNT };
static const char *kind_name[K_COUNT] = {"mutex_lock", "cond_wait", "sem_wait", "rwlock_rdlock",
                                         "rwlock_wrlock"};
enum way { W_LOCAL, W_REMOTE, W_PTHREAD, W_COUNT };
static const char *way_name[W_COUNT] = {
    "waiters on the main vcpu, interrupted by the main thread",
    "waiters on a pool vcpu, interrupted by the main thread",
    "waiters on a pool vcpu, interrupted by a plain pthread"};

static photon_workpool *pool;
static photon_sem *done;
static photon_mutex *mtx;
static photon_cond *cv;
static photon_sem *sem;
static photon_rwlock *rw;
static int cond_go; /* guarded by mtx */
static atomic_int finished;
static const char *stage = "start";

struct waiter {
    enum kind kind;
    int index;
    _Atomic(photon_thread *) self;
    atomic_int ready;    /* about to wait */
    atomic_int returned; /* the first wait returned */
    int ret, err;
    uint64_t returned_at;
    atomic_int got;      /* times it held the lock */
};
static struct waiter ws[WAITERS];
static atomic_int holders; /* inside count for exclusive kinds */

static void *watchdog(void *arg) {
    (void)arg;
    for (int i = 0; i < WATCHDOG_S * 10; i++) {
        if (atomic_load(&finished)) return NULL;
        usleep(100000);
    }
    fprintf(stderr, "WATCHDOG: stalled for %d s in: %s\n", WATCHDOG_S, stage);
    abort();
}

static int wait_once(enum kind k) {
    switch (k) {
    case K_MUTEX: return photon_mutex_lock(mtx, PHOTON_FOREVER);
    case K_COND: return photon_cond_wait(cv, mtx, PHOTON_FOREVER);
    case K_SEM: return photon_sem_wait(sem, 1, PHOTON_FOREVER);
    case K_RDLOCK: return photon_rwlock_rdlock(rw, PHOTON_FOREVER);
    case K_WRLOCK: return photon_rwlock_wrlock(rw, PHOTON_FOREVER);
    default: return -2;
    }
}

static void release(enum kind k) {
    switch (k) {
    case K_MUTEX: CHECK_OK(photon_mutex_unlock(mtx)); break;
    case K_COND: CHECK_OK(photon_mutex_unlock(mtx)); break;
    case K_SEM: CHECK_OK(photon_sem_signal(sem, 1)); break;
    default: CHECK_OK(photon_rwlock_unlock(rw));
    }
}

/* Holds the lock briefly, checking exclusivity where it applies. */
static void hold(struct waiter *w) {
    int exclusive = w->kind != K_RDLOCK && w->kind != K_SEM; /* sem: 2 are given */
    if (exclusive) CHECK(atomic_fetch_add(&holders, 1) == 0, "%s: two holders", kind_name[w->kind]);
    CHECK_OK(photon_thread_usleep(200));
    if (exclusive) atomic_fetch_sub(&holders, 1);
    atomic_fetch_add(&w->got, 1);
}

static void *waiter_main(void *arg) {
    struct waiter *w = arg;
    atomic_store(&w->self, photon_thread_self());
    if (w->kind == K_COND) CHECK_OK(photon_mutex_lock(mtx, PHOTON_FOREVER));
    atomic_store(&w->ready, 1);
    int r;
    for (;;) {
        errno = 0;
        r = wait_once(w->kind);
        w->err = errno;
        if (w->kind != K_COND || r != 0 || cond_go) break;
        /* a spurious return is allowed for a condition variable: wait again */
    }
    w->ret = r;
    w->returned_at = photon_now_us();
    atomic_store(&w->returned, 1);
    if (r == 0) {
        hold(w);
        release(w->kind);
    } else if (w->kind == K_COND) {
        /* interrupted: the mutex is ours again */
        CHECK_OK(photon_mutex_unlock(mtx));
    }
    CHECK_OK(photon_sem_signal(done, 1));
    return NULL;
}

/* The interrupted thread takes the lock again, normally. */
static int retry_go;              /* guarded by mtx */
static atomic_int retry_waiting;

static void *retry_main(void *arg) {
    struct waiter *w = arg;
    if (w->kind == K_COND) {
        CHECK_OK(photon_mutex_lock(mtx, PHOTON_FOREVER));
        atomic_store(&retry_waiting, 1); /* main notifies once it has the mutex: we wait by then */
        while (!retry_go) CHECK_OK(photon_cond_wait(cv, mtx, PHOTON_FOREVER));
        CHECK_OK(photon_mutex_unlock(mtx));
    } else {
        CHECK_OK(wait_once(w->kind));
        hold(w);
        release(w->kind);
    }
    CHECK_OK(photon_sem_signal(done, 1));
    return NULL;
}

struct pt_interrupt {
    photon_thread *th;
    int err;
    int ret, ret_errno;
};

static void *pthread_interrupter(void *arg) {
    struct pt_interrupt *p = arg;
    errno = 0;
    p->ret = photon_thread_interrupt(p->th, p->err);
    p->ret_errno = errno;
    return NULL;
}

static void start_on(enum way way, photon_entry fn, void *arg) {
    if (way == W_LOCAL) {
        CHECK(photon_thread_create(fn, arg, 0) != NULL, "photon_thread_create: errno %d", errno);
    } else {
        CHECK_OK(photon_workpool_spawn(pool, fn, arg));
    }
}

static void wait_done(int n) {
    errno = 0;
    int r = photon_sem_wait(done, (uint64_t)n, 10 * 1000 * 1000ULL);
    CHECK(r == 0, "%s: waiting for %d threads: errno %d", stage, n, errno);
}

static void run_case(enum kind k, enum way way, int chosen) {
    static char buf[200];
    snprintf(buf, sizeof buf, "%s, %s, errno %d", kind_name[k], way_name[way], chosen);
    stage = buf;
    SAY("%s", buf);

    /* make every waiter block: hold the lock (or give the sem nothing) */
    switch (k) {
    case K_MUTEX: CHECK_OK(photon_mutex_lock(mtx, PHOTON_FOREVER)); break;
    case K_COND: cond_go = 0; break;
    case K_SEM: break; /* count 0 */
    case K_RDLOCK: CHECK_OK(photon_rwlock_wrlock(rw, PHOTON_FOREVER)); break;
    case K_WRLOCK: CHECK_OK(photon_rwlock_rdlock(rw, PHOTON_FOREVER)); break;
    default: break;
    }
    for (int i = 0; i < WAITERS; i++) {
        struct waiter *w = &ws[i];
        memset(w, 0, sizeof *w);
        w->kind = k;
        w->index = i;
        start_on(way, waiter_main, w);
        /* one at a time, so the queue order is known */
        for (int t = 0; t < 5000 && !atomic_load(&w->ready); t++) CHECK_OK(photon_thread_usleep(1000));
        CHECK(atomic_load(&w->ready), "waiter %d did not start", i);
        CHECK_OK(photon_thread_usleep(5000)); /* it is blocked now */
    }
    for (int i = 0; i < WAITERS; i++) CHECK(!atomic_load(&ws[i].returned), "waiter %d did not block", i);

    photon_thread *victim = atomic_load(&ws[VICTIM].self);
    CHECK(victim != NULL, "no handle");
    uint64_t t0 = photon_now_us();
    if (way == W_PTHREAD) {
        struct pt_interrupt p = {victim, chosen, 99, 0};
        pthread_t pt;
        CHECK(pthread_create(&pt, NULL, pthread_interrupter, &p) == 0, "pthread_create");
        CHECK(pthread_join(pt, NULL) == 0, "pthread_join");
        CHECK(p.ret == 0, "interrupt from a pthread: %d errno %d", p.ret, p.ret_errno);
    } else {
        CHECK_OK(photon_thread_interrupt(victim, chosen));
    }
    for (int t = 0; t < 5000 && !atomic_load(&ws[VICTIM].returned); t++) {
        CHECK_OK(photon_thread_usleep(200));
    }
    CHECK(atomic_load(&ws[VICTIM].returned), "the interrupted waiter did not return within 1 s");
    uint64_t lag = ws[VICTIM].returned_at - t0;
    CHECK(ws[VICTIM].ret == -1 && ws[VICTIM].err == chosen,
          "the interrupted %s: want -1 with errno %d, got %d with errno %d", kind_name[k], chosen,
          ws[VICTIM].ret, ws[VICTIM].err);
    CHECK(lag < PROMPT_US, "the interrupted waiter returned %llu us later", (unsigned long long)lag);
    CHECK_OK(photon_thread_usleep(5000));
    for (int i = 0; i < WAITERS; i++) {
        if (i != VICTIM) CHECK(!atomic_load(&ws[i].returned), "waiter %d returned too", i);
    }
    SAY("   interrupted waiter returned -1/%d after %llu us; the others still wait", chosen,
        (unsigned long long)lag);

    /* release: the two others get it */
    switch (k) {
    case K_MUTEX: CHECK_OK(photon_mutex_unlock(mtx)); break;
    case K_COND:
        CHECK_OK(photon_mutex_lock(mtx, PHOTON_FOREVER));
        cond_go = 1;
        CHECK_OK(photon_cond_notify_all(cv));
        CHECK_OK(photon_mutex_unlock(mtx));
        break;
    case K_SEM: CHECK_OK(photon_sem_signal(sem, WAITERS - 1)); break;
    default: CHECK_OK(photon_rwlock_unlock(rw)); break;
    }
    wait_done(WAITERS);
    for (int i = 0; i < WAITERS; i++) {
        if (i == VICTIM) continue;
        CHECK(ws[i].ret == 0, "waiter %d: %d errno %d", i, ws[i].ret, ws[i].err);
        CHECK(k == K_COND || atomic_load(&ws[i].got) == 1, "waiter %d never held it", i);
    }
    /* the interrupted thread's queue entry is gone: it locks again normally */
    atomic_store(&retry_waiting, 0);
    retry_go = 0;
    start_on(way, retry_main, &ws[VICTIM]);
    if (k == K_COND) {
        for (int t = 0; t < 5000 && !atomic_load(&retry_waiting); t++) CHECK_OK(photon_thread_usleep(1000));
        CHECK_OK(photon_mutex_lock(mtx, PHOTON_FOREVER));
        retry_go = 1;
        CHECK_OK(photon_cond_notify_all(cv));
        CHECK_OK(photon_mutex_unlock(mtx));
    }
    wait_done(1);
    if (k == K_SEM) {
        /* the count is what the releases put back: 2 */
        CHECK_OK(photon_sem_wait(sem, WAITERS - 1, 0));
        CHECK_ERRNO(photon_sem_wait(sem, 1, 0), ETIMEDOUT);
    }
    CHECK(atomic_load(&holders) == 0, "holders %d", atomic_load(&holders));
}

static void *pending_main(void *arg) {
    (void)arg;
    photon_thread *me = photon_thread_self();
    /* a held mutex (main holds it), a held rwlock, an empty semaphore */
    CHECK_OK(photon_thread_interrupt(me, EOWNERDEAD));
    uint64_t t0 = photon_now_us();
    CHECK_ERRNO(photon_mutex_lock(mtx, PHOTON_FOREVER), EOWNERDEAD);
    CHECK_OK(photon_thread_interrupt(me, ENOTCONN));
    CHECK_ERRNO(photon_sem_wait(sem, 1, PHOTON_FOREVER), ENOTCONN);
    CHECK_OK(photon_thread_interrupt(me, ECONNRESET));
    CHECK_ERRNO(photon_rwlock_wrlock(rw, PHOTON_FOREVER), ECONNRESET);
    CHECK_OK(photon_thread_interrupt(me, EL2HLT));
    CHECK_ERRNO(photon_rwlock_rdlock(rw, PHOTON_FOREVER), EL2HLT);
    CHECK(elapsed_us(t0) < PROMPT_US, "pending interrupts did not fail the waits at once");
    CHECK_OK(photon_sem_signal(done, 1));
    return NULL;
}

int main(void) {
    test_start("sync_interrupt");
    test_init();
    pthread_t wd;
    CHECK(pthread_create(&wd, NULL, watchdog, NULL) == 0, "pthread_create watchdog");
    pool = photon_workpool_new(2, PHOTON_EVENT_DEFAULT);
    CHECK(pool != NULL, "photon_workpool_new(2): errno %d", errno);
    done = photon_sem_new(0);
    mtx = photon_mutex_new();
    cv = photon_cond_new();
    sem = photon_sem_new(0);
    rw = photon_rwlock_new();
    CHECK(done && mtx && cv && sem && rw, "new lock failed");

    const int chosen[] = {ECANCELED, EINTR, ETIMEDOUT, EOWNERDEAD, 4242};
    int c = 0;
    for (int k = 0; k < K_COUNT; k++) {
        for (int way = 0; way < W_COUNT; way++) {
            run_case((enum kind)k, (enum way)way, chosen[c++ % 5]);
        }
    }

    stage = "pending interrupts";
    SAY("%s: an interrupt sent before the wait fails it at once", stage);
    CHECK_OK(photon_mutex_lock(mtx, PHOTON_FOREVER));
    CHECK_OK(photon_rwlock_wrlock(rw, PHOTON_FOREVER));
    CHECK(photon_thread_create(pending_main, NULL, 0) != NULL, "create");
    wait_done(1);
    CHECK_OK(photon_rwlock_unlock(rw));
    CHECK_OK(photon_mutex_unlock(mtx));

    SAY("every lock is idle again: each _free returns 0");
    CHECK_OK(photon_mutex_free(mtx));
    CHECK_OK(photon_cond_free(cv));
    CHECK_OK(photon_sem_free(sem));
    CHECK_OK(photon_rwlock_free(rw));
    CHECK_OK(photon_sem_free(done));
    photon_workpool_free(pool);
    atomic_store(&finished, 1);
    CHECK(pthread_join(wd, NULL) == 0, "pthread_join watchdog");
    test_fini();
    SAY("ok");
    return 0;
}
