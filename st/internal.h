/*
 * What the parts of libphoton_st share (sched.c: runtime, threads, keys,
 * time, callbacks; sync.c: mutexes and condition variables; io.c:
 * descriptors, polling, connections, reads and writes; dgram.c: datagrams
 * and messages). Everything here is
 * hidden: the library exports st_* only (st/libst.map).
 *
 * State: process-wide settings are atomics; the state of one OS thread's
 * runtime (struct st_vp) is reached from the calling thread's own
 * st_thread, found through a libphoton key. No __thread variables: under
 * the preload shim, thread-locals may follow the photon thread.
 */
#ifndef PHOTON_ST_INTERNAL_H
#define PHOTON_ST_INTERNAL_H

#include <stdatomic.h>
#include <stdint.h>

#include "photon.h"
#include "st.h"

#define ST_HIDDEN __attribute__((visibility("hidden")))

/* The number of keys, as State Threads 1.9 has. */
#define ST_KEYS_MAX 16

/* The default stack: 256 KiB (State Threads: 64 KiB), committed as used. */
#define ST_DEFAULT_STACK (256u * 1024u)

/* One OS thread's runtime: a libphoton vcpu. */
struct st_vp {
    struct _st_thread *main;  /* the thread that called st_init */
    _Atomic uint32_t live;     /* threads created by st_thread_create, not yet ended */
    st_utime_t last_clock;     /* st_utime() at the last switch point */
    int poll_ep;               /* st_poll's epoll instance, reused; -1: none */
    int poll_ep_busy;          /* a thread of this vcpu is waiting on it */
};

struct _st_thread {
    photon_thread *ph;
    struct st_vp *vp;
    void *(*start)(void *);
    void *arg;
    int joinable;
    /* st_thread_interrupt was called and no call has failed with EINTR
     * since: a mutex unlock or condition signal skips this waiter. */
    atomic_int interrupted;
    unsigned stack_pad;        /* st_randomize_stacks offset */
    void *keys[ST_KEYS_MAX];
};

/* The calling thread's st_thread, NULL before st_init (errno kept). */
ST_HIDDEN struct _st_thread *st__self(void);
/* After a libphoton call failed: turns ETIMEDOUT into ETIME when a timeout
 * was given, and notes that an interrupt was consumed (EINTR). */
ST_HIDDEN void st__fix_errno(st_utime_t timeout);
/* Runs the switch-out callback before a call that may switch. */
ST_HIDDEN void st__switch_out(void);
/* Runs the switch-in callback after it, and reads the clock if asked. */
ST_HIDDEN void st__switch_in(void);

/* How many threads have an interrupt not yet consumed (a hint: the I/O
 * calls look at their own thread only when it is nonzero). */
extern ST_HIDDEN atomic_int st__pending_interrupts;
/* The calling thread has an interrupt pending: ST delivers it only when a
 * call would block, so I/O that can complete at once must first try. */
static inline int st__interrupt_pending(void)
{
    if (__builtin_expect(atomic_load_explicit(&st__pending_interrupts, memory_order_relaxed) == 0, 1))
        return 0;
    struct _st_thread *me = st__self();
    return me != NULL && atomic_load(&me->interrupted);
}

/* Consumes the calling thread's pending interrupt: -1/EINTR. For the calls
 * State Threads fails at once when interrupted, even if they need not wait
 * (st_mutex_lock, st_cond_timedwait, st_poll). */
ST_HIDDEN int st__deliver_interrupt(void);

/* Nonzero when switch callbacks are set or the clock is read at switches. */
extern ST_HIDDEN atomic_int st__hooks;

#define ST_BLOCK_BEGIN()                                                  \
    do {                                                                  \
        if (atomic_load_explicit(&st__hooks, memory_order_relaxed))       \
            st__switch_out();                                             \
    } while (0)
#define ST_BLOCK_END()                                                    \
    do {                                                                  \
        if (atomic_load_explicit(&st__hooks, memory_order_relaxed))       \
            st__switch_in();                                              \
    } while (0)

/* An OS fd wrapped by st_netfd_open*; data with its destructor. */
struct _st_netfd {
    int osfd;
    void *data;
    void (*destructor)(void *);
};

/* A call's result: n >= 0 passes; -1 gets ST's errno. The switch-in hook
 * keeps errno. */
static inline ssize_t done(ssize_t n, st_utime_t timeout)
{
    ST_BLOCK_END();
    if (n < 0)
        st__fix_errno(timeout);
    return n;
}

/* With an interrupt pending, ST still completes a transfer that need not
 * wait (the interrupt waits for a call that would block): the plain
 * non-blocking syscall has the result unless it says EAGAIN. */
static inline int completed(ssize_t n)
{
    return n >= 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}

/* One transfer: the plain syscall first when an interrupt is pending (see
 * completed()), else the libphoton call, which waits as a photon thread. */
#define TRANSFER(syscall_expr, photon_expr, timeout)                          \
    do {                                                                      \
        ssize_t n_;                                                           \
        if (st__interrupt_pending() && completed(n_ = (syscall_expr)))       \
            return n_;                                                        \
        ST_BLOCK_BEGIN();                                                     \
        return done((photon_expr), (timeout));                                \
    } while (0)

#endif
