/*
 * echo_server: a TCP (or Unix socket) echo server on libphoton.
 *
 *   echo_server [--port N] [--ip ADDR] [--unix PATH] [--engine ENGINE]
 *               [--buf BYTES] [--duration SECONDS] [--vcpus N] [--quiet]
 *               [--netstack DEVICE,ADDR/PREFIX]
 *
 * With --netstack (e.g. "tap:ptap0,10.7.0.2/24"; split at the last comma, as
 * "dpdk:" EAL arguments have commas) it serves on libphoton's
 * userspace TCP/IP stack over that device instead of the kernel's: the same
 * handler, the same calls, descriptors of the userspace stack (README,
 * "Userspace network stack").
 *
 * With --vcpus N (TCP only) N vcpus serve the port: this OS thread and a
 * work pool of N-1 more, each with its own listening socket on the same port
 * (SO_REUSEPORT; the kernel spreads connections over them).
 *
 * Each vcpu runs its part alike: photon_server_serve accepts
 * connections and starts one photon thread per connection, whose handler
 * receives whatever has arrived (photon_recv waits once) and writes it all
 * back (photon_write_full), until the peer closes the connection.
 *
 * Once listening it prints "listening on PORT (engine ENGINE)" (PATH instead of
 * PORT for a Unix socket) on stdout and flushes it, so that a script can start
 * it with --port 0 and read the port it got. It stops on SIGINT or SIGTERM (a
 * second one kills it at once), or after --duration seconds; then it closes
 * the connections still open and prints how many connections it served and
 * how many bytes it echoed.
 *
 * Signals reach the photon world through a self-pipe: the handler only
 * writes the signal number into a pipe, and a photon thread ("the watcher")
 * blocks in photon_read on the other end, with the --duration as its timeout,
 * and stops the server.
 *
 * Exit status: 0 after a clean stop, 1 on a setup or serve error, 2 on bad
 * usage.
 */
#define _GNU_SOURCE

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "photon.h"

#define DEFAULT_PORT 9527
#define DEFAULT_BUF (64 * 1024)
#define MAX_BUF (64 * 1024 * 1024)

struct options {
    const char *ip;
    const char *unix_path; /* NULL: TCP */
    unsigned port;
    uint64_t engine; /* PHOTON_EVENT_* */
    size_t buf;
    double duration; /* seconds; 0: until a signal */
    unsigned vcpus;  /* vcpus serving the port (TCP) */
    int quiet;
    const char *netstack; /* "DEVICE,ADDR/PREFIX", or NULL: the kernel's stack */
};

#define MAX_VCPUS 64

/*
 * Statistics, updated from every vcpu: atomic adds (GCC/Clang builtins).
 */
#define STAT_ADD(field, n) __atomic_fetch_add(&stats.field, (uint64_t)(n), __ATOMIC_RELAXED)
struct stats {
    uint64_t accepted;    /* connections handed to a handler */
    uint64_t closed;      /* handlers that have finished */
    uint64_t failed;      /* connections that ended with an I/O error */
    uint64_t bytes;       /* bytes echoed, all connections */
};

static struct options opt;
static struct stats stats;
static photon_server *server;              /* this OS thread's (servers[0]) */
static photon_server *servers[MAX_VCPUS];   /* one per vcpu */
static photon_sem *extra_done;              /* signalled as each pool vcpu's serve returns */
static int stopping;   /* set once the server is stopped: cancellations are expected */

/* The self-pipe: [0] read by the watcher, [1] written by the signal handler. */
static int sigpipe_fds[2] = {-1, -1};

static void usage(FILE *out)
{
    fprintf(out,
            "usage: echo_server [options]\n"
            "  --port N         TCP port (default %d; 0 = any free port, printed)\n"
            "  --ip ADDR        address to listen on (default 0.0.0.0; IPv6 too)\n"
            "  --unix PATH      listen on a Unix stream socket instead of TCP\n"
            "  --engine E       io_uring | epoll | default (default: io_uring when\n"
            "                   usable, else epoll; PHOTON_ENGINE overrides it)\n"
            "  --buf BYTES      per-connection buffer (default %d)\n"
            "  --duration S     stop after S seconds (default 0: run until SIGINT\n"
            "                   or SIGTERM)\n"
            "  --vcpus N        N vcpus serve the TCP port (SO_REUSEPORT; default 1)\n"
            "  --quiet          no per-connection log lines on stderr\n"
            "  --netstack D,A   serve on the userspace stack over device D (tap:NAME,\n"
            "                   xdp:IFNAME:QUEUE, dpdk:EAL-ARGS) with address A\n"
            "                   (split at the last comma; e.g. tap:ptap0,10.7.0.2/24)\n",
            DEFAULT_PORT, DEFAULT_BUF);
}

static void usage_error(const char *fmt, const char *arg)
{
    fprintf(stderr, "echo_server: ");
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
        fprintf(stderr, "echo_server: bad %s '%s' (expected %lu..%lu)\n", name, s,
                min, max);
        exit(2);
    }
    return v;
}

static double parse_seconds(const char *name, const char *s)
{
    char *end;
    double v;

    errno = 0;
    v = strtod(s, &end);
    if (errno != 0 || end == s || *end != '\0' || !(v >= 0) || v > 1e9) {
        fprintf(stderr, "echo_server: bad %s '%s' (expected seconds >= 0)\n", name, s);
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
    enum { O_PORT = 1, O_IP, O_UNIX, O_ENGINE, O_BUF, O_DURATION, O_VCPUS, O_QUIET, O_NETSTACK, O_HELP };
    static const struct option longopts[] = {
        {"port", required_argument, NULL, O_PORT},
        {"ip", required_argument, NULL, O_IP},
        {"unix", required_argument, NULL, O_UNIX},
        {"engine", required_argument, NULL, O_ENGINE},
        {"buf", required_argument, NULL, O_BUF},
        {"duration", required_argument, NULL, O_DURATION},
        {"vcpus", required_argument, NULL, O_VCPUS},
        {"quiet", no_argument, NULL, O_QUIET},
        {"netstack", required_argument, NULL, O_NETSTACK},
        {"help", no_argument, NULL, O_HELP},
        {NULL, 0, NULL, 0},
    };
    int c;

    opt.ip = "0.0.0.0";
    opt.port = DEFAULT_PORT;
    opt.engine = PHOTON_EVENT_DEFAULT;
    opt.buf = DEFAULT_BUF;
    opt.vcpus = 1;

    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case O_PORT:
            opt.port = (unsigned)parse_ulong("port", optarg, 0, 65535);
            break;
        case O_IP:
            opt.ip = optarg;
            break;
        case O_UNIX:
            opt.unix_path = optarg;
            break;
        case O_ENGINE:
            opt.engine = parse_engine(optarg);
            break;
        case O_BUF:
            opt.buf = (size_t)parse_ulong("buffer size", optarg, 1, MAX_BUF);
            break;
        case O_DURATION:
            opt.duration = parse_seconds("duration", optarg);
            break;
        case O_VCPUS:
            opt.vcpus = (unsigned)parse_ulong("vcpus", optarg, 1, MAX_VCPUS);
            break;
        case O_QUIET:
            opt.quiet = 1;
            break;
        case O_NETSTACK:
            if (strchr(optarg, ',') == NULL)
                usage_error("--netstack wants DEVICE,ADDR/PREFIX, not '%s'", optarg);
            opt.netstack = optarg;
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
    if (opt.vcpus > 1 && opt.unix_path != NULL)
        usage_error("--vcpus needs TCP, not %s", "--unix");
    if (opt.netstack != NULL && (opt.vcpus > 1 || opt.unix_path != NULL))
        usage_error("--netstack serves one vcpu over TCP: not with %s",
                    opt.unix_path != NULL ? "--unix" : "--vcpus");
}

/* ------------------------------------------------------------------------
 * Connections
 * ---------------------------------------------------------------------- */

/* The peer's address as text, for log lines ("?" when unknown). */
static void peer_name(int fd, char *out, size_t len)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    char host[64];

    if (opt.unix_path != NULL) {
        snprintf(out, len, "unix peer fd %d", fd);
        return;
    }
    if (photon_getpeername(fd, (struct sockaddr *)&ss, &sl) != 0) {
        snprintf(out, len, "?");
        return;
    }
    if (ss.ss_family == AF_INET) {
        struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
        inet_ntop(AF_INET, &sin->sin_addr, host, sizeof(host));
        snprintf(out, len, "%s:%u", host, (unsigned)ntohs(sin->sin_port));
    } else if (ss.ss_family == AF_INET6) {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
        inet_ntop(AF_INET6, &sin6->sin6_addr, host, sizeof(host));
        snprintf(out, len, "[%s]:%u", host, (unsigned)ntohs(sin6->sin6_port));
    } else {
        snprintf(out, len, "?");
    }
}

/*
 * The connection handler, run by photon_server_serve in a new photon thread
 * for each accepted connection. It owns conn_fd and closes it.
 */
static int echo_connection(void *userdata, int fd)
{
    char peer[96] = "?";
    const char *failed_op = NULL;
    int failed_errno = 0;
    uint64_t echoed = 0;
    char *buf;

    (void)userdata;
    STAT_ADD(accepted, 1);
    if (!opt.quiet)
        peer_name(fd, peer, sizeof(peer));

    if (opt.unix_path == NULL) {
        /* Echo replies are small and latency-bound: send them at once. */
        int one = 1;
        if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) != 0 &&
            !opt.quiet)
            fprintf(stderr, "echo_server: %s: TCP_NODELAY: %s\n", peer,
                    strerror(errno));
    }

    buf = malloc(opt.buf);
    if (buf == NULL) {
        failed_op = "malloc";
        failed_errno = ENOMEM;
    }

    while (buf != NULL) {
        ssize_t n = photon_recv(fd, buf, opt.buf, 0, PHOTON_FOREVER);
        ssize_t w;

        if (n == 0)
            break; /* the peer closed its side: done */
        if (n < 0) {
            failed_op = "recv";
            failed_errno = errno;
            break;
        }
        w = photon_write_full(fd, buf, (size_t)n, PHOTON_FOREVER);
        if (w > 0)
            echoed += (uint64_t)w;
        if (w != n) {
            failed_op = "write";
            failed_errno = errno;
            break;
        }
    }

    free(buf);
    photon_close(fd);
    /* Counted once per connection, not per request: an atomic add per
     * request would cost ~7 ns of a ~3 us request (bench echo's peers keep
     * no shared counter). photon_fini returns after every handler did. */
    STAT_ADD(bytes, echoed);
    STAT_ADD(closed, 1);

    /* At shutdown photon_fini cancels the handlers still waiting: not a failure. */
    if (failed_op != NULL && stopping && failed_errno == ECANCELED)
        failed_op = NULL;
    if (failed_op != NULL) {
        STAT_ADD(failed, 1);
        if (!opt.quiet)
            fprintf(stderr, "echo_server: %s: %s: %s (after %llu bytes)\n", peer,
                    failed_op, strerror(failed_errno), (unsigned long long)echoed);
        return -1;
    }
    if (!opt.quiet)
        fprintf(stderr, "echo_server: %s: closed after %llu bytes%s\n", peer,
                (unsigned long long)echoed, stopping ? " (server stopping)" : "");
    return 0;
}

/* ------------------------------------------------------------------------
 * Stopping: signals and --duration
 * ---------------------------------------------------------------------- */

static void on_signal(int sig)
{
    int saved = errno;
    unsigned char b = (unsigned char)sig;
    /* Async-signal-safe: one byte into a non-blocking pipe. If the pipe is
     * full, a stop is already pending, so the byte may be dropped. */
    ssize_t r = write(sigpipe_fds[1], &b, 1);
    (void)r;
    errno = saved;
}

static void install_signals(void)
{
    struct sigaction sa;

    if (pipe2(sigpipe_fds, O_NONBLOCK | O_CLOEXEC) != 0) {
        perror("echo_server: pipe2");
        exit(1);
    }
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    /* SA_RESETHAND: a second SIGINT/SIGTERM takes the default action (ends
     * the process at once), in case a clean stop hangs. */
    sa.sa_flags = SA_RESTART | SA_RESETHAND;
    if (sigaction(SIGINT, &sa, NULL) != 0 || sigaction(SIGTERM, &sa, NULL) != 0) {
        perror("echo_server: sigaction");
        exit(1);
    }
}

static const char *stop_reason = "serve returned";

/*
 * The watcher: a photon thread waiting for a signal byte on the self-pipe,
 * at most --duration seconds, then stopping the server. photon_read blocks
 * only this photon thread; the connections keep being served meanwhile.
 */
static void *watcher(void *arg)
{
    static char reason[64];
    uint64_t timeout = PHOTON_FOREVER;
    unsigned char sig;
    ssize_t n;

    (void)arg;
    if (opt.duration > 0)
        timeout = (uint64_t)(opt.duration * 1e6 + 0.5);

    n = photon_read(sigpipe_fds[0], &sig, 1, timeout);
    if (n == 1) {
        snprintf(reason, sizeof(reason), "stopped by %s",
                 sig == SIGINT ? "SIGINT" : sig == SIGTERM ? "SIGTERM" : "a signal");
        stop_reason = reason;
    } else if (n < 0 && errno == ETIMEDOUT) {
        stop_reason = "duration elapsed";
    } else if (n < 0 && errno == ECANCELED && stopping) {
        return NULL; /* serve returned by itself; photon_fini is ending us */
    } else {
        fprintf(stderr, "echo_server: watcher: read: %s\n",
                n < 0 ? strerror(errno) : "unexpected EOF");
        stop_reason = "watcher failed";
    }
    /* Every serve() returns 0 once it sees the stop. */
    for (unsigned i = 0; i < opt.vcpus; i++)
        if (photon_server_stop(servers[i]) != 0)
            perror("echo_server: photon_server_stop");
    return NULL;
}

/* A pool vcpu's part: serve its own listening socket until stopped. */
static void *serve_extra(void *arg)
{
    photon_server *s = arg;
    if (photon_server_serve(s, echo_connection, NULL) != 0)
        perror("echo_server: photon_server_serve (pool vcpu)");
    photon_sem_signal(extra_done, 1);
    return NULL;
}

/* ------------------------------------------------------------------------
 * main
 * ---------------------------------------------------------------------- */

int main(int argc, char **argv)
{
    uint64_t start, elapsed;
    uint64_t open_at_stop;
    int serve_rc, serve_errno = 0;
    const char *engine;

    parse_args(argc, argv);
    install_signals();

    /* This OS thread becomes the vcpu; main() is its first photon thread. */
    if (photon_init(opt.engine, 0) != 0) {
        fprintf(stderr, "echo_server: photon_init(%s): %s\n",
                opt.engine == PHOTON_EVENT_IOURING ? "io_uring"
                : opt.engine == PHOTON_EVENT_EPOLL ? "epoll" : "default",
                strerror(errno));
        return 1;
    }
    engine = photon_engine_name();

    photon_netstack *stack = NULL;
    if (opt.netstack != NULL) {
        char dev[128];
        const char *comma = strrchr(opt.netstack, ','); /* EAL arguments have commas */
        size_t dlen = (size_t)(comma - opt.netstack);
        if (dlen >= sizeof(dev)) {
            fprintf(stderr, "echo_server: device name too long\n");
            return 2;
        }
        memcpy(dev, opt.netstack, dlen);
        dev[dlen] = '\0';
        stack = photon_netstack_new(dev, comma + 1, NULL);
        if (stack == NULL) {
            fprintf(stderr, "echo_server: photon_netstack_new(%s, %s): %s\n", dev, comma + 1,
                    strerror(errno));
            photon_fini();
            return 1;
        }
    }

    if (opt.unix_path != NULL)
        server = photon_server_new_unix(opt.unix_path, 0);
    else if (stack != NULL)
        server = photon_server_new_tcp_on(stack, strcmp(opt.ip, "0.0.0.0") == 0 ? NULL : opt.ip,
                                          (uint16_t)opt.port, 0);
    else
        server = photon_server_new_tcp_flags(opt.ip, (uint16_t)opt.port, 0,
                                             opt.vcpus > 1 ? PHOTON_SERVER_REUSEPORT : 0);
    servers[0] = server;
    if (server == NULL) {
        if (opt.unix_path != NULL)
            fprintf(stderr, "echo_server: listen on %s: %s\n", opt.unix_path,
                    strerror(errno));
        else
            fprintf(stderr, "echo_server: listen on %s port %u: %s\n", opt.ip,
                    opt.port, strerror(errno));
        photon_fini();
        return 1;
    }

    if (opt.unix_path != NULL) {
        printf("listening on %s (engine %s)\n", opt.unix_path, engine);
    } else {
        int port = photon_server_port(server);
        if (port < 0) {
            perror("echo_server: photon_server_port");
            photon_server_free(server);
            photon_fini();
            return 1;
        }
        /* The other vcpus' sockets, on the same port. */
        for (unsigned i = 1; i < opt.vcpus; i++) {
            servers[i] = photon_server_new_tcp_flags(opt.ip, (uint16_t)port, 0,
                                                     PHOTON_SERVER_REUSEPORT);
            if (servers[i] == NULL) {
                perror("echo_server: second listening socket (SO_REUSEPORT)");
                return 1;
            }
        }
        printf("listening on %d (engine %s, %u vcpu%s)%s\n", port, engine, opt.vcpus,
               opt.vcpus > 1 ? "s" : "", stack != NULL ? " on the userspace stack" : "");
    }
    fflush(stdout);

    photon_workpool *pool = NULL;
    if (opt.vcpus > 1) {
        extra_done = photon_sem_new(0);
        pool = photon_workpool_new(opt.vcpus - 1, opt.engine);
        if (pool == NULL || extra_done == NULL) {
            perror("echo_server: photon_workpool_new");
            return 1;
        }
        for (unsigned i = 1; i < opt.vcpus; i++)
            if (photon_workpool_spawn(pool, serve_extra, servers[i]) != 0) {
                perror("echo_server: photon_workpool_spawn");
                return 1;
            }
    }

    if (photon_thread_create(watcher, NULL, 64 * 1024) == NULL) {
        perror("echo_server: photon_thread_create");
        photon_server_free(server);
        photon_fini();
        return 1;
    }

    start = photon_now_us();
    serve_rc = photon_server_serve(server, echo_connection, NULL);
    if (serve_rc != 0)
        serve_errno = errno;
    elapsed = photon_now_us() - start;

    /* No new connections from here on (the listening sockets close). */
    stopping = 1;
    if (pool != NULL) {
        for (unsigned i = 1; i < opt.vcpus; i++)
            photon_server_stop(servers[i]);
        photon_sem_wait(extra_done, opt.vcpus - 1, PHOTON_FOREVER);
        photon_workpool_free(pool); /* ends the pool's handlers as photon_fini does */
        for (unsigned i = 1; i < opt.vcpus; i++)
            photon_server_free(servers[i]);
        photon_sem_free(extra_done);
    }
    photon_server_free(server);
    server = NULL;
    open_at_stop = stats.accepted - stats.closed;
    if (stack != NULL) {
        photon_netstack_stats ns;
        memset(&ns, 0, sizeof ns);
        ns.size = sizeof ns;
        if (photon_netstack_stats_get(stack, &ns) == 0)
            printf("netstack: rx_frames=%llu tx_frames=%llu rx_empty_polls=%llu tx_dropped=%llu "
                   "poll_rounds=%llu poll_sleeps=%llu poll_kicks=%llu\n",
                   (unsigned long long)ns.rx_frames, (unsigned long long)ns.tx_frames,
                   (unsigned long long)ns.rx_empty_polls, (unsigned long long)ns.tx_dropped,
                   (unsigned long long)ns.poll_rounds, (unsigned long long)ns.poll_sleeps,
                   (unsigned long long)ns.poll_kicks);
    }

    /* Ends the remaining photon threads: handlers still waiting on their
     * connection (and the watcher, if serve failed) are cancelled with
     * ECANCELED, close their connection and return. */
    if (photon_fini() != 0)
        perror("echo_server: photon_fini");
    /* After photon_fini the stack's loop has ended: free it whatever is open. */
    if (stack != NULL && photon_netstack_free(stack) != 0)
        perror("echo_server: photon_netstack_free");

    if (serve_rc != 0) {
        fprintf(stderr, "echo_server: photon_server_serve: %s\n",
                strerror(serve_errno));
        stop_reason = "serve failed";
    }
    printf("%s after %.2f s: served %llu connections (%llu open at stop, %llu "
           "failed), echoed %llu bytes (%.1f MiB)\n",
           stop_reason, (double)elapsed / 1e6, (unsigned long long)stats.accepted,
           (unsigned long long)open_at_stop, (unsigned long long)stats.failed,
           (unsigned long long)stats.bytes, (double)stats.bytes / (1024.0 * 1024.0));
    fflush(stdout);
    return serve_rc == 0 ? 0 : 1;
}
