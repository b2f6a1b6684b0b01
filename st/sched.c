/*
 * libphoton_st, first half: the runtime (st_init over photon_init, one
 * vcpu per OS thread), threads, keys, time and the switch callbacks.
 * Built on libphoton's C API only (photon.h); see internal.h.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

/* --- Process-wide settings --------------------------------------------- */

static atomic_int eventsys = -1;               /* ST_EVENTSYS_*, -1 unset */
static _Atomic(st_switch_cb_t) switch_in_cb;
static _Atomic(st_switch_cb_t) switch_out_cb;
static _Atomic(st_utime_t (*)(void)) utime_fn;
static atomic_int randomize_stacks;
static atomic_int timecache_on;
static _Atomic time_t cached_time;
static _Atomic st_utime_t cached_time_at;     /* st_utime() when cached_time was read */
static atomic_int fd_limit = -1;
static atomic_int active;                     /* runtimes started (for st_set_utime_function) */
static atomic_int nkeys;
static void (*key_destructors[ST_KEYS_MAX])(void *);

#define HOOK_CALLBACKS 1
#define HOOK_CLOCK 2
atomic_int st__hooks;

/* The libphoton key holding each photon thread's st_thread. */
static uint32_t self_key;
static pthread_once_t setup_once = PTHREAD_ONCE_INIT;
static int setup_errno;

static void after_fork_child(void);
static int fork_from_main;
static void before_fork(void)
{
    struct _st_thread *me = st__self();
    fork_from_main = me != NULL && me == me->vp->main;
}

static void setup(void)
{
    if (photon_key_create(&self_key, NULL) != 0) {
        setup_errno = errno ? errno : EAGAIN;
        return;
    }
    signal(SIGPIPE, SIG_IGN);
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        if (rl.rlim_cur < rl.rlim_max) {
            rlim_t want = rl.rlim_max;
            rl.rlim_cur = want;
            if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
                getrlimit(RLIMIT_NOFILE, &rl);
        }
        atomic_store(&fd_limit, rl.rlim_cur > INT32_MAX ? INT32_MAX : (int)rl.rlim_cur);
    }
}

/* After libphoton's own fork handler (registered by its first photon_init),
 * so that ours runs second in the child. */
static pthread_once_t fork_once = PTHREAD_ONCE_INIT;
static void register_fork_handler(void)
{
    pthread_atfork(before_fork, NULL, after_fork_child);
}

struct _st_thread *st__self(void)
{
    if (!photon_in_thread())
        return NULL;
    int saved = errno;
    struct _st_thread *me = photon_getspecific(self_key);
    errno = saved;
    return me;
}

/* --- Clock and switch points ------------------------------------------- */

st_utime_t st_utime(void)
{
    st_utime_t (*fn)(void) = atomic_load_explicit(&utime_fn, memory_order_relaxed);
    return fn ? fn() : (st_utime_t)photon_now_us();
}

/* Reads the clock as ST's scheduler does at a switch: st_utime_last_clock,
 * and the time cache, refreshed when a second has passed since. */
static void touch_clock(struct _st_thread *me)
{
    st_utime_t now = st_utime();
    if (me)
        me->vp->last_clock = now;
    if (atomic_load_explicit(&timecache_on, memory_order_relaxed) &&
        now - atomic_load_explicit(&cached_time_at, memory_order_relaxed) >= 1000000) {
        atomic_store(&cached_time, time(NULL));
        atomic_store(&cached_time_at, now);
    }
}

void st__switch_out(void)
{
    st_switch_cb_t cb = atomic_load(&switch_out_cb);
    if (cb)
        cb();
}

void st__switch_in(void)
{
    int hooks = atomic_load_explicit(&st__hooks, memory_order_relaxed);
    if (hooks & HOOK_CLOCK) {
        int saved = errno;
        touch_clock(st__self());
        errno = saved;
    }
    st_switch_cb_t cb = atomic_load(&switch_in_cb);
    if (cb) {
        int saved = errno;
        cb();
        errno = saved;
    }
}

/* A switch point that always reads the clock (sleeps, yields, waits). */
static void switched_in(struct _st_thread *me)
{
    int saved = errno;
    touch_clock(me);
    errno = saved;
    ST_BLOCK_END();
}

void st__fix_errno(st_utime_t timeout)
{
    int e = errno;
    if (e == ETIMEDOUT && timeout != ST_UTIME_NO_TIMEOUT) {
        errno = ETIME;
    } else if (e == EINTR) {
        struct _st_thread *me = st__self();
        if (me)
            atomic_store(&me->interrupted, 0);
        errno = EINTR;
    }
}

st_utime_t st_utime_last_clock(void)
{
    if (!(atomic_load(&st__hooks) & HOOK_CLOCK))
        atomic_fetch_or(&st__hooks, HOOK_CLOCK);
    struct _st_thread *me = st__self();
    return me ? me->vp->last_clock : st_utime();
}

int st_set_utime_function(st_utime_t (*func)(void))
{
    if (func == NULL || atomic_load(&active) > 0) {
        errno = EINVAL;
        return -1;
    }
    atomic_store(&utime_fn, func);
    return 0;
}

int st_timecache_set(int on)
{
    int was = atomic_exchange(&timecache_on, on != 0);
    if (on && !was) {
        atomic_store(&cached_time, time(NULL));
        atomic_store(&cached_time_at, st_utime());
        atomic_fetch_or(&st__hooks, HOOK_CLOCK);
    }
    return was;
}

time_t st_time(void)
{
    if (atomic_load_explicit(&timecache_on, memory_order_relaxed))
        return atomic_load_explicit(&cached_time, memory_order_relaxed);
    return time(NULL);
}

st_switch_cb_t st_set_switch_in_cb(st_switch_cb_t cb)
{
    st_switch_cb_t old = atomic_exchange(&switch_in_cb, cb);
    if (cb)
        atomic_fetch_or(&st__hooks, HOOK_CALLBACKS);
    return old;
}

st_switch_cb_t st_set_switch_out_cb(st_switch_cb_t cb)
{
    st_switch_cb_t old = atomic_exchange(&switch_out_cb, cb);
    if (cb)
        atomic_fetch_or(&st__hooks, HOOK_CALLBACKS);
    return old;
}

/* --- Initialization ------------------------------------------------------ */

int st_set_eventsys(int es)
{
    if (es < ST_EVENTSYS_DEFAULT || es > ST_EVENTSYS_ALT) {
        errno = EINVAL;
        return -1;
    }
    int unset = -1;
    if (!atomic_compare_exchange_strong(&eventsys, &unset, es)) {
        errno = EBUSY;
        return -1;
    }
    return 0;
}

int st_get_eventsys(void)
{
    return atomic_load(&eventsys);
}

const char *st_get_eventsys_name(void)
{
    if (st__self() == NULL)
        return "";
    int saved = errno;
    const char *name = photon_engine_name();
    errno = saved;
    return name ? name : "";
}

int st_getfdlimit(void)
{
    return atomic_load(&active) > 0 ? atomic_load(&fd_limit) : -1;
}

/* Starts libphoton on this OS thread with the engine the event system asks
 * for; PHOTON_ENGINE, when set, wins (libphoton reads it for DEFAULT). */
static int start_engine(void)
{
    int es = atomic_load(&eventsys);
    const char *env = getenv("PHOTON_ENGINE");
    uint64_t engine = PHOTON_EVENT_EPOLL;
    if (env && *env)
        engine = PHOTON_EVENT_DEFAULT;
    else if (es == ST_EVENTSYS_ALT)
        engine = PHOTON_EVENT_IOURING;
    if (photon_init(engine, 0) == 0 || errno == EALREADY)
        return 0;
    if (engine != PHOTON_EVENT_IOURING)
        return -1;
    int why = errno;
    if (photon_init(PHOTON_EVENT_EPOLL, 0) != 0)
        return -1;
    fprintf(stderr, "libphoton_st: io_uring unavailable (%s): ST_EVENTSYS_ALT runs on epoll\n", strerror(why));
    return 0;
}

/* Makes the calling photon thread the main thread of a new st_vp. */
static int adopt_main(void)
{
    struct st_vp *vp = calloc(1, sizeof *vp);
    struct _st_thread *me = calloc(1, sizeof *me);
    if (!vp || !me) {
        free(vp);
        free(me);
        errno = ENOMEM;
        return -1;
    }
    vp->poll_ep = -1;
    me->vp = vp;
    me->ph = photon_thread_self();
    vp->main = me;
    if (photon_setspecific(self_key, me) != 0) {
        free(vp);
        free(me);
        return -1;
    }
    touch_clock(me);
    atomic_fetch_add(&active, 1);
    return 0;
}

int st_init(void)
{
    pthread_once(&setup_once, setup);
    if (setup_errno) {
        errno = setup_errno;
        return -1;
    }
    if (st__self() != NULL)
        return 0;
    int unset = -1;
    atomic_compare_exchange_strong(&eventsys, &unset, ST_EVENTSYS_DEFAULT);
    if (start_engine() != 0)
        return -1;
    pthread_once(&fork_once, register_fork_handler);
    return adopt_main();
}

/* In a forked child, libphoton has turned the forking OS thread back into a
 * plain one; when that was a runtime's main thread, start a new one. */
static void after_fork_child(void)
{
    if (!fork_from_main)
        return;
    int saved = errno;
    if (start_engine() == 0)
        adopt_main();
    errno = saved;
}

void st_destroy(void)
{
    struct _st_thread *me = st__self();
    if (me == NULL || me != me->vp->main)
        return;
    photon_setspecific(self_key, NULL);
    if (me->vp->poll_ep >= 0)
        photon_close(me->vp->poll_ep);
    photon_fini();
    free(me->vp);
    free(me);
    atomic_fetch_sub(&active, 1);
}

/* --- Keys ----------------------------------------------------------------- */

int st_key_create(int *keyp, void (*destructor)(void *))
{
    if (keyp == NULL) {
        errno = EINVAL;
        return -1;
    }
    int k = atomic_load(&nkeys);
    do {
        if (k >= ST_KEYS_MAX) {
            errno = EAGAIN;
            return -1;
        }
    } while (!atomic_compare_exchange_weak(&nkeys, &k, k + 1));
    key_destructors[k] = destructor;
    *keyp = k;
    return 0;
}

int st_key_getlimit(void)
{
    return ST_KEYS_MAX;
}

int st_thread_setspecific2(st_thread_t t, int key, void *value)
{
    if (t == NULL || key < 0 || key >= atomic_load(&nkeys)) {
        errno = EINVAL;
        return -1;
    }
    void *old = t->keys[key];
    if (old != value) {
        if (old && key_destructors[key])
            key_destructors[key](old);
        t->keys[key] = value;
    }
    return 0;
}

int st_thread_setspecific(int key, void *value)
{
    struct _st_thread *me = st__self();
    if (me == NULL) {
        errno = EPERM;
        return -1;
    }
    return st_thread_setspecific2(me, key, value);
}

void *st_thread_getspecific(int key)
{
    struct _st_thread *me = st__self();
    if (me == NULL || key < 0 || key >= atomic_load(&nkeys))
        return NULL;
    return me->keys[key];
}

/* ST's order: each key's destructor once, in key order. */
static void run_key_destructors(struct _st_thread *t)
{
    int n = atomic_load(&nkeys);
    for (int k = 0; k < n; k++) {
        void *v = t->keys[k];
        if (v && key_destructors[k]) {
            t->keys[k] = NULL;
            key_destructors[k](v);
        }
    }
}

/* --- Threads --------------------------------------------------------------- */

st_thread_t st_thread_self(void)
{
    struct _st_thread *me = st__self();
    if (me == NULL)
        errno = EPERM;
    return me;
}

int st_randomize_stacks(int on)
{
    return atomic_exchange(&randomize_stacks, on != 0);
}

/* The end of a created thread: destructors, callbacks, the count the main
 * thread's st_thread_exit waits on; a detached thread's state goes. */
static void thread_finish(struct _st_thread *t)
{
    struct st_vp *vp = t->vp;
    run_key_destructors(t);
    ST_BLOCK_BEGIN();
    if (!t->joinable) {
        photon_setspecific(self_key, NULL);
        free(t);
    }
    if (atomic_fetch_sub(&vp->live, 1) == 1)
        photon_futex_wake((const uint32_t *)&vp->live, 1);
}

static void *trampoline(void *arg)
{
    struct _st_thread *t = arg;
    photon_setspecific(self_key, t);
    if (t->stack_pad) {
        /* st_randomize_stacks: the start function's frame moves down. */
        volatile char *pad = __builtin_alloca(t->stack_pad);
        pad[0] = 0;
    }
    switched_in(t);
    void *ret = t->start(t->arg);
    thread_finish(t);
    return ret;
}

st_thread_t st_thread_create(void *(*start)(void *), void *arg, int joinable, int stack_size)
{
    struct _st_thread *me = st__self();
    if (me == NULL) {
        errno = EPERM;
        return NULL;
    }
    if (start == NULL || stack_size < 0) {
        errno = EINVAL;
        return NULL;
    }
    struct _st_thread *t = calloc(1, sizeof *t);
    if (t == NULL) {
        errno = ENOMEM;
        return NULL;
    }
    t->vp = me->vp;
    t->start = start;
    t->arg = arg;
    t->joinable = joinable != 0;
    size_t size = stack_size ? (size_t)stack_size : ST_DEFAULT_STACK;
    if (atomic_load_explicit(&randomize_stacks, memory_order_relaxed)) {
        t->stack_pad = ((unsigned)random() % 4096u) & ~15u;
        size += 4096;
    }
    t->ph = photon_thread_create(trampoline, t, size);
    if (t->ph == NULL) {
        int e = errno;
        free(t);
        errno = e;
        return NULL;
    }
    if (t->joinable)
        photon_thread_enable_join(t->ph);
    atomic_fetch_add(&me->vp->live, 1);
    return t;
}

/* st_thread_exit in the thread of st_init: wait for the others, then end. */
static void main_exit(struct _st_thread *me, void *retval)
{
    struct st_vp *vp = me->vp;
    run_key_destructors(me);
    for (;;) {
        uint32_t n = atomic_load(&vp->live);
        if (n == 0)
            break;
        photon_futex_wait((const uint32_t *)&vp->live, n, PHOTON_FOREVER);
    }
    ST_BLOCK_BEGIN();
    st_destroy();
    if (getpid() == (pid_t)syscall(SYS_gettid))
        exit(0);
    pthread_exit(retval);
}

void st_thread_exit(void *retval)
{
    struct _st_thread *me = st__self();
    if (me == NULL)
        return;
    if (me == me->vp->main)
        main_exit(me, retval);
    thread_finish(me);
    photon_thread_exit(retval);
}

int st_thread_join(st_thread_t t, void **retvalp)
{
    struct _st_thread *me = st__self();
    if (me == NULL) {
        errno = EPERM;
        return -1;
    }
    if (t == NULL || !t->joinable) {
        errno = EINVAL;
        return -1;
    }
    if (t == me) {
        errno = EDEADLK;
        return -1;
    }
    void *ret = NULL;
    ST_BLOCK_BEGIN();
    int r = photon_thread_join(t->ph, &ret);
    int e = errno;
    switched_in(me);
    if (r != 0) {
        errno = e;
        st__fix_errno(ST_UTIME_NO_TIMEOUT);
        return -1;
    }
    free(t);
    if (retvalp)
        *retvalp = ret;
    return 0;
}

void st_thread_interrupt(st_thread_t t)
{
    if (t == NULL)
        return;
    int saved = errno;
    atomic_store(&t->interrupted, 1);
    if (photon_thread_interrupt(t->ph, EINTR) != 0)
        atomic_store(&t->interrupted, 0);
    errno = saved;
}

void st_thread_yield(void)
{
    struct _st_thread *me = st__self();
    ST_BLOCK_BEGIN();
    photon_thread_yield();
    switched_in(me);
}

int st_usleep(st_utime_t usecs)
{
    struct _st_thread *me = st__self();
    if (me == NULL) {
        errno = EPERM;
        return -1;
    }
    /* 0 yields; with an interrupt pending it fails at once, as in ST. */
    uint64_t us = usecs == ST_UTIME_NO_WAIT && atomic_load(&me->interrupted) ? 1 : usecs;
    ST_BLOCK_BEGIN();
    int r = photon_thread_usleep(us);
    int e = errno;
    switched_in(me);
    if (r != 0) {
        errno = e;
        st__fix_errno(ST_UTIME_NO_TIMEOUT);
        return -1;
    }
    return 0;
}

int st_sleep(int secs)
{
    return st_usleep(secs < 0 ? ST_UTIME_NO_TIMEOUT : (st_utime_t)secs * 1000000ULL);
}
