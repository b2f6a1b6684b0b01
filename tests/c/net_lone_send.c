/*
 * On io_uring a send is a ring operation when it can share the scheduler
 * turn's io_uring_enter with other work (another photon thread ready to
 * run, or submissions already queued), and a direct non-blocking send on
 * the vcpu when it would go to the kernel alone: one syscall instead of a
 * park, an io_uring_enter of its own and a wake-up (a one-connection
 * ping-pong's every reply). PHOTON_IO_OFF=batched_send makes every send try
 * directly first. Checked under both engines (epoll always sends with a
 * syscall, so there only the bytes are checked):
 *  - one photon thread sending 400 messages of 512 B, by photon_send,
 *    photon_write and photon_writev in turn, with nothing else to run (the
 *    reader is an OS thread): every byte arrives in order; on io_uring
 *    hardly any send is an engine operation;
 *  - 8 photon threads, each on its own connection, sending 200 messages
 *    and yielding after each (so others are always ready to run): every
 *    byte arrives in order; on io_uring by default most sends are engine
 *    operations (batched), with batched_send off hardly any;
 *  - the same with 16 KiB messages: a send of 8 KiB or more tries directly
 *    first even with company (direct_big_send), so on io_uring hardly any
 *    is an engine operation; with direct_big_send off (batched_send on)
 *    most are.
 */
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "check.h"

#define SEC 1000000ULL
#define MSG 512u
#define LONE_SENDS 400u
#define SENDERS 8
#define EACH 200u
#define BIG (16u << 10)
#define BIG_EACH 40u

static unsigned char pattern(size_t i, unsigned salt) { return (unsigned char)((i * 13u + salt * 31u + (i >> 9)) & 0xff); }

/* An OS thread reading `len` bytes from `fd` with blocking recv(2) and
 * checking them against pattern(i, salt). */
struct reader {
    int fd;
    size_t len;
    unsigned salt;
    pthread_t th;
};

static void *reader_main(void *arg) {
    struct reader *r = arg;
    size_t got = 0;
    unsigned char b[8192];
    while (got < r->len) {
        ssize_t n = recv(r->fd, b, sizeof b, 0);
        CHECK(n > 0, "reader: recv returned %zd after %zu bytes (%s)", n, got, strerror(errno));
        for (ssize_t k = 0; k < n; k++)
            CHECK(b[k] == pattern(got + (size_t)k, r->salt), "reader %u: wrong byte at %zu", r->salt,
                  got + (size_t)k);
        got += (size_t)n;
    }
    return NULL;
}

/* The reader's end (a photon-made socket, non-blocking) blocks in recv(2). */
static void start_reader(struct reader *r) {
    int fl = fcntl(r->fd, F_GETFL);
    CHECK(fl >= 0, "F_GETFL: %s", strerror(errno));
    CHECK_OK(fcntl(r->fd, F_SETFL, fl & ~O_NONBLOCK));
    CHECK(pthread_create(&r->th, NULL, reader_main, r) == 0, "pthread_create");
}

static void finish_reader(struct reader *r) { CHECK(pthread_join(r->th, NULL) == 0, "pthread_join"); }

/* Sends message i (of `size` bytes, built in `m`) of connection `salt` on
 * fd, by one of three calls; a short send's rest goes by photon_send. */
static void send_msg_sized(int fd, unsigned salt, unsigned i, unsigned char *m, size_t size) {
    for (size_t k = 0; k < size; k++) m[k] = pattern((size_t)i * size + k, salt);
    ssize_t n;
    switch (i % 3) {
    case 0:
        n = photon_send(fd, m, size, 0, 10 * SEC);
        break;
    case 1:
        n = photon_write(fd, m, size, 10 * SEC);
        break;
    default: {
        struct iovec iov[2] = {{m, 100}, {m + 100, size - 100}};
        n = photon_writev(fd, iov, 2, 10 * SEC);
        break;
    }
    }
    CHECK(n > 0, "send %u of connection %u: %zd (%s)", i, salt, n, strerror(errno));
    size_t done = (size_t)n;
    while (done < size) {
        n = photon_send(fd, m + done, size - done, 0, 10 * SEC);
        CHECK(n > 0, "rest of send %u of connection %u: %zd (%s)", i, salt, n, strerror(errno));
        done += (size_t)n;
    }
}

static void send_msg(int fd, unsigned salt, unsigned i) {
    unsigned char m[MSG];
    send_msg_sized(fd, salt, i, m, MSG);
}

struct sender {
    int fd;
    unsigned salt;
    size_t size;     /* bytes per message */
    unsigned count;  /* messages */
    unsigned char *buf;
};

static void *sender_main(void *arg) {
    struct sender *s = arg;
    for (unsigned i = 0; i < s->count; i++) {
        send_msg_sized(s->fd, s->salt, i, s->buf, s->size);
        photon_thread_yield();
    }
    return NULL;
}

/* SENDERS photon threads, each on its own connection read by an OS
 * thread, send `count` messages of `size` bytes, yielding after each.
 * Returns the engine operations waited for meanwhile. */
static uint64_t senders_in_turn(size_t size, unsigned count) {
    static unsigned char bufs[SENDERS][BIG];
    struct sender s[SENDERS];
    struct reader rs[SENDERS];
    photon_thread *th[SENDERS];
    int fds[2];
    for (int k = 0; k < SENDERS; k++) {
        tcp_loopback_pair(fds, 0);
        /* Room for all of it: no send waits for the reader. */
        int room = 1 << 20;
        CHECK_OK(setsockopt(fds[0], SOL_SOCKET, SO_SNDBUF, &room, sizeof room));
        CHECK_OK(setsockopt(fds[1], SOL_SOCKET, SO_RCVBUF, &room, sizeof room));
        s[k] = (struct sender){fds[0], (unsigned)k + 1, size, count, bufs[k]};
        rs[k] = (struct reader){fds[1], size * count, (unsigned)k + 1, 0};
        start_reader(&rs[k]);
    }
    uint64_t ops0 = io_submitted();
    for (int k = 0; k < SENDERS; k++) th[k] = spawn_joinable(sender_main, &s[k], 0);
    for (int k = 0; k < SENDERS; k++) join_ok(th[k]);
    uint64_t ops = io_submitted() - ops0;
    for (int k = 0; k < SENDERS; k++) {
        finish_reader(&rs[k]);
        CHECK_OK(photon_close(s[k].fd));
        CHECK_OK(photon_close(rs[k].fd));
    }
    return ops;
}

int main(void) {
    test_start("net_lone_send");
    test_init();

    SAY("one photon thread sending alone: %u messages of %u B", LONE_SENDS, MSG);
    int fds[2];
    tcp_loopback_pair(fds, 0);
    struct reader r = {fds[1], (size_t)LONE_SENDS * MSG, 0, 0};
    start_reader(&r);
    uint64_t ops0 = io_submitted();
    for (unsigned i = 0; i < LONE_SENDS; i++) send_msg(fds[0], 0, i);
    uint64_t ops = io_submitted() - ops0;
    finish_reader(&r);
    SAY("  %" PRIu64 " engine operations for %u sends", ops, LONE_SENDS);
    if (engine_is("io_uring"))
        CHECK(ops * 10 < LONE_SENDS, "a lone send should go directly: %" PRIu64 " engine operations for %u sends",
              ops, LONE_SENDS);
    CHECK_OK(photon_close(fds[0]));
    CHECK_OK(photon_close(fds[1]));

    SAY("%d photon threads sending in turn, yielding after each send", SENDERS);
    ops = senders_in_turn(MSG, EACH);
    unsigned sends = SENDERS * EACH;
    SAY("  %" PRIu64 " engine operations for %u sends", ops, sends);
    if (engine_is("io_uring") && !io_feature_listed("PHOTON_IO_OFF", "batched_send"))
        CHECK(ops * 2 >= sends, "sends with company should be batched on the ring: %" PRIu64
              " engine operations for %u sends", ops, sends);
    if (engine_is("io_uring") && io_feature_listed("PHOTON_IO_OFF", "batched_send"))
        CHECK(ops * 10 < sends, "with batched_send off sends go directly: %" PRIu64 " engine operations for %u sends",
              ops, sends);

    SAY("the same with %u KiB messages", BIG >> 10);
    ops = senders_in_turn(BIG, BIG_EACH);
    sends = SENDERS * BIG_EACH;
    SAY("  %" PRIu64 " engine operations for %u sends", ops, sends);
    if (engine_is("io_uring") && !io_feature_listed("PHOTON_IO_OFF", "direct_big_send"))
        CHECK(ops * 4 < sends, "a big send should go directly: %" PRIu64 " engine operations for %u sends", ops,
              sends);
    if (engine_is("io_uring") && io_feature_listed("PHOTON_IO_OFF", "direct_big_send") && !io_feature_listed("PHOTON_IO_OFF", "batched_send"))
        CHECK(ops * 2 >= sends, "with direct_big_send off big sends with company are batched: %" PRIu64
              " engine operations for %u sends", ops, sends);

    test_fini();
    SAY("ok");
    return 0;
}
