/*
 * st.h: the State Threads 1.9 API, implemented by libphoton_st.so over
 * libphoton's C API (photon.h).
 *
 * Source-compatible with State Threads 1.9's public header (and with the
 * additions of SRS's copy: st_thread_yield, st_destroy,
 * st_thread_setspecific2): a program written for State Threads compiles
 * against this header and links with -lst (an install's libst.so is
 * libphoton_st.so). Behaviour follows State Threads' reference
 * documentation (docs/reference.html); where libphoton does more, the
 * function's comment says so. Differences, all documented in README.md:
 *
 *  - st_init makes the calling OS thread a libphoton vcpu. Each OS thread
 *    that calls st_init runs its own threads, as SRS's per-thread copy does;
 *    mutexes and condition variables also work between OS threads.
 *  - Event systems: ST_EVENTSYS_DEFAULT, _SELECT and _POLL use libphoton's
 *    epoll engine, ST_EVENTSYS_ALT its io_uring engine (epoll, with one
 *    line on stderr, where the kernel lacks io_uring). PHOTON_ENGINE=epoll
 *    or io_uring in the environment overrides the program's choice.
 *  - After fork(2) the child keeps only the forking thread, which starts a
 *    fresh runtime when it is a main thread (the structure ST's reference
 *    recommends: fork before creating threads).
 *  - Switch callbacks run around every call that may switch (before it
 *    and after it returns), also when it found its fd ready at once.
 *
 * All functions set errno and return -1 or NULL on failure, as in State
 * Threads. Calling them before st_init on the calling OS thread fails
 * with EPERM instead of crashing.
 */
#ifndef __ST_THREAD_H__
#define __ST_THREAD_H__

#include <unistd.h>
#include <sys/types.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <errno.h>
#include <poll.h>

#define ST_VERSION "1.9"
#define ST_VERSION_MAJOR 1
#define ST_VERSION_MINOR 9

/* Context switch callbacks are available (st_set_switch_in_cb). */
#define ST_SWITCH_CB

/* A timeout expired: ETIME where the system has it (Linux does). */
#ifndef ETIME
#define ETIME ETIMEDOUT
#endif

/* Timeout values: wait forever, or not at all. */
#ifndef ST_UTIME_NO_TIMEOUT
#define ST_UTIME_NO_TIMEOUT ((st_utime_t)-1LL)
#endif
#ifndef ST_UTIME_NO_WAIT
#define ST_UTIME_NO_WAIT 0
#endif

/* Event systems for st_set_eventsys (see the note at the top). */
#define ST_EVENTSYS_DEFAULT 0
#define ST_EVENTSYS_SELECT 1
#define ST_EVENTSYS_POLL 2
#define ST_EVENTSYS_ALT 3

#ifdef __cplusplus
extern "C" {
#endif

/* Microseconds since an arbitrary point in the past (monotonic). */
typedef unsigned long long st_utime_t;
/* A thread (coroutine): valid until it returns and, if joinable, is joined. */
typedef struct _st_thread *st_thread_t;
/* A condition variable; waiting needs no mutex. */
typedef struct _st_cond *st_cond_t;
/* A mutex owned by the thread that locked it. */
typedef struct _st_mutex *st_mutex_t;
/* An OS file descriptor wrapped for the I/O functions (set non-blocking). */
typedef struct _st_netfd *st_netfd_t;
#ifdef ST_SWITCH_CB
/* Called when a thread starts or stops running. */
typedef void (*st_switch_cb_t)(void);
#endif

/* --- Initialization --------------------------------------------------- */

/* Starts the runtime on the calling OS thread (a second call returns 0).
 * Ignores SIGPIPE and raises the soft RLIMIT_NOFILE to the hard limit. */
extern int st_init(void);
/* The descriptor limit set by st_init; -1 before st_init. */
extern int st_getfdlimit(void);
/* Chooses the event system, before st_init: -1/EINVAL for an unknown value,
 * -1/EBUSY once chosen (by an earlier call or by st_init). */
extern int st_set_eventsys(int eventsys);
/* The event system chosen, or -1 before st_set_eventsys/st_init. */
extern int st_get_eventsys(void);
/* "epoll" or "io_uring" (what the calling OS thread runs on); "" before st_init. */
extern const char *st_get_eventsys_name(void);
#ifdef ST_SWITCH_CB
/* Set the callbacks run when a thread is resumed / stopped (NULL: none);
 * return the previous one. Process-wide. */
extern st_switch_cb_t st_set_switch_in_cb(st_switch_cb_t cb);
extern st_switch_cb_t st_set_switch_out_cb(st_switch_cb_t cb);
#endif

/* --- Threads ------------------------------------------------------------ */

/* The calling thread (the OS thread's own after st_init); NULL/EPERM before. */
extern st_thread_t st_thread_self(void);
/* Ends the calling thread with retval (its key destructors run first).
 * Called by the thread of st_init, it waits for the OS thread's other
 * threads to end, then ends the process with status 0 (the OS thread
 * alone when it is not the process's main thread). */
extern void st_thread_exit(void *retval);
/* Waits for a joinable thread to end; *retvalp gets its result. -1 with
 * EINVAL (not joinable, or another thread joins it), EDEADLK (itself),
 * EINTR (interrupted; the thread stays joinable). */
extern int st_thread_join(st_thread_t thread, void **retvalp);
/* Makes the thread's blocking call fail with EINTR, now or, if it is not
 * blocked, at its next blocking call. */
extern void st_thread_interrupt(st_thread_t thread);
/* Lets the other runnable threads of this OS thread run (SRS). */
extern void st_thread_yield(void);
/* Creates a thread running start(arg), first run when the caller blocks or
 * yields. joinable != 0: join it. stack_size 0: the default (8 MiB of
 * address space, committed as used); others are rounded up to pages. */
extern st_thread_t st_thread_create(void *(*start)(void *arg), void *arg, int joinable, int stack_size);
/* Offsets the stacks of threads created afterwards by a random amount of
 * up to a page; returns the previous setting. */
extern int st_randomize_stacks(int on);

/* --- Time ----------------------------------------------------------------- */

/* Replaces the clock of st_utime (before st_init, else -1/EINVAL). Timeouts
 * keep counting on the monotonic clock. */
extern int st_set_utime_function(st_utime_t (*func)(void));
/* Now, in microseconds. */
extern st_utime_t st_utime(void);
/* st_utime as last read when the calling thread blocked, yielded or woke. */
extern st_utime_t st_utime_last_clock(void);
/* Turns the cache of st_time on or off; returns the previous state (0/1). */
extern int st_timecache_set(int on);
/* time(2); with the cache on, a value refreshed at most once a second. */
extern time_t st_time(void);
/* Sleep; 0 yields, ST_UTIME_NO_TIMEOUT / a negative secs sleeps until
 * interrupted. -1/EINTR when interrupted. */
extern int st_usleep(st_utime_t usecs);
extern int st_sleep(int secs);

/* --- Condition variables and mutexes -------------------------------------- */

extern st_cond_t st_cond_new(void);
/* -1/EBUSY while a thread is in its wait queue (also one woken but not yet run). */
extern int st_cond_destroy(st_cond_t cvar);
/* -1 with ETIME (timeout) or EINTR (interrupted). */
extern int st_cond_timedwait(st_cond_t cvar, st_utime_t timeout);
extern int st_cond_wait(st_cond_t cvar);
/* Wake the first waiter not already woken or interrupted / all of them. */
extern int st_cond_signal(st_cond_t cvar);
extern int st_cond_broadcast(st_cond_t cvar);
extern st_mutex_t st_mutex_new(void);
/* -1/EBUSY while held or waited for. */
extern int st_mutex_destroy(st_mutex_t lock);
/* -1 with EDEADLK (caller holds it) or EINTR (interrupted). */
extern int st_mutex_lock(st_mutex_t lock);
/* Hands the mutex to the first waiter not interrupted; -1/EPERM if the
 * caller does not hold it. */
extern int st_mutex_unlock(st_mutex_t lock);
/* -1/EBUSY if held (by anyone, the caller included). */
extern int st_mutex_trylock(st_mutex_t lock);

/* --- Per-thread data ------------------------------------------------------ */

/* A new key (0, 1, ...); -1/EAGAIN past st_key_getlimit() keys. */
extern int st_key_create(int *keyp, void (*destructor)(void *));
extern int st_key_getlimit(void);
/* Replacing a non-NULL value runs the key's destructor on the old one. */
extern int st_thread_setspecific(int key, void *value);
extern void *st_thread_getspecific(int key);

/* --- File descriptors and I/O --------------------------------------------- */

/* Wrap an open fd (set O_NONBLOCK); NULL/EBADF for a bad fd. */
extern st_netfd_t st_netfd_open(int osfd);
extern st_netfd_t st_netfd_open_socket(int osfd);
/* Release the wrapper (running its data's destructor), leaving the fd open. */
extern void st_netfd_free(st_netfd_t fd);
/* Release the wrapper and close the fd. */
extern int st_netfd_close(st_netfd_t fd);
extern int st_netfd_fileno(st_netfd_t fd);
extern void st_netfd_setspecific(st_netfd_t fd, void *value, void (*destructor)(void *));
extern void *st_netfd_getspecific(st_netfd_t fd);
/* Not needed on Linux: returns 0. */
extern int st_netfd_serialize_accept(st_netfd_t fd);
/* Waits for POLLIN/POLLOUT/POLLPRI: 0, or -1 with ETIME, EINTR, EBADF. */
extern int st_netfd_poll(st_netfd_t fd, int how, st_utime_t timeout);

/* poll(2) on any fds, timeout in microseconds: the count of ready fds, 0 on
 * timeout, -1/EINTR when interrupted. */
extern int st_poll(struct pollfd *pds, int npds, st_utime_t timeout);
/* The calls below take an inactivity timeout and fail with ETIME when it
 * expires, EINTR when interrupted; other errors are the system call's. */
extern st_netfd_t st_accept(st_netfd_t fd, struct sockaddr *addr, int *addrlen, st_utime_t timeout);
extern int st_connect(st_netfd_t fd, const struct sockaddr *addr, int addrlen, st_utime_t timeout);
/* Returns once some bytes arrived (0 at end of file). */
extern ssize_t st_read(st_netfd_t fd, void *buf, size_t nbyte, st_utime_t timeout);
/* Reads nbyte bytes, fewer only at end of file; -1 on an error or timeout. */
extern ssize_t st_read_fully(st_netfd_t fd, void *buf, size_t nbyte, st_utime_t timeout);
/* As st_read_fully; *resid is left with the bytes not read. */
extern int st_read_resid(st_netfd_t fd, void *buf, size_t *resid, st_utime_t timeout);
extern ssize_t st_readv(st_netfd_t fd, const struct iovec *iov, int iov_size, st_utime_t timeout);
extern int st_readv_resid(st_netfd_t fd, struct iovec **iov, int *iov_size, st_utime_t timeout);
/* Writes all nbyte bytes: nbyte, or -1. */
extern ssize_t st_write(st_netfd_t fd, const void *buf, size_t nbyte, st_utime_t timeout);
extern int st_write_resid(st_netfd_t fd, const void *buf, size_t *resid, st_utime_t timeout);
extern ssize_t st_writev(st_netfd_t fd, const struct iovec *iov, int iov_size, st_utime_t timeout);
extern int st_writev_resid(st_netfd_t fd, struct iovec **iov, int *iov_size, st_utime_t timeout);
extern int st_recvfrom(st_netfd_t fd, void *buf, int len, struct sockaddr *from, int *fromlen, st_utime_t timeout);
extern int st_sendto(st_netfd_t fd, const void *msg, int len, const struct sockaddr *to, int tolen, st_utime_t timeout);
extern int st_recvmsg(st_netfd_t fd, struct msghdr *msg, int flags, st_utime_t timeout);
extern int st_sendmsg(st_netfd_t fd, const struct msghdr *msg, int flags, st_utime_t timeout);
/* open(2) with O_NONBLOCK added, wrapped. */
extern st_netfd_t st_open(const char *path, int oflags, mode_t mode);

/* --- SRS additions ---------------------------------------------------------- */

/* Ends the runtime of the calling OS thread (its main thread only); st_init
 * may start it again. */
extern void st_destroy(void);
/* st_thread_setspecific for another thread of the same OS thread. */
extern int st_thread_setspecific2(st_thread_t thread, int key, void *value);

#ifdef __cplusplus
}
#endif

#endif /* __ST_THREAD_H__ */
