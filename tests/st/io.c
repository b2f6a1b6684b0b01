/* Descriptors and I/O: timeouts (ETIME), st_read_fully on timeout and at
 * end of file, the _resid forms, interrupts of blocked reads, st_poll on
 * several kinds of fds, TCP accept/connect and UDP over loopback. */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <st.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/socket.h>

#include "st_check.h"

static int freed;
static void count_free(void *v)
{
    (void)v;
    freed++;
}

struct reader {
    st_netfd_t fd;
    int r, err;
};

static void *blocked_reader(void *arg)
{
    struct reader *rd = arg;
    char c;
    errno = 0;
    rd->r = (int)st_read(rd->fd, &c, 1, ST_UTIME_NO_TIMEOUT);
    rd->err = errno;
    return NULL;
}

static char big[1 << 20];
static void *writer(void *arg)
{
    st_netfd_t fd = arg;
    CHECK(st_write(fd, big, sizeof big, ST_UTIME_NO_TIMEOUT) == (ssize_t)sizeof big);
    return NULL;
}

static void *late_writer(void *arg)
{
    st_netfd_t fd = arg;
    st_usleep(5 * MS);
    CHECK(st_write(fd, "late", 4, ST_UTIME_NO_TIMEOUT) == 4);
    return NULL;
}

static void *echo_once(void *arg)
{
    st_netfd_t listener = arg;
    struct sockaddr_in from;
    int fromlen = sizeof from;
    st_netfd_t c = st_accept(listener, (struct sockaddr *)&from, &fromlen, 2000 * MS);
    CHECK(c != NULL && fromlen == sizeof from && from.sin_family == AF_INET);
    char buf[64];
    ssize_t n = st_read(c, buf, sizeof buf, 2000 * MS);
    CHECK(n > 0);
    CHECK(st_write(c, buf, (size_t)n, 2000 * MS) == n);
    CHECK(st_netfd_close(c) == 0);
    return NULL;
}

int main(void)
{
    CHECK(st_init() == 0);
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    st_netfd_t a = st_netfd_open_socket(sv[0]);
    st_netfd_t b = st_netfd_open_socket(sv[1]);
    CHECK(a && b);
    CHECK(fcntl(sv[0], F_GETFL) & O_NONBLOCK);
    CHECK(st_netfd_fileno(a) == sv[0]);
    CHECK(st_netfd_open(-1) == NULL);
    printf("netfd: ok\n");

    /* timeouts */
    char buf[64];
    st_utime_t t0 = st_utime();
    CHECK_FAILS(st_read(a, buf, sizeof buf, 20 * MS), ETIME);
    CHECK(st_utime() - t0 >= 20 * MS);
    CHECK_FAILS(st_read(a, buf, sizeof buf, ST_UTIME_NO_WAIT), ETIME);
    CHECK_FAILS(st_netfd_poll(a, POLLIN, 10 * MS), ETIME);
    CHECK(st_netfd_poll(a, POLLOUT, 10 * MS) == 0);
    /* st_read_fully: a timeout after some bytes is an error */
    CHECK(st_write(b, "abc", 3, ST_UTIME_NO_TIMEOUT) == 3);
    CHECK_FAILS(st_read_fully(a, buf, 10, 20 * MS), ETIME);
    /* the inactivity timeout restarts with each arrival */
    st_thread_t lw = st_thread_create(late_writer, b, 1, 0);
    CHECK(st_read_fully(a, buf, 4, 100 * MS) == 4 && memcmp(buf, "late", 4) == 0);
    CHECK(st_thread_join(lw, NULL) == 0);
    size_t resid = 8;
    CHECK(st_write(b, "xy", 2, ST_UTIME_NO_TIMEOUT) == 2);
    CHECK_FAILS(st_read_resid(a, buf, &resid, 20 * MS), ETIME);
    printf("timeouts: ok, resid %d\n", (int)resid);

    /* large writes against a reader; read_fully to the end */
    for (size_t i = 0; i < sizeof big; i++)
        big[i] = (char)(i * 7);
    st_thread_t w = st_thread_create(writer, b, 1, 0);
    static char in[1 << 20];
    CHECK(st_read_fully(a, in, sizeof in, ST_UTIME_NO_TIMEOUT) == (ssize_t)sizeof in);
    CHECK(memcmp(in, big, sizeof in) == 0);
    CHECK(st_thread_join(w, NULL) == 0);
    /* writev and readv_resid */
    struct iovec out[3] = {{"one", 3}, {"", 0}, {"three", 5}};
    CHECK(st_writev(b, out, 3, ST_UTIME_NO_TIMEOUT) == 8);
    char p1[2], p2[6];
    struct iovec iv[2] = {{p1, 2}, {p2, 6}};
    struct iovec *cur = iv;
    int cnt = 2;
    CHECK(st_readv_resid(a, &cur, &cnt, ST_UTIME_NO_TIMEOUT) == 0);
    CHECK(cnt == 0 && cur == iv + 2 && iv[0].iov_len == 0 && memcmp(p1, "on", 2) == 0 && memcmp(p2, "ethree", 6) == 0);
    struct iovec wv[2] = {{"ab", 2}, {"cd", 2}};
    cur = wv;
    cnt = 2;
    CHECK(st_writev_resid(b, &cur, &cnt, ST_UTIME_NO_TIMEOUT) == 0 && cnt == 0);
    CHECK(st_readv(a, (struct iovec[]){{buf, sizeof buf}}, 1, ST_UTIME_NO_TIMEOUT) == 4);
    printf("bulk: ok\n");

    /* interrupting a blocked read */
    struct reader rd = {.fd = a};
    st_thread_t rt = st_thread_create(blocked_reader, &rd, 1, 0);
    st_usleep(5 * MS);
    st_thread_interrupt(rt);
    CHECK(st_thread_join(rt, NULL) == 0);
    printf("interrupted read: %d %s\n", rd.r, rd.err == EINTR ? "EINTR" : "?");

    /* st_poll: nothing ready, then one of several, bad fds */
    int pp[2];
    CHECK(pipe(pp) == 0);
    st_netfd_t pr = st_netfd_open(pp[0]), pw = st_netfd_open(pp[1]);
    CHECK(pr && pw);
    struct pollfd pds[2] = {{sv[0], POLLIN, 0}, {pp[0], POLLIN, 0}};
    CHECK(st_poll(pds, 2, 10 * MS) == 0);
    CHECK(st_write(pw, "p", 1, ST_UTIME_NO_TIMEOUT) == 1);
    CHECK(st_poll(pds, 2, ST_UTIME_NO_TIMEOUT) == 1);
    CHECK(pds[0].revents == 0 && (pds[1].revents & POLLIN));
    CHECK(st_poll(NULL, 0, 5 * MS) == 0);
    printf("poll: ok\n");

    /* end of file */
    CHECK(st_netfd_close(pw) == 0);
    CHECK(st_read(pr, buf, sizeof buf, ST_UTIME_NO_TIMEOUT) == 1);
    CHECK(st_read(pr, buf, sizeof buf, ST_UTIME_NO_TIMEOUT) == 0);
    CHECK(st_read_fully(pr, buf, 10, ST_UTIME_NO_TIMEOUT) == 0);
    st_netfd_setspecific(pr, (void *)1, count_free);
    CHECK(st_netfd_getspecific(pr) == (void *)1);
    st_netfd_setspecific(pr, (void *)2, count_free);
    CHECK(freed == 1);
    st_netfd_free(pr);
    CHECK(freed == 2);
    CHECK(close(pp[0]) == 0); /* free left it open */
    printf("eof, specific: ok\n");

    /* TCP over loopback */
    int ls = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof addr;
    CHECK(bind(ls, (struct sockaddr *)&addr, sizeof addr) == 0 && listen(ls, 16) == 0);
    CHECK(getsockname(ls, (struct sockaddr *)&addr, &alen) == 0);
    st_netfd_t listener = st_netfd_open_socket(ls);
    CHECK(listener && st_netfd_serialize_accept(listener) == 0);
    errno = 0;
    CHECK(st_accept(listener, NULL, NULL, 10 * MS) == NULL && errno == ETIME);
    st_thread_t srv = st_thread_create(echo_once, listener, 1, 0);
    st_netfd_t cl = st_netfd_open_socket(socket(AF_INET, SOCK_STREAM, 0));
    CHECK(cl && st_connect(cl, (struct sockaddr *)&addr, sizeof addr, 2000 * MS) == 0);
    CHECK(st_write(cl, "hello", 5, 2000 * MS) == 5);
    CHECK(st_read_fully(cl, buf, 5, 2000 * MS) == 5 && memcmp(buf, "hello", 5) == 0);
    CHECK(st_read(cl, buf, sizeof buf, 2000 * MS) == 0);
    CHECK(st_thread_join(srv, NULL) == 0);
    st_netfd_close(cl);
    st_netfd_close(listener);
    /* connection refused on the closed port */
    cl = st_netfd_open_socket(socket(AF_INET, SOCK_STREAM, 0));
    CHECK_FAILS(st_connect(cl, (struct sockaddr *)&addr, sizeof addr, 2000 * MS), ECONNREFUSED);
    st_netfd_close(cl);
    printf("tcp: ok\n");

    /* UDP: sendto/recvfrom, sendmsg/recvmsg */
    st_netfd_t u1 = st_netfd_open_socket(socket(AF_INET, SOCK_DGRAM, 0));
    st_netfd_t u2 = st_netfd_open_socket(socket(AF_INET, SOCK_DGRAM, 0));
    struct sockaddr_in ua = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    alen = sizeof ua;
    CHECK(bind(st_netfd_fileno(u1), (struct sockaddr *)&ua, sizeof ua) == 0);
    CHECK(getsockname(st_netfd_fileno(u1), (struct sockaddr *)&ua, &alen) == 0);
    CHECK_FAILS(st_recvfrom(u1, buf, sizeof buf, NULL, NULL, 10 * MS), ETIME);
    CHECK(st_sendto(u2, "dgram", 5, (struct sockaddr *)&ua, sizeof ua, ST_UTIME_NO_TIMEOUT) == 5);
    struct sockaddr_in from;
    int fromlen = sizeof from;
    CHECK(st_recvfrom(u1, buf, sizeof buf, (struct sockaddr *)&from, &fromlen, 1000 * MS) == 5);
    CHECK(fromlen == sizeof from && from.sin_addr.s_addr == htonl(INADDR_LOOPBACK));
    struct iovec mv = {"msg!", 4};
    struct msghdr mh = {.msg_name = &ua, .msg_namelen = sizeof ua, .msg_iov = &mv, .msg_iovlen = 1};
    CHECK(st_sendmsg(u2, &mh, 0, ST_UTIME_NO_TIMEOUT) == 4);
    struct iovec rv = {buf, sizeof buf};
    struct msghdr rh = {.msg_iov = &rv, .msg_iovlen = 1};
    CHECK(st_recvmsg(u1, &rh, 0, 1000 * MS) == 4 && memcmp(buf, "msg!", 4) == 0);
    st_netfd_close(u1);
    st_netfd_close(u2);
    printf("udp: ok\n");

    /* st_open on a FIFO */
    char fifo[64];
    snprintf(fifo, sizeof fifo, "/tmp/st-io-fifo-%d", (int)getpid());
    CHECK(mkfifo(fifo, 0600) == 0);
    st_netfd_t fr = st_open(fifo, O_RDONLY, 0);
    st_netfd_t fw = st_open(fifo, O_WRONLY, 0);
    unlink(fifo);
    CHECK(fr && fw && (fcntl(st_netfd_fileno(fr), F_GETFL) & O_NONBLOCK));
    CHECK(st_write(fw, "fifo", 4, 1000 * MS) == 4);
    CHECK(st_read_fully(fr, buf, 4, 1000 * MS) == 4 && memcmp(buf, "fifo", 4) == 0);
    st_netfd_close(fw);
    CHECK(st_read(fr, buf, sizeof buf, 1000 * MS) == 0);
    st_netfd_close(fr);
    printf("fifo: ok\n");
    CHECK(st_netfd_close(a) == 0 && st_netfd_close(b) == 0);
    return 0;
}
