/*
 * Timeouts of the blocking fd calls: each fails with ETIMEDOUT no earlier
 * than its timeout and not much later.
 * - recv / read / read_full / recvfrom / recvmsg on a socket with no data;
 *   read_full after some bytes returns them with errno ETIMEDOUT (photon.h:
 *   "errno says which"); a timed-out read's buffer is never written later;
 *   reads with tiny timeouts racing with arriving data lose no byte;
 * - send / write on a peer that never reads (buffers full): write_full
 *   returns the short count of what went out (photon.h: "fewer after an
 *   error once some bytes went out"), exactly the bytes the peer then
 *   finds; with nothing written, -1/ETIMEDOUT;
 * - accept on a listener nobody connects to;
 * - connect to a listener whose backlog is full (TCP: the kernel drops the
 *   SYN; Unix: connect says EAGAIN and photon_connect must wait without
 *   spinning), and a waiting connect completes once the listener accepts.
 * Traffic stays on 127.0.0.1 and Unix sockets. A watchdog turns a call
 * that ignores its timeout into a failure instead of a hang.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "check.h"

#define SEC 1000000ULL
#define SLACK_US 80000ULL /* how late a timeout may fire */

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

/* The temporary directory and Unix socket, removed at exit, also when a
 * check fails or the watchdog fires. */
static char tmp_dir[] = "/tmp/photon-net-timeouts-XXXXXX";
static char tmp_sock[sizeof tmp_dir + 32];

static void remove_tmp(void) {
    unlink(tmp_sock);
    rmdir(tmp_dir);
}

/* A watchdog pthread: a call that ignores its timeout (and may hold the
 * vcpu) fails the program with a message instead of hanging it. */
static atomic_ullong watch_deadline; /* photon_now_us() limit; 0: disarmed */
static const char *_Atomic watch_what;

static void *watchdog_main(void *arg) {
    (void)arg;
    for (;;) {
        struct timespec ts = {0, 20000000};
        nanosleep(&ts, NULL);
        uint64_t d = atomic_load(&watch_deadline);
        if (d != 0 && photon_now_us() > d) {
            fprintf(stderr, "WATCHDOG: %s\n", atomic_load(&watch_what));
            fflush(stderr);
            remove_tmp();
            _exit(3);
        }
    }
    return NULL;
}

static void watch(const char *what, uint64_t limit_us) {
    atomic_store(&watch_what, what);
    atomic_store(&watch_deadline, photon_now_us() + limit_us);
}

static void unwatch(void) { atomic_store(&watch_deadline, 0); }

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

/* The call took [timeout, timeout + SLACK). */
static void check_took(const char *what, uint64_t t0, uint64_t timeout) {
    uint64_t took = elapsed_us(t0);
    CHECK(took >= timeout, "%s: timed out after %" PRIu64 " us, before its %" PRIu64 " us",
          what, took, timeout);
    CHECK(took < timeout + SLACK_US, "%s: timed out after %" PRIu64 " us, timeout %" PRIu64,
          what, took, timeout);
}

static uint64_t thread_cpu_us(void) {
    struct rusage ru;
    CHECK_OK(getrusage(RUSAGE_THREAD, &ru));
    return (uint64_t)ru.ru_utime.tv_sec * SEC + (uint64_t)ru.ru_utime.tv_usec +
           (uint64_t)ru.ru_stime.tv_sec * SEC + (uint64_t)ru.ru_stime.tv_usec;
}

static void receive_timeouts(void) {
    int p[2];
    tcp_pair(p);
    char buf[64];
    uint64_t t0;

    SAY("recv with 100 ms on an idle socket: ETIMEDOUT after 100 ms");
    t0 = photon_now_us();
    CHECK_ERRNO(photon_recv(p[1], buf, sizeof buf, 0, 100000), ETIMEDOUT);
    check_took("recv", t0, 100000);

    SAY("read, read_full, recvfrom, recvmsg with 50 ms likewise");
    t0 = photon_now_us();
    CHECK_ERRNO(photon_read(p[1], buf, sizeof buf, 50000), ETIMEDOUT);
    check_took("read", t0, 50000);
    t0 = photon_now_us();
    CHECK_ERRNO(photon_read_full(p[1], buf, sizeof buf, 50000), ETIMEDOUT);
    check_took("read_full", t0, 50000);
    t0 = photon_now_us();
    CHECK_ERRNO(photon_recvfrom(p[1], buf, sizeof buf, 0, NULL, NULL, 50000), ETIMEDOUT);
    check_took("recvfrom", t0, 50000);
    struct iovec iov = {buf, sizeof buf};
    struct msghdr msg;
    memset(&msg, 0, sizeof msg);
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    t0 = photon_now_us();
    CHECK_ERRNO(photon_recvmsg(p[1], &msg, 0, 50000), ETIMEDOUT);
    check_took("recvmsg", t0, 50000);

    SAY("timeout 0 on an idle socket: ETIMEDOUT at once");
    t0 = photon_now_us();
    CHECK_ERRNO(photon_recv(p[1], buf, sizeof buf, 0, 0), ETIMEDOUT);
    CHECK(elapsed_us(t0) < 20000, "timeout 0 took %" PRIu64 " us", elapsed_us(t0));

    SAY("read_full with 100 ms after 10 of 64 bytes: returns 10 (errno ETIMEDOUT)");
    CHECK(photon_write(p[0], "0123456789", 10, SEC) == 10, "write: %s", strerror(errno));
    t0 = photon_now_us();
    errno = 0;
    ssize_t r = photon_read_full(p[1], buf, sizeof buf, 100000);
    int err = errno;
    check_took("read_full after 10 bytes", t0, 100000);
    CHECK(r == 10, "read_full gave %zd (%s), want the 10 bytes that arrived", r, strerror(err));
    /* photon.h: "an error after some bytes arrived (errno says which)" */
    EXPECT(err == ETIMEDOUT, "read_full short count: errno %d (%s), want ETIMEDOUT", err,
           strerror(err));
    CHECK(memcmp(buf, "0123456789", 10) == 0, "read_full data wrong");

    SAY("data arriving after a read timed out goes to the next read, not the old buffer");
    {
        char *old_buf = malloc(64);
        CHECK(old_buf != NULL, "malloc");
        memset(old_buf, '#', 64);
        CHECK_ERRNO(photon_read(p[1], old_buf, 64, 20000), ETIMEDOUT);
        CHECK_ERRNO(photon_recv(p[1], old_buf, 64, 0, 20000), ETIMEDOUT);
        CHECK(photon_write(p[0], "ok", 2, SEC) == 2, "write: %s", strerror(errno));
        CHECK_OK(photon_thread_usleep(20000));
        for (int i = 0; i < 64; i++) {
            CHECK(old_buf[i] == '#', "byte %d of a timed-out read's buffer was written", i);
        }
        char fresh[64];
        CHECK(photon_read(p[1], fresh, sizeof fresh, SEC) == 2 && memcmp(fresh, "ok", 2) == 0,
              "read after timeouts: %s", strerror(errno));
        free(old_buf);
    }
    CHECK_OK(photon_close(p[0]));
    CHECK_OK(photon_close(p[1]));
}

/* --- short timeouts racing with arriving data lose nothing --- */

#define RACE_BYTES (200 * 1000)

struct racer {
    int fd;
    unsigned char *got;
    size_t total;
    int timeouts;
};

static void *race_reader_main(void *arg) {
    struct racer *r = arg;
    uint64_t x = 88172645463325252ULL;
    while (r->total < RACE_BYTES) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        char buf[1500];
        uint64_t timeout = x % 400; /* 0..399 us */
        errno = 0;
        ssize_t n = photon_read(r->fd, buf, sizeof buf, timeout);
        if (n < 0) {
            CHECK(errno == ETIMEDOUT, "race read: %s", strerror(errno));
            r->timeouts++;
            continue;
        }
        CHECK(n > 0, "race read: EOF after %zu bytes", r->total);
        CHECK(r->total + (size_t)n <= RACE_BYTES, "too many bytes");
        memcpy(r->got + r->total, buf, (size_t)n);
        r->total += (size_t)n;
    }
    return NULL;
}

static void timeout_race(void) {
    SAY("reads with 0..400 us timeouts racing with 1000-byte writes every ~100 us: every "
        "byte arrives once, in order");
    int p[2];
    tcp_pair(p);
    static unsigned char got[RACE_BYTES];
    struct racer r = {.fd = p[1], .got = got};
    photon_thread *th = spawn_joinable(race_reader_main, &r, 0);
    unsigned char msg[1000];
    for (size_t off = 0; off < RACE_BYTES; off += sizeof msg) {
        for (size_t i = 0; i < sizeof msg; i++) {
            msg[i] = (unsigned char)((off + i) % 253);
        }
        CHECK(photon_write_full(p[0], msg, sizeof msg, SEC) == (ssize_t)sizeof msg, "write");
        CHECK_OK(photon_thread_usleep((off / sizeof msg) % 3 == 0 ? 0 : 100));
    }
    join_ok(th);
    for (size_t i = 0; i < RACE_BYTES; i++) {
        CHECK(got[i] == (unsigned char)(i % 253), "byte %zu wrong: data lost or reordered", i);
    }
    SAY("  %d reads timed out", r.timeouts);
    CHECK(r.timeouts > 0, "no read timed out");
    CHECK_OK(photon_close(p[0]));
    CHECK_OK(photon_close(p[1]));
}

static void send_timeouts(void) {
    int p[2];
    tcp_pair(p);
    int small = 4096;
    CHECK_OK(setsockopt(p[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof small));
    CHECK_OK(setsockopt(p[1], SOL_SOCKET, SO_RCVBUF, &small, sizeof small));
    const size_t big = 16u << 20;
    unsigned char *src = malloc(big);
    CHECK(src != NULL, "malloc");
    for (size_t i = 0; i < big; i++) {
        src[i] = (unsigned char)(i * 7 + (i >> 11));
    }

    SAY("write_full of 16 MiB with 200 ms to a peer that never reads: a short count");
    uint64_t t0 = photon_now_us();
    errno = 0;
    ssize_t w = photon_write_full(p[0], src, big, 200000);
    int err = errno;
    check_took("write_full", t0, 200000);
    CHECK(w > 0 && w < (ssize_t)big, "write_full gave %zd (%s), want a short count", w,
          strerror(err));
    SAY("  %zd bytes went out (errno %d, %s)", w, err, strerror(err));

    SAY("send / write / writev / sendmsg / write_full with 50 ms on the full buffer: "
        "-1/ETIMEDOUT");
    t0 = photon_now_us();
    CHECK_ERRNO(photon_send(p[0], src, 65536, 0, 50000), ETIMEDOUT);
    check_took("send", t0, 50000);
    t0 = photon_now_us();
    CHECK_ERRNO(photon_write(p[0], src, 65536, 50000), ETIMEDOUT);
    check_took("write", t0, 50000);
    struct iovec iov[2] = {{src, 1000}, {src + 1000, 64000}};
    t0 = photon_now_us();
    CHECK_ERRNO(photon_writev(p[0], iov, 2, 50000), ETIMEDOUT);
    check_took("writev", t0, 50000);
    struct msghdr msg;
    memset(&msg, 0, sizeof msg);
    msg.msg_iov = iov;
    msg.msg_iovlen = 2;
    t0 = photon_now_us();
    CHECK_ERRNO(photon_sendmsg(p[0], &msg, 0, 50000), ETIMEDOUT);
    check_took("sendmsg", t0, 50000);
    t0 = photon_now_us();
    CHECK_ERRNO(photon_write_full(p[0], src, 65536, 50000), ETIMEDOUT);
    check_took("write_full on a full buffer", t0, 50000);

    SAY("the peer finds exactly the %zd counted bytes, intact", w);
    unsigned char *dst = malloc(big);
    CHECK(dst != NULL, "malloc");
    ssize_t r = photon_read_full(p[1], dst, (size_t)w, 5 * SEC);
    CHECK(r == w, "peer read_full(%zd) gave %zd (%s)", w, r, strerror(errno));
    CHECK(memcmp(src, dst, (size_t)w) == 0, "the counted bytes arrived corrupted");
    /* everything is there by now (loopback): nothing beyond the count */
    CHECK_OK(photon_thread_usleep(20000));
    errno = 0;
    ssize_t extra = photon_recv(p[1], dst, big, MSG_DONTWAIT, 0);
    CHECK(extra == -1 && errno == EAGAIN,
          "%zd bytes beyond write_full's count arrived (a timed-out send wrote them)", extra);
    free(dst);
    free(src);
    CHECK_OK(photon_close(p[0]));
    CHECK_OK(photon_close(p[1]));
}

/* --- connect to a full backlog --- */

struct connector {
    int fd;
    const struct sockaddr *addr;
    socklen_t len;
    uint64_t timeout;
    atomic_int started;
    int ret;
    int err;
    uint64_t took;
};

static void *connector_main(void *arg) {
    struct connector *c = arg;
    atomic_store(&c->started, 1);
    uint64_t t0 = photon_now_us();
    errno = 0;
    c->ret = photon_connect(c->fd, c->addr, c->len, c->timeout);
    c->err = errno;
    c->took = elapsed_us(t0);
    return NULL;
}

static void tcp_connect_timeout(void) {
    SAY("TCP connect with 200 ms to a listener (backlog 0) whose accept queue is full");
    int lfd;
    struct sockaddr_in sin;
    tcp_listener(&lfd, &sin, 0);
    int held[16];
    int nheld = 0;
    int timed_out = 0;
    for (int i = 0; i < 16 && !timed_out; i++) {
        int fd = photon_socket(AF_INET, SOCK_STREAM, 0);
        CHECK(fd >= 0, "photon_socket: %s", strerror(errno));
        uint64_t t0 = photon_now_us();
        errno = 0;
        int r = photon_connect(fd, (struct sockaddr *)&sin, sizeof sin, 200000);
        int err = errno;
        if (r == 0) {
            held[nheld++] = fd;
            continue;
        }
        CHECK(err == ETIMEDOUT, "connect #%d: got %d with errno %d (%s), want ETIMEDOUT", i, r,
              err, strerror(err));
        check_took("TCP connect to a full backlog", t0, 200000);
        SAY("  connect #%d timed out after %d completed", i, nheld);
        CHECK_OK(photon_close(fd));
        timed_out = 1;
    }
    CHECK(timed_out, "16 connects to a backlog-0 listener all completed");

    SAY("a connect waiting on the full backlog completes once the listener accepts");
    struct connector c = {.fd = photon_socket(AF_INET, SOCK_STREAM, 0),
                          .addr = (struct sockaddr *)&sin,
                          .len = sizeof sin,
                          .timeout = 10 * SEC,
                          .ret = 99};
    CHECK(c.fd >= 0, "photon_socket: %s", strerror(errno));
    photon_thread *th = spawn_joinable(connector_main, &c, 0);
    CHECK_OK(photon_thread_usleep(100000));
    CHECK(c.ret == 99, "the connect finished (%d, %s) while the backlog was full", c.ret,
          strerror(c.err));
    /* accept everything queued: room again; the SYN is retransmitted after 1 s */
    for (int i = 0; i < nheld + 1; i++) {
        int a = photon_accept(lfd, NULL, NULL, 2 * SEC);
        if (a < 0) {
            CHECK(errno == ETIMEDOUT, "accept: %s", strerror(errno));
            break;
        }
        CHECK_OK(photon_close(a));
    }
    join_ok(th);
    CHECK(c.ret == 0, "the waiting connect: %d with errno %d (%s)", c.ret, c.err,
          strerror(c.err));
    CHECK(c.took < 5 * SEC, "the waiting connect took %" PRIu64 " us", c.took);
    SAY("  connected after %" PRIu64 " ms", c.took / 1000);
    CHECK_OK(photon_close(c.fd));
    for (int i = 0; i < nheld; i++) {
        CHECK_OK(photon_close(held[i]));
    }
    CHECK_OK(photon_close(lfd));
}

static void unix_connect_timeout(void) {
    SAY("Unix connect with 200 ms to a listener (backlog 0) whose backlog is full");
    struct sockaddr_un sun;
    memset(&sun, 0, sizeof sun);
    sun.sun_family = AF_UNIX;
    snprintf(sun.sun_path, sizeof sun.sun_path, "%s", tmp_sock);
    int lfd = photon_socket(AF_UNIX, SOCK_STREAM, 0);
    CHECK(lfd >= 0, "photon_socket(AF_UNIX): %s", strerror(errno));
    CHECK_OK(bind(lfd, (struct sockaddr *)&sun, sizeof sun));
    CHECK_OK(listen(lfd, 0));

    int held[16];
    int nheld = 0;
    int full = 0;
    /* fill the backlog: plain non-blocking connects until EAGAIN */
    for (int i = 0; i < 16 && !full; i++) {
        int fd = photon_socket(AF_UNIX, SOCK_STREAM, 0);
        CHECK(fd >= 0, "photon_socket: %s", strerror(errno));
        if (connect(fd, (struct sockaddr *)&sun, sizeof sun) == 0) {
            held[nheld++] = fd;
            continue;
        }
        CHECK(errno == EAGAIN, "non-blocking connect: %s, want EAGAIN", strerror(errno));
        CHECK_OK(photon_close(fd));
        full = 1;
    }
    CHECK(full, "16 Unix connects to a backlog-0 listener all completed");
    SAY("  backlog full after %d connects", nheld);

    int fd = photon_socket(AF_UNIX, SOCK_STREAM, 0);
    CHECK(fd >= 0, "photon_socket: %s", strerror(errno));
    uint64_t cpu0 = thread_cpu_us();
    uint64_t t0 = photon_now_us();
    watch("photon_connect (Unix, full backlog) with a 200 ms timeout has not returned after "
          "5 s",
          5 * SEC);
    CHECK_ERRNO(photon_connect(fd, (struct sockaddr *)&sun, sizeof sun, 200000), ETIMEDOUT);
    unwatch();
    check_took("Unix connect to a full backlog", t0, 200000);
    uint64_t cpu = thread_cpu_us() - cpu0;
    SAY("  the vcpu used %" PRIu64 " ms of CPU during the 200 ms wait", cpu / 1000);
    EXPECT(cpu < 100000, "photon_connect spun: %" PRIu64 " us of CPU in a 200 ms wait", cpu);
    CHECK_OK(photon_close(fd));

    SAY("a Unix connect waiting on the full backlog completes once the listener accepts");
    struct connector c = {.fd = photon_socket(AF_UNIX, SOCK_STREAM, 0),
                          .addr = (struct sockaddr *)&sun,
                          .len = sizeof sun,
                          .timeout = 2 * SEC,
                          .ret = 99};
    CHECK(c.fd >= 0, "photon_socket: %s", strerror(errno));
    photon_thread *th = spawn_joinable(connector_main, &c, 0);
    CHECK_OK(photon_thread_usleep(100000));
    CHECK(c.ret == 99, "the connect finished (%d, %s) while the backlog was full", c.ret,
          strerror(c.err));
    uint64_t t_accept = photon_now_us();
    int a = photon_accept(lfd, NULL, NULL, SEC);
    CHECK(a >= 0, "accept: %s", strerror(errno));
    join_ok(th);
    uint64_t after_accept = elapsed_us(t_accept);
    SAY("  the connect returned %d (%s) %" PRIu64 " ms after the accept", c.ret,
        c.ret == 0 ? "connected" : strerror(c.err), after_accept / 1000);
    EXPECT(c.ret == 0, "the waiting connect: %d with errno %d (%s)", c.ret, c.err,
           strerror(c.err));
    EXPECT(after_accept < 500000,
           "the waiting connect returned %" PRIu64 " us after the backlog had room",
           after_accept);
    CHECK_OK(photon_close(a));
    CHECK_OK(photon_close(c.fd));
    for (int i = 0; i < nheld; i++) {
        CHECK_OK(photon_close(held[i]));
    }
    CHECK_OK(photon_close(lfd));
    CHECK_OK(unlink(sun.sun_path));
}

static void accept_timeout(void) {
    SAY("accept with 100 ms on a listener nobody connects to: ETIMEDOUT");
    int lfd;
    struct sockaddr_in sin;
    tcp_listener(&lfd, &sin, 4);
    uint64_t t0 = photon_now_us();
    CHECK_ERRNO(photon_accept(lfd, NULL, NULL, 100000), ETIMEDOUT);
    check_took("accept", t0, 100000);
    struct sockaddr_in peer;
    socklen_t plen = sizeof peer;
    t0 = photon_now_us();
    CHECK_ERRNO(photon_accept(lfd, (struct sockaddr *)&peer, &plen, 50000), ETIMEDOUT);
    check_took("accept with an address", t0, 50000);

    SAY("the listener still accepts afterwards");
    int c = photon_socket(AF_INET, SOCK_STREAM, 0);
    CHECK(c >= 0, "photon_socket: %s", strerror(errno));
    CHECK_OK(photon_connect(c, (struct sockaddr *)&sin, sizeof sin, SEC));
    plen = sizeof peer;
    int a = photon_accept(lfd, (struct sockaddr *)&peer, &plen, SEC);
    CHECK(a >= 0, "accept: %s", strerror(errno));
    CHECK(plen == sizeof peer && peer.sin_family == AF_INET &&
              peer.sin_addr.s_addr == htonl(INADDR_LOOPBACK),
          "accept's peer address is wrong");
    CHECK_OK(photon_close(a));
    CHECK_OK(photon_close(c));
    CHECK_OK(photon_close(lfd));
}

int main(void) {
    test_start("net_timeouts");
    test_init();

    pthread_t wd;
    CHECK(pthread_create(&wd, NULL, watchdog_main, NULL) == 0, "pthread_create");
    CHECK(pthread_detach(wd) == 0, "pthread_detach");

    CHECK(mkdtemp(tmp_dir) != NULL, "mkdtemp: %s", strerror(errno));
    snprintf(tmp_sock, sizeof tmp_sock, "%s/listener.sock", tmp_dir);
    CHECK_OK(atexit(remove_tmp));

    receive_timeouts();
    timeout_race();
    send_timeouts();
    accept_timeout();
    tcp_connect_timeout();
    unix_connect_timeout();

    CHECK_OK(rmdir(tmp_dir));
    test_fini();
    CHECK(failures == 0, "%d EXPECT checks failed (above)", failures);
    SAY("net_timeouts: OK");
    return 0;
}
