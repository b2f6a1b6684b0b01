/*
 * Partial transfers: 8 MiB through photon_write_full / photon_read_full
 * across a Unix socketpair (plain blocking fds from socketpair(2)) and a TCP
 * pair, with the other side slowed down (sleeping between small reads or
 * writes) so the kernel takes each transfer in many partial pieces; a single
 * photon_write of 8 MiB is partial; readv/writev with several iovecs;
 * photon_recv returns what arrived (waits once) while photon_read_full
 * loops; EOF gives 0 (and read_full's short count).
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "check.h"

#define BIG (8u << 20)
#define SEC 1000000ULL

static unsigned char pattern(size_t i) { return (unsigned char)((i * 131u + (i >> 13)) & 0xff); }

static unsigned char *pattern_buf(size_t len) {
    unsigned char *b = malloc(len);
    CHECK(b != NULL, "malloc(%zu)", len);
    for (size_t i = 0; i < len; i++) {
        b[i] = pattern(i);
    }
    return b;
}

static void tcp_pair(int fds[2]) { tcp_loopback_pair(fds, 0); }

/* --- a slow reader: small reads with sleeps in between --- */

struct slow_reader {
    int fd;
    size_t want;
    size_t chunk;       /* bytes per read */
    uint64_t sleep_us;  /* between reads */
    unsigned char *got; /* want bytes */
    size_t total;
    int reads;
    int max_read;
};

static void *slow_reader_main(void *arg) {
    struct slow_reader *r = arg;
    while (r->total < r->want) {
        size_t n = r->want - r->total < r->chunk ? r->want - r->total : r->chunk;
        ssize_t got = photon_read(r->fd, r->got + r->total, n, 10 * SEC);
        CHECK(got > 0, "slow reader: photon_read gave %zd after %zu bytes: %s", got, r->total,
              strerror(errno));
        r->total += (size_t)got;
        r->reads++;
        if (got > r->max_read) {
            r->max_read = (int)got;
        }
        CHECK_OK(photon_thread_usleep(r->sleep_us));
    }
    return NULL;
}

static void big_write_slow_reader(int wfd, int rfd, const char *what) {
    SAY("%s: write_full of 8 MiB to a reader doing 64 KiB reads with 1 ms sleeps", what);
    unsigned char *src = pattern_buf(BIG);
    struct slow_reader r = {
        .fd = rfd, .want = BIG, .chunk = 64 << 10, .sleep_us = 1000, .got = malloc(BIG)};
    CHECK(r.got != NULL, "malloc");
    photon_thread *th = spawn_joinable(slow_reader_main, &r, 0);
    uint64_t t0 = photon_now_us();
    errno = 0;
    ssize_t w = photon_write_full(wfd, src, BIG, 20 * SEC);
    CHECK(w == (ssize_t)BIG, "write_full gave %zd (errno %s), want %u", w, strerror(errno),
          BIG);
    join_ok(th);
    uint64_t took = elapsed_us(t0);
    CHECK(r.total == BIG, "reader got %zu bytes", r.total);
    CHECK(memcmp(src, r.got, BIG) == 0, "8 MiB arrived corrupted");
    /* the reader was slow: the writer had to wait for it many times */
    CHECK(r.reads >= 128, "only %d reads", r.reads);
    CHECK(took >= 128 * 1000, "took only %" PRIu64 " us", took);
    SAY("  %d reads (largest %d), %" PRIu64 " ms", r.reads, r.max_read, took / 1000);
    free(r.got);
    free(src);
}

/* --- a slow writer: small writes with sleeps in between --- */

struct slow_writer {
    int fd;
    const unsigned char *src;
    size_t len;
    size_t chunk;
    uint64_t sleep_us;
    int close_after; /* shut down writing when done */
};

static void *slow_writer_main(void *arg) {
    struct slow_writer *w = arg;
    size_t done = 0;
    while (done < w->len) {
        size_t n = w->len - done < w->chunk ? w->len - done : w->chunk;
        ssize_t put = photon_write_full(w->fd, w->src + done, n, 10 * SEC);
        CHECK(put == (ssize_t)n, "slow writer: write_full gave %zd: %s", put, strerror(errno));
        done += n;
        CHECK_OK(photon_thread_usleep(w->sleep_us));
    }
    if (w->close_after) {
        CHECK_OK(shutdown(w->fd, SHUT_WR));
    }
    return NULL;
}

static void big_read_slow_writer(int wfd, int rfd, const char *what) {
    SAY("%s: read_full of 8 MiB from a writer doing 128 KiB writes with 1 ms sleeps", what);
    unsigned char *src = pattern_buf(BIG);
    unsigned char *dst = calloc(1, BIG);
    CHECK(dst != NULL, "calloc");
    struct slow_writer w = {
        .fd = wfd, .src = src, .len = BIG, .chunk = 128 << 10, .sleep_us = 1000};
    photon_thread *th = spawn_joinable(slow_writer_main, &w, 0);
    uint64_t t0 = photon_now_us();
    errno = 0;
    ssize_t r = photon_read_full(rfd, dst, BIG, 20 * SEC);
    uint64_t took = elapsed_us(t0);
    CHECK(r == (ssize_t)BIG, "read_full gave %zd (errno %s), want %u", r, strerror(errno), BIG);
    CHECK(memcmp(src, dst, BIG) == 0, "8 MiB arrived corrupted");
    CHECK(took >= 64 * 1000, "read_full took only %" PRIu64 " us: it did not wait", took);
    join_ok(th);
    SAY("  %" PRIu64 " ms", took / 1000);
    free(dst);
    free(src);
}

/* --- a single photon_write of 8 MiB is partial; the count is exact --- */

static void single_write_is_partial(int wfd, int rfd, const char *what) {
    SAY("%s: one photon_write of 8 MiB writes part of it; that many bytes arrive", what);
    unsigned char *src = pattern_buf(BIG);
    unsigned char *dst = malloc(BIG);
    CHECK(dst != NULL, "malloc");
    ssize_t w = photon_write(wfd, src, BIG, 5 * SEC);
    CHECK(w > 0 && w < (ssize_t)BIG, "photon_write(8 MiB) gave %zd (%s)", w, strerror(errno));
    ssize_t r = photon_read_full(rfd, dst, (size_t)w, 5 * SEC);
    CHECK(r == w, "read_full(%zd) gave %zd (%s)", w, r, strerror(errno));
    CHECK(memcmp(src, dst, (size_t)w) == 0, "partial write arrived corrupted");
    ssize_t extra = photon_recv(rfd, dst, 1, MSG_DONTWAIT, 0);
    CHECK(extra == -1 && errno == EAGAIN, "more than the returned count arrived: %zd", extra);
    SAY("  wrote %zd bytes", w);
    free(dst);
    free(src);
}

/* --- readv / writev with several iovecs --- */

static void vectored(int wfd, int rfd, const char *what) {
    SAY("%s: writev of 4 iovecs (1, 1000, 0, 300000 bytes), readv into 3 (7, 77777, rest)",
        what);
    const size_t sizes[4] = {1, 1000, 0, 300000};
    size_t total = 0;
    for (int i = 0; i < 4; i++) {
        total += sizes[i];
    }
    unsigned char *src = pattern_buf(total);
    struct iovec wv[4];
    size_t off = 0;
    for (int i = 0; i < 4; i++) {
        wv[i].iov_base = src + off;
        wv[i].iov_len = sizes[i];
        off += sizes[i];
    }
    unsigned char *dst = calloc(1, total + 64);
    CHECK(dst != NULL, "calloc");
    /* alternate: writev what is left, readv what arrived, until all is through */
    size_t sent = 0, got = 0;
    int writevs = 0, readvs = 0;
    while (got < total) {
        if (sent < total) {
            /* skip what was sent already */
            struct iovec cur[4];
            int n = 0;
            size_t skip = sent;
            for (int i = 0; i < 4; i++) {
                if (skip >= wv[i].iov_len) {
                    skip -= wv[i].iov_len;
                    continue;
                }
                cur[n].iov_base = (unsigned char *)wv[i].iov_base + skip;
                cur[n].iov_len = wv[i].iov_len - skip;
                skip = 0;
                n++;
            }
            ssize_t w = photon_writev(wfd, cur, n, 5 * SEC);
            CHECK(w > 0, "photon_writev gave %zd (%s)", w, strerror(errno));
            sent += (size_t)w;
            writevs++;
        }
        /* readv into 3 iovecs: 7 bytes, 77777 bytes, the rest (+64 spare) */
        size_t room = total + 64 - got;
        size_t a = room < 7 ? room : 7;
        size_t b = room - a < 77777 ? room - a : 77777;
        struct iovec rv[3] = {
            {dst + got, a}, {dst + got + a, b}, {dst + got + a + b, room - a - b}};
        ssize_t r = photon_readv(rfd, rv, 3, 5 * SEC);
        CHECK(r > 0, "photon_readv gave %zd (%s)", r, strerror(errno));
        CHECK(got + (size_t)r <= sent, "readv returned %zd bytes, only %zu were sent", r,
              sent - got);
        got += (size_t)r;
        readvs++;
    }
    CHECK(memcmp(src, dst, total) == 0, "vectored data arrived corrupted");
    SAY("  %d writev, %d readv calls", writevs, readvs);
    /* a readv on an empty socket waits, and times out */
    struct iovec rv[2] = {{dst, 10}, {dst + 10, 10}};
    uint64_t t0 = photon_now_us();
    CHECK_ERRNO(photon_readv(rfd, rv, 2, 50000), ETIMEDOUT);
    CHECK(elapsed_us(t0) >= 50000, "readv timed out early");
    free(dst);
    free(src);
}

/* --- recv waits once and returns what arrived; read_full loops --- */

struct dribble {
    int fd;
    int pieces;
    size_t piece;
    uint64_t gap_us;
};

static void *dribble_main(void *arg) {
    struct dribble *d = arg;
    unsigned char buf[4096];
    for (int p = 0; p < d->pieces; p++) {
        CHECK_OK(photon_thread_usleep(d->gap_us));
        for (size_t i = 0; i < d->piece; i++) {
            buf[i] = pattern((size_t)p * d->piece + i);
        }
        CHECK(photon_write_full(d->fd, buf, d->piece, SEC) == (ssize_t)d->piece,
              "dribble write: %s", strerror(errno));
    }
    return NULL;
}

static void recv_once_read_full_loops(int wfd, int rfd, const char *what) {
    SAY("%s: recv(4096) returns the first 100-byte piece (waits once)", what);
    unsigned char buf[4096];
    struct dribble d = {.fd = wfd, .pieces = 3, .piece = 100, .gap_us = 20000};
    photon_thread *th = spawn_joinable(dribble_main, &d, 0);
    uint64_t t0 = photon_now_us();
    ssize_t r = photon_recv(rfd, buf, sizeof buf, 0, 5 * SEC);
    uint64_t took = elapsed_us(t0);
    CHECK(r == 100, "recv gave %zd (%s), want the 100 bytes that arrived", r, strerror(errno));
    CHECK(took >= 15000 && took < 60000, "recv returned after %" PRIu64 " us (piece at 20 ms)",
          took);
    for (size_t i = 0; i < 100; i++) {
        CHECK(buf[i] == pattern(i), "recv byte %zu wrong", i);
    }
    SAY("%s: read_full(200) loops over the next two pieces", what);
    t0 = photon_now_us();
    r = photon_read_full(rfd, buf, 200, 5 * SEC);
    took = elapsed_us(t0);
    CHECK(r == 200, "read_full gave %zd (%s)", r, strerror(errno));
    CHECK(took >= 30000, "read_full returned after %" PRIu64 " us (last piece at 60 ms)", took);
    for (size_t i = 0; i < 200; i++) {
        CHECK(buf[i] == pattern(100 + i), "read_full byte %zu wrong", i);
    }
    join_ok(th);

    SAY("%s: photon_read of 4096 likewise returns the 100 bytes that arrived", what);
    d.pieces = 1;
    th = spawn_joinable(dribble_main, &d, 0);
    r = photon_read(rfd, buf, sizeof buf, 5 * SEC);
    CHECK(r == 100, "read gave %zd (%s)", r, strerror(errno));
    join_ok(th);
}

static void eof(int wfd, int rfd, const char *what) {
    SAY("%s: EOF: read_full returns the short count, then read/recv/read_full give 0", what);
    unsigned char buf[1000];
    memset(buf, 0x5a, sizeof buf);
    CHECK(photon_write_full(wfd, buf, 300, SEC) == 300, "write: %s", strerror(errno));
    CHECK_OK(shutdown(wfd, SHUT_WR));
    memset(buf, 0, sizeof buf);
    ssize_t r = photon_read_full(rfd, buf, sizeof buf, 5 * SEC);
    CHECK(r == 300, "read_full up to EOF gave %zd (%s), want 300", r, strerror(errno));
    CHECK(buf[0] == 0x5a && buf[299] == 0x5a && buf[300] == 0, "read_full data wrong");
    CHECK(photon_read(rfd, buf, sizeof buf, SEC) == 0, "read at EOF: %s", strerror(errno));
    CHECK(photon_recv(rfd, buf, sizeof buf, 0, SEC) == 0, "recv at EOF: %s", strerror(errno));
    CHECK(photon_read_full(rfd, buf, sizeof buf, SEC) == 0, "read_full at EOF: %s",
          strerror(errno));
    struct iovec iov[2] = {{buf, 10}, {buf + 10, 10}};
    CHECK(photon_readv(rfd, iov, 2, SEC) == 0, "readv at EOF: %s", strerror(errno));
}

struct eof_waiter {
    int fd;
    ssize_t ret;
    uint64_t took;
};

static void *eof_waiter_main(void *arg) {
    struct eof_waiter *e = arg;
    char buf[16];
    uint64_t t0 = photon_now_us();
    e->ret = photon_read(e->fd, buf, sizeof buf, 5 * SEC);
    e->took = elapsed_us(t0);
    return NULL;
}

static void eof_wakes_reader(int wfd, int rfd, const char *what) {
    SAY("%s: a reader blocked in photon_read wakes with 0 when the peer closes", what);
    struct eof_waiter e = {.fd = rfd, .ret = 99};
    photon_thread *th = spawn_joinable(eof_waiter_main, &e, 0);
    CHECK_OK(photon_thread_usleep(20000));
    CHECK_OK(photon_close(wfd));
    join_ok(th);
    CHECK(e.ret == 0, "read gave %zd (%s), want 0 at EOF", e.ret, strerror(errno));
    CHECK(e.took >= 15000 && e.took < 500000, "woke after %" PRIu64 " us", e.took);
}

static void run_all(int a[2], const char *what) {
    big_write_slow_reader(a[0], a[1], what);
    big_read_slow_writer(a[1], a[0], what);
    single_write_is_partial(a[0], a[1], what);
    vectored(a[1], a[0], what);
    recv_once_read_full_loops(a[0], a[1], what);
    eof(a[1], a[0], what);
    eof_wakes_reader(a[0], a[1], what);
    CHECK_OK(photon_close(a[1]));
}

int main(void) {
    test_start("net_partial");
    test_init();

    int sp[2];
    /* plain blocking fds: photon calls must work on them as they are */
    CHECK_OK(socketpair(AF_UNIX, SOCK_STREAM, 0, sp));
    run_all(sp, "socketpair");

    int tp[2];
    tcp_pair(tp);
    run_all(tp, "tcp");

    test_fini();
    SAY("net_partial: OK");
    return 0;
}
