/*
 * The server loop under load: photon_server_new_tcp on 127.0.0.1 port 0,
 * photon_server_serve in a photon thread, and 200 client photon threads on
 * the same vcpu, all connected at once, each echoing 200 messages of random
 * sizes (1 B .. 16 KiB) with byte-exact verification. Then
 * photon_server_stop makes serve return 0, and every handler saw its
 * client's EOF and closed its connection.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdatomic.h>

#include "check.h"

#define CLIENTS 200
#define MESSAGES 200
#define MAX_MSG 16384

struct server_stats {
    atomic_int accepted;     /* handlers started */
    atomic_int finished;     /* handlers that saw EOF and closed */
    atomic_llong echoed;     /* bytes the handlers echoed */
    atomic_int handler_errs; /* handlers that failed a read/write/close */
};

static int echo_handler(void *userdata, int fd) {
    struct server_stats *st = userdata;
    atomic_fetch_add(&st->accepted, 1);
    char buf[MAX_MSG];
    for (;;) {
        ssize_t n = photon_read(fd, buf, sizeof buf, 10000000);
        if (n == 0) {
            break;
        }
        if (n < 0) {
            fprintf(stderr, "handler fd %d: read: %s\n", fd, strerror(errno));
            atomic_fetch_add(&st->handler_errs, 1);
            break;
        }
        ssize_t w = photon_write_full(fd, buf, (size_t)n, 10000000);
        if (w != n) {
            fprintf(stderr, "handler fd %d: write_full(%zd) gave %zd: %s\n", fd, n, w,
                    strerror(errno));
            atomic_fetch_add(&st->handler_errs, 1);
            break;
        }
        atomic_fetch_add(&st->echoed, (long long)n);
    }
    if (photon_close(fd) != 0) {
        atomic_fetch_add(&st->handler_errs, 1);
    }
    atomic_fetch_add(&st->finished, 1);
    return 0;
}

struct serve_arg {
    photon_server *server;
    struct server_stats *stats;
    int ret;
    int err;
};

static void *serve_main(void *arg) {
    struct serve_arg *sa = arg;
    errno = 0;
    sa->ret = photon_server_serve(sa->server, echo_handler, sa->stats);
    sa->err = errno;
    return NULL;
}

struct client {
    int index;
    uint16_t port;
    uint64_t rng;
    long long sent;
    int done;
};

static uint64_t next_rand(uint64_t *s) {
    /* xorshift64* */
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 2685821657736338717ULL;
}

static void *client_main(void *arg) {
    struct client *c = arg;
    unsigned char out[MAX_MSG], in[MAX_MSG];
    int fd = photon_socket(AF_INET, SOCK_STREAM, 0);
    CHECK(fd >= 0, "client %d: photon_socket: %s", c->index, strerror(errno));
    struct sockaddr_in sin;
    memset(&sin, 0, sizeof sin);
    sin.sin_family = AF_INET;
    sin.sin_port = htons(c->port);
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CHECK_OK(photon_connect(fd, (struct sockaddr *)&sin, sizeof sin, 10000000));
    /* small messages must not wait for delayed ACKs */
    int one = 1;
    CHECK_OK(setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one));
    for (int m = 0; m < MESSAGES; m++) {
        size_t len = 1 + (size_t)(next_rand(&c->rng) % MAX_MSG);
        for (size_t i = 0; i < len; i++) {
            out[i] = (unsigned char)(next_rand(&c->rng) >> 56);
        }
        memset(in, 0, len);
        ssize_t w = photon_write_full(fd, out, len, 10000000);
        CHECK(w == (ssize_t)len, "client %d msg %d: write_full(%zu) gave %zd: %s", c->index,
              m, len, w, strerror(errno));
        ssize_t r = photon_read_full(fd, in, len, 10000000);
        CHECK(r == (ssize_t)len, "client %d msg %d: read_full(%zu) gave %zd: %s", c->index, m,
              len, r, strerror(errno));
        CHECK(memcmp(in, out, len) == 0, "client %d msg %d: echo of %zu bytes differs",
              c->index, m, len);
        c->sent += (long long)len;
    }
    /* nothing more than what was echoed arrives */
    ssize_t extra = photon_recv(fd, in, sizeof in, MSG_DONTWAIT, 0);
    CHECK(extra == -1 && (errno == EAGAIN || errno == EWOULDBLOCK),
          "client %d: unexpected trailing data: %zd (%s)", c->index, extra, strerror(errno));
    CHECK_OK(photon_close(fd));
    c->done = 1;
    return NULL;
}

int main(void) {
    test_start("net_echo_many");
    test_init();

    static struct server_stats stats;
    errno = 0;
    photon_server *server = photon_server_new_tcp("127.0.0.1", 0, 0);
    CHECK(server != NULL, "photon_server_new_tcp: %s", strerror(errno));
    int port = photon_server_port(server);
    CHECK(port > 0 && port < 65536, "photon_server_port gave %d", port);
    SAY("server on 127.0.0.1:%d", port);

    struct serve_arg sa = {.server = server, .stats = &stats, .ret = 99};
    photon_thread *serve_th = spawn_joinable(serve_main, &sa, 0);

    SAY("%d clients x %d messages of 1..%d bytes, all on this vcpu", CLIENTS, MESSAGES,
        MAX_MSG);
    static struct client clients[CLIENTS];
    photon_thread *ths[CLIENTS];
    uint64_t t0 = photon_now_us();
    for (int i = 0; i < CLIENTS; i++) {
        clients[i].index = i;
        clients[i].port = (uint16_t)port;
        clients[i].rng = 0x9E3779B97F4A7C15ULL * (uint64_t)(i + 1);
        ths[i] = spawn_joinable(client_main, &clients[i], 0);
    }
    long long total = 0;
    for (int i = 0; i < CLIENTS; i++) {
        join_ok(ths[i]);
        CHECK(clients[i].done, "client %d did not finish", i);
        total += clients[i].sent;
    }
    uint64_t took = elapsed_us(t0);
    SAY("echoed %lld bytes in %" PRIu64 " ms", total, took / 1000);

    /* every handler sees its client's EOF and closes */
    for (int i = 0; i < 500 && atomic_load(&stats.finished) < CLIENTS; i++) {
        CHECK_OK(photon_thread_usleep(10000));
    }
    CHECK(atomic_load(&stats.accepted) == CLIENTS, "%d handlers started, want %d",
          atomic_load(&stats.accepted), CLIENTS);
    CHECK(atomic_load(&stats.finished) == CLIENTS, "%d handlers finished, want %d",
          atomic_load(&stats.finished), CLIENTS);
    CHECK(atomic_load(&stats.handler_errs) == 0, "%d handler errors",
          atomic_load(&stats.handler_errs));
    CHECK(atomic_load(&stats.echoed) == total, "handlers echoed %lld bytes, clients sent %lld",
          (long long)atomic_load(&stats.echoed), total);
    CHECK(sa.ret == 99, "serve returned early: %d (%s)", sa.ret, strerror(sa.err));

    SAY("photon_server_stop: serve returns 0");
    t0 = photon_now_us();
    CHECK_OK(photon_server_stop(server));
    join_ok(serve_th);
    took = elapsed_us(t0);
    CHECK(sa.ret == 0, "photon_server_serve returned %d with errno %d (%s)", sa.ret, sa.err,
          strerror(sa.err));
    CHECK(took < 1000000, "serve took %" PRIu64 " us to return after stop", took);
    photon_server_free(server);

    test_fini();
    SAY("net_echo_many: OK");
    return 0;
}
