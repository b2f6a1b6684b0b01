/*
 * photon_wait_fd on pipes and sockets:
 * - a pipe's read end is not readable until written (ETIMEDOUT after the
 *   timeout; timeout 0 fails at once), then readable (PHOTON_READABLE), and
 *   readiness is level-triggered (asking twice without reading returns at
 *   once both times); the write end is writable at once;
 * - a waiter blocked before the write wakes when it comes;
 * - READABLE|WRITABLE returns only the ready subset; a hang-up (writer
 *   closed) counts as readable;
 * - a full pipe is not writable until drained;
 * - several threads waiting on one fd all wake; a reader and a writer
 *   blocked on one socket at once both get served;
 * - 2000 ping-pongs between two threads over two pipes using wait_fd and
 *   plain non-blocking read/write (readiness re-armed every time).
 */
#include <fcntl.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <unistd.h>

#include "check.h"

#define SEC 1000000ULL

/* A failed EXPECT is reported at once but fails the program only at the
 * end, so one wrong result does not hide the checks after it. */
static int failures;
#define EXPECT(cond, ...)                                                    \
    do {                                                                     \
        if (!(cond)) {                                                       \
            fprintf(stderr, "%s:%d: EXPECT FAILED: %s\n  ", __FILE__,        \
                    __LINE__, #cond);                                        \
            fprintf(stderr, __VA_ARGS__);                                    \
            fprintf(stderr, "\n");                                           \
            failures++;                                                      \
        }                                                                    \
    } while (0)

static void make_pipe(int p[2]) { CHECK_OK(pipe(p)); }

struct waiter {
    int fd;
    uint32_t events;
    uint64_t timeout;
    long ret;
    int err;
    uint64_t woke_at;
};

static void *waiter_main(void *arg) {
    struct waiter *w = arg;
    errno = 0;
    w->ret = photon_wait_fd(w->fd, w->events, w->timeout);
    w->err = errno;
    w->woke_at = photon_now_us();
    return NULL;
}

static void pipe_basics(void) {
    int p[2];
    make_pipe(p);
    char c;
    uint64_t t0;

    SAY("empty pipe: not readable (ETIMEDOUT after 50 ms; timeout 0 at once)");
    t0 = photon_now_us();
    CHECK_ERRNO(photon_wait_fd(p[0], PHOTON_READABLE, 50000), ETIMEDOUT);
    uint64_t took = elapsed_us(t0);
    CHECK(took >= 50000 && took < 130000, "timed out after %" PRIu64 " us", took);
    t0 = photon_now_us();
    CHECK_ERRNO(photon_wait_fd(p[0], PHOTON_READABLE, 0), ETIMEDOUT);
    CHECK(elapsed_us(t0) < 20000, "timeout 0 took %" PRIu64 " us", elapsed_us(t0));

    SAY("the write end is writable at once");
    t0 = photon_now_us();
    CHECK(photon_wait_fd(p[1], PHOTON_WRITABLE, SEC) == PHOTON_WRITABLE, "wait_fd: %s",
          strerror(errno));
    CHECK(photon_wait_fd(p[1], PHOTON_WRITABLE, 0) == PHOTON_WRITABLE, "timeout 0: %s",
          strerror(errno));
    CHECK(elapsed_us(t0) < 20000, "took %" PRIu64 " us", elapsed_us(t0));

    SAY("written: readable, twice without reading (level-triggered)");
    CHECK(write(p[1], "a", 1) == 1, "write");
    CHECK(photon_wait_fd(p[0], PHOTON_READABLE, SEC) == PHOTON_READABLE, "wait_fd: %s",
          strerror(errno));
    CHECK(photon_wait_fd(p[0], PHOTON_READABLE, 0) == PHOTON_READABLE, "second wait_fd: %s",
          strerror(errno));
    SAY("READABLE|WRITABLE gives the ready subset");
    CHECK(photon_wait_fd(p[0], PHOTON_READABLE | PHOTON_WRITABLE, SEC) == PHOTON_READABLE,
          "read end with both bits");
    CHECK(photon_wait_fd(p[1], PHOTON_READABLE | PHOTON_WRITABLE, SEC) == PHOTON_WRITABLE,
          "write end with both bits");
    CHECK(read(p[0], &c, 1) == 1, "read");
    SAY("drained: not readable again");
    CHECK_ERRNO(photon_wait_fd(p[0], PHOTON_READABLE, 20000), ETIMEDOUT);

    SAY("a waiter blocked before the write wakes 30 ms later, when it comes");
    struct waiter w = {.fd = p[0], .events = PHOTON_READABLE, .timeout = 5 * SEC, .ret = 99};
    photon_thread *th = spawn_joinable(waiter_main, &w, 0);
    CHECK_OK(photon_thread_usleep(30000));
    CHECK(w.ret == 99, "wait_fd returned early: %ld (%s)", w.ret, strerror(w.err));
    uint64_t wrote_at = photon_now_us();
    CHECK(write(p[1], "b", 1) == 1, "write");
    join_ok(th);
    CHECK(w.ret == PHOTON_READABLE, "wait_fd gave %ld (%s)", w.ret, strerror(w.err));
    CHECK(w.woke_at - wrote_at < 100000, "woke %" PRIu64 " us after the write",
          w.woke_at - wrote_at);
    CHECK(read(p[0], &c, 1) == 1 && c == 'b', "read");

    SAY("the writer closes: the read end is readable (hang-up), read gives 0");
    w.ret = 99;
    th = spawn_joinable(waiter_main, &w, 0);
    CHECK_OK(photon_thread_usleep(10000));
    CHECK_OK(photon_close(p[1]));
    join_ok(th);
    /* photon.h: "Returns the ready subset of `events`" */
    EXPECT(w.ret == PHOTON_READABLE, "wait_fd(READABLE) at hang-up gave %ld (%s), want %d",
           w.ret, strerror(w.err), PHOTON_READABLE);
    SAY("  asked again after the hang-up: READABLE only");
    EXPECT(photon_wait_fd(p[0], PHOTON_READABLE, SEC) == PHOTON_READABLE,
           "wait_fd(READABLE) on a hung-up pipe");
    CHECK(photon_read(p[0], &c, 1, SEC) == 0, "read at EOF");
    CHECK_OK(photon_close(p[0]));
}

struct drainer {
    int fd;
    uint64_t delay_us;
    size_t drained;
};

static void *drainer_main(void *arg) {
    struct drainer *d = arg;
    CHECK_OK(photon_thread_usleep(d->delay_us));
    char buf[65536];
    for (;;) {
        ssize_t n = read(d->fd, buf, sizeof buf);
        if (n <= 0) {
            break;
        }
        d->drained += (size_t)n;
    }
    return NULL;
}

static void full_pipe(void) {
    SAY("a full pipe is not writable; it is once a reader drains it 30 ms later");
    int p[2];
    CHECK_OK(pipe2(p, O_NONBLOCK));
    (void)fcntl(p[1], F_SETPIPE_SZ, 4096);
    char buf[4096];
    memset(buf, 'f', sizeof buf);
    size_t filled = 0;
    for (;;) {
        ssize_t n = write(p[1], buf, sizeof buf);
        if (n < 0) {
            CHECK(errno == EAGAIN, "filling: %s", strerror(errno));
            break;
        }
        filled += (size_t)n;
    }
    CHECK_ERRNO(photon_wait_fd(p[1], PHOTON_WRITABLE, 20000), ETIMEDOUT);
    struct drainer d = {.fd = p[0], .delay_us = 30000};
    photon_thread *th = spawn_joinable(drainer_main, &d, 0);
    uint64_t t0 = photon_now_us();
    CHECK(photon_wait_fd(p[1], PHOTON_WRITABLE, 5 * SEC) == PHOTON_WRITABLE, "wait_fd: %s",
          strerror(errno));
    uint64_t took = elapsed_us(t0);
    CHECK(took >= 25000 && took < 200000, "became writable after %" PRIu64 " us", took);
    join_ok(th);
    CHECK(d.drained == filled, "drained %zu of %zu", d.drained, filled);
    CHECK_OK(photon_close(p[0]));
    CHECK_OK(photon_close(p[1]));
}

static void many_waiters(void) {
    SAY("three threads wait on one pipe for READABLE: one write wakes all three");
    int p[2];
    make_pipe(p);
    struct waiter w[3];
    photon_thread *th[3];
    for (int i = 0; i < 3; i++) {
        memset(&w[i], 0, sizeof w[i]);
        w[i].fd = p[0];
        w[i].events = PHOTON_READABLE;
        w[i].timeout = 5 * SEC;
        w[i].ret = 99;
        th[i] = spawn_joinable(waiter_main, &w[i], 0);
    }
    CHECK_OK(photon_thread_usleep(20000));
    uint64_t t0 = photon_now_us();
    CHECK(write(p[1], "x", 1) == 1, "write");
    for (int i = 0; i < 3; i++) {
        join_ok(th[i]);
        CHECK(w[i].ret == PHOTON_READABLE, "waiter %d got %ld (%s)", i, w[i].ret,
              strerror(w[i].err));
        CHECK(w[i].woke_at - t0 < 100000, "waiter %d woke after %" PRIu64 " us", i,
              w[i].woke_at - t0);
    }
    CHECK_OK(photon_close(p[0]));
    CHECK_OK(photon_close(p[1]));
}

struct rw {
    int fd;
    int is_writer;
    size_t len;
    unsigned char *buf;
    long ret;
    int err;
};

static void *rw_main(void *arg) {
    struct rw *x = arg;
    errno = 0;
    x->ret = x->is_writer ? photon_write_full(x->fd, x->buf, x->len, 5 * SEC)
                          : photon_read_full(x->fd, x->buf, x->len, 5 * SEC);
    x->err = errno;
    return NULL;
}

static void reader_and_writer_on_one_fd(void) {
    SAY("one socket, a reader and a writer blocked on it at once: both served");
    int sp[2];
    CHECK_OK(socketpair(AF_UNIX, SOCK_STREAM, 0, sp));
    const size_t big = 4u << 20;
    unsigned char *out = malloc(big), *in = malloc(big), *back = malloc(16);
    CHECK(out && in && back, "malloc");
    for (size_t i = 0; i < big; i++) {
        out[i] = (unsigned char)(i % 251);
    }
    /* on sp[0]: a writer of 4 MiB (blocks: nobody reads yet) and a reader of 16 bytes */
    struct rw wr = {.fd = sp[0], .is_writer = 1, .len = big, .buf = out, .ret = 99};
    struct rw rd = {.fd = sp[0], .is_writer = 0, .len = 16, .buf = back, .ret = 99};
    photon_thread *twr = spawn_joinable(rw_main, &wr, 0);
    photon_thread *trd = spawn_joinable(rw_main, &rd, 0);
    CHECK_OK(photon_thread_usleep(20000));
    CHECK(wr.ret == 99 && rd.ret == 99, "not both blocked: writer %ld, reader %ld", wr.ret,
          rd.ret);
    /* the peer first answers the reader, then drains the writer */
    CHECK(photon_write(sp[1], "0123456789abcdef", 16, SEC) == 16, "write");
    join_ok(trd);
    CHECK(rd.ret == 16 && memcmp(back, "0123456789abcdef", 16) == 0,
          "reader blocked beside a writer: %ld (%s)", rd.ret, strerror(rd.err));
    CHECK(wr.ret == 99, "the writer finished with nobody reading");
    CHECK(photon_read_full(sp[1], in, big, 5 * SEC) == (ssize_t)big, "read_full: %s",
          strerror(errno));
    join_ok(twr);
    CHECK(wr.ret == (long)big, "writer: %ld (%s)", wr.ret, strerror(wr.err));
    CHECK(memcmp(in, out, big) == 0, "data corrupted");
    free(out);
    free(in);
    free(back);
    CHECK_OK(photon_close(sp[0]));
    CHECK_OK(photon_close(sp[1]));
}

#define PINGS 2000

struct pinger {
    int rfd, wfd;
    int first;
    int count;
};

static void *pinger_main(void *arg) {
    struct pinger *p = arg;
    unsigned char v = 0;
    for (int i = 0; i < PINGS; i++) {
        if (p->first || i > 0) {
            /* send my turn's byte */
            CHECK(photon_wait_fd(p->wfd, PHOTON_WRITABLE, SEC) == PHOTON_WRITABLE,
                  "wait writable: %s", strerror(errno));
            CHECK(write(p->wfd, &v, 1) == 1, "write: %s", strerror(errno));
        }
        int r = photon_wait_fd(p->rfd, PHOTON_READABLE, SEC);
        CHECK(r == PHOTON_READABLE, "ping %d: wait readable gave %d (%s)", i, r,
              strerror(errno));
        unsigned char got;
        CHECK(read(p->rfd, &got, 1) == 1, "read: %s", strerror(errno));
        v = (unsigned char)(got + 1);
        p->count++;
        /* nothing more is there: the next wait must really wait */
        CHECK(read(p->rfd, &got, 1) == -1 && errno == EAGAIN, "an extra byte");
    }
    if (!p->first) {
        CHECK(write(p->wfd, &v, 1) == 1, "final write");
    }
    return NULL;
}

static void ping_pong(void) {
    SAY("%d ping-pongs over two pipes with wait_fd + non-blocking read/write", PINGS);
    int ab[2], ba[2];
    CHECK_OK(pipe2(ab, O_NONBLOCK));
    CHECK_OK(pipe2(ba, O_NONBLOCK));
    struct pinger a = {.rfd = ba[0], .wfd = ab[1], .first = 1};
    struct pinger b = {.rfd = ab[0], .wfd = ba[1], .first = 0};
    uint64_t t0 = photon_now_us();
    photon_thread *ta = spawn_joinable(pinger_main, &a, 0);
    photon_thread *tb = spawn_joinable(pinger_main, &b, 0);
    join_ok(ta);
    join_ok(tb);
    CHECK(a.count == PINGS && b.count == PINGS, "counts %d %d", a.count, b.count);
    SAY("  %" PRIu64 " ms", elapsed_us(t0) / 1000);
    CHECK_OK(photon_close(ab[0]));
    CHECK_OK(photon_close(ab[1]));
    CHECK_OK(photon_close(ba[0]));
    CHECK_OK(photon_close(ba[1]));
}

int main(void) {
    test_start("net_wait_fd");
    test_init();

    pipe_basics();
    full_pipe();
    many_waiters();
    reader_and_writer_on_one_fd();
    ping_pong();

    test_fini();
    CHECK(failures == 0, "%d EXPECT checks failed (above)", failures);
    SAY("net_wait_fd: OK");
    return 0;
}
