/*
 * photon_close(fd) wakes the photon threads blocked on fd, on every vcpu:
 * their calls fail with -1/ECANCELED (photon.h: "their calls fail with
 * ECANCELED") promptly, without a crash. Covers read, recv, readv,
 * wait_fd, accept, write on a full buffer, several threads blocked on the
 * same fd at once, and a closed fd number reused by a new socket, which
 * must then behave as a fresh fd (no stale state from the old one), a
 * closed listener that refuses connections at once, and
 * threads of another vcpu blocked on the fd (read, recv, wait_fd). Also
 * photon_fini with threads blocked without a timeout in read and accept:
 * they fail with ECANCELED and fini returns promptly.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <unistd.h>

#include "check.h"

#define SEC 1000000ULL
#define PROMPT_US 100000ULL

static void tcp_listener(int *lfd, struct sockaddr_in *sin) {
    *lfd = photon_socket(AF_INET, SOCK_STREAM, 0);
    CHECK(*lfd >= 0, "photon_socket: %s", strerror(errno));
    memset(sin, 0, sizeof *sin);
    sin->sin_family = AF_INET;
    sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CHECK_OK(bind(*lfd, (struct sockaddr *)sin, sizeof *sin));
    CHECK_OK(listen(*lfd, 16));
    socklen_t len = sizeof *sin;
    CHECK_OK(getsockname(*lfd, (struct sockaddr *)sin, &len));
}

static void tcp_pair(int fds[2]) {
    int lfd;
    struct sockaddr_in sin;
    tcp_listener(&lfd, &sin);
    fds[0] = photon_socket(AF_INET, SOCK_STREAM, 0);
    CHECK(fds[0] >= 0, "photon_socket: %s", strerror(errno));
    CHECK_OK(photon_connect(fds[0], (struct sockaddr *)&sin, sizeof sin, 5 * SEC));
    fds[1] = photon_accept(lfd, NULL, NULL, 5 * SEC);
    CHECK(fds[1] >= 0, "photon_accept: %s", strerror(errno));
    CHECK_OK(photon_close(lfd));
}

enum op { OP_READ, OP_RECV, OP_READV, OP_WAIT_FD, OP_ACCEPT, OP_WRITE, OP_READ_FULL };
static const char *op_name[] = {"read",   "recv",  "readv",    "wait_fd",
                                "accept", "write", "read_full"};

struct blocked {
    enum op op;
    int fd;
    atomic_int entered;
    long ret;
    int err;
    uint64_t woke_at;
    atomic_int done;
};

static unsigned char big_buf[1 << 20];

static void *blocked_main(void *arg) {
    struct blocked *b = arg;
    char buf[256];
    struct iovec iov[2] = {{buf, 10}, {buf + 10, sizeof buf - 10}};
    atomic_store(&b->entered, 1);
    errno = 0;
    switch (b->op) {
    case OP_READ: b->ret = photon_read(b->fd, buf, sizeof buf, 10 * SEC); break;
    case OP_RECV: b->ret = photon_recv(b->fd, buf, sizeof buf, 0, 10 * SEC); break;
    case OP_READV: b->ret = photon_readv(b->fd, iov, 2, 10 * SEC); break;
    case OP_WAIT_FD: b->ret = photon_wait_fd(b->fd, PHOTON_READABLE, 10 * SEC); break;
    case OP_ACCEPT: b->ret = photon_accept(b->fd, NULL, NULL, 10 * SEC); break;
    case OP_WRITE: b->ret = photon_write(b->fd, big_buf, sizeof big_buf, 10 * SEC); break;
    case OP_READ_FULL: b->ret = photon_read_full(b->fd, buf, sizeof buf, 10 * SEC); break;
    }
    b->err = errno;
    b->woke_at = photon_now_us();
    atomic_store(&b->done, 1);
    return NULL;
}

/* blocked_main without a timeout, as photon_fini must end it */
static void *fini_blocked_main(void *arg) {
    struct blocked *b = arg;
    char buf[64];
    atomic_store(&b->entered, 1);
    errno = 0;
    b->ret = b->op == OP_ACCEPT ? photon_accept(b->fd, NULL, NULL, PHOTON_FOREVER)
                                : photon_read(b->fd, buf, sizeof buf, PHOTON_FOREVER);
    b->err = errno;
    return NULL;
}

struct closer {
    int fd;
    int ret;
    int err;
    uint64_t closed_at;
};

static void *closer_main(void *arg) {
    struct closer *c = arg;
    CHECK_OK(photon_thread_usleep(20000)); /* the others are blocked by now */
    c->closed_at = photon_now_us();
    errno = 0;
    c->ret = photon_close(c->fd);
    c->err = errno;
    return NULL;
}

/* Blocks `n` threads in `ops` on `fd`; another photon thread closes fd:
 * each blocked call must fail with -1/ECANCELED promptly. */
static void close_under(int fd, const enum op *ops, int n) {
    struct blocked b[8];
    photon_thread *th[8];
    CHECK(n <= 8, "too many");
    for (int i = 0; i < n; i++) {
        memset(&b[i], 0, sizeof b[i]);
        b[i].op = ops[i];
        b[i].fd = fd;
        b[i].ret = 99;
        th[i] = spawn_joinable(blocked_main, &b[i], 0);
    }
    struct closer c = {.fd = fd, .ret = 99};
    photon_thread *cth = spawn_joinable(closer_main, &c, 0);
    join_ok(cth);
    CHECK(c.ret == 0, "photon_close: %d (%s)", c.ret, strerror(c.err));
    for (int i = 0; i < n; i++) {
        join_ok(th[i]);
        CHECK(atomic_load(&b[i].entered), "thread %d did not run", i);
        CHECK(b[i].woke_at >= c.closed_at, "%s returned %ld (%s) before the close: not blocked",
              op_name[b[i].op], b[i].ret, strerror(b[i].err));
        CHECK(b[i].ret == -1 && b[i].err == ECANCELED,
              "%s blocked on a closed fd: want -1 with ECANCELED, got %ld with errno %d (%s)",
              op_name[b[i].op], b[i].ret, b[i].err, strerror(b[i].err));
        uint64_t took = b[i].woke_at - c.closed_at;
        CHECK(took < PROMPT_US, "%s woke %" PRIu64 " us after the close", op_name[b[i].op],
              took);
    }
}

static void one_op(enum op op) {
    int p[2];
    tcp_pair(p);
    SAY("%s blocked on fd %d; another photon thread closes it", op_name[op], p[1]);
    close_under(p[1], &op, 1);
    /* the fd is really closed */
    errno = 0;
    CHECK(fcntl(p[1], F_GETFD) == -1 && errno == EBADF, "fd %d is still open", p[1]);
    CHECK_OK(photon_close(p[0]));
}

static void fill_send_buffer(int fd, int peer) {
    int small = 4096;
    CHECK_OK(setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &small, sizeof small));
    CHECK_OK(setsockopt(peer, SOL_SOCKET, SO_RCVBUF, &small, sizeof small));
    for (int round = 0; round < 3; round++) {
        for (;;) {
            ssize_t w = photon_send(fd, big_buf, sizeof big_buf, MSG_DONTWAIT, 0);
            if (w < 0) {
                CHECK(errno == EAGAIN, "filling send: %s", strerror(errno));
                break;
            }
        }
        CHECK_OK(photon_thread_usleep(10000));
    }
}

static void reused_fd_number(void) {
    SAY("a closed fd's number reused by a new socket behaves as a fresh fd");
    int p[2];
    tcp_pair(p);
    int old = p[1];
    enum op op = OP_READ;
    close_under(old, &op, 1);
    /* the next socket gets the lowest free number: the one just closed */
    int q[2];
    tcp_pair(q);
    int reused = q[0] == old ? q[0] : (q[1] == old ? q[1] : -1);
    SAY("  new pair %d,%d (old fd %d)", q[0], q[1], old);
    CHECK(reused == old, "no socket of the new pair reused fd %d", old);
    int other = reused == q[0] ? q[1] : q[0];
    /* a read blocked on the reused number waits for the new socket's data */
    struct blocked b = {.op = OP_READ, .fd = reused, .ret = 99};
    photon_thread *th = spawn_joinable(blocked_main, &b, 0);
    CHECK_OK(photon_thread_usleep(20000));
    CHECK(b.ret == 99, "read on the reused fd returned early: %ld (%s)", b.ret,
          strerror(b.err));
    CHECK(photon_write(other, "fresh", 5, SEC) == 5, "write: %s", strerror(errno));
    join_ok(th);
    CHECK(b.ret == 5, "read on the reused fd: %ld (%s)", b.ret, strerror(b.err));
    /* and the peer of the old socket sees EOF: old really closed */
    char c;
    CHECK(photon_read(p[0], &c, 1, SEC) == 0, "old peer: no EOF (%s)", strerror(errno));
    CHECK_OK(photon_close(p[0]));
    CHECK_OK(photon_close(q[0]));
    CHECK_OK(photon_close(q[1]));
}

/* A thread of another vcpu (a work pool's) blocked in `op` on fd; this
 * vcpu closes fd: that thread's call must fail with -1/ECANCELED promptly
 * too (its vcpu's engine is told; without that it slept to its timeout). */
static void close_from_other_vcpu(enum op op) {
    int p[2];
    tcp_pair(p);
    SAY("%s blocked on fd %d on another vcpu; this vcpu closes it", op_name[op], p[1]);
    photon_workpool *pool = photon_workpool_new(1, PHOTON_EVENT_DEFAULT);
    CHECK(pool != NULL, "photon_workpool_new: %s", strerror(errno));
    static struct blocked b;
    memset(&b, 0, sizeof b);
    b.op = op;
    b.fd = p[1];
    b.ret = 99;
    CHECK_OK(photon_workpool_spawn(pool, blocked_main, &b));
    while (!atomic_load(&b.entered)) CHECK_OK(photon_thread_usleep(1000));
    CHECK_OK(photon_thread_usleep(20000)); /* blocked by now */
    CHECK(!atomic_load(&b.done), "%s returned %ld (%s) before the close", op_name[op], b.ret,
          strerror(b.err));
    uint64_t t0 = photon_now_us();
    CHECK_OK(photon_close(p[1]));
    while (!atomic_load(&b.done) && elapsed_us(t0) < 3 * SEC) CHECK_OK(photon_thread_usleep(1000));
    CHECK(atomic_load(&b.done), "%s on the other vcpu still blocked 3 s after the close",
          op_name[op]);
    CHECK(b.ret == -1 && b.err == ECANCELED,
          "%s blocked on another vcpu: want -1 with ECANCELED, got %ld with errno %d (%s)",
          op_name[op], b.ret, b.err, strerror(b.err));
    uint64_t took = b.woke_at - t0;
    CHECK(took < PROMPT_US, "%s on the other vcpu woke %" PRIu64 " us after the close",
          op_name[op], took);
    CHECK_OK(photon_close(p[0]));
    photon_workpool_free(pool);
}

int main(void) {
    test_start("net_close_wakes");
    test_init();

    one_op(OP_READ);
    one_op(OP_RECV);
    one_op(OP_READV);
    one_op(OP_WAIT_FD);
    one_op(OP_READ_FULL);

    SAY("accept blocked on a listener; another photon thread closes the listener");
    {
        int lfd;
        struct sockaddr_in sin;
        tcp_listener(&lfd, &sin);
        enum op op = OP_ACCEPT;
        close_under(lfd, &op, 1);
        /* The listener is gone once photon_close returned, as after
         * close(2): io_uring's multishot accept that was armed on it must
         * not keep it taking connections. */
        int c = socket(AF_INET, SOCK_STREAM, 0);
        CHECK(c >= 0, "socket: %s", strerror(errno));
        errno = 0;
        CHECK(connect(c, (struct sockaddr *)&sin, sizeof sin) == -1 && errno == ECONNREFUSED,
              "connect to the closed listener: errno %d (%s), want ECONNREFUSED", errno, strerror(errno));
        CHECK_OK(close(c));
    }

    SAY("write blocked on a full send buffer; another photon thread closes it");
    {
        int p[2];
        tcp_pair(p);
        fill_send_buffer(p[0], p[1]);
        enum op op = OP_WRITE;
        close_under(p[0], &op, 1);
        CHECK_OK(photon_close(p[1]));
    }

    SAY("four threads blocked on one fd (read, recv, wait_fd, readv): all wake");
    {
        int p[2];
        tcp_pair(p);
        enum op ops[4] = {OP_READ, OP_RECV, OP_WAIT_FD, OP_READV};
        close_under(p[1], ops, 4);
        CHECK_OK(photon_close(p[0]));
    }

    reused_fd_number();

    close_from_other_vcpu(OP_RECV);
    close_from_other_vcpu(OP_READ);
    close_from_other_vcpu(OP_WAIT_FD);

    SAY("photon_close of a bad fd: -1/EBADF");
    CHECK_ERRNO(photon_close(-1), EBADF);

    SAY("photon_fini with threads blocked without a timeout in read and accept: they get "
        "ECANCELED, fini returns promptly");
    int p[2];
    tcp_pair(p);
    int lfd;
    struct sockaddr_in sin;
    tcp_listener(&lfd, &sin);
    static struct blocked fr = {.op = OP_READ, .ret = 99}, fa = {.op = OP_ACCEPT, .ret = 99};
    fr.fd = p[1];
    fa.fd = lfd;
    photon_thread *tr = photon_thread_create(fini_blocked_main, &fr, 0);
    photon_thread *ta = photon_thread_create(fini_blocked_main, &fa, 0);
    CHECK(tr != NULL && ta != NULL, "photon_thread_create: %s", strerror(errno));
    CHECK_OK(photon_thread_usleep(20000));
    CHECK(fr.ret == 99 && fa.ret == 99, "not blocked");
    uint64_t t0 = photon_now_us();
    test_fini();
    uint64_t took = elapsed_us(t0);
    CHECK(fr.ret == -1 && fr.err == ECANCELED,
          "read blocked at fini: want -1/ECANCELED, got %ld with errno %d (%s)", fr.ret, fr.err,
          strerror(fr.err));
    CHECK(fa.ret == -1 && fa.err == ECANCELED,
          "accept blocked at fini: want -1/ECANCELED, got %ld with errno %d (%s)", fa.ret,
          fa.err, strerror(fa.err));
    CHECK(took < 500000, "photon_fini took %" PRIu64 " us", took);
    close(p[0]);
    close(p[1]);
    close(lfd);

    SAY("net_close_wakes: OK");
    return 0;
}
