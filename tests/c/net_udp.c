/*
 * Datagrams and IPv6:
 * - two UDP sockets on 127.0.0.1 exchange datagrams with photon_sendto /
 *   photon_recvfrom: boundaries kept, the source address returned exactly
 *   (family, address, port, length), a recvfrom blocked before the datagram
 *   arrives wakes with it, an idle recvfrom times out;
 * - photon_sendmsg / photon_recvmsg with several iovecs and msg_name; a
 *   datagram bigger than the buffer is truncated with MSG_TRUNC in
 *   msg_flags, as recvmsg(2);
 * - IPv6 TCP on ::1: photon_server_new_tcp("::1"), a client echo, and
 *   photon_accept returning the peer's sockaddr_in6 (skipped with a notice
 *   if this host has no IPv6).
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <unistd.h>

#include "check.h"

#define SEC 1000000ULL

static int udp_socket(struct sockaddr_in *bound) {
    int fd = photon_socket(AF_INET, SOCK_DGRAM, 0);
    CHECK(fd >= 0, "photon_socket(SOCK_DGRAM): %s", strerror(errno));
    memset(bound, 0, sizeof *bound);
    bound->sin_family = AF_INET;
    bound->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CHECK_OK(bind(fd, (struct sockaddr *)bound, sizeof *bound));
    socklen_t len = sizeof *bound;
    CHECK_OK(getsockname(fd, (struct sockaddr *)bound, &len));
    return fd;
}

static void fill(unsigned char *b, size_t n, unsigned seed) {
    for (size_t i = 0; i < n; i++) {
        b[i] = (unsigned char)(seed * 31u + i * 7u);
    }
}

/* `ss` (returned length `len`, from a buffer bigger than a sockaddr_in)
 * holds exactly `want`. */
static void check_source(const struct sockaddr_storage *ss, socklen_t len,
                         const struct sockaddr_in *want) {
    const struct sockaddr_in *src = (const struct sockaddr_in *)ss;
    CHECK(len == sizeof *want, "source address length %u, want %zu", (unsigned)len,
          sizeof *want);
    CHECK(src->sin_family == AF_INET, "source family %d", src->sin_family);
    CHECK(src->sin_addr.s_addr == want->sin_addr.s_addr, "source address %s",
          inet_ntoa(src->sin_addr));
    CHECK(src->sin_port == want->sin_port, "source port %u, want %u", ntohs(src->sin_port),
          ntohs(want->sin_port));
}

struct udp_waiter {
    int fd;
    unsigned char buf[2048];
    struct sockaddr_storage src;
    socklen_t srclen;
    long ret;
    int err;
};

static void *udp_waiter_main(void *arg) {
    struct udp_waiter *w = arg;
    w->srclen = sizeof w->src;
    errno = 0;
    w->ret = photon_recvfrom(w->fd, w->buf, sizeof w->buf, 0, (struct sockaddr *)&w->src,
                             &w->srclen, 5 * SEC);
    w->err = errno;
    return NULL;
}

static void udp_v4(void) {
    struct sockaddr_in aa, ba;
    int a = udp_socket(&aa);
    int b = udp_socket(&ba);
    unsigned char out[1500], in[2048];

    SAY("sendto 3 datagrams (1, 100, 1400 bytes); recvfrom gets each whole, with the source");
    const size_t sizes[3] = {1, 100, 1400};
    for (int i = 0; i < 3; i++) {
        fill(out, sizes[i], (unsigned)i);
        ssize_t w = photon_sendto(a, out, sizes[i], 0, (struct sockaddr *)&ba, sizeof ba, SEC);
        CHECK(w == (ssize_t)sizes[i], "sendto gave %zd (%s)", w, strerror(errno));
    }
    for (int i = 0; i < 3; i++) {
        struct sockaddr_storage src;
        memset(&src, 0xee, sizeof src);
        socklen_t srclen = sizeof src;
        ssize_t r = photon_recvfrom(b, in, sizeof in, 0, (struct sockaddr *)&src, &srclen, SEC);
        CHECK(r == (ssize_t)sizes[i], "recvfrom #%d gave %zd (%s), want %zu", i, r,
              strerror(errno), sizes[i]);
        fill(out, sizes[i], (unsigned)i);
        CHECK(memcmp(in, out, sizes[i]) == 0, "datagram #%d differs", i);
        check_source(&src, srclen, &aa);
    }

    SAY("recvfrom blocked before the datagram is sent wakes with it");
    struct udp_waiter wt = {.fd = a, .ret = 99};
    photon_thread *th = spawn_joinable(udp_waiter_main, &wt, 0);
    CHECK_OK(photon_thread_usleep(20000));
    CHECK(wt.ret == 99, "recvfrom returned early: %ld (%s)", wt.ret, strerror(wt.err));
    fill(out, 777, 9);
    CHECK(photon_sendto(b, out, 777, 0, (struct sockaddr *)&aa, sizeof aa, SEC) == 777,
          "sendto: %s", strerror(errno));
    join_ok(th);
    CHECK(wt.ret == 777, "blocked recvfrom gave %ld (%s)", wt.ret, strerror(wt.err));
    CHECK(memcmp(wt.buf, out, 777) == 0, "datagram differs");
    check_source(&wt.src, wt.srclen, &ba);

    SAY("recvfrom with NULL address, recv, read on a datagram socket");
    CHECK(photon_sendto(a, "xyz", 3, 0, (struct sockaddr *)&ba, sizeof ba, SEC) == 3, "sendto");
    CHECK(photon_recvfrom(b, in, sizeof in, 0, NULL, NULL, SEC) == 3, "recvfrom(NULL): %s",
          strerror(errno));
    CHECK(photon_sendto(a, "abcd", 4, 0, (struct sockaddr *)&ba, sizeof ba, SEC) == 4, "sendto");
    CHECK(photon_recv(b, in, sizeof in, 0, SEC) == 4, "recv: %s", strerror(errno));
    CHECK_OK(connect(a, (struct sockaddr *)&ba, sizeof ba));
    CHECK(photon_send(a, "hello", 5, 0, SEC) == 5, "send on a connected UDP socket");
    CHECK(photon_read(b, in, sizeof in, SEC) == 5 && memcmp(in, "hello", 5) == 0, "read: %s",
          strerror(errno));

    SAY("recvfrom with a 4-byte address buffer: truncated, the full length returned");
    {
        CHECK(photon_sendto(b, "t", 1, 0, (struct sockaddr *)&aa, sizeof aa, SEC) == 1,
              "sendto");
        unsigned char tiny[sizeof(struct sockaddr_in)];
        memset(tiny, 0xee, sizeof tiny);
        socklen_t tlen = 4;
        CHECK(photon_recvfrom(a, in, sizeof in, 0, (struct sockaddr *)tiny, &tlen, SEC) == 1,
              "recvfrom: %s", strerror(errno));
        CHECK(tlen == sizeof(struct sockaddr_in), "addrlen %u, want %zu (as recvfrom(2))",
              (unsigned)tlen, sizeof(struct sockaddr_in));
        struct sockaddr_in want = ba;
        CHECK(memcmp(tiny, &want, 4) == 0, "the first 4 bytes of the address differ");
        CHECK(tiny[4] == 0xee && tiny[7] == 0xee, "wrote past the 4-byte address buffer");
    }

    SAY("an idle recvfrom times out");
    uint64_t t0 = photon_now_us();
    CHECK_ERRNO(photon_recvfrom(b, in, sizeof in, 0, NULL, NULL, 50000), ETIMEDOUT);
    CHECK(elapsed_us(t0) >= 50000, "timed out early");

    SAY("sendmsg with 3 iovecs and msg_name; recvmsg into 2 iovecs fills msg_name");
    {
        unsigned char p1[10], p2[300], p3[5];
        fill(p1, sizeof p1, 1);
        fill(p2, sizeof p2, 2);
        fill(p3, sizeof p3, 3);
        struct iovec wv[3] = {{p1, sizeof p1}, {p2, sizeof p2}, {p3, sizeof p3}};
        struct msghdr wm;
        memset(&wm, 0, sizeof wm);
        wm.msg_name = &aa;
        wm.msg_namelen = sizeof aa;
        wm.msg_iov = wv;
        wm.msg_iovlen = 3;
        CHECK(photon_sendmsg(b, &wm, 0, SEC) == 315, "sendmsg: %s", strerror(errno));

        unsigned char r1[100], r2[400];
        memset(r1, 0, sizeof r1);
        memset(r2, 0, sizeof r2);
        struct iovec rv[2] = {{r1, sizeof r1}, {r2, sizeof r2}};
        struct sockaddr_storage src;
        memset(&src, 0, sizeof src);
        struct msghdr rm;
        memset(&rm, 0, sizeof rm);
        rm.msg_name = &src;
        rm.msg_namelen = sizeof src;
        rm.msg_iov = rv;
        rm.msg_iovlen = 2;
        rm.msg_flags = 0x5a5a;
        /* a is connected to b: the datagram from b is accepted */
        ssize_t r = photon_recvmsg(a, &rm, 0, SEC);
        CHECK(r == 315, "recvmsg gave %zd (%s)", r, strerror(errno));
        unsigned char all[315];
        memcpy(all, p1, 10);
        memcpy(all + 10, p2, 300);
        memcpy(all + 310, p3, 5);
        CHECK(memcmp(r1, all, 100) == 0 && memcmp(r2, all + 100, 215) == 0,
              "recvmsg scattered the datagram wrongly");
        check_source(&src, rm.msg_namelen, &ba);
        CHECK(rm.msg_flags == 0, "recvmsg msg_flags 0x%x, want 0", (unsigned)rm.msg_flags);
    }

    SAY("a datagram bigger than recvmsg's buffer: truncated, MSG_TRUNC in msg_flags");
    {
        fill(out, 1000, 5);
        CHECK(photon_sendto(b, out, 1000, 0, (struct sockaddr *)&aa, sizeof aa, SEC) == 1000,
              "sendto");
        unsigned char small[64];
        struct iovec rv = {small, sizeof small};
        struct msghdr rm;
        memset(&rm, 0, sizeof rm);
        rm.msg_iov = &rv;
        rm.msg_iovlen = 1;
        ssize_t r = photon_recvmsg(a, &rm, 0, SEC);
        CHECK(r == 64, "truncated recvmsg gave %zd (%s)", r, strerror(errno));
        CHECK(memcmp(small, out, 64) == 0, "truncated data differs");
        CHECK(rm.msg_flags & MSG_TRUNC, "msg_flags 0x%x lacks MSG_TRUNC",
              (unsigned)rm.msg_flags);
        /* the rest of the datagram is gone: the next one is a new datagram */
        CHECK(photon_sendto(b, "next", 4, 0, (struct sockaddr *)&aa, sizeof aa, SEC) == 4,
              "sendto");
        CHECK(photon_recv(a, small, sizeof small, 0, SEC) == 4 && memcmp(small, "next", 4) == 0,
              "the datagram after a truncated one");
    }
    CHECK_OK(photon_close(a));
    CHECK_OK(photon_close(b));
}

/* --- IPv6 TCP on ::1 --- */

static int echo_handler(void *userdata, int fd) {
    (void)userdata;
    char buf[4096];
    for (;;) {
        ssize_t n = photon_read(fd, buf, sizeof buf, 5 * SEC);
        if (n <= 0 || photon_write_full(fd, buf, (size_t)n, 5 * SEC) != n) {
            break;
        }
    }
    photon_close(fd);
    return 0;
}

struct serve_arg {
    photon_server *server;
    int ret;
};

static void *serve_main(void *arg) {
    struct serve_arg *sa = arg;
    sa->ret = photon_server_serve(sa->server, echo_handler, NULL);
    return NULL;
}

static void tcp_v6(void) {
    int probe = photon_socket(AF_INET6, SOCK_STREAM, 0);
    if (probe < 0 && errno == EAFNOSUPPORT) {
        SAY("NOTICE: IPv6 is unavailable here (socket: EAFNOSUPPORT): IPv6 checks skipped");
        return;
    }
    CHECK(probe >= 0, "photon_socket(AF_INET6): %s", strerror(errno));
    struct sockaddr_in6 lo6;
    memset(&lo6, 0, sizeof lo6);
    lo6.sin6_family = AF_INET6;
    lo6.sin6_addr = in6addr_loopback;
    if (bind(probe, (struct sockaddr *)&lo6, sizeof lo6) != 0 && errno == EADDRNOTAVAIL) {
        SAY("NOTICE: ::1 is not configured here (bind: EADDRNOTAVAIL): IPv6 checks skipped");
        photon_close(probe);
        return;
    }
    CHECK_OK(photon_close(probe));

    SAY("IPv6: photon_server_new_tcp(\"::1\", 0) and a client echo");
    photon_server *s = photon_server_new_tcp("::1", 0, 0);
    CHECK(s != NULL, "photon_server_new_tcp(::1): %s", strerror(errno));
    int port = photon_server_port(s);
    CHECK(port > 0, "port %d", port);
    struct serve_arg sa = {.server = s, .ret = 99};
    photon_thread *th = spawn_joinable(serve_main, &sa, 0);
    int c = photon_socket(AF_INET6, SOCK_STREAM, 0);
    CHECK(c >= 0, "photon_socket(AF_INET6): %s", strerror(errno));
    struct sockaddr_in6 to = lo6;
    to.sin6_port = htons((uint16_t)port);
    CHECK_OK(photon_connect(c, (struct sockaddr *)&to, sizeof to, SEC));
    unsigned char out[3000], in[3000];
    fill(out, sizeof out, 6);
    CHECK(photon_write_full(c, out, sizeof out, SEC) == (ssize_t)sizeof out, "write");
    CHECK(photon_read_full(c, in, sizeof in, SEC) == (ssize_t)sizeof in, "read: %s",
          strerror(errno));
    CHECK(memcmp(in, out, sizeof in) == 0, "IPv6 echo differs");
    CHECK_OK(photon_close(c));
    CHECK_OK(photon_server_stop(s));
    join_ok(th);
    CHECK(sa.ret == 0, "serve returned %d", sa.ret);
    photon_server_free(s);

    SAY("IPv6: photon_accept fills a sockaddr_in6 with the peer's ::1 address and port");
    int l = photon_socket(AF_INET6, SOCK_STREAM, 0);
    CHECK(l >= 0, "photon_socket: %s", strerror(errno));
    CHECK_OK(bind(l, (struct sockaddr *)&lo6, sizeof lo6));
    CHECK_OK(listen(l, 4));
    struct sockaddr_in6 laddr;
    socklen_t llen = sizeof laddr;
    CHECK_OK(getsockname(l, (struct sockaddr *)&laddr, &llen));
    c = photon_socket(AF_INET6, SOCK_STREAM, 0);
    CHECK_OK(photon_connect(c, (struct sockaddr *)&laddr, sizeof laddr, SEC));
    struct sockaddr_in6 caddr;
    socklen_t clen = sizeof caddr;
    CHECK_OK(getsockname(c, (struct sockaddr *)&caddr, &clen));
    struct sockaddr_in6 peer;
    memset(&peer, 0, sizeof peer);
    socklen_t plen = sizeof peer;
    int a = photon_accept(l, (struct sockaddr *)&peer, &plen, SEC);
    CHECK(a >= 0, "photon_accept: %s", strerror(errno));
    CHECK(plen == sizeof peer, "peer address length %u", (unsigned)plen);
    CHECK(peer.sin6_family == AF_INET6, "peer family %d", peer.sin6_family);
    CHECK(memcmp(&peer.sin6_addr, &in6addr_loopback, sizeof peer.sin6_addr) == 0,
          "peer address is not ::1");
    CHECK(peer.sin6_port == caddr.sin6_port, "peer port %u, client's is %u",
          ntohs(peer.sin6_port), ntohs(caddr.sin6_port));
    CHECK(photon_write(c, "v6", 2, SEC) == 2, "write");
    CHECK(photon_read(a, in, sizeof in, SEC) == 2 && memcmp(in, "v6", 2) == 0, "read");
    CHECK_OK(photon_close(a));
    CHECK_OK(photon_close(c));
    CHECK_OK(photon_close(l));

    SAY("IPv6 UDP on ::1: sendto/recvfrom with the source address");
    int u1 = photon_socket(AF_INET6, SOCK_DGRAM, 0);
    int u2 = photon_socket(AF_INET6, SOCK_DGRAM, 0);
    CHECK(u1 >= 0 && u2 >= 0, "photon_socket: %s", strerror(errno));
    CHECK_OK(bind(u1, (struct sockaddr *)&lo6, sizeof lo6));
    CHECK_OK(bind(u2, (struct sockaddr *)&lo6, sizeof lo6));
    struct sockaddr_in6 a1, a2;
    socklen_t alen = sizeof a1;
    CHECK_OK(getsockname(u1, (struct sockaddr *)&a1, &alen));
    alen = sizeof a2;
    CHECK_OK(getsockname(u2, (struct sockaddr *)&a2, &alen));
    CHECK(photon_sendto(u1, "six", 3, 0, (struct sockaddr *)&a2, sizeof a2, SEC) == 3,
          "sendto: %s", strerror(errno));
    struct sockaddr_in6 src;
    socklen_t slen = sizeof src;
    CHECK(photon_recvfrom(u2, in, sizeof in, 0, (struct sockaddr *)&src, &slen, SEC) == 3,
          "recvfrom: %s", strerror(errno));
    CHECK(slen == sizeof src && src.sin6_family == AF_INET6 && src.sin6_port == a1.sin6_port &&
              memcmp(&src.sin6_addr, &in6addr_loopback, sizeof src.sin6_addr) == 0,
          "IPv6 source address wrong");
    CHECK_OK(photon_close(u1));
    CHECK_OK(photon_close(u2));
}

int main(void) {
    test_start("net_udp");
    test_init();

    udp_v4();
    tcp_v6();

    test_fini();
    SAY("net_udp: OK");
    return 0;
}
