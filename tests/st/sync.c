/* Mutexes and condition variables with State Threads' semantics: hand-off
 * to the first waiter, interrupted waiters skipped, EBUSY while queued. */
#include <st.h>
#include <stdint.h>

#include "st_check.h"

struct waiter {
    st_mutex_t m;
    st_cond_t c;
    int id;
    int r, err, owned;
};

static int woke[8], nwoke;

static void *lock_then_wait(void *arg)
{
    struct waiter *w = arg;
    errno = 0;
    w->r = st_mutex_lock(w->m);
    w->err = errno;
    if (w->r != 0)
        return NULL;
    w->owned = 1;
    if (w->c)
        st_cond_wait(w->c);
    st_mutex_unlock(w->m);
    return NULL;
}

static void *cond_waiter(void *arg)
{
    struct waiter *w = arg;
    errno = 0;
    w->r = st_cond_wait(w->c);
    w->err = errno;
    woke[nwoke++] = w->id;
    return NULL;
}

static void *try_it(void *arg)
{
    struct waiter *w = arg;
    errno = 0;
    w->r = st_mutex_trylock(w->m);
    w->err = errno;
    if (w->r == 0)
        st_mutex_unlock(w->m);
    return NULL;
}

int main(void)
{
    CHECK(st_init() == 0);

    /* trylock, EBUSY, unlock by a non-owner */
    st_mutex_t m = st_mutex_new();
    st_cond_t work = st_cond_new();
    CHECK(m && work);
    CHECK_FAILS(st_mutex_unlock(m), EPERM);
    CHECK(st_mutex_trylock(m) == 0);
    CHECK_FAILS(st_mutex_trylock(m), EBUSY);
    CHECK_FAILS(st_mutex_lock(m), EDEADLK);
    struct waiter t = {.m = m};
    st_thread_t th = st_thread_create(try_it, &t, 1, 0);
    CHECK(st_thread_join(th, NULL) == 0);
    CHECK(t.r == -1 && t.err == EBUSY);
    CHECK(st_mutex_unlock(m) == 0);
    printf("trylock: ok\n");

    /* hand-off: after unlock the waiter owns it before it runs */
    CHECK(st_mutex_lock(m) == 0);
    struct waiter w = {.m = m, .c = work};
    th = st_thread_create(lock_then_wait, &w, 1, 0);
    st_usleep(1 * MS);
    CHECK(!w.owned);
    CHECK_FAILS(st_mutex_destroy(m), EBUSY);
    CHECK(st_mutex_unlock(m) == 0);
    CHECK_FAILS(st_mutex_unlock(m), EPERM);    /* handed over: no longer ours */
    CHECK_FAILS(st_mutex_trylock(m), EBUSY);   /* held by the waiter */
    CHECK_FAILS(st_mutex_destroy(m), EBUSY);
    st_usleep(1 * MS);
    CHECK(w.owned);
    CHECK_FAILS(st_mutex_unlock(m), EPERM);
    CHECK(st_cond_signal(work) == 0);
    CHECK(st_thread_join(th, NULL) == 0);
    CHECK(st_mutex_destroy(m) == 0);
    CHECK(st_cond_destroy(work) == 0);
    printf("hand-off: ok\n");

    /* an interrupted waiter is skipped by unlock */
    m = st_mutex_new();
    CHECK(st_mutex_lock(m) == 0);
    struct waiter stopped = {.m = m}, next = {.m = m};
    st_thread_t ts = st_thread_create(lock_then_wait, &stopped, 1, 0);
    st_thread_t tn = st_thread_create(lock_then_wait, &next, 1, 0);
    st_usleep(1 * MS);
    st_thread_interrupt(ts);
    CHECK(st_mutex_unlock(m) == 0);
    CHECK(st_thread_join(ts, NULL) == 0);
    CHECK(st_thread_join(tn, NULL) == 0);
    printf("skip interrupted: stopped %d %s owned %d, next %d owned %d\n", stopped.r,
           stopped.err == EINTR ? "EINTR" : "?", stopped.owned, next.r, next.owned);

    /* the only waiter interrupted: unlock frees the mutex, busy until it runs */
    CHECK(st_mutex_lock(m) == 0);
    struct waiter only = {.m = m};
    ts = st_thread_create(lock_then_wait, &only, 1, 0);
    st_usleep(1 * MS);
    st_thread_interrupt(ts);
    CHECK(st_mutex_unlock(m) == 0);
    CHECK_FAILS(st_mutex_destroy(m), EBUSY);
    CHECK(st_mutex_trylock(m) == 0);
    CHECK(st_mutex_unlock(m) == 0);
    CHECK(st_thread_join(ts, NULL) == 0);
    CHECK(only.r == -1 && only.err == EINTR && !only.owned);
    CHECK(st_mutex_destroy(m) == 0);
    printf("only waiter interrupted: ok\n");

    /* each signal wakes another waiter, in order */
    st_cond_t c = st_cond_new();
    struct waiter c1 = {.c = c, .id = 1}, c2 = {.c = c, .id = 2}, c3 = {.c = c, .id = 3};
    st_thread_t t1 = st_thread_create(cond_waiter, &c1, 1, 0);
    st_thread_t t2 = st_thread_create(cond_waiter, &c2, 1, 0);
    st_thread_t t3 = st_thread_create(cond_waiter, &c3, 1, 0);
    st_usleep(1 * MS);
    CHECK(st_cond_signal(c) == 0);
    CHECK(st_cond_signal(c) == 0);
    CHECK(nwoke == 0);
    CHECK_FAILS(st_cond_destroy(c), EBUSY);
    st_usleep(1 * MS);
    printf("two signals: woke %d: %d %d\n", nwoke, woke[0], woke[1]);
    CHECK(st_cond_broadcast(c) == 0);
    CHECK(st_thread_join(t1, NULL) == 0 && st_thread_join(t2, NULL) == 0 && st_thread_join(t3, NULL) == 0);
    printf("broadcast: woke %d, last %d\n", nwoke, woke[2]);

    /* a signal skips an interrupted waiter */
    nwoke = 0;
    struct waiter s1 = {.c = c, .id = 1}, s2 = {.c = c, .id = 2};
    t1 = st_thread_create(cond_waiter, &s1, 1, 0);
    t2 = st_thread_create(cond_waiter, &s2, 1, 0);
    st_usleep(1 * MS);
    st_thread_interrupt(t1);
    CHECK(st_cond_signal(c) == 0);
    CHECK(st_thread_join(t1, NULL) == 0 && st_thread_join(t2, NULL) == 0);
    printf("signal skips interrupted: %d %s, %d\n", s1.r, s1.err == EINTR ? "EINTR" : "?", s2.r);

    /* a signal with nobody waiting is lost; timed waits time out */
    CHECK(st_cond_signal(c) == 0);
    st_utime_t t0 = st_utime();
    CHECK_FAILS(st_cond_timedwait(c, 10 * MS), ETIME);
    CHECK(st_utime() - t0 >= 10 * MS);
    CHECK(st_cond_destroy(c) == 0);
    printf("lost signal, timeout: ok\n");
    return 0;
}
