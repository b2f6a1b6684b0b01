/*
 * photon_thread_interrupt on threads blocked in fd I/O: the call returns -1
 * with the interrupter's errno (EINTR or a custom code) promptly, and the
 * socket still works afterwards: no data is lost, data sent after the
 * interrupt is what the next read returns. Covers read, recv, readv,
 * recvmsg, wait_fd, accept, write on a full buffer and connect to a full
 * backlog; a race of interrupts against arriving data (every byte arrives
 * once, in order); interrupts racing with arriving connections (every
 * connection accepted once, no fd leaked: a cancelled io_uring accept that
 * completed anyway must not lose its fd); a pending interrupt failing the
 * next read at once; and an interrupt from a plain pthread that is not a
 * vcpu.
 */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "check.h"

#define SEC 1000000ULL
#define PROMPT_US 100000ULL
#define CUSTOM_ERRNO 4242

static void tcp_listener(int *lfd, struct sockaddr_in *sin, int backlog) {
    *lfd = photon_socket(AF_INET, SOCK_STREAM, 0);
    CHECK(*lfd >= 0, "photon_socket: %s", strerror(errno));
    memset(sin, 0, sizeof *sin);
    sin->sin_family = AF_INET;
    sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CHECK_OK(bind(*lfd, (struct sockaddr *)sin, sizeof *sin));
    CHECK_OK(listen(*lfd, backlog));
    socklen_t len = sizeof *sin;
    CHECK_OK(getsockname(*lfd, (struct sockaddr *)sin, &len));
}

static void tcp_pair(int fds[2]) {
    int lfd;
    struct sockaddr_in sin;
    tcp_listener(&lfd, &sin, 4);
    fds[0] = photon_socket(AF_INET, SOCK_STREAM, 0);
    CHECK(fds[0] >= 0, "photon_socket: %s", strerror(errno));
    CHECK_OK(photon_connect(fds[0], (struct sockaddr *)&sin, sizeof sin, 5 * SEC));
    fds[1] = photon_accept(lfd, NULL, NULL, 5 * SEC);
    CHECK(fds[1] >= 0, "photon_accept: %s", strerror(errno));
    CHECK_OK(photon_close(lfd));
}

/* --- one blocked call, interrupted --- */

enum op { OP_READ, OP_RECV, OP_READV, OP_RECVMSG, OP_WAIT_FD, OP_ACCEPT, OP_WRITE, OP_CONNECT };
static const char *op_name[] = {"read",    "recv",   "readv", "recvmsg",
                                "wait_fd", "accept", "write", "connect"};

struct blocked {
    enum op op;
    int fd;
    const struct sockaddr *addr; /* connect */
    socklen_t addrlen;
    atomic_int entered;
    long ret;
    int err;
    uint64_t woke_at;
};

static unsigned char big_buf[1 << 20];

static void *blocked_main(void *arg) {
    struct blocked *b = arg;
    char buf[256];
    struct iovec iov[2] = {{buf, 10}, {buf + 10, sizeof buf - 10}};
    struct msghdr msg;
    memset(&msg, 0, sizeof msg);
    msg.msg_iov = iov;
    msg.msg_iovlen = 2;
    atomic_store(&b->entered, 1);
    errno = 0;
    switch (b->op) {
    case OP_READ: b->ret = photon_read(b->fd, buf, sizeof buf, PHOTON_FOREVER); break;
    case OP_RECV: b->ret = photon_recv(b->fd, buf, sizeof buf, 0, PHOTON_FOREVER); break;
    case OP_READV: b->ret = photon_readv(b->fd, iov, 2, PHOTON_FOREVER); break;
    case OP_RECVMSG: b->ret = photon_recvmsg(b->fd, &msg, 0, PHOTON_FOREVER); break;
    case OP_WAIT_FD: b->ret = photon_wait_fd(b->fd, PHOTON_READABLE, PHOTON_FOREVER); break;
    case OP_ACCEPT: b->ret = photon_accept(b->fd, NULL, NULL, PHOTON_FOREVER); break;
    case OP_WRITE: b->ret = photon_write(b->fd, big_buf, sizeof big_buf, PHOTON_FOREVER); break;
    case OP_CONNECT:
        b->ret = photon_connect(b->fd, b->addr, b->addrlen, PHOTON_FOREVER);
        break;
    }
    b->err = errno;
    b->woke_at = photon_now_us();
    return NULL;
}

/* Starts `b` in a thread, lets it block, interrupts it with `code`: it
 * must return -1 with `code` promptly. */
static void interrupt_blocked(struct blocked *b, int code) {
    b->ret = 99;
    atomic_store(&b->entered, 0);
    photon_thread *th = spawn_joinable(blocked_main, b, 0);
    CHECK_OK(photon_thread_usleep(20000));
    CHECK(atomic_load(&b->entered) && b->ret == 99, "%s did not block (ret %ld, %s)",
          op_name[b->op], b->ret, strerror(b->err));
    uint64_t t0 = photon_now_us();
    CHECK_OK(photon_thread_interrupt(th, code));
    join_ok(th);
    CHECK(b->ret == -1 && b->err == code,
          "interrupted %s: want -1 with errno %d (%s), got %ld with errno %d (%s)",
          op_name[b->op], code, strerror(code), b->ret, b->err, strerror(b->err));
    uint64_t took = b->woke_at - t0;
    CHECK(took < PROMPT_US, "interrupted %s woke after %" PRIu64 " us", op_name[b->op], took);
}

static void interrupt_reads(void) {
    int p[2];
    tcp_pair(p);
    char buf[64];
    enum op ops[] = {OP_READ, OP_RECV, OP_READV, OP_RECVMSG, OP_WAIT_FD};
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) {
        struct blocked b = {.op = ops[i], .fd = p[1]};
        SAY("%s blocked on an idle socket: interrupt(EINTR), then interrupt(%d)",
            op_name[ops[i]], CUSTOM_ERRNO);
        interrupt_blocked(&b, EINTR);
        interrupt_blocked(&b, CUSTOM_ERRNO);
        /* no data lost, nothing invented: what is sent now is what the
         * next read returns */
        char msg[32];
        int len = snprintf(msg, sizeof msg, "after-%s", op_name[ops[i]]);
        CHECK(photon_write(p[0], msg, (size_t)len, SEC) == len, "write: %s", strerror(errno));
        ssize_t r = photon_read(p[1], buf, sizeof buf, SEC);
        CHECK(r == len && memcmp(buf, msg, (size_t)len) == 0,
              "after interrupting %s: read gave %zd bytes (%s), want \"%s\"", op_name[ops[i]],
              r, r < 0 ? strerror(errno) : "wrong data", msg);
    }
    CHECK_OK(photon_close(p[0]));
    CHECK_OK(photon_close(p[1]));
}

static void interrupt_accept_write_connect(void) {
    SAY("accept blocked on an idle listener: interrupted; it accepts afterwards");
    int lfd;
    struct sockaddr_in sin;
    tcp_listener(&lfd, &sin, 0);
    struct blocked b = {.op = OP_ACCEPT, .fd = lfd};
    interrupt_blocked(&b, EINTR);
    interrupt_blocked(&b, CUSTOM_ERRNO);
    int c = photon_socket(AF_INET, SOCK_STREAM, 0);
    CHECK(c >= 0, "photon_socket: %s", strerror(errno));
    CHECK_OK(photon_connect(c, (struct sockaddr *)&sin, sizeof sin, SEC));
    int a = photon_accept(lfd, NULL, NULL, SEC);
    CHECK(a >= 0, "accept after interrupts: %s", strerror(errno));

    SAY("write blocked on a full buffer: interrupted with nothing written; data intact");
    int small = 4096;
    CHECK_OK(setsockopt(c, SOL_SOCKET, SO_SNDBUF, &small, sizeof small));
    CHECK_OK(setsockopt(a, SOL_SOCKET, SO_RCVBUF, &small, sizeof small));
    for (size_t i = 0; i < sizeof big_buf; i++) {
        big_buf[i] = (unsigned char)(i * 13 + (i >> 9));
    }
    /* fill: write until it would wait */
    size_t filled = 0;
    for (;;) {
        ssize_t w = photon_send(c, big_buf + (filled % sizeof big_buf),
                                sizeof big_buf - (filled % sizeof big_buf), MSG_DONTWAIT, 0);
        if (w < 0) {
            CHECK(errno == EAGAIN, "filling send: %s", strerror(errno));
            break;
        }
        filled += (size_t)w;
    }
    CHECK_OK(photon_thread_usleep(20000));
    for (;;) { /* loopback moved some to the receiver: fill again */
        ssize_t w = photon_send(c, big_buf + (filled % sizeof big_buf),
                                sizeof big_buf - (filled % sizeof big_buf), MSG_DONTWAIT, 0);
        if (w < 0) {
            break;
        }
        filled += (size_t)w;
    }
    CHECK(filled < sizeof big_buf, "the socket took %zu bytes", filled);
    b.op = OP_WRITE;
    b.fd = c;
    interrupt_blocked(&b, EINTR);
    /* the receiver finds exactly the filled bytes */
    unsigned char *got = malloc(sizeof big_buf);
    CHECK(got != NULL, "malloc");
    ssize_t r = photon_read_full(a, got, filled, 5 * SEC);
    CHECK(r == (ssize_t)filled, "read_full(%zu) gave %zd (%s)", filled, r, strerror(errno));
    CHECK(memcmp(got, big_buf, filled) == 0, "data before the interrupted write is corrupted");
    CHECK_OK(photon_thread_usleep(20000));
    errno = 0;
    r = photon_recv(a, got, sizeof big_buf, MSG_DONTWAIT, 0);
    CHECK(r == -1 && errno == EAGAIN, "the interrupted write sent %zd bytes anyway", r);
    free(got);

    SAY("connect blocked on a full backlog: interrupted");
    /* the listener has backlog 0 and nothing queued: one connect fills it */
    int fill = photon_socket(AF_INET, SOCK_STREAM, 0);
    CHECK(fill >= 0, "photon_socket: %s", strerror(errno));
    CHECK_OK(photon_connect(fill, (struct sockaddr *)&sin, sizeof sin, SEC));
    int waiting = photon_socket(AF_INET, SOCK_STREAM, 0);
    CHECK(waiting >= 0, "photon_socket: %s", strerror(errno));
    struct blocked cb = {
        .op = OP_CONNECT, .fd = waiting, .addr = (struct sockaddr *)&sin, .addrlen = sizeof sin};
    interrupt_blocked(&cb, CUSTOM_ERRNO);
    CHECK_OK(photon_close(waiting)); /* photon.h: left mid-connect, close it */
    CHECK_OK(photon_close(fill));
    CHECK_OK(photon_close(a));
    CHECK_OK(photon_close(c));
    CHECK_OK(photon_close(lfd));
}

/* --- interrupts racing with arriving data --- */

#define RACE_ROUNDS 300
#define RACE_MSG 97

struct race_reader {
    int fd;
    unsigned char *got;
    size_t total;
    int interrupted;
};

static void *race_reader_main(void *arg) {
    struct race_reader *r = arg;
    for (;;) {
        errno = 0;
        ssize_t n = photon_read(r->fd, r->got + r->total, 4096, 10 * SEC);
        if (n == 0) {
            break;
        }
        if (n < 0) {
            CHECK(errno == EINTR, "race reader: read failed with %s", strerror(errno));
            r->interrupted++;
            continue;
        }
        r->total += (size_t)n;
        CHECK(r->total <= RACE_ROUNDS * RACE_MSG, "race reader: %zu bytes, too many",
              r->total);
    }
    return NULL;
}

static void interrupt_race(void) {
    SAY("%d rounds of write + interrupt in varying order: every byte arrives once, in order",
        RACE_ROUNDS);
    int p[2];
    tcp_pair(p);
    static unsigned char got[RACE_ROUNDS * RACE_MSG + 4096];
    struct race_reader r = {.fd = p[1], .got = got};
    photon_thread *th = spawn_joinable(race_reader_main, &r, 0);
    unsigned char msg[RACE_MSG];
    for (int round = 0; round < RACE_ROUNDS; round++) {
        for (int i = 0; i < RACE_MSG; i++) {
            msg[i] = (unsigned char)(round * RACE_MSG + i);
        }
        switch (round % 4) {
        case 0: /* data, then interrupt before the reader runs */
            CHECK(photon_write(p[0], msg, RACE_MSG, SEC) == RACE_MSG, "write");
            CHECK_OK(photon_thread_interrupt(th, EINTR));
            break;
        case 1: /* interrupt, then data */
            CHECK_OK(photon_thread_interrupt(th, EINTR));
            CHECK(photon_write(p[0], msg, RACE_MSG, SEC) == RACE_MSG, "write");
            break;
        case 2: /* data, a moment, interrupt */
            CHECK(photon_write(p[0], msg, RACE_MSG, SEC) == RACE_MSG, "write");
            photon_thread_yield();
            CHECK_OK(photon_thread_interrupt(th, EINTR));
            break;
        case 3: /* interrupt the blocked reader, then data */
            CHECK_OK(photon_thread_usleep(200));
            CHECK_OK(photon_thread_interrupt(th, EINTR));
            photon_thread_yield();
            CHECK(photon_write(p[0], msg, RACE_MSG, SEC) == RACE_MSG, "write");
            break;
        }
        if (round % 16 == 0) {
            CHECK_OK(photon_thread_usleep(500));
        }
    }
    CHECK_OK(shutdown(p[0], SHUT_WR));
    join_ok(th);
    CHECK(r.total == RACE_ROUNDS * RACE_MSG, "the reader got %zu bytes, want %d", r.total,
          RACE_ROUNDS * RACE_MSG);
    for (size_t i = 0; i < r.total; i++) {
        CHECK(got[i] == (unsigned char)i, "byte %zu is %u, want %u: data lost or reordered", i,
              got[i], (unsigned char)i);
    }
    SAY("  %d of the reads were interrupted", r.interrupted);
    CHECK(r.interrupted > 0, "no read was interrupted");
    CHECK_OK(photon_close(p[0]));
    CHECK_OK(photon_close(p[1]));
}

/* --- a pending interrupt fails the next read at once --- */

struct pending {
    int fd;
    long ret;
    int err;
    uint64_t took;
    long ret2;
};

static void *pending_main(void *arg) {
    struct pending *p = arg;
    char buf[16];
    uint64_t t0 = photon_now_us();
    errno = 0;
    p->ret = photon_read(p->fd, buf, sizeof buf, 5 * SEC);
    p->err = errno;
    p->took = elapsed_us(t0);
    p->ret2 = photon_read(p->fd, buf, sizeof buf, 5 * SEC);
    return NULL;
}

static void pending_interrupt(void) {
    SAY("interrupt a thread before it reads: its read fails at once; the next one works");
    int p[2];
    tcp_pair(p);
    struct pending pd = {.fd = p[1], .ret = 99};
    photon_thread *th = spawn_joinable(pending_main, &pd, 0);
    CHECK_OK(photon_thread_interrupt(th, CUSTOM_ERRNO)); /* th has not run yet */
    CHECK_OK(photon_thread_usleep(20000));
    CHECK(pd.ret == -1 && pd.err == CUSTOM_ERRNO,
          "read after a pending interrupt: got %ld with errno %d (%s)", pd.ret, pd.err,
          strerror(pd.err));
    CHECK(pd.took < PROMPT_US, "the pending interrupt took %" PRIu64 " us to fail the read",
          pd.took);
    CHECK(photon_write(p[0], "abc", 3, SEC) == 3, "write");
    join_ok(th);
    CHECK(pd.ret2 == 3, "the read after the interrupted one gave %ld", pd.ret2);
    CHECK_OK(photon_close(p[0]));
    CHECK_OK(photon_close(p[1]));
}

/* --- interrupt from a plain pthread --- */

struct remote {
    photon_thread *target;
    struct blocked *b;
    int peer_fd;
    int ret;
    int err;
    uint64_t sent_at;
};

static void *pthread_interrupter(void *arg) {
    struct remote *r = arg;
    struct timespec ms = {0, 1000000};
    for (int i = 0; i < 5000 && !atomic_load(&r->b->entered); i++) {
        nanosleep(&ms, NULL);
    }
    struct timespec settle = {0, 30000000}; /* 30 ms: the target is blocked */
    nanosleep(&settle, NULL);
    r->sent_at = photon_now_us();
    errno = 0;
    r->ret = photon_thread_interrupt(r->target, EINTR);
    r->err = errno;
    return NULL;
}

static void interrupt_from_pthread(void) {
    SAY("photon_read interrupted from a plain pthread while the vcpu sleeps in join");
    int p[2];
    tcp_pair(p);
    struct blocked b = {.op = OP_READ, .fd = p[1], .ret = 99};
    photon_thread *th = spawn_joinable(blocked_main, &b, 0);
    struct remote r = {.target = th, .b = &b, .ret = 99};
    pthread_t pt;
    CHECK(pthread_create(&pt, NULL, pthread_interrupter, &r) == 0, "pthread_create");
    join_ok(th);
    CHECK(pthread_join(pt, NULL) == 0, "pthread_join");
    CHECK(r.ret == 0, "interrupt from a pthread: %d (%s)", r.ret, strerror(r.err));
    CHECK(b.ret == -1 && b.err == EINTR, "read: want -1/EINTR, got %ld with errno %d (%s)",
          b.ret, b.err, strerror(b.err));
    uint64_t took = b.woke_at - r.sent_at;
    CHECK(took < PROMPT_US, "the read woke %" PRIu64 " us after the remote interrupt", took);
    SAY("  woke %" PRIu64 " us after the interrupt", took);
    /* data written from the pthread side after the interrupt is read next */
    CHECK(write(p[0], "later", 5) == 5, "write(2): %s", strerror(errno));
    char buf[16];
    CHECK(photon_read(p[1], buf, sizeof buf, SEC) == 5 && memcmp(buf, "later", 5) == 0,
          "read after the remote interrupt");
    CHECK_OK(photon_close(p[0]));
    CHECK_OK(photon_close(p[1]));
}

/* --- accepts interrupted as connections arrive: none lost, no fd leaked --- */

#define ACCEPT_ROUNDS 200

struct acceptor {
    int lfd;
    int accepted[ACCEPT_ROUNDS * 2];
    int n;
    int interrupted;
    atomic_int stop;
};

static void *acceptor_main(void *arg) {
    struct acceptor *a = arg;
    while (!atomic_load(&a->stop)) {
        errno = 0;
        int fd = photon_accept(a->lfd, NULL, NULL, 5 * SEC);
        if (fd < 0) {
            CHECK(errno == EINTR || errno == ECANCELED, "accept: %s", strerror(errno));
            a->interrupted++;
            continue;
        }
        CHECK(a->n < ACCEPT_ROUNDS * 2, "too many accepted");
        a->accepted[a->n++] = fd;
    }
    return NULL;
}

static int count_open_fds(void) {
    int n = 0;
    for (int fd = 0; fd < 4096; fd++) {
        if (fcntl(fd, F_GETFD) != -1) {
            n++;
        }
    }
    return n;
}

static void interrupt_accept_race(void) {
    SAY("%d connects, each racing an interrupt of the blocked accept: every connection is "
        "accepted once, no fd leaks",
        ACCEPT_ROUNDS);
    int lfd;
    struct sockaddr_in sin;
    tcp_listener(&lfd, &sin, 512);
    int before = count_open_fds();
    static struct acceptor a;
    memset(&a, 0, sizeof a);
    a.lfd = lfd;
    photon_thread *th = spawn_joinable(acceptor_main, &a, 0);
    static int clients[ACCEPT_ROUNDS];
    for (int i = 0; i < ACCEPT_ROUNDS; i++) {
        clients[i] = photon_socket(AF_INET, SOCK_STREAM, 0);
        CHECK(clients[i] >= 0, "photon_socket: %s", strerror(errno));
        if (i % 3 == 0) {
            CHECK_OK(photon_thread_usleep(100)); /* the acceptor blocks */
        }
        CHECK_OK(photon_connect(clients[i], (struct sockaddr *)&sin, sizeof sin, SEC));
        CHECK_OK(photon_thread_interrupt(th, i % 2 ? EINTR : ECANCELED));
        if (i % 5 == 0) {
            photon_thread_yield();
        }
    }
    /* let the acceptor take what is left, then stop it */
    for (int i = 0; i < 200 && a.n < ACCEPT_ROUNDS; i++) {
        CHECK_OK(photon_thread_usleep(5000));
    }
    atomic_store(&a.stop, 1);
    CHECK_OK(photon_thread_interrupt(th, EINTR));
    join_ok(th);
    SAY("  %d accepted, %d accepts interrupted", a.n, a.interrupted);
    CHECK(a.n == ACCEPT_ROUNDS, "accepted %d connections of %d", a.n, ACCEPT_ROUNDS);
    int during = count_open_fds();
    CHECK(during == before + 2 * ACCEPT_ROUNDS,
          "%d fds open, want %d (+%d clients, +%d accepted): fds leaked", during, before,
          ACCEPT_ROUNDS, ACCEPT_ROUNDS);
    for (int i = 0; i < a.n; i++) {
        CHECK_OK(photon_close(a.accepted[i]));
    }
    for (int i = 0; i < ACCEPT_ROUNDS; i++) {
        CHECK_OK(photon_close(clients[i]));
    }
    CHECK(count_open_fds() == before, "%d fds open after closing all, %d before",
          count_open_fds(), before);
    CHECK_OK(photon_close(lfd));
}

int main(void) {
    test_start("net_interrupt");
    test_init();

    interrupt_reads();
    interrupt_accept_write_connect();
    interrupt_race();
    interrupt_accept_race();
    pending_interrupt();
    interrupt_from_pthread();

    test_fini();
    SAY("net_interrupt: OK");
    return 0;
}
