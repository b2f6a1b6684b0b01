/*
 * libphoton_st: mutexes and condition variables with State Threads'
 * semantics, which libphoton's own locks do not have: an unlock hands the
 * mutex straight to the first waiter, a signal wakes the first waiter not
 * already woken, interrupted waiters are skipped by both, and a waiter
 * leaves the queue only when it runs again (until then the object is busy
 * and cannot be destroyed). ST condition variables need no mutex.
 *
 * Each waiter sleeps on a word of its own with photon_futex_wait; a short
 * spin lock guards the queue, so the objects also work between OS threads
 * (each with its own runtime). Wakes are issued under the spin lock: the
 * waiter's word lives on its stack and must not go away meanwhile.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <sched.h>
#include <stdlib.h>

#include "internal.h"

struct waiter {
    struct waiter *next, *prev;
    struct _st_thread *thread;
    _Atomic uint32_t woken; /* 1: granted the mutex / signalled */
};

struct queue {
    atomic_flag spin;
    struct waiter *head, *tail;
};

struct _st_mutex {
    struct queue q;
    struct _st_thread *owner;
};

struct _st_cond {
    struct queue q;
};

static void lock_queue(struct queue *q)
{
    unsigned spins = 0;
    while (atomic_flag_test_and_set_explicit(&q->spin, memory_order_acquire)) {
        if (++spins % 64 == 0)
            sched_yield();
    }
}

static void unlock_queue(struct queue *q)
{
    atomic_flag_clear_explicit(&q->spin, memory_order_release);
}

static void enqueue(struct queue *q, struct waiter *w)
{
    w->next = NULL;
    w->prev = q->tail;
    if (q->tail)
        q->tail->next = w;
    else
        q->head = w;
    q->tail = w;
}

static void dequeue(struct queue *q, struct waiter *w)
{
    if (w->prev)
        w->prev->next = w->next;
    else
        q->head = w->next;
    if (w->next)
        w->next->prev = w->prev;
    else
        q->tail = w->prev;
}

/* Wakes w (queue locked). */
static void wake(struct waiter *w)
{
    atomic_store(&w->woken, 1);
    photon_futex_wake((const uint32_t *)&w->woken, 1);
}

/* The first waiter that is neither woken nor interrupted (queue locked). */
static struct waiter *first_eligible(struct queue *q)
{
    for (struct waiter *w = q->head; w; w = w->next)
        if (!atomic_load(&w->woken) && !atomic_load(&w->thread->interrupted))
            return w;
    return NULL;
}

/* Sleeps until w is woken, the deadline (photon_now_us() based; UINT64_MAX:
 * none) passes, or an interrupt: 0, or -1 with ETIMEDOUT or EINTR. */
static int sleep_on(struct waiter *w, uint64_t deadline)
{
    for (;;) {
        if (atomic_load(&w->woken))
            return 0;
        uint64_t timeout = PHOTON_FOREVER;
        if (deadline != UINT64_MAX) {
            uint64_t now = photon_now_us();
            if (now >= deadline) {
                errno = ETIMEDOUT;
                return -1;
            }
            timeout = deadline - now;
        }
        if (photon_futex_wait((const uint32_t *)&w->woken, 0, timeout) != 0 && errno != EAGAIN)
            return -1;
    }
}

/* The wait was both granted and interrupted: the wake wins, and the
 * interrupt stays pending for the next blocking call, as in ST. */
static void repend_interrupt(struct _st_thread *me)
{
    photon_thread_interrupt(me->ph, EINTR);
}

/* --- Mutex ------------------------------------------------------------------ */

st_mutex_t st_mutex_new(void)
{
    struct _st_mutex *m = calloc(1, sizeof *m);
    if (m == NULL) {
        errno = ENOMEM;
        return NULL;
    }
    atomic_flag_clear(&m->q.spin);
    return m;
}

int st_mutex_destroy(st_mutex_t m)
{
    if (m == NULL) {
        errno = EINVAL;
        return -1;
    }
    lock_queue(&m->q);
    int busy = m->owner != NULL || m->q.head != NULL;
    unlock_queue(&m->q);
    if (busy) {
        errno = EBUSY;
        return -1;
    }
    free(m);
    return 0;
}

int st_mutex_trylock(st_mutex_t m)
{
    struct _st_thread *me = st__self();
    if (m == NULL || me == NULL) {
        errno = m ? EPERM : EINVAL;
        return -1;
    }
    lock_queue(&m->q);
    int ok = m->owner == NULL;
    if (ok)
        m->owner = me;
    unlock_queue(&m->q);
    if (!ok) {
        errno = EBUSY;
        return -1;
    }
    return 0;
}

int st_mutex_lock(st_mutex_t m)
{
    struct _st_thread *me = st__self();
    if (m == NULL || me == NULL) {
        errno = m ? EPERM : EINVAL;
        return -1;
    }
    lock_queue(&m->q);
    if (m->owner == NULL) {
        m->owner = me;
        unlock_queue(&m->q);
        return 0;
    }
    if (m->owner == me) {
        unlock_queue(&m->q);
        errno = EDEADLK;
        return -1;
    }
    struct waiter w = {.thread = me};
    enqueue(&m->q, &w);
    unlock_queue(&m->q);

    ST_BLOCK_BEGIN();
    int r = sleep_on(&w, UINT64_MAX);
    int e = errno;
    ST_BLOCK_END();
    lock_queue(&m->q);
    dequeue(&m->q, &w);
    int granted = atomic_load(&w.woken) != 0;
    unlock_queue(&m->q);
    if (granted) {
        if (r != 0 && e == EINTR)
            repend_interrupt(me);
        return 0;
    }
    errno = e;
    st__fix_errno(ST_UTIME_NO_TIMEOUT);
    return -1;
}

int st_mutex_unlock(st_mutex_t m)
{
    struct _st_thread *me = st__self();
    if (m == NULL) {
        errno = EINVAL;
        return -1;
    }
    lock_queue(&m->q);
    if (me == NULL || m->owner != me) {
        unlock_queue(&m->q);
        errno = EPERM;
        return -1;
    }
    struct waiter *w = first_eligible(&m->q);
    m->owner = w ? w->thread : NULL;
    if (w)
        wake(w);
    unlock_queue(&m->q);
    return 0;
}

/* --- Condition variable ------------------------------------------------------ */

st_cond_t st_cond_new(void)
{
    struct _st_cond *c = calloc(1, sizeof *c);
    if (c == NULL) {
        errno = ENOMEM;
        return NULL;
    }
    atomic_flag_clear(&c->q.spin);
    return c;
}

int st_cond_destroy(st_cond_t c)
{
    if (c == NULL) {
        errno = EINVAL;
        return -1;
    }
    lock_queue(&c->q);
    int busy = c->q.head != NULL;
    unlock_queue(&c->q);
    if (busy) {
        errno = EBUSY;
        return -1;
    }
    free(c);
    return 0;
}

int st_cond_timedwait(st_cond_t c, st_utime_t timeout)
{
    struct _st_thread *me = st__self();
    if (c == NULL || me == NULL) {
        errno = c ? EPERM : EINVAL;
        return -1;
    }
    uint64_t deadline = UINT64_MAX;
    if (timeout != ST_UTIME_NO_TIMEOUT) {
        uint64_t now = photon_now_us();
        deadline = timeout > UINT64_MAX - 1 - now ? UINT64_MAX - 1 : now + timeout;
    }
    struct waiter w = {.thread = me};
    lock_queue(&c->q);
    enqueue(&c->q, &w);
    unlock_queue(&c->q);

    ST_BLOCK_BEGIN();
    int r = sleep_on(&w, deadline);
    int e = errno;
    ST_BLOCK_END();
    lock_queue(&c->q);
    dequeue(&c->q, &w);
    int signalled = atomic_load(&w.woken) != 0;
    unlock_queue(&c->q);
    if (signalled || r == 0) {
        if (r != 0 && e == EINTR)
            repend_interrupt(me);
        return 0;
    }
    errno = e;
    st__fix_errno(timeout);
    return -1;
}

int st_cond_wait(st_cond_t c)
{
    return st_cond_timedwait(c, ST_UTIME_NO_TIMEOUT);
}

static int notify(st_cond_t c, int all)
{
    if (c == NULL) {
        errno = EINVAL;
        return -1;
    }
    lock_queue(&c->q);
    struct waiter *w;
    while ((w = first_eligible(&c->q)) != NULL) {
        wake(w);
        if (!all)
            break;
    }
    unlock_queue(&c->q);
    return 0;
}

int st_cond_signal(st_cond_t c)
{
    return notify(c, 0);
}

int st_cond_broadcast(st_cond_t c)
{
    return notify(c, 1);
}
