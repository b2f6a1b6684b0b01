/*
 * echo_client: a load generator for echo servers, itself built on libphoton.
 *
 *   echo_client [--host H] [--port N] [--unix PATH] [--conns N] [--size BYTES]
 *               [--duration S] [--warmup S] [--mode pingpong|stream]
 *               [--engine ENGINE]
 *
 * Everything runs on one OS thread (one vcpu), with one photon thread per
 * connection (two in stream mode):
 *
 *   pingpong  each connection sends --size bytes, reads --size bytes back
 *             (photon_read_full), checks they are the bytes it sent, and
 *             repeats. A request is one such round trip.
 *   stream    each connection has a sender thread writing --size byte chunks
 *             continuously and a receiver thread reading the echo and
 *             checking it byte for byte. Requests = bytes received / --size.
 *
 * All connections are established first; then the clock starts. Requests
 * completed during the first --warmup seconds are not counted; the next
 * --duration seconds are the measured window. The bytes sent are a fixed
 * pseudo-random pattern read at a position that changes with every request
 * (pingpong) or advances with the stream offset (stream), so a reply that is
 * stale, reordered, truncated or corrupted does not match.
 *
 * It prints one line on stdout:
 *
 *   mode=pingpong conns=64 size=512 duration=3.00s requests=N req/s=X MiB/s=Y errors=0
 *
 * where MiB/s counts the payload echoed back (one direction). A benchmark
 * must not report a figure from a run that had errors: if any connection
 * failed to connect, saw an I/O error or a timeout (10 s without progress),
 * was closed by the server, or received a byte that differs from what was
 * sent, it says so on stderr, prints no figures and exits with status 1.
 * Status 2 is bad usage.
 */
#define _GNU_SOURCE

#include <errno.h>
#include <getopt.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "photon.h"

#define DEFAULT_PORT "9527"
#define CONNECT_TIMEOUT_US (5 * 1000 * 1000ULL)
#define IO_TIMEOUT_US (10 * 1000 * 1000ULL)
#define MAX_CONNS 100000
#define MAX_SIZE (64 * 1024 * 1024)
#define RECV_CHUNK (64 * 1024)     /* stream receiver's read size */
#define PATTERN_PERIOD 65521       /* prime: the pattern repeats every this many bytes */
#define STACK_SIZE (256 * 1024)
#define MAX_REPORTED 8             /* error lines printed before summarising */

enum mode { PINGPONG, STREAM };

struct options {
    const char *host;
    const char *port;
    const char *unix_path; /* NULL: TCP */
    unsigned conns;
    size_t size;
    double duration;
    double warmup;
    enum mode mode;
    uint64_t engine;
};

struct conn {
    unsigned index;
    int fd;
    int failed;              /* set at the first error of this connection */
    uint64_t origin;         /* where in the pattern this connection starts */
    uint64_t counted_bytes;  /* payload echoed back within the window */
    uint64_t counted_reqs;   /* pingpong: round trips completed within the window */
    /* stream mode */
    uint64_t sent;
    uint64_t received;
    int sender_done;
    unsigned char *rx;
};

static struct options opt;
static struct conn *conns;
static unsigned char *pattern; /* PATTERN_PERIOD + max(size, RECV_CHUNK) bytes */
static char target[300];       /* "host:port" or the Unix path, for messages */
static struct sockaddr_storage target_addr;
static socklen_t target_len;

/* The measured window [window_start, window_end), in photon_now_us() time. */
static uint64_t window_start, window_end;

/* All photon threads run on this one vcpu and switch only inside photon
 * calls, so these plain counters need no locking. */
static unsigned failed_conns;
static unsigned reported;

static void usage(FILE *out)
{
    fprintf(out,
            "usage: echo_client [options]\n"
            "  --host H         server host name or address (default 127.0.0.1)\n"
            "  --port N         server TCP port (default %s)\n"
            "  --unix PATH      connect to a Unix stream socket instead of TCP\n"
            "  --conns N        connections (default 64)\n"
            "  --size BYTES     bytes per request (default 512)\n"
            "  --duration S     measured seconds (default 3)\n"
            "  --warmup S       seconds before measuring (default 0.5)\n"
            "  --mode M         pingpong | stream (default pingpong)\n"
            "  --engine E       io_uring | epoll | default\n",
            DEFAULT_PORT);
}

static void usage_error(const char *fmt, const char *arg)
{
    fprintf(stderr, "echo_client: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n");
    usage(stderr);
    exit(2);
}

static unsigned long parse_ulong(const char *name, const char *s,
                                 unsigned long min, unsigned long max)
{
    char *end;
    unsigned long v;

    errno = 0;
    v = strtoul(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || s[0] == '-' || v < min || v > max) {
        fprintf(stderr, "echo_client: bad %s '%s' (expected %lu..%lu)\n", name, s,
                min, max);
        exit(2);
    }
    return v;
}

static double parse_seconds(const char *name, const char *s, double min)
{
    char *end;
    double v;

    errno = 0;
    v = strtod(s, &end);
    if (errno != 0 || end == s || *end != '\0' || !(v >= min) || v > 1e6) {
        fprintf(stderr, "echo_client: bad %s '%s' (expected seconds >= %g)\n", name,
                s, min);
        exit(2);
    }
    return v;
}

static uint64_t parse_engine(const char *s)
{
    if (strcmp(s, "io_uring") == 0 || strcmp(s, "iouring") == 0)
        return PHOTON_EVENT_IOURING;
    if (strcmp(s, "epoll") == 0)
        return PHOTON_EVENT_EPOLL;
    if (strcmp(s, "default") == 0)
        return PHOTON_EVENT_DEFAULT;
    usage_error("unknown engine '%s' (io_uring, epoll or default)", s);
    return 0;
}

static void parse_args(int argc, char **argv)
{
    enum { O_HOST = 1, O_PORT, O_UNIX, O_CONNS, O_SIZE, O_DURATION, O_WARMUP,
           O_MODE, O_ENGINE, O_HELP };
    static const struct option longopts[] = {
        {"host", required_argument, NULL, O_HOST},
        {"port", required_argument, NULL, O_PORT},
        {"unix", required_argument, NULL, O_UNIX},
        {"conns", required_argument, NULL, O_CONNS},
        {"size", required_argument, NULL, O_SIZE},
        {"duration", required_argument, NULL, O_DURATION},
        {"warmup", required_argument, NULL, O_WARMUP},
        {"mode", required_argument, NULL, O_MODE},
        {"engine", required_argument, NULL, O_ENGINE},
        {"help", no_argument, NULL, O_HELP},
        {NULL, 0, NULL, 0},
    };
    int c;

    opt.host = "127.0.0.1";
    opt.port = DEFAULT_PORT;
    opt.conns = 64;
    opt.size = 512;
    opt.duration = 3;
    opt.warmup = 0.5;
    opt.mode = PINGPONG;
    opt.engine = PHOTON_EVENT_DEFAULT;

    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case O_HOST:
            opt.host = optarg;
            break;
        case O_PORT:
            parse_ulong("port", optarg, 1, 65535);
            opt.port = optarg;
            break;
        case O_UNIX:
            opt.unix_path = optarg;
            break;
        case O_CONNS:
            opt.conns = (unsigned)parse_ulong("connection count", optarg, 1, MAX_CONNS);
            break;
        case O_SIZE:
            opt.size = (size_t)parse_ulong("size", optarg, 1, MAX_SIZE);
            break;
        case O_DURATION:
            opt.duration = parse_seconds("duration", optarg, 0.001);
            break;
        case O_WARMUP:
            opt.warmup = parse_seconds("warmup", optarg, 0);
            break;
        case O_MODE:
            if (strcmp(optarg, "pingpong") == 0)
                opt.mode = PINGPONG;
            else if (strcmp(optarg, "stream") == 0)
                opt.mode = STREAM;
            else
                usage_error("unknown mode '%s' (pingpong or stream)", optarg);
            break;
        case O_ENGINE:
            opt.engine = parse_engine(optarg);
            break;
        case 'h':
        case O_HELP:
            usage(stdout);
            exit(0);
        default: /* getopt_long has printed what was wrong */
            usage(stderr);
            exit(2);
        }
    }
    if (optind < argc)
        usage_error("unexpected argument '%s'", argv[optind]);
}

/* Fills target_addr from --unix or --host/--port (a blocking lookup, done
 * once before the vcpu starts). */
static void resolve_target(void)
{
    struct addrinfo hints, *res;
    int rc;

    if (opt.unix_path != NULL) {
        struct sockaddr_un *sun = (struct sockaddr_un *)&target_addr;
        if (strlen(opt.unix_path) >= sizeof(sun->sun_path))
            usage_error("Unix socket path too long: %s", opt.unix_path);
        sun->sun_family = AF_UNIX;
        strcpy(sun->sun_path, opt.unix_path);
        target_len = (socklen_t)sizeof(*sun);
        snprintf(target, sizeof(target), "%s", opt.unix_path);
        return;
    }
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    rc = getaddrinfo(opt.host, opt.port, &hints, &res);
    if (rc != 0) {
        fprintf(stderr, "echo_client: cannot resolve %s: %s\n", opt.host,
                gai_strerror(rc));
        exit(1);
    }
    memcpy(&target_addr, res->ai_addr, res->ai_addrlen);
    target_len = res->ai_addrlen;
    freeaddrinfo(res);
    snprintf(target, sizeof(target), strchr(opt.host, ':') ? "[%s]:%s" : "%s:%s",
             opt.host, opt.port);
}

/* Records the first error of connection c (later ones are consequences). */
static void conn_fail(struct conn *c, const char *fmt, ...)
{
    va_list ap;

    if (c->failed)
        return;
    c->failed = 1;
    failed_conns++;
    if (reported++ >= MAX_REPORTED)
        return;
    fprintf(stderr, "echo_client: connection %u: ", c->index);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n");
}

/* errno of a photon I/O call as a message; ETIMEDOUT gets a plain word. */
static const char *io_error(int e)
{
    if (e == ETIMEDOUT)
        return "timed out (no progress in 10 s)";
    return strerror(e);
}

/* The first position where a and b differ (they do differ somewhere). */
static size_t first_difference(const unsigned char *a, const unsigned char *b, size_t n)
{
    size_t i;
    for (i = 0; i < n && a[i] == b[i]; i++)
        ;
    return i;
}

/* ------------------------------------------------------------------------
 * Connecting
 * ---------------------------------------------------------------------- */

static void *connector(void *arg)
{
    struct conn *c = arg;
    int fd;

    fd = photon_socket(target_addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        conn_fail(c, "socket: %s", strerror(errno));
        return NULL;
    }
    if (photon_connect(fd, (struct sockaddr *)&target_addr, target_len,
                       CONNECT_TIMEOUT_US) != 0) {
        conn_fail(c, "connect to %s: %s", target, strerror(errno));
        photon_close(fd);
        return NULL;
    }
    if (opt.unix_path == NULL) {
        int one = 1;
        if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) != 0) {
            conn_fail(c, "TCP_NODELAY: %s", strerror(errno));
            photon_close(fd);
            return NULL;
        }
    }
    c->fd = fd;
    return NULL;
}

/* Runs entry(conn) for every connection, one photon thread each, and waits
 * for all of them. */
static void run_all(photon_entry entry)
{
    photon_thread **th = calloc(opt.conns, sizeof(*th));
    unsigned i;

    if (th == NULL) {
        perror("echo_client: calloc");
        exit(1);
    }
    for (i = 0; i < opt.conns; i++) {
        th[i] = photon_thread_create(entry, &conns[i], STACK_SIZE);
        if (th[i] == NULL || photon_thread_enable_join(th[i]) != 0) {
            perror("echo_client: photon_thread_create");
            exit(1);
        }
    }
    for (i = 0; i < opt.conns; i++) {
        if (photon_thread_join(th[i], NULL) != 0) {
            perror("echo_client: photon_thread_join");
            exit(1);
        }
    }
    free(th);
}

/* ------------------------------------------------------------------------
 * Ping-pong
 * ---------------------------------------------------------------------- */

static void *pingpong(void *arg)
{
    struct conn *c = arg;
    unsigned char *rx = malloc(opt.size);
    uint64_t seq;

    if (rx == NULL) {
        conn_fail(c, "malloc: %s", strerror(ENOMEM));
        return NULL;
    }
    for (seq = 0;; seq++) {
        /* Each request reads the pattern at a new place: a stale reply
         * (an earlier request's bytes) does not match. */
        const unsigned char *tx = pattern + (c->origin + seq * 4099) % PATTERN_PERIOD;
        ssize_t n;
        uint64_t now;

        n = photon_write_full(c->fd, tx, opt.size, IO_TIMEOUT_US);
        if (n != (ssize_t)opt.size) {
            conn_fail(c, "write: %s (request %llu)", io_error(errno),
                      (unsigned long long)seq);
            break;
        }
        errno = 0;
        n = photon_read_full(c->fd, rx, opt.size, IO_TIMEOUT_US);
        if (n != (ssize_t)opt.size) {
            if (n >= 0 && errno == 0)
                conn_fail(c, "the server closed the connection (request %llu, "
                             "%zd of %zu reply bytes received)",
                          (unsigned long long)seq, n, opt.size);
            else
                conn_fail(c, "read: %s (request %llu)", io_error(errno),
                          (unsigned long long)seq);
            break;
        }
        if (memcmp(rx, tx, opt.size) != 0) {
            size_t at = first_difference(rx, tx, opt.size);
            conn_fail(c, "reply mismatch: request %llu, byte %zu is 0x%02x, "
                         "expected 0x%02x",
                      (unsigned long long)seq, at, rx[at], tx[at]);
            break;
        }
        now = photon_now_us();
        if (now >= window_end)
            break;
        if (now >= window_start) {
            c->counted_reqs++;
            c->counted_bytes += opt.size;
        }
    }
    free(rx);
    photon_close(c->fd);
    c->fd = -1;
    return NULL;
}

/* ------------------------------------------------------------------------
 * Streaming
 * ---------------------------------------------------------------------- */

/* The stream byte at offset off of connection c is pattern[(origin + off) %
 * PATTERN_PERIOD]; the pattern buffer extends past the period, so any chunk
 * of up to max(size, RECV_CHUNK) bytes is one contiguous slice of it. */
static const unsigned char *stream_at(const struct conn *c, uint64_t off)
{
    return pattern + (c->origin + off) % PATTERN_PERIOD;
}

static void *stream_sender(void *arg)
{
    struct conn *c = arg;

    while (!c->failed && photon_now_us() < window_end) {
        ssize_t n = photon_write_full(c->fd, stream_at(c, c->sent), opt.size,
                                      IO_TIMEOUT_US);
        if (n > 0)
            c->sent += (uint64_t)n;
        if (n != (ssize_t)opt.size) {
            conn_fail(c, "write: %s (after %llu bytes sent)", io_error(errno),
                      (unsigned long long)c->sent);
            /* Wake the receiver: its read returns EOF. */
            shutdown(c->fd, SHUT_RDWR);
            return NULL;
        }
    }
    /* Done sending: the server echoes what is in flight, sees EOF and closes,
     * and the receiver then sees EOF too. */
    c->sender_done = 1;
    if (shutdown(c->fd, SHUT_WR) != 0) {
        conn_fail(c, "shutdown: %s", strerror(errno));
        shutdown(c->fd, SHUT_RDWR);
    }
    return NULL;
}

static void *stream_receiver(void *arg)
{
    struct conn *c = arg;

    for (;;) {
        ssize_t n = photon_read(c->fd, c->rx, RECV_CHUNK, IO_TIMEOUT_US);
        const unsigned char *want;
        uint64_t now;

        if (n == 0) {
            if (!c->sender_done || c->received != c->sent)
                conn_fail(c, "the server closed the connection after echoing "
                             "%llu of %llu bytes sent",
                          (unsigned long long)c->received,
                          (unsigned long long)c->sent);
            break;
        }
        if (n < 0) {
            conn_fail(c, "read: %s (after %llu bytes received)", io_error(errno),
                      (unsigned long long)c->received);
            shutdown(c->fd, SHUT_RDWR); /* wake the sender if it is blocked */
            break;
        }
        want = stream_at(c, c->received);
        if (memcmp(c->rx, want, (size_t)n) != 0) {
            size_t at = first_difference(c->rx, want, (size_t)n);
            conn_fail(c, "echo mismatch at stream offset %llu: byte 0x%02x, "
                         "expected 0x%02x",
                      (unsigned long long)(c->received + at), c->rx[at], want[at]);
            shutdown(c->fd, SHUT_RDWR);
            break;
        }
        c->received += (uint64_t)n;
        now = photon_now_us();
        if (now >= window_start && now < window_end)
            c->counted_bytes += (uint64_t)n;
    }
    return NULL;
}

/* Both halves of one connection; returns when both are done. */
static void *stream_conn(void *arg)
{
    struct conn *c = arg;
    photon_thread *sender;

    c->rx = malloc(RECV_CHUNK);
    if (c->rx == NULL) {
        conn_fail(c, "malloc: %s", strerror(ENOMEM));
        photon_close(c->fd);
        c->fd = -1;
        return NULL;
    }
    sender = photon_thread_create(stream_sender, c, STACK_SIZE);
    if (sender == NULL || photon_thread_enable_join(sender) != 0) {
        conn_fail(c, "photon_thread_create: %s", strerror(errno));
    } else {
        stream_receiver(c); /* this thread is the receiver */
        if (photon_thread_join(sender, NULL) != 0)
            conn_fail(c, "photon_thread_join: %s", strerror(errno));
    }
    free(c->rx);
    c->rx = NULL;
    photon_close(c->fd);
    c->fd = -1;
    return NULL;
}

/* ------------------------------------------------------------------------
 * main
 * ---------------------------------------------------------------------- */

static void make_pattern(void)
{
    size_t extra = opt.size > RECV_CHUNK ? opt.size : RECV_CHUNK;
    size_t len = PATTERN_PERIOD + extra, i;
    uint32_t x = 0x9e3779b9u;

    pattern = malloc(len);
    if (pattern == NULL) {
        perror("echo_client: malloc");
        exit(1);
    }
    for (i = 0; i < PATTERN_PERIOD; i++) {
        x ^= x << 13; /* xorshift32 */
        x ^= x >> 17;
        x ^= x << 5;
        pattern[i] = (unsigned char)(x >> 24);
    }
    for (; i < len; i++)
        pattern[i] = pattern[i - PATTERN_PERIOD];
}

int main(int argc, char **argv)
{
    const char *mode_name;
    uint64_t bytes = 0, requests = 0, t0;
    unsigned i, idle = 0;
    double secs;

    parse_args(argc, argv);
    mode_name = opt.mode == PINGPONG ? "pingpong" : "stream";
    resolve_target();
    make_pattern();

    conns = calloc(opt.conns, sizeof(*conns));
    if (conns == NULL) {
        perror("echo_client: calloc");
        return 1;
    }
    for (i = 0; i < opt.conns; i++) {
        conns[i].index = i;
        conns[i].fd = -1;
        conns[i].origin = ((uint64_t)i * 7919) % PATTERN_PERIOD;
    }

    /* This OS thread becomes the vcpu; every connection is a photon thread. */
    if (photon_init(opt.engine, 0) != 0) {
        fprintf(stderr, "echo_client: photon_init: %s\n", strerror(errno));
        return 1;
    }

    /* Connect everything first, concurrently, then start the clock. */
    run_all(connector);
    if (failed_conns > 0) {
        if (reported > MAX_REPORTED)
            fprintf(stderr, "echo_client: ... and %u more errors\n",
                    reported - MAX_REPORTED);
        fprintf(stderr, "echo_client: FAILED: %u of %u connections to %s could not "
                        "be established\n",
                failed_conns, opt.conns, target);
        for (i = 0; i < opt.conns; i++)
            if (conns[i].fd >= 0)
                photon_close(conns[i].fd);
        photon_fini();
        return 1;
    }

    t0 = photon_now_us();
    window_start = t0 + (uint64_t)(opt.warmup * 1e6 + 0.5);
    window_end = window_start + (uint64_t)(opt.duration * 1e6 + 0.5);
    run_all(opt.mode == PINGPONG ? pingpong : stream_conn);

    if (photon_fini() != 0)
        perror("echo_client: photon_fini");

    if (failed_conns > 0) {
        if (reported > MAX_REPORTED)
            fprintf(stderr, "echo_client: ... and %u more errors\n",
                    reported - MAX_REPORTED);
        fprintf(stderr, "echo_client: FAILED: mode=%s conns=%u size=%zu errors=%u: "
                        "%u of %u connections to %s failed; no figures reported\n",
                mode_name, opt.conns, opt.size, failed_conns, failed_conns,
                opt.conns, target);
        return 1;
    }

    for (i = 0; i < opt.conns; i++) {
        bytes += conns[i].counted_bytes;
        requests += conns[i].counted_reqs;
    }
    if (opt.mode == STREAM)
        requests = bytes / opt.size;
    if (requests == 0) {
        fprintf(stderr, "echo_client: FAILED: mode=%s conns=%u size=%zu: no request "
                        "completed in the measured window\n",
                mode_name, opt.conns, opt.size);
        return 1;
    }
    for (i = 0; i < opt.conns; i++)
        if (conns[i].counted_bytes == 0)
            idle++;
    if (idle > 0)
        fprintf(stderr, "echo_client: warning: %u of %u connections completed no "
                        "request in the measured window (unfair scheduling?)\n",
                idle, opt.conns);
    secs = (double)(window_end - window_start) / 1e6;
    printf("mode=%s conns=%u size=%zu duration=%.2fs requests=%llu req/s=%.0f "
           "MiB/s=%.1f errors=0\n",
           mode_name, opt.conns, opt.size, secs, (unsigned long long)requests,
           (double)requests / secs, (double)bytes / secs / (1024.0 * 1024.0));
    return 0;
}
