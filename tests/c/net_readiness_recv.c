/*
 * On io_uring a receive on a stream socket whose last receive drained a
 * bulk amount (8 KiB or more: the peer's writes piled up, it streams) waits
 * for readiness (a ring poll) and then receives with a non-blocking recv on
 * the vcpu when the thread runs, as an epoll thread does; a receive of less
 * (ping-pong sizes) goes back to ring receives. PHOTON_IO_OFF=readiness_recv
 * keeps every such receive a ring receive. What a parked reader waits for
 * shows in photon_dump_threads: "wait readable on fd N" (a readiness wait)
 * or "recv on fd N" (a ring receive). Checked under both engines, with the
 * feature on and off:
 *  - a reader fed 32 KiB at a time (each drains the socket): from its second
 *    receive on, io_uring with the feature on parks it in a readiness wait,
 *    with it off in a ring receive; epoll always waits for readiness; every
 *    byte in order;
 *  - then fed 512 B at a time: back to ring receives on io_uring whatever
 *    the feature; then 32 KiB again: readiness again (feature on);
 *  - in bulk mode, a receive on the idle socket times out, and the end of
 *    the stream is seen (0);
 *  - 8 MiB streamed by an OS thread in pieces of 48 KiB, read through
 *    photon_recv and photon_read in turn while other photon threads keep
 *    the vcpu busy: every byte in order, then 0 at the end.
 */
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>

#include "check.h"

#define SEC 1000000ULL
#define BULK (32u << 10)
#define SMALL 512u
#define BUF (64u << 10)
#define STREAM (8u << 20)
#define PIECE (48u << 10)

static unsigned char pattern(size_t i) { return (unsigned char)((i * 11u + (i >> 10) * 3u) & 0xff); }

/* What the dump says the thread named "reader" is blocked in, once it is
 * blocked (waits up to 5 s): 'r' a readiness wait on `fd`, 'q' a ring
 * receive on `fd`. */
static char reader_wait(int fd) {
    char want_ready[64], want_recv[64];
    snprintf(want_ready, sizeof want_ready, "blocked: wait readable on fd %d ", fd);
    snprintf(want_recv, sizeof want_recv, "blocked: recv on fd %d ", fd);
    static char buf[16384];
    uint64_t t0 = photon_now_us();
    for (;;) {
        FILE *f = tmpfile();
        CHECK(f != NULL, "tmpfile: %s", strerror(errno));
        CHECK(photon_dump_threads(fileno(f)) >= 0, "dump: %s", strerror(errno));
        rewind(f);
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        buf[n] = 0;
        fclose(f);
        char *line = strstr(buf, "\"reader\"");
        CHECK(line != NULL, "no reader in the dump:\n%s", buf);
        char *end = strchr(line, '\n');
        if (end) *end = 0;
        if (strstr(line, want_ready)) return 'r';
        if (strstr(line, want_recv)) return 'q';
        CHECK(strstr(line, "blocked") == NULL, "the reader is blocked in something else: %s", line);
        CHECK(elapsed_us(t0) < 5 * SEC, "the reader never blocked: %s", line);
        CHECK_OK(photon_thread_usleep(1000));
    }
}

static unsigned char data[STREAM];

/* The reader of the stepped phases: receives `len` bytes per step into a
 * 64 KiB buffer, checking them. */
struct stepper {
    int fd;
    size_t at;          /* bytes of data[] checked so far */
    unsigned steps;     /* steps to take */
    size_t len;         /* bytes per step */
    volatile unsigned done; /* steps done */
    unsigned multi;     /* steps that needed more than one receive */
};

static void *stepper_main(void *arg) {
    struct stepper *s = arg;
    static unsigned char b[BUF];
    for (unsigned i = 0; i < s->steps; i++) {
        size_t got = 0;
        unsigned recvs = 0;
        while (got < s->len) {
            ssize_t n = photon_recv(s->fd, b, sizeof b, 0, 10 * SEC);
            CHECK(n > 0, "step %u: recv %zd (%s)", i, n, strerror(errno));
            CHECK(memcmp(b, data + s->at + got, (size_t)n) == 0, "step %u: wrong bytes at %zu", i, s->at + got);
            got += (size_t)n;
            recvs++;
        }
        CHECK(got == s->len, "step %u: %zu bytes, not %zu", i, got, s->len);
        if (recvs > 1) s->multi++;
        s->at += got;
        s->done = i + 1;
    }
    return NULL;
}

/* Feeds `steps` steps of `len` bytes to a stepper reading fds[0] from
 * data[*at], each once the reader is parked, and returns how many of its
 * waits (from the second on) were readiness waits. */
static unsigned feed(int fds[2], size_t *at, unsigned steps, size_t len) {
    struct stepper s = {fds[0], *at, steps, len, 0, 0};
    photon_thread *th = spawn_joinable(stepper_main, &s, 0);
    CHECK_OK(photon_thread_set_name(th, "reader"));
    unsigned ready = 0;
    for (unsigned i = 0; i < steps; i++) {
        /* The reader took the last step (it parks in its next receive
         * before main runs again). */
        uint64_t t0 = photon_now_us();
        while (s.done < i) {
            CHECK(elapsed_us(t0) < 5 * SEC, "step %u not taken", i - 1);
            CHECK_OK(photon_thread_usleep(200));
        }
        char w = reader_wait(fds[0]);
        if (i > 0 && w == 'r') ready++;
        if (!engine_is("io_uring")) CHECK(w == 'r', "epoll: step %u: the reader should wait for readiness", i);
        CHECK(photon_write_full(fds[1], data + *at + (size_t)i * len, len, 5 * SEC) == (ssize_t)len, "write: %s",
              strerror(errno));
    }
    join_ok(th);
    CHECK(s.done == steps, "%u steps of %u", s.done, steps);
    *at += (size_t)steps * len;
    return ready;
}

/* The OS-thread writer of the streaming phase: blocking sends of PIECE
 * bytes, a short pause every 8th, then a close. */
static void *os_writer(void *arg) {
    int fd = *(int *)arg;
    int fl = fcntl(fd, F_GETFL);
    CHECK(fl >= 0 && fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) == 0, "fcntl: %s", strerror(errno));
    size_t sent = 0;
    unsigned k = 0;
    while (sent < STREAM) {
        size_t want = STREAM - sent < PIECE ? STREAM - sent : PIECE;
        ssize_t n = send(fd, data + sent, want, MSG_NOSIGNAL);
        CHECK(n > 0, "os writer: send %zd (%s)", n, strerror(errno));
        sent += (size_t)n;
        if (++k % 8 == 0) usleep(200);
    }
    CHECK_OK(shutdown(fd, SHUT_WR));
    return NULL;
}

static volatile int busy_stop;

/* Keeps the vcpu's run queue non-empty. */
static void *busy_main(void *arg) {
    (void)arg;
    while (!busy_stop) {
        photon_thread_yield();
        CHECK_OK(photon_thread_usleep(50));
    }
    return NULL;
}

int main(void) {
    test_start("net_readiness_recv");
    test_init();
    for (size_t i = 0; i < STREAM; i++) data[i] = pattern(i);
    int big = 1 << 20;
    int fds[2];
    tcp_loopback_pair(fds, big);
    CHECK_OK(setsockopt(fds[1], SOL_SOCKET, SO_SNDBUF, &big, sizeof big));
    int expect_ready = engine_is("io_uring") && !io_feature_listed("PHOTON_IO_OFF", "readiness_recv");
    size_t at = 0;

    SAY("bulk: 12 steps of %u KiB", BULK >> 10);
    unsigned ready = feed(fds, &at, 12, BULK);
    SAY("  %u of 11 waits were readiness waits", ready);
    if (engine_is("io_uring"))
        CHECK(ready == (expect_ready ? 11u : 0u), "%u readiness waits of 11 (feature %s)", ready,
              expect_ready ? "on" : "off");

    SAY("ping-pong sizes: 12 steps of %u B", SMALL);
    ready = feed(fds, &at, 12, SMALL);
    SAY("  %u of 11 waits were readiness waits", ready);
    if (engine_is("io_uring")) CHECK(ready == 0, "small receives should be ring receives: %u readiness waits", ready);

    SAY("bulk again: 6 steps");
    ready = feed(fds, &at, 6, BULK);
    SAY("  %u of 5 waits were readiness waits", ready);
    if (engine_is("io_uring")) CHECK(ready == (expect_ready ? 5u : 0u), "%u readiness waits of 5", ready);

    SAY("bulk mode: a receive on the idle socket times out, then gets later bytes");
    static unsigned char b[BUF];
    uint64_t t0 = photon_now_us();
    errno = 0;
    CHECK(photon_recv(fds[0], b, sizeof b, 0, 20000) == -1 && errno == ETIMEDOUT, "an idle socket's receive: %s",
          strerror(errno));
    CHECK(elapsed_us(t0) >= 19000, "timed out after %" PRIu64 " us", elapsed_us(t0));
    CHECK(photon_write_full(fds[1], data + at, BULK, 5 * SEC) == (ssize_t)BULK, "write: %s", strerror(errno));
    size_t got = 0;
    while (got < BULK) {
        ssize_t n = photon_read(fds[0], b, sizeof b, 5 * SEC);
        CHECK(n > 0, "read: %zd (%s)", n, strerror(errno));
        CHECK(memcmp(b, data + at + got, (size_t)n) == 0, "wrong bytes at %zu", at + got);
        got += (size_t)n;
    }
    CHECK(got == BULK, "%zu bytes", got);

    SAY("bulk mode: the end of the stream");
    CHECK_OK(shutdown(fds[1], SHUT_WR));
    CHECK(photon_recv(fds[0], b, sizeof b, 0, 5 * SEC) == 0, "end of stream: %s", strerror(errno));
    CHECK_OK(photon_close(fds[0]));
    CHECK_OK(photon_close(fds[1]));

    SAY("%u MiB streamed by an OS thread in %u KiB pieces, other photon threads busy", STREAM >> 20, PIECE >> 10);
    tcp_loopback_pair(fds, big);
    busy_stop = 0;
    photon_thread *busy[3];
    for (int k = 0; k < 3; k++) busy[k] = spawn_joinable(busy_main, NULL, 0);
    pthread_t w;
    CHECK(pthread_create(&w, NULL, os_writer, &fds[1]) == 0, "pthread_create");
    got = 0;
    unsigned reads = 0, bulk_reads = 0;
    while (got < STREAM) {
        ssize_t n = reads % 2 ? photon_read(fds[0], b, sizeof b, 10 * SEC) : photon_recv(fds[0], b, sizeof b, 0, 10 * SEC);
        CHECK(n > 0, "stream read at %zu: %zd (%s)", got, n, strerror(errno));
        CHECK(got + (size_t)n <= STREAM, "more bytes than sent");
        CHECK(memcmp(b, data + got, (size_t)n) == 0, "stream: wrong bytes at %zu", got);
        got += (size_t)n;
        reads++;
        if (n >= 8192) bulk_reads++;
    }
    CHECK(photon_recv(fds[0], b, sizeof b, 0, 10 * SEC) == 0, "end of stream: %s", strerror(errno));
    CHECK(pthread_join(w, NULL) == 0, "pthread_join");
    busy_stop = 1;
    for (int k = 0; k < 3; k++) join_ok(busy[k]);
    SAY("  %u reads, %u of them 8 KiB or more", reads, bulk_reads);
    CHECK_OK(photon_close(fds[0]));
    CHECK_OK(photon_close(fds[1]));

    test_fini();
    SAY("ok");
    return 0;
}
