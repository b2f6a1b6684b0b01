/*
 * Error paths of the socket calls, each with its errno:
 * - a peer reset (SO_LINGER 0, then close) gives ECONNRESET on read/recv,
 *   both to a reader already blocked and to the next call;
 * - connect to a closed port gives ECONNREFUSED;
 * - writing to a socket whose peer closed gives EPIPE, and the process is
 *   not killed by SIGPIPE (SIGPIPE keeps its default action here);
 * - bad fds give EBADF; NULL buffers with a nonzero length give EINVAL;
 *   photon_wait_fd with events 0 (or unknown bits) gives EINVAL; readv /
 *   writev with iovcnt < 0 or > IOV_MAX give EINVAL, as readv(2)/writev(2);
 * - blocking calls from a plain pthread (not a vcpu) give EPERM, while
 *   photon_socket and photon_close, which need no vcpu, work there.
 */
#include <arpa/inet.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "check.h"

#define SEC 1000000ULL
#define PROMPT_US 100000ULL

static char big_scratch[IOV_MAX + 64];

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

/* `expr` must give -1 with errno `want`; a mismatch is an EXPECT failure. */
#define EXPECT_ERRNO(expr, want)                                             \
    do {                                                                     \
        errno = 0;                                                           \
        long expect_ret_ = (long)(expr);                                     \
        int expect_errno_ = errno;                                           \
        EXPECT(expect_ret_ == -1 && expect_errno_ == (want),                 \
               "%s: want -1 with errno %d (%s), got %ld with errno %d (%s)", \
               #expr, (int)(want), strerror(want), expect_ret_,              \
               expect_errno_, strerror(expect_errno_));                      \
    } while (0)

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

static void reset_by_peer(int fd) {
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    CHECK_OK(setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg));
    CHECK_OK(photon_close(fd));
}

struct blocked_read {
    int fd;
    int use_recv;
    long ret;
    int err;
    uint64_t woke_at;
};

static void *blocked_read_main(void *arg) {
    struct blocked_read *b = arg;
    char buf[64] = {0};
    errno = 0;
    b->ret = b->use_recv ? photon_recv(b->fd, buf, sizeof buf, 0, 5 * SEC)
                         : photon_read(b->fd, buf, sizeof buf, 5 * SEC);
    b->err = errno;
    b->woke_at = photon_now_us();
    return NULL;
}

static void connection_reset(void) {
    char buf[64] = {0};
    for (int use_recv = 0; use_recv < 2; use_recv++) {
        const char *call = use_recv ? "recv" : "read";
        SAY("peer reset while %s is blocked: -1/ECONNRESET", call);
        int p[2];
        tcp_pair(p);
        struct blocked_read b = {.fd = p[0], .use_recv = use_recv, .ret = 99};
        photon_thread *th = spawn_joinable(blocked_read_main, &b, 0);
        CHECK_OK(photon_thread_usleep(20000));
        CHECK(b.ret == 99, "%s returned early: %ld", call, b.ret);
        uint64_t t0 = photon_now_us();
        reset_by_peer(p[1]);
        join_ok(th);
        CHECK(b.ret == -1 && b.err == ECONNRESET,
              "%s at a reset: want -1/ECONNRESET, got %ld with errno %d (%s)", call, b.ret,
              b.err, strerror(b.err));
        CHECK(b.woke_at - t0 < PROMPT_US, "%s woke %" PRIu64 " us after the reset", call,
              b.woke_at - t0);
        CHECK_OK(photon_close(p[0]));

        SAY("peer reset before %s: -1/ECONNRESET at once", call);
        tcp_pair(p);
        reset_by_peer(p[1]);
        CHECK_OK(photon_thread_usleep(10000));
        if (use_recv) {
            CHECK_ERRNO(photon_recv(p[0], buf, sizeof buf, 0, SEC), ECONNRESET);
        } else {
            CHECK_ERRNO(photon_read(p[0], buf, sizeof buf, SEC), ECONNRESET);
        }
        CHECK_OK(photon_close(p[0]));
    }
}

static void connection_refused(void) {
    SAY("connect to a closed port: -1/ECONNREFUSED");
    /* a bound, non-listening socket holds the port so nothing else takes it */
    int holder = photon_socket(AF_INET, SOCK_STREAM, 0);
    CHECK(holder >= 0, "photon_socket: %s", strerror(errno));
    struct sockaddr_in sin;
    memset(&sin, 0, sizeof sin);
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CHECK_OK(bind(holder, (struct sockaddr *)&sin, sizeof sin));
    socklen_t len = sizeof sin;
    CHECK_OK(getsockname(holder, (struct sockaddr *)&sin, &len));
    int fd = photon_socket(AF_INET, SOCK_STREAM, 0);
    CHECK(fd >= 0, "photon_socket: %s", strerror(errno));
    uint64_t t0 = photon_now_us();
    CHECK_ERRNO(photon_connect(fd, (struct sockaddr *)&sin, sizeof sin, 5 * SEC),
                ECONNREFUSED);
    CHECK(elapsed_us(t0) < SEC, "refusal took %" PRIu64 " us", elapsed_us(t0));
    CHECK_OK(photon_close(fd));

    SAY("Unix connect: ENOENT for a missing path, ECONNREFUSED for a socket not listening");
    char dir[] = "/tmp/photon-net-errors-XXXXXX";
    CHECK(mkdtemp(dir) != NULL, "mkdtemp: %s", strerror(errno));
    struct sockaddr_un sun;
    memset(&sun, 0, sizeof sun);
    sun.sun_family = AF_UNIX;
    snprintf(sun.sun_path, sizeof sun.sun_path, "%s/none.sock", dir);
    fd = photon_socket(AF_UNIX, SOCK_STREAM, 0);
    CHECK(fd >= 0, "photon_socket: %s", strerror(errno));
    CHECK_ERRNO(photon_connect(fd, (struct sockaddr *)&sun, sizeof sun, SEC), ENOENT);
    /* a bound but not listening Unix socket refuses */
    int ul = photon_socket(AF_UNIX, SOCK_STREAM, 0);
    CHECK(ul >= 0, "photon_socket: %s", strerror(errno));
    CHECK_OK(bind(ul, (struct sockaddr *)&sun, sizeof sun));
    CHECK_ERRNO(photon_connect(fd, (struct sockaddr *)&sun, sizeof sun, SEC), ECONNREFUSED);
    CHECK_OK(photon_close(fd));
    CHECK_OK(photon_close(ul));
    CHECK_OK(unlink(sun.sun_path));
    CHECK_OK(rmdir(dir));
    CHECK_OK(photon_close(holder));
}

static void broken_pipe(void) {
    SAY("SIGPIPE keeps its default action (it would kill this process)");
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_DFL;
    CHECK_OK(sigaction(SIGPIPE, &sa, NULL));
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);
    CHECK_OK(pthread_sigmask(SIG_UNBLOCK, &set, NULL));

    char buf[4096] = {0};
    memset(buf, 'x', sizeof buf);
    struct iovec iov[2] = {{buf, 100}, {buf + 100, 100}};
    struct msghdr msg;
    memset(&msg, 0, sizeof msg);
    msg.msg_iov = iov;
    msg.msg_iovlen = 2;

    SAY("Unix socketpair, peer closed: write/send/writev/sendmsg/write_full/sendto give EPIPE");
    int sp[2];
    CHECK_OK(socketpair(AF_UNIX, SOCK_STREAM, 0, sp));
    CHECK_OK(photon_close(sp[1]));
    CHECK_ERRNO(photon_write(sp[0], buf, 10, SEC), EPIPE);
    CHECK_ERRNO(photon_send(sp[0], buf, 10, 0, SEC), EPIPE);
    CHECK_ERRNO(photon_writev(sp[0], iov, 2, SEC), EPIPE);
    CHECK_ERRNO(photon_sendmsg(sp[0], &msg, 0, SEC), EPIPE);
    CHECK_ERRNO(photon_write_full(sp[0], buf, sizeof buf, SEC), EPIPE);
    CHECK_ERRNO(photon_sendto(sp[0], buf, 10, 0, NULL, 0, SEC), EPIPE);
    CHECK_OK(photon_close(sp[0]));

    SAY("TCP, own side shut down for writing: photon_write gives EPIPE");
    int p[2];
    tcp_pair(p);
    CHECK_OK(shutdown(p[0], SHUT_WR));
    CHECK_ERRNO(photon_write(p[0], buf, 10, SEC), EPIPE);
    CHECK_ERRNO(photon_send(p[0], buf, 10, 0, SEC), EPIPE);
    CHECK_OK(photon_close(p[0]));
    CHECK_OK(photon_close(p[1]));

    SAY("TCP, peer closed: writes fail with EPIPE once the peer's RST is back");
    tcp_pair(p);
    CHECK_OK(photon_close(p[1]));
    CHECK_OK(photon_thread_usleep(10000));
    int err = 0;
    int writes = 0;
    for (; writes < 100; writes++) {
        errno = 0;
        ssize_t w = photon_write(p[0], buf, 10, SEC);
        if (w < 0) {
            err = errno;
            break;
        }
        CHECK_OK(photon_thread_usleep(5000));
    }
    CHECK(err == EPIPE, "after %d writes to a closed peer: errno %d (%s), want EPIPE", writes,
          err, strerror(err));
    CHECK_ERRNO(photon_write_full(p[0], buf, sizeof buf, SEC), EPIPE);
    CHECK_OK(photon_close(p[0]));
    SAY("  still alive: no SIGPIPE");
}

static void bad_fds(void) {
    SAY("bad fds (-1, and a number that is not open): EBADF");
    int closed = photon_socket(AF_INET, SOCK_STREAM, 0);
    CHECK(closed >= 0, "photon_socket: %s", strerror(errno));
    CHECK_OK(photon_close(closed));
    int fds[2] = {-1, closed};
    char buf[16] = {0};
    struct iovec iov = {buf, sizeof buf};
    struct msghdr msg;
    memset(&msg, 0, sizeof msg);
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    struct sockaddr_in sin;
    memset(&sin, 0, sizeof sin);
    sin.sin_family = AF_INET;
    sin.sin_port = htons(9);
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    for (int i = 0; i < 2; i++) {
        int fd = fds[i];
        CHECK_ERRNO(photon_read(fd, buf, sizeof buf, SEC), EBADF);
        CHECK_ERRNO(photon_write(fd, buf, sizeof buf, SEC), EBADF);
        CHECK_ERRNO(photon_readv(fd, &iov, 1, SEC), EBADF);
        CHECK_ERRNO(photon_writev(fd, &iov, 1, SEC), EBADF);
        CHECK_ERRNO(photon_recv(fd, buf, sizeof buf, 0, SEC), EBADF);
        CHECK_ERRNO(photon_send(fd, buf, sizeof buf, 0, SEC), EBADF);
        CHECK_ERRNO(photon_recvfrom(fd, buf, sizeof buf, 0, NULL, NULL, SEC), EBADF);
        CHECK_ERRNO(photon_sendto(fd, buf, sizeof buf, 0, NULL, 0, SEC), EBADF);
        CHECK_ERRNO(photon_recvmsg(fd, &msg, 0, SEC), EBADF);
        CHECK_ERRNO(photon_sendmsg(fd, &msg, 0, SEC), EBADF);
        CHECK_ERRNO(photon_read_full(fd, buf, sizeof buf, SEC), EBADF);
        CHECK_ERRNO(photon_write_full(fd, buf, sizeof buf, SEC), EBADF);
        CHECK_ERRNO(photon_accept(fd, NULL, NULL, SEC), EBADF);
        CHECK_ERRNO(photon_connect(fd, (struct sockaddr *)&sin, sizeof sin, SEC), EBADF);
        CHECK_ERRNO(photon_wait_fd(fd, PHOTON_READABLE, SEC), EBADF);
        CHECK_ERRNO(photon_close(fd), EBADF);
    }
    SAY("accept on a socket that is not listening: EINVAL, as accept(2)");
    int s = photon_socket(AF_INET, SOCK_STREAM, 0);
    CHECK(s >= 0, "photon_socket: %s", strerror(errno));
    CHECK_ERRNO(photon_accept(s, NULL, NULL, SEC), EINVAL);
    SAY("read on a socket that is not connected: ENOTCONN, as read(2)");
    CHECK_ERRNO(photon_read(s, buf, sizeof buf, SEC), ENOTCONN);
    CHECK_OK(photon_close(s));
    SAY("readv/writev with iovcnt < 0 or > IOV_MAX: EINVAL; iovcnt 0: 0");
    {
        int p[2];
        tcp_pair(p);
        static struct iovec many[IOV_MAX + 1];
        for (int i = 0; i < IOV_MAX + 1; i++) {
            many[i].iov_base = buf;
            many[i].iov_len = 1;
        }
        CHECK_ERRNO(photon_writev(p[0], many, -1, SEC), EINVAL);
        CHECK_ERRNO(photon_readv(p[1], many, -1, SEC), EINVAL);
        /* writev(2) gives EINVAL here, on sockets too (sendmsg(2) would give EMSGSIZE) */
        EXPECT_ERRNO(photon_writev(p[0], many, IOV_MAX + 1, SEC), EINVAL);
        CHECK_ERRNO(photon_readv(p[1], many, IOV_MAX + 1, SEC), EINVAL);
        CHECK(photon_writev(p[0], many, 0, SEC) == 0, "writev of 0 iovecs: %s",
              strerror(errno));
        CHECK(photon_writev(p[0], many, IOV_MAX, SEC) == IOV_MAX, "writev of IOV_MAX: %s",
              strerror(errno));
        CHECK(photon_read_full(p[1], big_scratch, IOV_MAX, SEC) == IOV_MAX, "read: %s",
              strerror(errno));
        CHECK_OK(photon_close(p[0]));
        CHECK_OK(photon_close(p[1]));
    }
    SAY("photon_socket with a bad domain: EAFNOSUPPORT, as socket(2)");
    CHECK_ERRNO(photon_socket(12345, SOCK_STREAM, 0), EAFNOSUPPORT);
}

static void null_buffers(void) {
    SAY("NULL buffers with a nonzero length: EINVAL");
    int p[2];
    tcp_pair(p);
    /* data is ready, so only the argument check can make them fail */
    CHECK(photon_write(p[0], "0123456789", 10, SEC) == 10, "write");
    CHECK_OK(photon_thread_usleep(10000));
    CHECK_ERRNO(photon_read(p[1], NULL, 10, SEC), EINVAL);
    CHECK_ERRNO(photon_write(p[1], NULL, 10, SEC), EINVAL);
    CHECK_ERRNO(photon_recv(p[1], NULL, 10, 0, SEC), EINVAL);
    CHECK_ERRNO(photon_send(p[1], NULL, 10, 0, SEC), EINVAL);
    CHECK_ERRNO(photon_recvfrom(p[1], NULL, 10, 0, NULL, NULL, SEC), EINVAL);
    CHECK_ERRNO(photon_sendto(p[1], NULL, 10, 0, NULL, 0, SEC), EINVAL);
    CHECK_ERRNO(photon_read_full(p[1], NULL, 10, SEC), EINVAL);
    CHECK_ERRNO(photon_write_full(p[1], NULL, 10, SEC), EINVAL);
    CHECK_ERRNO(photon_readv(p[1], NULL, 2, SEC), EINVAL);
    CHECK_ERRNO(photon_writev(p[1], NULL, 2, SEC), EINVAL);
    CHECK_ERRNO(photon_recvmsg(p[1], NULL, 0, SEC), EINVAL);
    CHECK_ERRNO(photon_sendmsg(p[1], NULL, 0, SEC), EINVAL);
    CHECK_ERRNO(photon_connect(p[1], NULL, 16, SEC), EINVAL);
    SAY("writes of 0 bytes from NULL: 0");
    CHECK(photon_write(p[1], NULL, 0, SEC) == 0, "write(NULL, 0): %s", strerror(errno));
    CHECK(photon_send(p[1], NULL, 0, 0, SEC) == 0, "send(NULL, 0): %s", strerror(errno));
    SAY("the 10 bytes are still there, untouched by the failed calls");
    char buf[16] = {0};
    CHECK(photon_read(p[1], buf, sizeof buf, SEC) == 10 && memcmp(buf, "0123456789", 10) == 0,
          "data lost");
    CHECK_OK(photon_close(p[0]));
    CHECK_OK(photon_close(p[1]));
}

static void bad_events(void) {
    SAY("photon_wait_fd with events 0 or unknown bits: EINVAL");
    int pfd[2];
    CHECK_OK(pipe(pfd));
    CHECK_ERRNO(photon_wait_fd(pfd[1], 0, SEC), EINVAL);
    CHECK_ERRNO(photon_wait_fd(pfd[1], 4, SEC), EINVAL);
    CHECK_ERRNO(photon_wait_fd(pfd[1], PHOTON_WRITABLE | 0x100, SEC), EINVAL);
    CHECK(photon_wait_fd(pfd[1], PHOTON_WRITABLE, SEC) == PHOTON_WRITABLE, "wait_fd: %s",
          strerror(errno));
    CHECK_OK(photon_close(pfd[0]));
    CHECK_OK(photon_close(pfd[1]));
}

/* --- from a plain pthread --- */

struct off_vcpu {
    int fd;   /* a connected socket with data to read */
    int lfd;  /* a listener with a pending connection */
    struct sockaddr_in addr;
    int done;
};

static void *off_vcpu_main(void *arg) {
    struct off_vcpu *o = arg;
    char buf[16] = {0};
    struct iovec iov = {buf, sizeof buf};
    struct msghdr msg;
    memset(&msg, 0, sizeof msg);
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    /* every call here would succeed at once on a vcpu: only EPERM stops them */
    CHECK_ERRNO(photon_read(o->fd, buf, sizeof buf, SEC), EPERM);
    CHECK_ERRNO(photon_write(o->fd, buf, 1, SEC), EPERM);
    CHECK_ERRNO(photon_readv(o->fd, &iov, 1, SEC), EPERM);
    CHECK_ERRNO(photon_writev(o->fd, &iov, 1, SEC), EPERM);
    CHECK_ERRNO(photon_recv(o->fd, buf, sizeof buf, 0, SEC), EPERM);
    CHECK_ERRNO(photon_send(o->fd, buf, 1, 0, SEC), EPERM);
    CHECK_ERRNO(photon_recvfrom(o->fd, buf, sizeof buf, 0, NULL, NULL, SEC), EPERM);
    CHECK_ERRNO(photon_sendto(o->fd, buf, 1, 0, NULL, 0, SEC), EPERM);
    CHECK_ERRNO(photon_recvmsg(o->fd, &msg, 0, SEC), EPERM);
    CHECK_ERRNO(photon_sendmsg(o->fd, &msg, 0, SEC), EPERM);
    CHECK_ERRNO(photon_read_full(o->fd, buf, 1, SEC), EPERM);
    CHECK_ERRNO(photon_write_full(o->fd, buf, 1, SEC), EPERM);
    CHECK_ERRNO(photon_wait_fd(o->fd, PHOTON_READABLE, SEC), EPERM);
    CHECK_ERRNO(photon_accept(o->lfd, NULL, NULL, SEC), EPERM);
    int c = photon_socket(AF_INET, SOCK_STREAM, 0);
    CHECK(c >= 0, "photon_socket needs no vcpu, but failed off one: %s", strerror(errno));
    CHECK_ERRNO(photon_connect(c, (struct sockaddr *)&o->addr, sizeof o->addr, SEC), EPERM);
    CHECK_OK(photon_close(c));
    photon_server *s = photon_server_new_tcp("127.0.0.1", 0, 0);
    CHECK(s != NULL, "photon_server_new_tcp needs no vcpu, failed off one: %s",
          strerror(errno));
    photon_server_free(s);
    o->done = 1;
    return NULL;
}

static int never_called(void *userdata, int fd) {
    (void)userdata;
    (void)fd;
    return 0;
}

struct serve_off_vcpu {
    photon_server *s;
    int ret;
    int err;
};

static void *serve_off_vcpu_main(void *arg) {
    struct serve_off_vcpu *so = arg;
    errno = 0;
    so->ret = photon_server_serve(so->s, never_called, NULL);
    so->err = errno;
    return NULL;
}

static void from_a_pthread(void) {
    SAY("blocking calls from a plain pthread: EPERM (even when they would not wait)");
    int p[2];
    tcp_pair(p);
    CHECK(photon_write(p[0], "ready", 5, SEC) == 5, "write");
    struct off_vcpu o = {.fd = p[1]};
    tcp_listener(&o.lfd, &o.addr);
    int pending = photon_socket(AF_INET, SOCK_STREAM, 0);
    CHECK_OK(photon_connect(pending, (struct sockaddr *)&o.addr, sizeof o.addr, SEC));
    CHECK_OK(photon_thread_usleep(10000));
    pthread_t pt;
    CHECK(pthread_create(&pt, NULL, off_vcpu_main, &o) == 0, "pthread_create");
    CHECK(pthread_join(pt, NULL) == 0, "pthread_join");
    CHECK(o.done, "the pthread did not finish");

    SAY("photon_server_serve from a plain pthread: EPERM");
    struct serve_off_vcpu so = {.s = photon_server_new_tcp("127.0.0.1", 0, 0), .ret = 99};
    CHECK(so.s != NULL, "photon_server_new_tcp: %s", strerror(errno));
    CHECK(pthread_create(&pt, NULL, serve_off_vcpu_main, &so) == 0, "pthread_create");
    CHECK(pthread_join(pt, NULL) == 0, "pthread_join");
    CHECK(so.ret == -1 && so.err == EPERM, "serve off a vcpu: got %d with errno %d (%s)",
          so.ret, so.err, strerror(so.err));
    photon_server_free(so.s);

    SAY("the calls refused off the vcpu left the data and the pending connection alone");
    char buf[16] = {0};
    CHECK(photon_read(p[1], buf, sizeof buf, SEC) == 5 && memcmp(buf, "ready", 5) == 0,
          "data lost");
    int a = photon_accept(o.lfd, NULL, NULL, SEC);
    CHECK(a >= 0, "accept: %s", strerror(errno));
    CHECK_OK(photon_close(a));
    CHECK_OK(photon_close(pending));
    CHECK_OK(photon_close(o.lfd));
    CHECK_OK(photon_close(p[0]));
    CHECK_OK(photon_close(p[1]));
}

int main(void) {
    test_start("net_errors");
    test_init();

    connection_reset();
    connection_refused();
    broken_pipe();
    bad_fds();
    null_buffers();
    bad_events();
    from_a_pthread();

    test_fini();
    CHECK(failures == 0, "%d EXPECT checks failed (above)", failures);
    SAY("net_errors: OK");
    return 0;
}
