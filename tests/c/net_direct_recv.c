/*
 * Receives on a stream socket whose bytes are already queued (io_uring:
 * the last ring receive came back with IORING_CQE_F_SOCK_NONEMPTY) go
 * straight to a non-blocking recv on the vcpu instead of a ring receive
 * each (PHOTON_IO_OFF=direct_recv turns that off). Checked under both
 * engines, with the feature on and off:
 *  - 512 KiB queued at once, read back 4 KiB at a time through photon_recv
 *    and photon_read in turn, with a MSG_PEEK among them: every byte in
 *    order; on io_uring with the feature on, far fewer engine operations
 *    than reads (the first receive sees the rest queued); with it off, about
 *    one per read (so the count tells the paths apart);
 *  - a receive once the queue is drained waits as usual: it times out on an
 *    idle socket, and gets bytes written later by another photon thread;
 *  - the end of the stream after queued bytes: the bytes, then 0.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "check.h"

#define SEC 1000000ULL
#define TOTAL (512u << 10)
#define PIECE 4096u

static unsigned char pattern(size_t i) { return (unsigned char)((i * 7u + (i >> 12)) & 0xff); }

static unsigned char data[TOTAL];

/* fds[0]: the reader (connects, 1 MiB receive buffer set first);
 * fds[1]: the writer (accepted, 1 MiB send buffer). */
static void tcp_pair(int fds[2]) {
    int big = 1 << 20;
    tcp_loopback_pair(fds, big);
    CHECK_OK(setsockopt(fds[1], SOL_SOCKET, SO_SNDBUF, &big, sizeof big));
}

struct writer {
    int fd;
    size_t from, len;
    int close_after;
};

static void *writer_main(void *arg) {
    struct writer *w = arg;
    CHECK(photon_write_full(w->fd, data + w->from, w->len, 10 * SEC) == (ssize_t)w->len,
          "write_full: %s", strerror(errno));
    if (w->close_after) CHECK_OK(photon_close(w->fd));
    return NULL;
}

static int direct_expected(void) {
    return engine_is("io_uring") && !io_feature_listed("PHOTON_IO_OFF", "direct_recv");
}

static int uring_without_direct(void) {
    return engine_is("io_uring") && io_feature_listed("PHOTON_IO_OFF", "direct_recv");
}

/* Reads `len` bytes from `fd` in pieces of PIECE, checking them against
 * data[from..]; alternates photon_recv and photon_read, peeking first
 * every 16th piece. Returns the number of reads. */
static unsigned read_checked(int fd, size_t from, size_t len) {
    unsigned reads = 0;
    size_t got = 0;
    while (got < len) {
        unsigned char b[PIECE];
        size_t want = len - got < PIECE ? len - got : PIECE;
        if (reads % 16 == 5) {
            ssize_t p = photon_recv(fd, b, want, MSG_PEEK, 5 * SEC);
            CHECK(p > 0, "peek: %s", strerror(errno));
            CHECK(memcmp(b, data + from + got, (size_t)p) == 0, "peek at %zu: wrong bytes", from + got);
        }
        ssize_t r = reads % 2 ? photon_read(fd, b, want, 5 * SEC) : photon_recv(fd, b, want, 0, 5 * SEC);
        CHECK(r > 0, "read at %zu: %zd (%s)", from + got, r, strerror(errno));
        CHECK(memcmp(b, data + from + got, (size_t)r) == 0, "at %zu: wrong bytes", from + got);
        got += (size_t)r;
        reads++;
    }
    return reads;
}

int main(void) {
    test_start("net_direct_recv");
    test_init();
    for (size_t i = 0; i < TOTAL; i++) data[i] = pattern(i);
    int fds[2];
    tcp_pair(fds);

    SAY("512 KiB queued at once, read 4 KiB at a time");
    struct writer w = {fds[1], 0, TOTAL, 0};
    photon_thread *wt = spawn_joinable(writer_main, &w, 0);
    CHECK_OK(photon_thread_usleep(50000)); /* let it all arrive */
    uint64_t ops0 = io_submitted();
    unsigned reads = read_checked(fds[0], 0, TOTAL);
    uint64_t ops = io_submitted() - ops0;
    join_ok(wt);
    SAY("  %u reads, %" PRIu64 " engine operations waited for", reads, ops);
    if (direct_expected()) {
        CHECK(ops * 4 < reads, "direct receives: %" PRIu64 " engine operations for %u reads of queued bytes",
              ops, reads);
    }
    if (uring_without_direct()) {
        CHECK(ops * 2 >= reads, "without direct receives: only %" PRIu64 " engine operations for %u reads",
              ops, reads);
    }

    SAY("a receive on the drained socket waits: it times out, then gets later bytes");
    unsigned char b[PIECE];
    uint64_t t0 = photon_now_us();
    errno = 0;
    CHECK(photon_recv(fds[0], b, sizeof b, 0, 20000) == -1 && errno == ETIMEDOUT,
          "an idle socket's receive: errno %d (%s)", errno, strerror(errno));
    CHECK(elapsed_us(t0) >= 19000, "timed out after %" PRIu64 " us", elapsed_us(t0));
    struct writer w2 = {fds[1], 1000, 3 * PIECE, 0};
    wt = spawn_joinable(writer_main, &w2, 0);
    read_checked(fds[0], 1000, 3 * PIECE);
    join_ok(wt);

    SAY("the end of the stream after queued bytes: the bytes, then 0");
    struct writer w3 = {fds[1], 0, 64u << 10, 1};
    writer_main(&w3);
    CHECK_OK(photon_thread_usleep(20000));
    read_checked(fds[0], 0, 64u << 10);
    CHECK(photon_recv(fds[0], b, sizeof b, 0, 5 * SEC) == 0, "end of stream: %s", strerror(errno));
    CHECK(photon_read(fds[0], b, sizeof b, 5 * SEC) == 0, "end of stream again: %s", strerror(errno));
    CHECK_OK(photon_close(fds[0]));

    test_fini();
    SAY("ok");
    return 0;
}
