/*
 * semantics.c: the LD_PRELOAD shim (libphoton_preload.so) against libc.
 *
 * Run under LD_PRELOAD=libphoton_preload.so (tests/preload.rs does, once per
 * engine). The checked operations are plain libc calls (read, poll, ...),
 * which the shim hooks. In a photon thread a blocking call must become a
 * photon wait: a "ticker" photon thread, counting 1 ms photon sleeps, has to
 * make progress while the call waits, and a peer photon thread of the same
 * vcpu has to be able to run and wake it (without the shim such a call
 * blocks the vcpu: the ticker stands still, or the program deadlocks and the
 * watchdog ends it). Every result and errno must be libc's: the program's
 * own view of O_NONBLOCK per fd, EAGAIN after SO_RCVTIMEO/SO_SNDTIMEO,
 * poll/select/epoll results, EBADF, EINVAL, whole writes on blocking fds.
 *
 * Groups (one line each on stdout; a failure names its check on stderr):
 *   1 blocking socketpair (read, recv, recvmsg, MSG_WAITALL, EOF, SOCK_DGRAM)
 *   2 user O_NONBLOCK (fcntl, SOCK_NONBLOCK, FIONBIO, dup / F_DUPFD sharing)
 *   3 SO_RCVTIMEO / SO_SNDTIMEO
 *   4 poll / ppoll            5 select / pselect        6 epoll
 *   7 bad fds, EPIPE + SIGPIPE, ENOTSOCK
 *   8 connect / accept / accept4 (flags, SO_RCVTIMEO, ECONNREFUSED, EISCONN)
 *   9 pipes, FIFO, timerfd, eventfd, directory, 1 MiB whole writes
 *  10 sleeps                 11 regular files          12 getaddrinfo
 *  13 a plain pthread (emulated blocking read, write, accept, SO_RCVTIMEO)
 *  14 fork from a photon thread
 * Arguments (optional): the numbers of the groups to run; default all.
 *
 * A failed EXPECT is reported at once and the program goes on (so one wrong
 * result does not hide the others); it exits 1 at the end. A watchdog
 * pthread ends the program (exit 3) if a group hangs.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "photon.h"

#define MS 1000ULL
#define SEC 1000000ULL
/* The least number of ticker iterations (1 ms photon sleeps) that prove the
 * vcpu ran other photon threads during a wait of >= 20 ms. Without the shim
 * the count is 0 (the vcpu is blocked); one stray yield gives at most 1; a
 * photon wait gives about one per millisecond (less on a loaded machine). */
#define MIN_TICKS 2

static atomic_int failures;
static const char *_Atomic group_name = "setup";

#define EXPECT(cond, ...)                                                    \
    do {                                                                     \
        if (!(cond)) {                                                       \
            fprintf(stderr, "FAILED [%s] %s:%d: %s\n    ",                   \
                    atomic_load(&group_name), __FILE__, __LINE__, #cond);    \
            fprintf(stderr, __VA_ARGS__);                                    \
            fprintf(stderr, "\n");                                           \
            fflush(stderr);                                                  \
            atomic_fetch_add(&failures, 1);                                  \
        }                                                                    \
    } while (0)

/* Setup that must work for the rest of a group to make sense. */
#define CHECK(cond, ...)                                                     \
    do {                                                                     \
        if (!(cond)) {                                                       \
            fprintf(stderr, "FATAL [%s] %s:%d: %s\n    ",                    \
                    atomic_load(&group_name), __FILE__, __LINE__, #cond);    \
            fprintf(stderr, __VA_ARGS__);                                    \
            fprintf(stderr, "\n");                                           \
            fflush(stderr);                                                  \
            _exit(1);                                                        \
        }                                                                    \
    } while (0)

#define CHECK_OK(expr)                                                       \
    do {                                                                     \
        errno = 0;                                                           \
        long ok_r_ = (long)(expr);                                           \
        int ok_e_ = errno;                                                   \
        CHECK(ok_r_ == 0, "%s: want 0, got %ld (%s)", #expr, ok_r_,          \
              strerror(ok_e_));                                              \
    } while (0)

/* `expr` must give -1 with errno `want`. */
#define EXPECT_ERR(expr, want)                                               \
    do {                                                                     \
        errno = 0;                                                           \
        long err_r_ = (long)(expr);                                          \
        int err_e_ = errno;                                                  \
        EXPECT(err_r_ == -1 && err_e_ == (want),                             \
               "%s: want -1/%s, got %ld (errno %d %s)", #expr, ename(want),  \
               err_r_, err_e_, ename(err_e_));                               \
    } while (0)

/* errno's name ("EAGAIN"), or "0". */
static const char *ename(int e) {
    if (e == 0)
        return "0";
#ifdef __GLIBC__
    const char *n = strerrorname_np(e);
    return n ? n : strerror(e);
#else
    return strerror(e);
#endif
}

static uint64_t now_us(void) { return photon_now_us(); }

static unsigned long long since(uint64_t t0) {
    return (unsigned long long)(now_us() - t0);
}

/* ---- watchdog ---------------------------------------------------------- */

static atomic_ullong watch_deadline; /* photon_now_us() limit; 0: disarmed */

static void *watchdog_main(void *arg) {
    (void)arg;
    for (;;) {
        struct timespec ts = {0, 20000000};
        nanosleep(&ts, NULL); /* a plain pthread: libc's own nanosleep */
        uint64_t d = atomic_load(&watch_deadline);
        if (d != 0 && photon_now_us() > d) {
            fprintf(stderr,
                    "WATCHDOG: group [%s] hung for 15 s (a blocking call "
                    "blocked the vcpu, or never returned)\n",
                    atomic_load(&group_name));
            fflush(stderr);
            _exit(3);
        }
    }
    return NULL;
}

/* ---- photon thread helpers --------------------------------------------- */

static photon_thread *spawn(photon_entry fn, void *arg) {
    photon_thread *th = photon_thread_create(fn, arg, 0);
    CHECK(th != NULL, "photon_thread_create: %s", strerror(errno));
    CHECK_OK(photon_thread_enable_join(th));
    return th;
}

static void join(photon_thread *th) { CHECK_OK(photon_thread_join(th, NULL)); }

/* A photon thread counting 1 ms photon sleeps: proof that the vcpu runs. */
struct ticker {
    volatile int stop;
    volatile long n;
    photon_thread *th;
};

static void *ticker_main(void *arg) {
    struct ticker *t = arg;
    while (!t->stop) {
        photon_thread_usleep(1000);
        t->n++;
    }
    return NULL;
}

static void ticker_start(struct ticker *t) {
    t->stop = 0;
    t->n = 0;
    t->th = spawn(ticker_main, t);
    photon_thread_yield();
}

static void ticker_stop(struct ticker *t) {
    t->stop = 1;
    join(t->th);
}

/* A photon thread that is always runnable: it counts photon_thread_yield
 * calls. While a photon thread parks (for an offloaded or engine call that
 * returns quickly), it runs; while the vcpu is blocked, it does not. */
struct yielder {
    volatile int stop;
    volatile long n;
    photon_thread *th;
};

static void *yielder_main(void *arg) {
    struct yielder *y = arg;
    while (!y->stop) {
        y->n++;
        photon_thread_yield();
    }
    return NULL;
}

static void yielder_start(struct yielder *y) {
    y->stop = 0;
    y->n = 0;
    y->th = spawn(yielder_main, y);
    photon_thread_yield();
}

static void yielder_stop(struct yielder *y) {
    y->stop = 1;
    join(y->th);
}

/* A call that should have waited >= min_us as a photon wait: it took
 * [min_us, 1 s) and the ticker ran meanwhile. */
static void expect_waited(const char *what, uint64_t t0, long ticks0,
                          const struct ticker *tk, uint64_t min_us) {
    unsigned long long took = since(t0);
    long ticks = tk->n - ticks0;
    EXPECT(took >= min_us && took < SEC,
           "%s: took %llu us, want >= %llu us and < 1 s", what, took,
           (unsigned long long)min_us);
    if (took < min_us)
        return; /* it did not wait at all: the ticker says nothing */
    EXPECT(ticks >= MIN_TICKS,
           "%s: the ticker photon thread ran %ld times during the %llu us "
           "wait: the call blocked the vcpu instead of waiting as a photon "
           "thread",
           what, ticks, took);
}

static void expect_quick(const char *what, uint64_t t0) {
    unsigned long long took = since(t0);
    EXPECT(took < 30 * MS, "%s: took %llu us, want at once", what, took);
}

/* A photon thread that, after a photon sleep, writes to an fd or closes it. */
struct delayed {
    int fd;
    uint64_t delay_us;
    const void *data;
    size_t len; /* 0: close(fd) instead */
    ssize_t ret;
    int err;
    photon_thread *th;
};

static void *delayed_main(void *arg) {
    struct delayed *d = arg;
    photon_thread_usleep(d->delay_us);
    errno = 0;
    d->ret = d->len ? write(d->fd, d->data, d->len) : close(d->fd);
    d->err = errno;
    return NULL;
}

static void delayed_write(struct delayed *d, int fd, uint64_t delay_us,
                          const char *s) {
    *d = (struct delayed){.fd = fd, .delay_us = delay_us, .data = s, .len = strlen(s)};
    d->th = spawn(delayed_main, d);
}

static void delayed_close(struct delayed *d, int fd, uint64_t delay_us) {
    *d = (struct delayed){.fd = fd, .delay_us = delay_us};
    d->th = spawn(delayed_main, d);
}

static void delayed_join(struct delayed *d, const char *what) {
    join(d->th);
    EXPECT(d->ret == (ssize_t)d->len, "%s: the delayed %s gave %zd (%s)", what,
           d->len ? "write" : "close", d->ret, ename(d->err));
}

/* O_NONBLOCK as the program sees it (fcntl F_GETFL), -1 on error. */
static int nb_view(int fd) {
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0)
        return -1;
    return (fl & O_NONBLOCK) != 0;
}

static void expect_view(const char *what, int fd, int want_nb) {
    int v = nb_view(fd);
    EXPECT(v == want_nb, "%s: fcntl(fd %d, F_GETFL) %s O_NONBLOCK, libc would %s it",
           what, fd, v < 0 ? "failed, no" : v ? "shows" : "does not show",
           want_nb ? "show" : "not show");
}

/* read() on an empty fd the program made non-blocking: -1/EAGAIN at once. */
static void expect_eagain_now(const char *what, int fd) {
    char b[16];
    uint64_t t0 = now_us();
    errno = 0;
    ssize_t r = read(fd, b, sizeof b);
    int e = errno;
    EXPECT(r == -1 && e == EAGAIN,
           "%s: read with no data on a non-blocking fd: want -1/EAGAIN, got %zd (%s)",
           what, r, ename(e));
    expect_quick(what, t0);
}

/* read() on an empty fd the program sees blocking: it waits (as a photon
 * wait) for a write another photon thread makes to `wfd` 50 ms later. */
static void expect_blocking_read(const char *what, int rfd, int wfd, struct ticker *tk) {
    struct delayed d;
    delayed_write(&d, wfd, 50 * MS, "wake");
    char b[16];
    long n0 = tk->n;
    uint64_t t0 = now_us();
    errno = 0;
    ssize_t r = read(rfd, b, sizeof b);
    int e = errno;
    expect_waited(what, t0, n0, tk, 40 * MS);
    EXPECT(r == 4 && memcmp(b, "wake", 4) == 0,
           "%s: blocking read: want 4 bytes \"wake\", got %zd (%s)", what, r, ename(e));
    delayed_join(&d, what);
}

/* Reads what is queued on a socket without waiting. */
static void drain(int fd) {
    char b[256];
    while (recv(fd, b, sizeof b, MSG_DONTWAIT) > 0) {
    }
}

/* read() on an empty socket the program made non-blocking (in a way the
 * shim may miss): -1/EAGAIN at once. A write to `wfd` 300 ms later ends a
 * read that wrongly blocks. */
static void expect_eagain_guarded(const char *what, int rfd, int wfd) {
    struct delayed d;
    delayed_write(&d, wfd, 300 * MS, "net");
    expect_eagain_now(what, rfd);
    delayed_join(&d, what);
    drain(rfd);
}

static void socketpair_ok(int sv[2], int type) {
    CHECK_OK(socketpair(AF_UNIX, type, 0, sv));
}

/* fd `fd` closed: a high number that nothing else will take meanwhile. */
static int closed_fd(int n) {
    int sv[2];
    socketpair_ok(sv, SOCK_STREAM);
    CHECK(dup2(sv[0], n) == n, "dup2 to %d: %s", n, strerror(errno));
    close(sv[0]);
    close(sv[1]);
    CHECK_OK(close(n));
    return n;
}

/* ---- 1: a blocking socketpair ------------------------------------------ */

static void g_blocking_socketpair(void) {
    int sv[2];
    socketpair_ok(sv, SOCK_STREAM);
    expect_view("new blocking socketpair end 0", sv[0], 0);
    expect_view("new blocking socketpair end 1", sv[1], 0);

    struct ticker tk;
    ticker_start(&tk);

    /* read waits as a photon wait; a peer photon thread writes at 50 ms. */
    struct delayed d;
    delayed_write(&d, sv[1], 50 * MS, "hello");
    char buf[64];
    long n0 = tk.n;
    uint64_t t0 = now_us();
    errno = 0;
    ssize_t r = read(sv[0], buf, sizeof buf);
    int e = errno;
    expect_waited("blocking read on a socketpair", t0, n0, &tk, 40 * MS);
    EXPECT(r == 5 && memcmp(buf, "hello", 5) == 0,
           "blocking read: want 5 bytes \"hello\", got %zd (%s)", r, ename(e));
    delayed_join(&d, "blocking read");

    /* Used in a photon wait (O_NONBLOCK set underneath): still hidden. */
    expect_view("socketpair end 0 after a blocking read", sv[0], 0);
    expect_view("socketpair end 1 after a write", sv[1], 0);

    /* recv likewise, and the same fd in the other direction. */
    delayed_write(&d, sv[0], 50 * MS, "back");
    n0 = tk.n;
    t0 = now_us();
    errno = 0;
    r = recv(sv[1], buf, sizeof buf, 0);
    e = errno;
    expect_waited("blocking recv on a socketpair", t0, n0, &tk, 40 * MS);
    EXPECT(r == 4 && memcmp(buf, "back", 4) == 0,
           "blocking recv: want 4 bytes \"back\", got %zd (%s)", r, ename(e));
    delayed_join(&d, "blocking recv");

    /* recvmsg waits likewise. */
    delayed_write(&d, sv[1], 50 * MS, "msg");
    struct iovec iov = {buf, sizeof buf};
    struct msghdr mh;
    memset(&mh, 0, sizeof mh);
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    n0 = tk.n;
    t0 = now_us();
    errno = 0;
    r = recvmsg(sv[0], &mh, 0);
    e = errno;
    expect_waited("blocking recvmsg on a socketpair", t0, n0, &tk, 40 * MS);
    EXPECT(r == 3 && memcmp(buf, "msg", 3) == 0, "blocking recvmsg: want 3 bytes, got %zd (%s)",
           r, ename(e));
    delayed_join(&d, "blocking recvmsg");

    /* MSG_WAITALL: two writes 50 ms apart make one recv of both. */
    struct delayed d2;
    delayed_write(&d, sv[1], 30 * MS, "first");
    delayed_write(&d2, sv[1], 80 * MS, "second");
    n0 = tk.n;
    t0 = now_us();
    errno = 0;
    r = recv(sv[0], buf, 11, MSG_WAITALL);
    e = errno;
    expect_waited("recv MSG_WAITALL of two writes", t0, n0, &tk, 70 * MS);
    EXPECT(r == 11 && memcmp(buf, "firstsecond", 11) == 0,
           "recv(11, MSG_WAITALL) of writes of 5 and 6 bytes: want 11, got %zd (%s)", r, ename(e));
    delayed_join(&d, "MSG_WAITALL first");
    delayed_join(&d2, "MSG_WAITALL second");

    /* A zero-length read or write returns 0 at once (libc does not wait). */
    delayed_write(&d, sv[1], 300 * MS, "zz");
    t0 = now_us();
    errno = 0;
    r = read(sv[0], buf, 0);
    e = errno;
    EXPECT(r == 0, "read of 0 bytes on an empty blocking socket: want 0, got %zd (%s)", r, ename(e));
    expect_quick("read of 0 bytes on an empty blocking socket", t0);
    t0 = now_us();
    r = write(sv[0], buf, 0);
    EXPECT(r == 0, "write of 0 bytes: want 0, got %zd (%s)", r, ename(errno));
    expect_quick("write of 0 bytes", t0);
    delayed_join(&d, "zero-length read");
    drain(sv[0]);

    /* A datagram socketpair: a blocking recv gets the whole datagram. */
    int dg[2];
    socketpair_ok(dg, SOCK_DGRAM);
    expect_view("SOCK_DGRAM socketpair", dg[0], 0);
    delayed_write(&d, dg[1], 50 * MS, "datagram");
    n0 = tk.n;
    t0 = now_us();
    errno = 0;
    r = recv(dg[0], buf, sizeof buf, 0);
    e = errno;
    expect_waited("blocking recv on a SOCK_DGRAM socketpair", t0, n0, &tk, 40 * MS);
    EXPECT(r == 8 && memcmp(buf, "datagram", 8) == 0, "datagram recv: want 8, got %zd (%s)", r,
           ename(e));
    delayed_join(&d, "datagram");
    close(dg[0]);
    close(dg[1]);

    /* A blocked read returns 0 when a peer photon thread closes the peer. */
    delayed_close(&d, sv[1], 50 * MS);
    n0 = tk.n;
    t0 = now_us();
    errno = 0;
    r = read(sv[0], buf, sizeof buf);
    e = errno;
    expect_waited("blocking read until the peer closes", t0, n0, &tk, 40 * MS);
    EXPECT(r == 0, "read after the peer closed: want 0 (EOF), got %zd (%s)", r, ename(e));
    delayed_join(&d, "close of the peer");

    ticker_stop(&tk);
    close(sv[0]);
}

/* ---- 2: O_NONBLOCK set by the program ---------------------------------- */

static void g_user_nonblock(void) {
    struct ticker tk;
    ticker_start(&tk);
    int sv[2];
    int one = 1, zero = 0;

    /* fcntl(F_SETFL, O_NONBLOCK), then cleared again with fcntl. */
    socketpair_ok(sv, SOCK_STREAM);
    int fl = fcntl(sv[0], F_GETFL);
    CHECK(fl >= 0, "F_GETFL: %s", strerror(errno));
    EXPECT(fcntl(sv[0], F_SETFL, fl | O_NONBLOCK) == 0, "F_SETFL O_NONBLOCK: %s", strerror(errno));
    expect_view("after fcntl(F_SETFL, O_NONBLOCK)", sv[0], 1);
    expect_eagain_now("fcntl O_NONBLOCK, read", sv[0]);
    char b[8];
    EXPECT_ERR(recv(sv[0], b, sizeof b, 0), EAGAIN);
    EXPECT(fcntl(sv[0], F_SETFL, fl & ~O_NONBLOCK) == 0, "F_SETFL clear: %s", strerror(errno));
    expect_view("after fcntl(F_SETFL) cleared O_NONBLOCK", sv[0], 0);
    expect_blocking_read("after fcntl cleared O_NONBLOCK", sv[0], sv[1], &tk);
    close(sv[0]);
    close(sv[1]);

    /* SOCK_NONBLOCK at creation, cleared with ioctl(FIONBIO, 0). */
    socketpair_ok(sv, SOCK_STREAM | SOCK_NONBLOCK);
    expect_view("socketpair(SOCK_NONBLOCK) end 0", sv[0], 1);
    expect_view("socketpair(SOCK_NONBLOCK) end 1", sv[1], 1);
    expect_eagain_now("socketpair(SOCK_NONBLOCK), read", sv[0]);
    EXPECT(ioctl(sv[0], FIONBIO, &zero) == 0, "ioctl FIONBIO 0: %s", strerror(errno));
    expect_view("after ioctl(FIONBIO, 0)", sv[0], 0);
    expect_blocking_read("after ioctl(FIONBIO, 0)", sv[0], sv[1], &tk);
    EXPECT(ioctl(sv[0], FIONBIO, &one) == 0, "ioctl FIONBIO 1: %s", strerror(errno));
    expect_view("after ioctl(FIONBIO, 1) again", sv[0], 1);
    expect_eagain_now("ioctl(FIONBIO, 1) again, read", sv[0]);
    close(sv[0]);
    close(sv[1]);

    /* ioctl(FIONBIO, 1) on a blocking fd, cleared with fcntl. */
    socketpair_ok(sv, SOCK_STREAM);
    EXPECT(ioctl(sv[0], FIONBIO, &one) == 0, "ioctl FIONBIO 1: %s", strerror(errno));
    expect_view("after ioctl(FIONBIO, 1)", sv[0], 1);
    expect_eagain_now("ioctl(FIONBIO, 1), read", sv[0]);
    fl = fcntl(sv[0], F_GETFL);
    EXPECT(fcntl(sv[0], F_SETFL, fl & ~O_NONBLOCK) == 0, "F_SETFL clear: %s", strerror(errno));
    expect_view("FIONBIO 1 then fcntl clear", sv[0], 0);
    expect_blocking_read("FIONBIO 1 then fcntl clear", sv[0], sv[1], &tk);
    close(sv[0]);
    close(sv[1]);

    /* dup of a non-blocking fd is non-blocking; dup of a blocking one blocks. */
    socketpair_ok(sv, SOCK_STREAM);
    int d0 = dup(sv[0]);
    CHECK(d0 >= 0, "dup: %s", strerror(errno));
    expect_view("dup of a blocking fd", d0, 0);
    expect_blocking_read("dup of a blocking fd", d0, sv[1], &tk);
    close(d0);
    fl = fcntl(sv[0], F_GETFL);
    EXPECT(fcntl(sv[0], F_SETFL, fl | O_NONBLOCK) == 0, "F_SETFL: %s", strerror(errno));
    int d1 = dup(sv[0]);
    CHECK(d1 >= 0, "dup: %s", strerror(errno));
    expect_view("dup of an O_NONBLOCK fd", d1, 1);
    expect_eagain_now("dup of an O_NONBLOCK fd, read", d1);
    int d2 = fcntl(sv[0], F_DUPFD_CLOEXEC, 0);
    CHECK(d2 >= 0, "F_DUPFD_CLOEXEC: %s", strerror(errno));
    expect_view("fcntl(F_DUPFD_CLOEXEC) of an O_NONBLOCK fd", d2, 1);
    expect_eagain_now("F_DUPFD_CLOEXEC of an O_NONBLOCK fd, read", d2);

    /* O_NONBLOCK belongs to the open file description, which duplicates
     * share: clearing it on the original clears it on the dups. */
    EXPECT(fcntl(sv[0], F_SETFL, fl & ~O_NONBLOCK) == 0, "F_SETFL: %s", strerror(errno));
    expect_view("dup after O_NONBLOCK was cleared on the original fd (shared open file description)", d1, 0);
    expect_blocking_read("read on a dup after O_NONBLOCK was cleared on the original fd", d1, sv[1], &tk);
    drain(sv[0]);
    /* ... and setting it on a dup sets it on the original. */
    fl = fcntl(d2, F_GETFL);
    EXPECT(fcntl(d2, F_SETFL, fl | O_NONBLOCK) == 0, "F_SETFL: %s", strerror(errno));
    expect_view("original fd after O_NONBLOCK was set on its dup (shared open file description)", sv[0], 1);
    expect_eagain_guarded("read on the original fd after O_NONBLOCK was set on its dup", sv[0], sv[1]);
    close(d1);
    close(d2);
    close(sv[0]);
    close(sv[1]);
    ticker_stop(&tk);
}

/* ---- 3: SO_RCVTIMEO / SO_SNDTIMEO -------------------------------------- */

static void set_timeo(int fd, int opt, long us) {
    struct timeval tv = {us / 1000000, us % 1000000};
    CHECK_OK(setsockopt(fd, SOL_SOCKET, opt, &tv, sizeof tv));
}

static void expect_timed_out(const char *what, ssize_t r, int e, uint64_t t0,
                             long n0, const struct ticker *tk) {
    EXPECT(r == -1 && e == EAGAIN, "%s: want -1/EAGAIN after SO_RCVTIMEO, got %zd (%s)",
           what, r, ename(e));
    expect_waited(what, t0, n0, tk, 90 * MS);
}

static void g_timeouts(void) {
    struct ticker tk;
    ticker_start(&tk);
    int sv[2];
    socketpair_ok(sv, SOCK_STREAM);
    set_timeo(sv[0], SO_RCVTIMEO, 100000);
    struct timeval got = {0, 0};
    socklen_t gl = sizeof got;
    EXPECT(getsockopt(sv[0], SOL_SOCKET, SO_RCVTIMEO, &got, &gl) == 0 && got.tv_sec == 0 &&
               got.tv_usec >= 96000 && got.tv_usec <= 104000,
           "getsockopt(SO_RCVTIMEO) gives %ld.%06ld", (long)got.tv_sec, (long)got.tv_usec);

    char buf[64];
    long n0 = tk.n;
    uint64_t t0 = now_us();
    errno = 0;
    ssize_t r = read(sv[0], buf, sizeof buf);
    expect_timed_out("read with SO_RCVTIMEO 100 ms", r, errno, t0, n0, &tk);

    n0 = tk.n;
    t0 = now_us();
    errno = 0;
    r = recv(sv[0], buf, sizeof buf, 0);
    expect_timed_out("recv with SO_RCVTIMEO 100 ms", r, errno, t0, n0, &tk);

    n0 = tk.n;
    t0 = now_us();
    errno = 0;
    r = recvfrom(sv[0], buf, sizeof buf, 0, NULL, NULL);
    expect_timed_out("recvfrom with SO_RCVTIMEO 100 ms", r, errno, t0, n0, &tk);

    /* Data arriving before the timeout is returned when it arrives. */
    struct delayed d;
    delayed_write(&d, sv[1], 30 * MS, "soon");
    n0 = tk.n;
    t0 = now_us();
    errno = 0;
    r = read(sv[0], buf, sizeof buf);
    int e = errno;
    EXPECT(r == 4 && memcmp(buf, "soon", 4) == 0,
           "read with SO_RCVTIMEO 100 ms, data at 30 ms: got %zd (%s)", r, ename(e));
    expect_waited("read with SO_RCVTIMEO 100 ms, data at 30 ms", t0, n0, &tk, 20 * MS);
    EXPECT(since(t0) < 90 * MS, "read with SO_RCVTIMEO: data at 30 ms returned after %llu us",
           since(t0));
    delayed_join(&d, "SO_RCVTIMEO early data");

    /* SO_RCVTIMEO 0 again: no timeout, blocks until data. */
    set_timeo(sv[0], SO_RCVTIMEO, 0);
    struct delayed late;
    delayed_write(&late, sv[1], 200 * MS, "late");
    n0 = tk.n;
    t0 = now_us();
    r = read(sv[0], buf, sizeof buf);
    EXPECT(r == 4, "read after SO_RCVTIMEO was reset to 0: got %zd (%s)", r, ename(errno));
    expect_waited("read after SO_RCVTIMEO reset to 0 (data at 200 ms)", t0, n0, &tk, 190 * MS);
    delayed_join(&late, "SO_RCVTIMEO reset");
    close(sv[0]);
    close(sv[1]);

    /* SO_SNDTIMEO on a socket whose peer never reads. */
    socketpair_ok(sv, SOCK_STREAM);
    set_timeo(sv[0], SO_SNDTIMEO, 100000);
    size_t big = 8u << 20;
    char *data = calloc(1, big);
    CHECK(data != NULL, "calloc");
    n0 = tk.n;
    t0 = now_us();
    errno = 0;
    r = write(sv[0], data, big);
    e = errno;
    EXPECT((r > 0 && (size_t)r < big) || (r == -1 && e == EAGAIN),
           "8 MiB write with SO_SNDTIMEO 100 ms, peer not reading: want a partial count "
           "or -1/EAGAIN, got %zd (%s)", r, ename(e));
    expect_waited("8 MiB write with SO_SNDTIMEO 100 ms", t0, n0, &tk, 90 * MS);
    /* The buffer is full now: a further write times out with EAGAIN. */
    n0 = tk.n;
    t0 = now_us();
    errno = 0;
    r = write(sv[0], data, 65536);
    e = errno;
    EXPECT(r == -1 && e == EAGAIN,
           "write on a full socket with SO_SNDTIMEO 100 ms: want -1/EAGAIN, got %zd (%s)", r,
           ename(e));
    expect_waited("write on a full socket with SO_SNDTIMEO 100 ms", t0, n0, &tk, 90 * MS);
    n0 = tk.n;
    t0 = now_us();
    errno = 0;
    r = send(sv[0], data, 100, 0);
    e = errno;
    EXPECT(r == -1 && e == EAGAIN,
           "send on a full socket with SO_SNDTIMEO 100 ms: want -1/EAGAIN, got %zd (%s)", r,
           ename(e));
    expect_waited("send on a full socket with SO_SNDTIMEO 100 ms", t0, n0, &tk, 90 * MS);
    free(data);
    close(sv[0]);
    close(sv[1]);
    ticker_stop(&tk);
}

/* ---- 4: poll and ppoll -------------------------------------------------- */

static void g_poll(void) {
    struct ticker tk;
    ticker_start(&tk);
    int a[2], b[2];
    socketpair_ok(a, SOCK_STREAM);
    socketpair_ok(b, SOCK_STREAM);
    CHECK(write(a[1], "x", 1) == 1, "write: %s", strerror(errno));

    struct pollfd p[2] = {{a[0], POLLIN, 0}, {b[0], POLLIN, 0}};
    uint64_t t0 = now_us();
    int r = poll(p, 2, 1000);
    expect_quick("poll with one fd ready", t0);
    EXPECT(r == 1 && p[0].revents == POLLIN && p[1].revents == 0,
           "poll with data on the first fd: want 1, POLLIN/0, got %d, 0x%x/0x%x (%s)", r,
           p[0].revents, p[1].revents, ename(errno));
    char c;
    CHECK(read(a[0], &c, 1) == 1, "read: %s", strerror(errno));

    p[0].revents = p[1].revents = 0x7f;
    t0 = now_us();
    r = poll(p, 2, 0);
    expect_quick("poll timeout 0", t0);
    EXPECT(r == 0 && p[0].revents == 0 && p[1].revents == 0,
           "poll timeout 0, nothing ready: want 0 with revents cleared, got %d, 0x%x/0x%x", r,
           p[0].revents, p[1].revents);

    long n0 = tk.n;
    t0 = now_us();
    r = poll(p, 2, 50);
    EXPECT(r == 0 && p[0].revents == 0 && p[1].revents == 0,
           "poll timeout 50 ms, nothing ready: want 0, got %d, 0x%x/0x%x (%s)", r, p[0].revents,
           p[1].revents, ename(errno));
    expect_waited("poll timeout 50 ms on two fds", t0, n0, &tk, 45 * MS);

    n0 = tk.n;
    t0 = now_us();
    r = poll(&p[1], 1, 50);
    EXPECT(r == 0, "poll timeout 50 ms on one fd: want 0, got %d (%s)", r, ename(errno));
    expect_waited("poll timeout 50 ms on one fd", t0, n0, &tk, 45 * MS);

    /* No fds at all (negative ones are ignored): a sleep. */
    struct pollfd none = {-1, POLLIN, 0};
    n0 = tk.n;
    t0 = now_us();
    r = poll(&none, 1, 50);
    EXPECT(r == 0 && none.revents == 0, "poll on fd -1, 50 ms: want 0, got %d (%s)", r,
           ename(errno));
    expect_waited("poll on fd -1 only, 50 ms", t0, n0, &tk, 45 * MS);

    /* A closed fd: POLLNVAL at once, also beside a valid fd. */
    int cfd = closed_fd(900);
    struct pollfd q[2] = {{cfd, POLLIN, 0}, {b[0], POLLIN, 0}};
    t0 = now_us();
    r = poll(q, 1, 1000);
    expect_quick("poll on a closed fd", t0);
    EXPECT(r == 1 && q[0].revents == POLLNVAL,
           "poll on a closed fd: want 1 with POLLNVAL, got %d, 0x%x (%s)", r, q[0].revents,
           ename(errno));
    t0 = now_us();
    r = poll(q, 2, 1000);
    expect_quick("poll on a closed fd and an idle one", t0);
    EXPECT(r == 1 && q[0].revents == POLLNVAL && q[1].revents == 0,
           "poll on a closed fd and an idle fd: want 1, POLLNVAL/0, got %d, 0x%x/0x%x", r,
           q[0].revents, q[1].revents);

    /* Timeout -1 woken by a delayed writer, on one fd and on two. */
    struct delayed d;
    delayed_write(&d, b[1], 50 * MS, "y");
    n0 = tk.n;
    t0 = now_us();
    r = poll(&p[1], 1, -1);
    EXPECT(r == 1 && p[1].revents == POLLIN, "poll -1 woken by a writer: got %d, 0x%x (%s)", r,
           p[1].revents, ename(errno));
    expect_waited("poll timeout -1 on one fd, data at 50 ms", t0, n0, &tk, 40 * MS);
    delayed_join(&d, "poll -1");
    CHECK(read(b[0], &c, 1) == 1, "read: %s", strerror(errno));

    delayed_write(&d, b[1], 50 * MS, "z");
    n0 = tk.n;
    t0 = now_us();
    r = poll(p, 2, -1);
    EXPECT(r == 1 && p[0].revents == 0 && p[1].revents == POLLIN,
           "poll -1 on two fds woken by a writer on the second: got %d, 0x%x/0x%x (%s)", r,
           p[0].revents, p[1].revents, ename(errno));
    expect_waited("poll timeout -1 on two fds, data at 50 ms", t0, n0, &tk, 40 * MS);
    delayed_join(&d, "poll -1 two fds");
    CHECK(read(b[0], &c, 1) == 1, "read: %s", strerror(errno));

    /* The same fd twice in the set: both entries report it. */
    struct pollfd twice[3] = {{b[0], POLLIN, 0}, {a[0], POLLIN, 0}, {b[0], POLLIN, 0}};
    delayed_write(&d, b[1], 50 * MS, "t");
    n0 = tk.n;
    t0 = now_us();
    r = poll(twice, 3, 1000);
    EXPECT(r == 2 && twice[0].revents == POLLIN && twice[1].revents == 0 &&
               twice[2].revents == POLLIN,
           "poll with one fd twice, woken by a writer: want 2, POLLIN/0/POLLIN, got %d, "
           "0x%x/0x%x/0x%x (%s)",
           r, twice[0].revents, twice[1].revents, twice[2].revents, ename(errno));
    expect_waited("poll with one fd twice, data at 50 ms", t0, n0, &tk, 40 * MS);
    delayed_join(&d, "poll twice");
    CHECK(read(b[0], &c, 1) == 1, "read: %s", strerror(errno));

    /* POLLOUT on a writable socket: at once. */
    struct pollfd w = {a[0], POLLOUT, 0};
    t0 = now_us();
    r = poll(&w, 1, -1);
    expect_quick("poll POLLOUT", t0);
    EXPECT(r == 1 && w.revents == POLLOUT, "poll POLLOUT: got %d, 0x%x", r, w.revents);

    /* ppoll: a timespec timeout, and a wake-up before it. */
    struct timespec ts50 = {0, 50000000}, ts1 = {1, 0};
    n0 = tk.n;
    t0 = now_us();
    r = ppoll(p, 2, &ts50, NULL);
    EXPECT(r == 0 && p[0].revents == 0 && p[1].revents == 0,
           "ppoll 50 ms, nothing ready: want 0, got %d (%s)", r, ename(errno));
    expect_waited("ppoll 50 ms, nothing ready", t0, n0, &tk, 45 * MS);
    delayed_write(&d, a[1], 50 * MS, "w");
    n0 = tk.n;
    t0 = now_us();
    r = ppoll(p, 2, &ts1, NULL);
    EXPECT(r == 1 && p[0].revents == POLLIN && p[1].revents == 0,
           "ppoll 1 s woken by a writer at 50 ms: got %d, 0x%x/0x%x (%s)", r, p[0].revents,
           p[1].revents, ename(errno));
    expect_waited("ppoll 1 s, data at 50 ms", t0, n0, &tk, 40 * MS);
    delayed_join(&d, "ppoll");
    struct timespec bad = {0, 1000000000};
    EXPECT_ERR(ppoll(p, 2, &bad, NULL), EINVAL);

    /* POLLHUP when the peer is gone. */
    close(b[1]);
    struct pollfd h = {b[0], POLLIN, 0};
    r = poll(&h, 1, 1000);
    EXPECT(r == 1 && (h.revents & POLLHUP), "poll after the peer closed: got %d, 0x%x", r,
           h.revents);

    close(a[0]);
    close(a[1]);
    close(b[0]);
    ticker_stop(&tk);
}

/* ---- 5: select and pselect --------------------------------------------- */

static void g_select(void) {
    struct ticker tk;
    ticker_start(&tk);
    int a[2], b[2];
    socketpair_ok(a, SOCK_STREAM);
    socketpair_ok(b, SOCK_STREAM);
    int nfds = (a[0] > b[0] ? a[0] : b[0]) + 1;
    CHECK(write(a[1], "x", 1) == 1, "write: %s", strerror(errno));
    fd_set rs;

    FD_ZERO(&rs);
    FD_SET(a[0], &rs);
    FD_SET(b[0], &rs);
    struct timeval tv = {1, 0};
    uint64_t t0 = now_us();
    int r = select(nfds, &rs, NULL, NULL, &tv);
    expect_quick("select with one fd ready", t0);
    EXPECT(r == 1 && FD_ISSET(a[0], &rs) && !FD_ISSET(b[0], &rs),
           "select, data on one fd: want 1 with only its bit, got %d (%d/%d) (%s)", r,
           FD_ISSET(a[0], &rs), FD_ISSET(b[0], &rs), ename(errno));

    FD_ZERO(&rs);
    FD_SET(a[0], &rs);
    FD_SET(b[0], &rs);
    struct timespec ts1 = {1, 0};
    t0 = now_us();
    r = pselect(nfds, &rs, NULL, NULL, &ts1, NULL);
    expect_quick("pselect with one fd ready", t0);
    EXPECT(r == 1 && FD_ISSET(a[0], &rs) && !FD_ISSET(b[0], &rs),
           "pselect, data on one fd: want 1 with only its bit, got %d (%d/%d) (%s)", r,
           FD_ISSET(a[0], &rs), FD_ISSET(b[0], &rs), ename(errno));
    char c;
    CHECK(read(a[0], &c, 1) == 1, "read: %s", strerror(errno));

    FD_ZERO(&rs);
    FD_SET(a[0], &rs);
    FD_SET(b[0], &rs);
    tv = (struct timeval){0, 50000};
    long n0 = tk.n;
    t0 = now_us();
    r = select(nfds, &rs, NULL, NULL, &tv);
    EXPECT(r == 0 && !FD_ISSET(a[0], &rs) && !FD_ISSET(b[0], &rs),
           "select 50 ms, nothing ready: want 0 with the set cleared, got %d (%d/%d) (%s)", r,
           FD_ISSET(a[0], &rs), FD_ISSET(b[0], &rs), ename(errno));
    EXPECT(tv.tv_sec == 0 && tv.tv_usec == 0,
           "select 50 ms timed out: Linux leaves 0 in the timeval, got %ld.%06ld",
           (long)tv.tv_sec, (long)tv.tv_usec);
    expect_waited("select 50 ms, nothing ready", t0, n0, &tk, 45 * MS);

    FD_ZERO(&rs);
    FD_SET(a[0], &rs);
    FD_SET(b[0], &rs);
    struct timespec ts50 = {0, 50000000};
    n0 = tk.n;
    t0 = now_us();
    r = pselect(nfds, &rs, NULL, NULL, &ts50, NULL);
    EXPECT(r == 0 && !FD_ISSET(a[0], &rs) && !FD_ISSET(b[0], &rs),
           "pselect 50 ms, nothing ready: want 0 with the set cleared, got %d (%s)", r,
           ename(errno));
    expect_waited("pselect 50 ms, nothing ready", t0, n0, &tk, 45 * MS);

    /* NULL timeout, woken by a delayed writer. */
    struct delayed d;
    delayed_write(&d, b[1], 50 * MS, "y");
    FD_ZERO(&rs);
    FD_SET(a[0], &rs);
    FD_SET(b[0], &rs);
    n0 = tk.n;
    t0 = now_us();
    r = select(nfds, &rs, NULL, NULL, NULL);
    EXPECT(r == 1 && !FD_ISSET(a[0], &rs) && FD_ISSET(b[0], &rs),
           "select NULL timeout woken by a writer on the second fd: got %d (%d/%d) (%s)", r,
           FD_ISSET(a[0], &rs), FD_ISSET(b[0], &rs), ename(errno));
    expect_waited("select NULL timeout, data at 50 ms", t0, n0, &tk, 40 * MS);
    delayed_join(&d, "select NULL");
    CHECK(read(b[0], &c, 1) == 1, "read: %s", strerror(errno));

    delayed_write(&d, a[1], 50 * MS, "y");
    FD_ZERO(&rs);
    FD_SET(a[0], &rs);
    n0 = tk.n;
    t0 = now_us();
    r = pselect(nfds, &rs, NULL, NULL, NULL, NULL);
    EXPECT(r == 1 && FD_ISSET(a[0], &rs), "pselect NULL timeout woken by a writer: got %d (%s)",
           r, ename(errno));
    expect_waited("pselect NULL timeout, data at 50 ms", t0, n0, &tk, 40 * MS);
    delayed_join(&d, "pselect NULL");
    CHECK(read(a[0], &c, 1) == 1, "read: %s", strerror(errno));

    /* Writable set: at once. */
    fd_set ws;
    FD_ZERO(&ws);
    FD_SET(a[0], &ws);
    tv = (struct timeval){1, 0};
    t0 = now_us();
    r = select(nfds, NULL, &ws, NULL, &tv);
    expect_quick("select for writing", t0);
    EXPECT(r == 1 && FD_ISSET(a[0], &ws), "select for writing: got %d (%s)", r, ename(errno));

    /* A closed fd in the set: EBADF; a bad timeout: EINVAL. */
    int cfd = closed_fd(901);
    FD_ZERO(&rs);
    FD_SET(cfd, &rs);
    tv = (struct timeval){1, 0};
    t0 = now_us();
    EXPECT_ERR(select(cfd + 1, &rs, NULL, NULL, &tv), EBADF);
    expect_quick("select with a closed fd", t0);
    FD_ZERO(&rs);
    FD_SET(a[0], &rs);
    tv = (struct timeval){0, -1};
    EXPECT_ERR(select(nfds, &rs, NULL, NULL, &tv), EINVAL);
    FD_ZERO(&rs);
    FD_SET(a[0], &rs);
    struct timespec badts = {0, 1000000000};
    EXPECT_ERR(pselect(nfds, &rs, NULL, NULL, &badts, NULL), EINVAL);

    close(a[0]);
    close(a[1]);
    close(b[0]);
    close(b[1]);
    ticker_stop(&tk);
}

/* ---- 6: epoll ------------------------------------------------------------ */

static void g_epoll(void) {
    struct ticker tk;
    ticker_start(&tk);
    int sv[2];
    socketpair_ok(sv, SOCK_STREAM);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    CHECK(ep >= 0, "epoll_create1: %s", strerror(errno));
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = 0x1234abcdULL};
    CHECK_OK(epoll_ctl(ep, EPOLL_CTL_ADD, sv[0], &ev));

    struct delayed d;
    delayed_write(&d, sv[1], 50 * MS, "epoll");
    struct epoll_event out[4];
    memset(out, 0, sizeof out);
    long n0 = tk.n;
    uint64_t t0 = now_us();
    int r = epoll_wait(ep, out, 4, 1000);
    EXPECT(r == 1 && out[0].data.u64 == 0x1234abcdULL && (out[0].events & EPOLLIN),
           "epoll_wait 1 s woken by a writer: want 1 event EPOLLIN with our data, got %d "
           "(events 0x%x data 0x%llx) (%s)",
           r, out[0].events, (unsigned long long)out[0].data.u64, ename(errno));
    expect_waited("epoll_wait 1 s, data at 50 ms", t0, n0, &tk, 40 * MS);
    delayed_join(&d, "epoll_wait");
    char buf[16];
    ssize_t n = read(sv[0], buf, sizeof buf);
    EXPECT(n == 5 && memcmp(buf, "epoll", 5) == 0, "read after epoll_wait: %zd", n);

    n0 = tk.n;
    t0 = now_us();
    r = epoll_wait(ep, out, 4, 30);
    EXPECT(r == 0, "epoll_wait 30 ms, nothing ready: want 0, got %d (%s)", r, ename(errno));
    expect_waited("epoll_wait 30 ms, nothing ready", t0, n0, &tk, 25 * MS);

    t0 = now_us();
    r = epoll_wait(ep, out, 4, 0);
    EXPECT(r == 0, "epoll_wait 0: want 0, got %d", r);
    expect_quick("epoll_wait 0", t0);

    delayed_write(&d, sv[1], 50 * MS, "x");
    n0 = tk.n;
    t0 = now_us();
    r = epoll_pwait(ep, out, 4, -1, NULL);
    EXPECT(r == 1 && (out[0].events & EPOLLIN), "epoll_pwait -1 woken by a writer: got %d (%s)",
           r, ename(errno));
    expect_waited("epoll_pwait -1, data at 50 ms", t0, n0, &tk, 40 * MS);
    delayed_join(&d, "epoll_pwait");

    /* Level-triggered: the unread byte is reported again at once. */
    t0 = now_us();
    r = epoll_wait(ep, out, 4, 1000);
    EXPECT(r == 1, "epoll_wait with an unread byte: got %d", r);
    expect_quick("epoll_wait with an unread byte", t0);

    EXPECT_ERR(epoll_wait(sv[0], out, 4, 100), EINVAL);
    EXPECT_ERR(epoll_wait(ep, out, 0, 100), EINVAL);
    close(ep);
    close(sv[0]);
    close(sv[1]);
    ticker_stop(&tk);
}

/* ---- 7: closed and invalid fds ----------------------------------------- */

static volatile sig_atomic_t sigpipes;

static void on_sigpipe(int sig) {
    (void)sig;
    sigpipes++;
}

static void g_bad_fds(void) {
    char b[8] = "abc";
    EXPECT_ERR(read(-1, b, sizeof b), EBADF);
    close(9999);
    EXPECT_ERR(write(9999, b, 3), EBADF);
    int c = closed_fd(902);
    EXPECT_ERR(read(c, b, sizeof b), EBADF);
    EXPECT_ERR(write(c, b, 3), EBADF);
    EXPECT_ERR(recv(c, b, sizeof b, 0), EBADF);
    EXPECT_ERR(send(c, b, 3, 0), EBADF);
    EXPECT_ERR(close(c), EBADF);
    EXPECT_ERR(fcntl(c, F_GETFL), EBADF);
    EXPECT_ERR(fcntl(c, F_SETFL, O_NONBLOCK), EBADF);
    int one = 1;
    EXPECT_ERR(ioctl(c, FIONBIO, &one), EBADF);
    EXPECT_ERR(accept(c, NULL, NULL), EBADF);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons(9),
                              .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    EXPECT_ERR(connect(c, (struct sockaddr *)&sin, sizeof sin), EBADF);
    EXPECT_ERR(dup(c), EBADF);
    struct epoll_event ev1;
    EXPECT_ERR(epoll_wait(c, &ev1, 1, 10), EBADF);

    /* An fd that was used (learnt by the shim), then closed. */
    int sv[2];
    socketpair_ok(sv, SOCK_STREAM);
    CHECK(write(sv[1], "q", 1) == 1, "write: %s", strerror(errno));
    CHECK(read(sv[0], b, sizeof b) == 1, "read: %s", strerror(errno));
    int used = sv[0];
    CHECK_OK(close(sv[0]));
    EXPECT_ERR(read(used, b, sizeof b), EBADF);
    EXPECT_ERR(recv(used, b, sizeof b, 0), EBADF);
    EXPECT_ERR(close(used), EBADF);
    close(sv[1]);

    /* Not a socket: ENOTSOCK; a socket's read with a NULL buffer: EFAULT. */
    int p[2];
    CHECK_OK(pipe(p));
    EXPECT_ERR(recv(p[0], b, sizeof b, MSG_DONTWAIT), ENOTSOCK);
    EXPECT_ERR(recv(p[0], b, sizeof b, 0), ENOTSOCK);
    EXPECT_ERR(accept(p[0], NULL, NULL), ENOTSOCK);

    /* EPIPE with SIGPIPE (main installed a counting handler), as libc's
     * write and send give on a stream whose reader is gone; none with
     * MSG_NOSIGNAL. */
    close(p[0]);
    sigpipes = 0;
    EXPECT_ERR(write(p[1], "x", 1), EPIPE);
    EXPECT(sigpipes == 1, "write to a pipe without a reader: %d SIGPIPE, libc raises 1",
           (int)sigpipes);
    close(p[1]);
    socketpair_ok(sv, SOCK_STREAM);
    close(sv[1]);
    sigpipes = 0;
    EXPECT_ERR(write(sv[0], "x", 1), EPIPE);
    EXPECT(sigpipes == 1, "write to a socket whose peer closed: %d SIGPIPE, libc raises 1",
           (int)sigpipes);
    sigpipes = 0;
    EXPECT_ERR(send(sv[0], "x", 1, 0), EPIPE);
    EXPECT(sigpipes == 1, "send to a socket whose peer closed: %d SIGPIPE, libc raises 1",
           (int)sigpipes);
    sigpipes = 0;
    EXPECT_ERR(send(sv[0], "x", 1, MSG_NOSIGNAL), EPIPE);
    EXPECT(sigpipes == 0, "send(MSG_NOSIGNAL) to a socket whose peer closed: %d SIGPIPE",
           (int)sigpipes);
    close(sv[0]);
}

/* ---- 8: connect and accept ---------------------------------------------- */

struct acceptor {
    int lfd;
    int use4, flags;
    int fd, err;
    photon_thread *th;
};

/* use4: 0 accept(fd, NULL, NULL), 1 accept4(fd, NULL, NULL, flags),
 * 2 accept(fd, NULL, &len). */
static void *acceptor_main(void *arg) {
    struct acceptor *a = arg;
    socklen_t len = 1234;
    errno = 0;
    switch (a->use4) {
    case 0: a->fd = accept(a->lfd, NULL, NULL); break;
    case 1: a->fd = accept4(a->lfd, NULL, NULL, a->flags); break;
    default: a->fd = accept(a->lfd, NULL, &len); break;
    }
    a->err = errno;
    return NULL;
}

static int tcp_listener(struct sockaddr_in *sin, int do_listen) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(fd >= 0, "socket: %s", strerror(errno));
    memset(sin, 0, sizeof *sin);
    sin->sin_family = AF_INET;
    sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CHECK_OK(bind(fd, (struct sockaddr *)sin, sizeof *sin));
    if (do_listen)
        CHECK_OK(listen(fd, 16));
    socklen_t len = sizeof *sin;
    CHECK_OK(getsockname(fd, (struct sockaddr *)sin, &len));
    return fd;
}

/* A blocking accept (in another photon thread) of a connect made 50 ms
 * later; returns the accepted fd, and the client's in *client. */
static int accept_one(const char *what, int lfd, const struct sockaddr_in *sin, int use4,
                      int flags, struct ticker *tk, int *client) {
    struct acceptor a = {.lfd = lfd, .use4 = use4, .flags = flags};
    a.th = spawn(acceptor_main, &a);
    long n0 = tk->n;
    uint64_t t0 = now_us();
    photon_thread_usleep(50 * MS); /* the acceptor must have let us run */
    EXPECT(since(t0) < 500 * MS, "%s: the blocked accept held the vcpu for %llu us", what,
           since(t0));
    int c = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(c >= 0, "socket: %s", strerror(errno));
    expect_view("socket() in a photon thread", c, 0);
    errno = 0;
    int r = connect(c, (const struct sockaddr *)sin, sizeof *sin);
    EXPECT(r == 0, "%s: connect to a listener: want 0, got %d (%s)", what, r, ename(errno));
    join(a.th);
    EXPECT(a.fd >= 0, "%s: accept gave %d (%s)", what, a.fd, ename(a.err));
    if (a.fd < 0) {
        /* Take the pending connection, so the next accept gets its own. */
        int x = accept(lfd, NULL, NULL);
        if (x >= 0)
            close(x);
    }
    EXPECT(tk->n - n0 >= MIN_TICKS, "%s: the ticker did not run during the accept", what);
    if (a.fd >= 0) {
        /* The connection works both ways. */
        char b[4];
        EXPECT(write(c, "ab", 2) == 2, "%s: write on the client", what);
        if (flags & SOCK_NONBLOCK) {
            struct pollfd p = {a.fd, POLLIN, 0};
            EXPECT(poll(&p, 1, 1000) == 1, "%s: poll on the accepted fd", what);
        }
        EXPECT(read(a.fd, b, sizeof b) == 2, "%s: read on the accepted fd: %s", what,
               ename(errno));
        EXPECT(write(a.fd, "cd", 2) == 2, "%s: write on the accepted fd", what);
        EXPECT(read(c, b, sizeof b) == 2, "%s: read on the client", what);
    }
    *client = c;
    return a.fd;
}

static void g_connect_accept(void) {
    struct ticker tk;
    ticker_start(&tk);
    struct sockaddr_in sin;
    int lfd = tcp_listener(&sin, 1);

    int client;
    int fd = accept_one("accept()", lfd, &sin, 0, 0, &tk, &client);
    if (fd >= 0) {
        expect_view("accept()ed fd", fd, 0);
        int fdfl = fcntl(fd, F_GETFD);
        EXPECT(fdfl == 0, "accept()ed fd: F_GETFD gives 0x%x, want no FD_CLOEXEC", fdfl);
        /* A blocking read on it waits (as a photon wait) for the client. */
        expect_blocking_read("accept()ed fd", fd, client, &tk);
        close(fd);
    }
    /* The client's blocking connect succeeded: connecting again is EISCONN
     * (libc's blocking connect leaves the socket SS_CONNECTED). */
    EXPECT_ERR(connect(client, (const struct sockaddr *)&sin, sizeof sin), EISCONN);
    close(client);

    fd = accept_one("accept4(SOCK_NONBLOCK)", lfd, &sin, 1, SOCK_NONBLOCK, &tk, &client);
    if (fd >= 0) {
        expect_view("accept4(SOCK_NONBLOCK)ed fd", fd, 1);
        expect_eagain_now("accept4(SOCK_NONBLOCK)ed fd, read", fd);
        close(fd);
    }
    close(client);

    fd = accept_one("accept4(SOCK_CLOEXEC)", lfd, &sin, 1, SOCK_CLOEXEC, &tk, &client);
    if (fd >= 0) {
        expect_view("accept4(SOCK_CLOEXEC)ed fd", fd, 0);
        int fdfl = fcntl(fd, F_GETFD);
        EXPECT(fdfl == FD_CLOEXEC, "accept4(SOCK_CLOEXEC)ed fd: F_GETFD gives 0x%x", fdfl);
        close(fd);
    }
    close(client);

    /* accept with a NULL address and a non-NULL length (the kernel ignores
     * the length then). */
    fd = accept_one("accept(fd, NULL, &len)", lfd, &sin, 2, 0, &tk, &client);
    if (fd >= 0)
        close(fd);
    close(client);

    /* SO_RCVTIMEO on the listener: accept gives EAGAIN after it. */
    set_timeo(lfd, SO_RCVTIMEO, 100000);
    long n0 = tk.n;
    uint64_t t1 = now_us();
    errno = 0;
    int ar = accept(lfd, NULL, NULL);
    int ae = errno;
    EXPECT(ar == -1 && ae == EAGAIN, "accept with SO_RCVTIMEO 100 ms, nobody connecting: want "
           "-1/EAGAIN, got %d (%s)", ar, ename(ae));
    expect_waited("accept with SO_RCVTIMEO 100 ms", t1, n0, &tk, 90 * MS);
    if (ar >= 0)
        close(ar);
    set_timeo(lfd, SO_RCVTIMEO, 0);


    int one = 1;
    CHECK_OK(ioctl(lfd, FIONBIO, &one));
    uint64_t t0 = now_us();
    EXPECT_ERR(accept(lfd, NULL, NULL), EAGAIN);
    expect_quick("accept on a non-blocking listener", t0);
    int zero = 0;
    CHECK_OK(ioctl(lfd, FIONBIO, &zero));

    /* No listener on the port: ECONNREFUSED. */
    struct sockaddr_in dead;
    int bound = tcp_listener(&dead, 0); /* bound, not listening */
    int c = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(c >= 0, "socket: %s", strerror(errno));
    EXPECT_ERR(connect(c, (struct sockaddr *)&dead, sizeof dead), ECONNREFUSED);
    close(c);
    close(bound);

    /* A non-blocking socket's connect: 0 or EINPROGRESS, then writable. */
    c = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    CHECK(c >= 0, "socket: %s", strerror(errno));
    expect_view("socket(SOCK_NONBLOCK)", c, 1);
    errno = 0;
    int r = connect(c, (struct sockaddr *)&sin, sizeof sin);
    int e = errno;
    EXPECT(r == 0 || (r == -1 && e == EINPROGRESS),
           "non-blocking connect: want 0 or -1/EINPROGRESS, got %d (%s)", r, ename(e));
    struct pollfd p = {c, POLLOUT, 0};
    EXPECT(poll(&p, 1, 1000) == 1 && (p.revents & POLLOUT), "poll POLLOUT after connect: 0x%x",
           p.revents);
    int soerr = -1;
    socklen_t sl = sizeof soerr;
    EXPECT(getsockopt(c, SOL_SOCKET, SO_ERROR, &soerr, &sl) == 0 && soerr == 0,
           "SO_ERROR after a non-blocking connect: %d", soerr);
    fd = accept(lfd, NULL, NULL); /* pending: at once */
    EXPECT(fd >= 0, "accept of a pending connection: %s", ename(errno));
    if (fd >= 0)
        close(fd);
    close(c);
    close(lfd);
    ticker_stop(&tk);
}

/* ---- 9: pipes and whole writes ------------------------------------------ */

struct reader {
    int fd;
    size_t total, got;
    const unsigned char *want;
    int bad; /* the first wrong offset + 1 */
    int err;
    photon_thread *th;
};

static void *reader_main(void *arg) {
    struct reader *rd = arg;
    unsigned char *buf = malloc(65536);
    CHECK(buf != NULL, "malloc");
    while (rd->got < rd->total) {
        ssize_t r = read(rd->fd, buf, 65536);
        if (r <= 0) {
            rd->err = r < 0 ? errno : 0;
            break;
        }
        if (!rd->bad && memcmp(buf, rd->want + rd->got, (size_t)r) != 0)
            rd->bad = (int)rd->got + 1;
        rd->got += (size_t)r;
    }
    free(buf);
    return NULL;
}

/* how: 0 write, 1 writev (two iovecs), 2 send. */
static void whole_write(const char *what, int wfd, int rfd, int how) {
    size_t total = 1u << 20;
    unsigned char *data = malloc(total);
    CHECK(data != NULL, "malloc");
    for (size_t i = 0; i < total; i++)
        data[i] = (unsigned char)(i * 7 + i / 251);
    struct reader rd = {.fd = rfd, .total = total, .want = data};
    rd.th = spawn(reader_main, &rd);
    struct iovec iov[2] = {{data, 1000}, {data + 1000, total - 1000}};
    errno = 0;
    ssize_t r = how == 0 ? write(wfd, data, total)
                : how == 1 ? writev(wfd, iov, 2)
                           : send(wfd, data, total, 0);
    int e = errno;
    EXPECT(r == (ssize_t)total, "%s: a 1 MiB write on a blocking fd: want 1048576, got %zd (%s)",
           what, r, ename(e));
    join(rd.th);
    EXPECT(rd.got == total && !rd.bad, "%s: the reader got %zu of %zu bytes (%s), first wrong at %d",
           what, rd.got, total, ename(rd.err), rd.bad - 1);
    free(data);
}

static void g_pipes(void) {
    struct ticker tk;
    ticker_start(&tk);
    int p[2];
    CHECK_OK(pipe(p));
    expect_view("pipe() read end", p[0], 0);
    expect_view("pipe() write end", p[1], 0);
    expect_blocking_read("pipe() read end", p[0], p[1], &tk);
    expect_view("pipe() read end after a blocking read", p[0], 0);
    /* EOF when the write end is closed meanwhile. */
    struct delayed d;
    delayed_close(&d, p[1], 50 * MS);
    char b[8];
    long n0 = tk.n;
    uint64_t t0 = now_us();
    ssize_t r = read(p[0], b, sizeof b);
    EXPECT(r == 0, "pipe read after the write end closed: want 0, got %zd (%s)", r, ename(errno));
    expect_waited("pipe read until the write end closes", t0, n0, &tk, 40 * MS);
    delayed_join(&d, "pipe close");
    close(p[0]);

    int q[2];
    CHECK_OK(pipe2(q, O_NONBLOCK | O_CLOEXEC));
    expect_view("pipe2(O_NONBLOCK) read end", q[0], 1);
    expect_view("pipe2(O_NONBLOCK) write end", q[1], 1);
    expect_eagain_now("pipe2(O_NONBLOCK), read", q[0]);
    EXPECT(fcntl(q[0], F_GETFD) == FD_CLOEXEC, "pipe2(O_CLOEXEC): F_GETFD 0x%x",
           fcntl(q[0], F_GETFD));
    /* A full non-blocking pipe: a big write is partial, then EAGAIN. */
    size_t big = 1u << 20;
    char *data = calloc(1, big);
    CHECK(data != NULL, "calloc");
    t0 = now_us();
    r = write(q[1], data, big);
    EXPECT(r > 0 && (size_t)r < big, "1 MiB write to an O_NONBLOCK pipe: want a partial count, got %zd (%s)",
           r, ename(errno));
    EXPECT_ERR(write(q[1], data, 10), EAGAIN);
    expect_quick("writes to a full O_NONBLOCK pipe", t0);
    free(data);
    close(q[0]);
    close(q[1]);

    /* A FIFO opened with open() (a call the shim does not hook). */
    char fifo[] = "/tmp/photon-preload-fifo-XXXXXX";
    int tmpfd = mkstemp(fifo);
    CHECK(tmpfd >= 0, "mkstemp: %s", strerror(errno));
    close(tmpfd);
    unlink(fifo);
    CHECK_OK(mkfifo(fifo, 0600));
    int ff = open(fifo, O_RDWR);
    CHECK(ff >= 0, "open fifo: %s", strerror(errno));
    unlink(fifo);
    expect_view("FIFO from open()", ff, 0);
    expect_blocking_read("FIFO from open()", ff, ff, &tk);
    expect_view("FIFO from open() after a blocking read", ff, 0);
    close(ff);

    /* timerfd: a blocking read waits for the expiry. */
    int tfd = timerfd_create(CLOCK_MONOTONIC, 0);
    CHECK(tfd >= 0, "timerfd_create: %s", strerror(errno));
    struct itimerspec its = {{0, 0}, {0, 50000000}};
    CHECK_OK(timerfd_settime(tfd, 0, &its, NULL));
    uint64_t ticks = 0;
    n0 = tk.n;
    t0 = now_us();
    r = read(tfd, &ticks, sizeof ticks);
    EXPECT(r == 8 && ticks == 1, "blocking timerfd read: %zd, %llu expirations (%s)", r,
           (unsigned long long)ticks, ename(errno));
    expect_waited("blocking timerfd read (expiry at 50 ms)", t0, n0, &tk, 40 * MS);
    expect_view("timerfd after a blocking read", tfd, 0);
    close(tfd);

    /* eventfd: a blocking read woken by another photon thread's write. */
    int efd = eventfd(0, 0);
    CHECK(efd >= 0, "eventfd: %s", strerror(errno));
    uint64_t one = 1, val = 0;
    struct delayed ed = {.fd = efd, .delay_us = 50 * MS, .data = &one, .len = 8};
    ed.th = spawn(delayed_main, &ed);
    n0 = tk.n;
    t0 = now_us();
    r = read(efd, &val, sizeof val);
    EXPECT(r == 8 && val == 1, "blocking eventfd read: %zd, value %llu (%s)", r,
           (unsigned long long)val, ename(errno));
    expect_waited("blocking eventfd read (write at 50 ms)", t0, n0, &tk, 40 * MS);
    delayed_join(&ed, "eventfd");
    close(efd);

    /* A directory: read fails with EISDIR at once. */
    int dfd = open("/tmp", O_RDONLY | O_DIRECTORY);
    CHECK(dfd >= 0, "open /tmp: %s", strerror(errno));
    t0 = now_us();
    EXPECT_ERR(read(dfd, b, sizeof b), EISDIR);
    expect_quick("read on a directory", t0);
    close(dfd);

    int sv[2];
    socketpair_ok(sv, SOCK_STREAM);
    whole_write("socketpair, write", sv[0], sv[1], 0);
    whole_write("socketpair, writev", sv[0], sv[1], 1);
    whole_write("socketpair, send", sv[1], sv[0], 2);
    close(sv[0]);
    close(sv[1]);
    CHECK_OK(pipe(p));
    whole_write("pipe, write", p[1], p[0], 0);
    close(p[0]);
    close(p[1]);
    ticker_stop(&tk);
}

/* ---- 10: sleeps ---------------------------------------------------------- */

static void expect_slept(const char *what, int r, int want_r, uint64_t t0, long n0,
                         const struct ticker *tk, uint64_t us) {
    EXPECT(r == want_r, "%s: returned %d, want %d (%s)", what, r, want_r, ename(errno));
    unsigned long long took = since(t0);
    long ticks = tk->n - n0;
    EXPECT(took >= us - 1000 && took < us + 300 * MS, "%s: took %llu us, want about %llu", what,
           took, (unsigned long long)us);
    EXPECT(ticks >= MIN_TICKS,
           "%s: the ticker photon thread ran %ld times during the %llu us sleep: the sleep "
           "blocked the vcpu",
           what, ticks, took);
}

static void g_sleeps(void) {
    struct ticker tk;
    ticker_start(&tk);
    long n0 = tk.n;
    uint64_t t0 = now_us();
    int r = usleep(20000);
    expect_slept("usleep(20000)", r, 0, t0, n0, &tk, 20 * MS);

    struct timespec ts = {0, 20000000}, rem = {7, 7};
    n0 = tk.n;
    t0 = now_us();
    r = nanosleep(&ts, &rem);
    expect_slept("nanosleep 20 ms", r, 0, t0, n0, &tk, 20 * MS);

    n0 = tk.n;
    t0 = now_us();
    r = clock_nanosleep(CLOCK_MONOTONIC, 0, &ts, NULL);
    expect_slept("clock_nanosleep(CLOCK_MONOTONIC, 0, 20 ms)", r, 0, t0, n0, &tk, 20 * MS);

    n0 = tk.n;
    t0 = now_us();
    r = clock_nanosleep(CLOCK_REALTIME, 0, &ts, NULL);
    expect_slept("clock_nanosleep(CLOCK_REALTIME, 0, 20 ms)", r, 0, t0, n0, &tk, 20 * MS);

    struct timespec abs, after;
    clock_gettime(CLOCK_MONOTONIC, &abs);
    abs.tv_nsec += 30000000;
    if (abs.tv_nsec >= 1000000000) {
        abs.tv_sec++;
        abs.tv_nsec -= 1000000000;
    }
    n0 = tk.n;
    t0 = now_us();
    r = clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &abs, NULL);
    clock_gettime(CLOCK_MONOTONIC, &after);
    expect_slept("clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, now + 30 ms)", r, 0, t0, n0,
                 &tk, 30 * MS);
    EXPECT(after.tv_sec > abs.tv_sec || (after.tv_sec == abs.tv_sec && after.tv_nsec >= abs.tv_nsec),
           "clock_nanosleep TIMER_ABSTIME returned before its deadline");

    /* A deadline in the past: at once. */
    t0 = now_us();
    r = clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &abs, NULL);
    EXPECT(r == 0, "clock_nanosleep TIMER_ABSTIME in the past: %d", r);
    expect_quick("clock_nanosleep TIMER_ABSTIME in the past", t0);

    t0 = now_us();
    unsigned u = sleep(0);
    EXPECT(u == 0, "sleep(0) returned %u", u);
    expect_quick("sleep(0)", t0);

    n0 = tk.n;
    t0 = now_us();
    u = sleep(1);
    expect_slept("sleep(1)", (int)u, 0, t0, n0, &tk, 1 * SEC);

    /* Bad arguments: EINVAL (clock_nanosleep returns it, errno untouched). */
    struct timespec bad = {0, 2000000000L};
    t0 = now_us();
    EXPECT_ERR(nanosleep(&bad, NULL), EINVAL);
    struct timespec neg = {-1, 0};
    EXPECT_ERR(nanosleep(&neg, NULL), EINVAL);
    errno = 4321;
    r = clock_nanosleep(CLOCK_MONOTONIC, 0, &bad, NULL);
    EXPECT(r == EINVAL && errno == 4321,
           "clock_nanosleep with tv_nsec 2e9: want return EINVAL and errno untouched, got %d, "
           "errno %d",
           r, errno);
    r = clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &bad, NULL);
    EXPECT(r == EINVAL, "clock_nanosleep TIMER_ABSTIME with tv_nsec 2e9: got %d", r);
    expect_quick("sleeps with bad arguments", t0);
    ticker_stop(&tk);
}

/* ---- 11: regular files ---------------------------------------------------- */

static void g_files(void) {
    char path[] = "/tmp/photon-preload-semantics-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0, "mkstemp: %s", strerror(errno));
    unlink(path);
    expect_view("mkstemp fd", fd, 0);

    ssize_t r = pwrite(fd, "hello world", 11, 100);
    EXPECT(r == 11, "pwrite 11 bytes at 100: %zd (%s)", r, ename(errno));
    EXPECT(lseek(fd, 0, SEEK_CUR) == 0, "pwrite moved the file position");
    char buf[256];
    memset(buf, 'z', sizeof buf);
    r = pread(fd, buf, 11, 100);
    EXPECT(r == 11 && memcmp(buf, "hello world", 11) == 0, "pread back at 100: %zd (%s)", r,
           ename(errno));
    r = pread(fd, buf, 4, 10);
    EXPECT(r == 4 && memcmp(buf, "\0\0\0\0", 4) == 0, "pread in the hole: %zd", r);
    r = pread(fd, buf, 10, 111);
    EXPECT(r == 0, "pread at EOF: want 0, got %zd", r);
    r = pread(fd, buf, 20, 105);
    EXPECT(r == 6 && memcmp(buf, " world", 6) == 0, "pread across EOF: want 6, got %zd", r);
    /* fsync, fdatasync, pread and pwrite go through the engine (or the
     * offload pool): another photon thread runs while each is under way. */
    struct yielder yl;
    yielder_start(&yl);
    long y0 = yl.n;
    EXPECT(fsync(fd) == 0, "fsync: %s", ename(errno));
    long y_fsync = yl.n - y0;
    y0 = yl.n;
    EXPECT(fdatasync(fd) == 0, "fdatasync: %s", ename(errno));
    long y_fdatasync = yl.n - y0;
    y0 = yl.n;
    for (int i = 0; i < 8; i++) {
        EXPECT(pwrite(fd, "0123456789", 10, 300 + 10 * i) == 10, "pwrite #%d", i);
        EXPECT(pread(fd, buf, 10, 300 + 10 * i) == 10 && memcmp(buf, "0123456789", 10) == 0,
               "pread #%d", i);
    }
    long y_rw = yl.n - y0;
    yielder_stop(&yl);
    EXPECT(y_fsync + y_fdatasync + y_rw >= 1,
           "file calls blocked the vcpu: no other photon thread ran during fsync, fdatasync "
           "and 8 pwrite+pread (%ld / %ld / %ld times)",
           y_fsync, y_fdatasync, y_rw);
    CHECK_OK(ftruncate(fd, 111));

    /* Reads and writes at the file position. */
    r = write(fd, "abc", 3);
    EXPECT(r == 3, "write \"abc\": %zd (%s)", r, ename(errno));
    EXPECT(lseek(fd, 0, SEEK_CUR) == 3, "file position after write: %lld",
           (long long)lseek(fd, 0, SEEK_CUR));
    r = write(fd, "de", 2);
    EXPECT(r == 2, "write \"de\": %zd", r);
    EXPECT(lseek(fd, 0, SEEK_SET) == 0, "lseek 0");
    memset(buf, 'z', sizeof buf);
    r = read(fd, buf, 3);
    EXPECT(r == 3 && memcmp(buf, "abc", 3) == 0, "read 3 at 0: %zd \"%.3s\"", r, buf);
    r = read(fd, buf, sizeof buf);
    EXPECT(r == 108 && memcmp(buf, "de", 2) == 0 && memcmp(buf + 97, "hello world", 11) == 0,
           "read the rest: want 108 bytes, got %zd", r);
    r = read(fd, buf, sizeof buf);
    EXPECT(r == 0, "read at EOF: want 0, got %zd", r);
    EXPECT(lseek(fd, 0, SEEK_CUR) == 111, "file position at EOF: %lld",
           (long long)lseek(fd, 0, SEEK_CUR));

    /* Vectored, positioned. */
    struct iovec iov[2] = {{"12", 2}, {"345", 3}};
    r = pwritev(fd, iov, 2, 200);
    EXPECT(r == 5, "pwritev: %zd (%s)", r, ename(errno));
    char x[2], y[3];
    struct iovec riov[2] = {{x, 2}, {y, 3}};
    r = preadv(fd, riov, 2, 200);
    EXPECT(r == 5 && memcmp(x, "12", 2) == 0 && memcmp(y, "345", 3) == 0, "preadv: %zd", r);
    lseek(fd, 0, SEEK_SET);
    r = readv(fd, riov, 2);
    EXPECT(r == 5 && memcmp(x, "ab", 2) == 0 && memcmp(y, "cde", 3) == 0, "readv at 0: %zd", r);

    /* libc's errors. */
    EXPECT_ERR(pread(fd, buf, 4, -1), EINVAL);
    EXPECT_ERR(pwrite(fd, buf, 4, -1), EINVAL);
    int p[2];
    CHECK_OK(pipe(p));
    EXPECT_ERR(pread(p[0], buf, 4, 0), ESPIPE);
    EXPECT_ERR(pwrite(p[1], buf, 4, 0), ESPIPE);
    EXPECT_ERR(fsync(p[0]), EINVAL);
    EXPECT_ERR(fdatasync(p[1]), EINVAL);
    close(p[0]);
    close(p[1]);
    int c = closed_fd(903);
    EXPECT_ERR(pread(c, buf, 4, 0), EBADF);
    EXPECT_ERR(pwrite(c, buf, 4, 0), EBADF);
    EXPECT_ERR(fsync(c), EBADF);
    EXPECT_ERR(fdatasync(c), EBADF);
    int ro = open("/etc/hostname", O_RDONLY);
    if (ro < 0)
        ro = open("/proc/self/stat", O_RDONLY);
    CHECK(ro >= 0, "open a read-only file: %s", strerror(errno));
    EXPECT_ERR(write(ro, "x", 1), EBADF);
    EXPECT_ERR(pwrite(ro, "x", 1, 0), EBADF);
    close(ro);
    close(fd);
}

/* ---- 12: getaddrinfo ------------------------------------------------------ */

static void g_getaddrinfo(void) {
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_INET;
    hints.ai_socktype = SOCK_STREAM;
    /* The lookup runs on an offload thread while this photon thread parks:
     * an always-runnable photon thread runs meanwhile. (One fast lookup
     * may finish before the caller parks; eight in a row do not.) */
    struct yielder y;
    yielder_start(&y);
    long yn = 0;
    for (int k = 0; k < 8; k++) {
        struct addrinfo *rk = NULL;
        long y0 = y.n;
        int q = getaddrinfo("localhost", "80", &hints, &rk);
        yn += y.n - y0;
        EXPECT(q == 0, "getaddrinfo(localhost) #%d: %d (%s)", k, q, gai_strerror(q));
        if (q == 0)
            freeaddrinfo(rk);
    }
    yielder_stop(&y);
    EXPECT(yn >= 1, "8 x getaddrinfo(localhost): no other photon thread ran during them: the "
           "lookups ran on the vcpu instead of an offload thread");
    int r = getaddrinfo("localhost", "80", &hints, &res);
    EXPECT(r == 0 && res != NULL, "getaddrinfo(localhost, 80, AF_INET): %d (%s)", r,
           gai_strerror(r));
    if (r == 0 && res) {
        int found = 0;
        for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
            EXPECT(ai->ai_family == AF_INET, "an AF_INET lookup gave family %d", ai->ai_family);
            if (ai->ai_family != AF_INET)
                continue;
            const struct sockaddr_in *s = (const struct sockaddr_in *)ai->ai_addr;
            EXPECT(ntohs(s->sin_port) == 80, "port %d", ntohs(s->sin_port));
            if (s->sin_addr.s_addr == htonl(INADDR_LOOPBACK))
                found = 1;
        }
        EXPECT(found, "getaddrinfo(localhost) did not give 127.0.0.1");
        freeaddrinfo(res);
    }
    hints.ai_flags = AI_NUMERICHOST;
    res = NULL;
    r = getaddrinfo("not an address", NULL, &hints, &res);
    EXPECT(r == EAI_NONAME, "getaddrinfo(\"not an address\", AI_NUMERICHOST): want EAI_NONAME, got %d (%s)",
           r, gai_strerror(r));
    hints.ai_flags = AI_NUMERICSERV;
    r = getaddrinfo("127.0.0.1", "http", &hints, &res);
    EXPECT(r == EAI_NONAME, "getaddrinfo(service \"http\", AI_NUMERICSERV): want EAI_NONAME, got %d (%s)",
           r, gai_strerror(r));

    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons(8080),
                              .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    char host[64], serv[16];
    r = getnameinfo((struct sockaddr *)&sin, sizeof sin, host, sizeof host, serv, sizeof serv,
                    NI_NUMERICHOST | NI_NUMERICSERV);
    EXPECT(r == 0 && strcmp(host, "127.0.0.1") == 0 && strcmp(serv, "8080") == 0,
           "getnameinfo numeric: %d %s:%s", r, r == 0 ? host : "", r == 0 ? serv : "");
}

/* ---- 13: a plain pthread --------------------------------------------------- */

struct pt {
    int lfd;    /* a TCP listener made in a photon thread */
    int sv0;    /* made in a photon thread: blocking view, O_NONBLOCK underneath */
    int done_w; /* pipe to the photon side */
    int nb_r;   /* an O_NONBLOCK pipe (the program's own), made in a photon thread */
    unsigned char *big;
    size_t big_len;
};

static void *pthread_main(void *arg) {
    struct pt *p = arg;
    EXPECT(photon_in_thread() == 0, "a plain pthread is in a photon thread");
    expect_view("pthread: the photon thread's blocking socket", p->sv0, 0);
    CHECK(write(p->done_w, "R", 1) == 1, "pthread: write R: %s", strerror(errno));

    /* (a) a blocking read: the photon side writes 50 ms later. */
    char buf[64];
    uint64_t t0 = now_us();
    errno = 0;
    ssize_t r = read(p->sv0, buf, sizeof buf);
    int e = errno;
    unsigned long long took = since(t0);
    EXPECT(r == 4 && memcmp(buf, "ping", 4) == 0,
           "pthread: blocking read of a socket made in a photon thread: want \"ping\", got %zd "
           "(%s): blocking not emulated",
           r, ename(e));
    EXPECT(took >= 40 * MS && took < SEC, "pthread: blocking read took %llu us, want >= 40 ms",
           took);

    /* A whole 1 MiB write while the photon side reads slowly. */
    errno = 0;
    r = write(p->sv0, p->big, p->big_len);
    e = errno;
    EXPECT(r == (ssize_t)p->big_len,
           "pthread: 1 MiB write on a blocking socket made in a photon thread: want 1048576, "
           "got %zd (%s)",
           r, ename(e));

    /* (b) SO_RCVTIMEO 100 ms: EAGAIN after it, with read and recv. */
    set_timeo(p->sv0, SO_RCVTIMEO, 100000);
    t0 = now_us();
    errno = 0;
    r = read(p->sv0, buf, sizeof buf);
    e = errno;
    took = since(t0);
    EXPECT(r == -1 && e == EAGAIN, "pthread: read with SO_RCVTIMEO 100 ms: want -1/EAGAIN, got %zd (%s)",
           r, ename(e));
    EXPECT(took >= 90 * MS && took < SEC, "pthread: read with SO_RCVTIMEO 100 ms took %llu us",
           took);
    t0 = now_us();
    errno = 0;
    r = recv(p->sv0, buf, sizeof buf, 0);
    e = errno;
    took = since(t0);
    EXPECT(r == -1 && e == EAGAIN, "pthread: recv with SO_RCVTIMEO 100 ms: want -1/EAGAIN, got %zd (%s)",
           r, ename(e));
    EXPECT(took >= 90 * MS && took < SEC, "pthread: recv with SO_RCVTIMEO 100 ms took %llu us",
           took);
    set_timeo(p->sv0, SO_RCVTIMEO, 0);

    /* The program's own O_NONBLOCK fd: EAGAIN at once. */
    t0 = now_us();
    EXPECT_ERR(read(p->nb_r, buf, sizeof buf), EAGAIN);
    expect_quick("pthread: read on an O_NONBLOCK pipe", t0);
    EXPECT_ERR(recv(p->sv0, buf, sizeof buf, MSG_DONTWAIT), EAGAIN);

    /* (c) sleeps and waits behave as libc's. */
    t0 = now_us();
    int ir = usleep(20000);
    took = since(t0);
    EXPECT(ir == 0 && took >= 19 * MS && took < 300 * MS, "pthread: usleep(20000): %d in %llu us",
           ir, took);
    struct timespec ts = {0, 20000000};
    t0 = now_us();
    ir = nanosleep(&ts, NULL);
    took = since(t0);
    EXPECT(ir == 0 && took >= 19 * MS && took < 300 * MS, "pthread: nanosleep 20 ms: %d in %llu us",
           ir, took);
    struct pollfd pf = {p->sv0, POLLIN, 0};
    t0 = now_us();
    ir = poll(&pf, 1, 50);
    took = since(t0);
    EXPECT(ir == 0 && took >= 45 * MS && took < 500 * MS, "pthread: poll 50 ms: %d in %llu us", ir,
           took);
    t0 = now_us();
    ir = poll(&pf, 1, 0);
    EXPECT(ir == 0, "pthread: poll 0: %d", ir);
    expect_quick("pthread: poll 0", t0);
    pf.events = POLLOUT;
    ir = poll(&pf, 1, 1000);
    EXPECT(ir == 1 && pf.revents == POLLOUT, "pthread: poll POLLOUT: %d 0x%x", ir, pf.revents);
    fd_set rs;
    FD_ZERO(&rs);
    FD_SET(p->sv0, &rs);
    struct timeval tv = {0, 30000};
    t0 = now_us();
    ir = select(p->sv0 + 1, &rs, NULL, NULL, &tv);
    took = since(t0);
    EXPECT(ir == 0 && !FD_ISSET(p->sv0, &rs) && took >= 25 * MS && took < 500 * MS,
           "pthread: select 30 ms: %d in %llu us", ir, took);
    expect_view("pthread: the blocking socket after all that", p->sv0, 0);

    /* A blocking accept on a listener made in a photon thread: the photon
     * side connects 50 ms after our A. */
    CHECK(write(p->done_w, "A", 1) == 1, "pthread: write A: %s", strerror(errno));
    t0 = now_us();
    errno = 0;
    int afd = accept(p->lfd, NULL, NULL);
    e = errno;
    took = since(t0);
    EXPECT(afd >= 0, "pthread: blocking accept on a listener made in a photon thread: got %d (%s): "
           "blocking not emulated", afd, ename(e));
    EXPECT(took >= 40 * MS && took < SEC, "pthread: blocking accept took %llu us, want >= 40 ms",
           took);
    if (afd >= 0) {
        expect_view("pthread: accepted fd", afd, 0);
        r = read(afd, buf, sizeof buf);
        EXPECT(r == 2 && memcmp(buf, "hi", 2) == 0, "pthread: read on the accepted fd: %zd (%s)",
               r, ename(errno));
        close(afd);
    }

    CHECK(write(p->done_w, "D", 1) == 1, "pthread: write D: %s", strerror(errno));
    return NULL;
}

static void g_pthread(void) {
    struct ticker tk;
    ticker_start(&tk);
    int sv[2], done[2], nb[2];
    socketpair_ok(sv, SOCK_STREAM);
    CHECK_OK(pipe(done));
    CHECK_OK(pipe2(nb, O_NONBLOCK));
    struct sockaddr_in sin;
    int lfd = tcp_listener(&sin, 1);
    struct pt p = {.lfd = lfd, .sv0 = sv[0], .done_w = done[1], .nb_r = nb[0], .big_len = 1u << 20};
    p.big = malloc(p.big_len);
    CHECK(p.big != NULL, "malloc");
    for (size_t i = 0; i < p.big_len; i++)
        p.big[i] = (unsigned char)(i * 13 + i / 509);
    pthread_t th;
    CHECK(pthread_create(&th, NULL, pthread_main, &p) == 0, "pthread_create");

    char c = 0;
    ssize_t r = read(done[0], &c, 1);
    EXPECT(r == 1 && c == 'R', "read of the pthread's R: %zd '%c' (%s)", r, c, ename(errno));
    photon_thread_usleep(50 * MS);
    r = write(sv[1], "ping", 4);
    EXPECT(r == 4, "write ping: %zd (%s)", r, ename(errno));

    /* Read the pthread's 1 MiB, slowly at first. */
    unsigned char *got = malloc(p.big_len);
    CHECK(got != NULL, "malloc");
    size_t n = 0;
    photon_thread_usleep(20 * MS);
    while (n < p.big_len) {
        r = read(sv[1], got + n, p.big_len - n);
        if (r <= 0) {
            EXPECT(r > 0, "reading the pthread's 1 MiB: %zd (%s) after %zu bytes", r, ename(errno), n);
            break;
        }
        n += (size_t)r;
    }
    EXPECT(n == p.big_len && memcmp(got, p.big, n) == 0, "the pthread's 1 MiB arrived wrong (%zu bytes)",
           n);
    free(got);

    /* Waiting for the pthread's A (it sleeps and times out for ~300 ms) is a
     * photon wait: the ticker keeps running. */
    long n0 = tk.n;
    uint64_t t0 = now_us();
    c = 0;
    r = read(done[0], &c, 1);
    EXPECT(r == 1 && c == 'A', "read of the pthread's A: %zd '%c' (%s)", r, c, ename(errno));
    expect_waited("blocking pipe read awaiting the pthread", t0, n0, &tk, 100 * MS);
    photon_thread_usleep(50 * MS);
    int cl = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(cl >= 0, "socket: %s", strerror(errno));
    EXPECT(connect(cl, (struct sockaddr *)&sin, sizeof sin) == 0, "connect to the pthread's "
           "listener: %s", ename(errno));
    EXPECT(write(cl, "hi", 2) == 2, "write hi: %s", ename(errno));
    c = 0;
    r = read(done[0], &c, 1);
    EXPECT(r == 1 && c == 'D', "read of the pthread's D: %zd '%c' (%s)", r, c, ename(errno));
    CHECK(pthread_join(th, NULL) == 0, "pthread_join");
    close(cl);
    close(lfd);
    free(p.big);
    close(sv[0]);
    close(sv[1]);
    close(done[0]);
    close(done[1]);
    close(nb[0]);
    close(nb[1]);
    ticker_stop(&tk);
}

/* ---- 14: fork ----------------------------------------------------------- */

static void g_fork(void) {
    struct ticker tk;
    ticker_start(&tk);
    int to_parent[2], to_child[2];
    CHECK_OK(pipe(to_parent));
    CHECK_OK(pipe(to_child));
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    CHECK(pid >= 0, "fork: %s", strerror(errno));
    if (pid == 0) {
        /* The child: a plain process, no vcpu. */
        if (photon_in_thread() != 0)
            _exit(10);
        struct timespec ts = {0, 50000000};
        nanosleep(&ts, NULL);
        if (write(to_parent[1], "x", 1) != 1)
            _exit(11);
        /* A blocking read of a pipe made (non-blocking underneath) in the
         * parent's photon thread: must block, not fail with EAGAIN. */
        char c = 0;
        errno = 0;
        ssize_t r = read(to_child[0], &c, 1);
        if (r != 1 || c != 'y') {
            dprintf(2, "fork child: read gave %zd (%s)\n", r, ename(errno));
            _exit(12);
        }
        if (nb_view(to_child[0]) != 0)
            _exit(13);
        _exit(0);
    }
    char c = 0;
    long n0 = tk.n;
    uint64_t t0 = now_us();
    errno = 0;
    ssize_t r = read(to_parent[0], &c, 1);
    EXPECT(r == 1 && c == 'x', "parent: read of the child's byte: %zd '%c' (%s)", r, c,
           ename(errno));
    expect_waited("parent: blocking read of the forked child's byte", t0, n0, &tk, 40 * MS);
    photon_thread_usleep(30 * MS);
    r = write(to_child[1], "y", 1);
    EXPECT(r == 1, "parent: write to the child: %zd", r);
    int st = 0;
    pid_t w = waitpid(pid, &st, 0);
    EXPECT(w == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0,
           "waitpid: %d, child status 0x%x (exit code %d: 10 in a photon thread, 11 write, 12 "
           "blocking read, 13 F_GETFL)",
           (int)w, st, WIFEXITED(st) ? WEXITSTATUS(st) : -1);
    close(to_parent[0]);
    close(to_parent[1]);
    close(to_child[0]);
    close(to_child[1]);
    ticker_stop(&tk);
}

/* ---- main ------------------------------------------------------------------ */

struct group {
    int id;
    const char *name;
    void (*fn)(void);
};

static const struct group groups[] = {
    {1, "1 blocking socketpair", g_blocking_socketpair},
    {2, "2 user O_NONBLOCK", g_user_nonblock},
    {3, "3 SO_RCVTIMEO/SO_SNDTIMEO", g_timeouts},
    {4, "4 poll/ppoll", g_poll},
    {5, "5 select/pselect", g_select},
    {6, "6 epoll", g_epoll},
    {7, "7 bad fds", g_bad_fds},
    {8, "8 connect/accept", g_connect_accept},
    {9, "9 pipes, whole writes", g_pipes},
    {10, "10 sleeps", g_sleeps},
    {11, "11 regular files", g_files},
    {12, "12 getaddrinfo", g_getaddrinfo},
    {13, "13 plain pthread", g_pthread},
    {14, "14 fork", g_fork},
};

static void *group_main(void *arg) {
    const struct group *g = arg;
    g->fn();
    return NULL;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IONBF, 0);
    setvbuf(stderr, NULL, _IONBF, 0);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigpipe;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    CHECK_OK(sigaction(SIGPIPE, &sa, NULL));
    pthread_t wd;
    CHECK(pthread_create(&wd, NULL, watchdog_main, NULL) == 0, "pthread_create watchdog");
    CHECK_OK(photon_init(PHOTON_EVENT_DEFAULT, 0));
    const char *engine = photon_engine_name();
    printf("preload semantics, engine %s, libphoton %s\n", engine ? engine : "?",
           photon_version());
    CHECK(photon_in_thread() == 1, "main is not a photon thread after photon_init");

    uint64_t start = now_us();
    for (size_t i = 0; i < sizeof groups / sizeof groups[0]; i++) {
        const struct group *g = &groups[i];
        if (argc > 1) {
            int wanted = 0;
            for (int a = 1; a < argc; a++)
                wanted |= atoi(argv[a]) == g->id;
            if (!wanted)
                continue;
        }
        atomic_store(&group_name, g->name);
        atomic_store(&watch_deadline, now_us() + 15 * SEC);
        int before = atomic_load(&failures);
        uint64_t t0 = now_us();
        join(spawn(group_main, (void *)g));
        int failed = atomic_load(&failures) - before;
        printf("%-28s %s (%.0f ms)\n", g->name, failed ? "FAILED" : "ok",
               (double)(now_us() - t0) / 1000.0);
        if (failed)
            printf("    %d check(s) failed, see stderr\n", failed);
    }
    atomic_store(&watch_deadline, now_us() + 15 * SEC);
    atomic_store(&group_name, "photon_fini");
    CHECK_OK(photon_fini());
    atomic_store(&watch_deadline, 0);
    int f = atomic_load(&failures);
    printf("%s: %d failed check(s) in %.2f s\n", f ? "FAILED" : "PASSED", f,
           (double)(now_us() - start) / 1e6);
    return f ? 1 : 0;
}
