/*
 * What the two halves of libphoton_st (sched.c: runtime, threads, keys,
 * time, locks; io.c: descriptors and I/O) share. Everything here is
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

#endif
