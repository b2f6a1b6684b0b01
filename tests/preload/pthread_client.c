/* Client of tests/preload/pthread_server.c: one OS thread, poll.
 *
 *   pthread_client check PORT CONNS MAX_THREADS MIN_THREADS
 *     opens CONNS connections, sends a request on each and verifies every
 *     reply ("<n> <2n+1>"); while all are open asks STATUS and checks the
 *     server's OS thread count is within [MIN_THREADS, MAX_THREADS] and its
 *     background thread ran on time; a second round of requests on every
 *     connection; closes them; QUIT. Exit 0 when everything held.
 *   pthread_client bench PORT CONNS SECONDS
 *     CONNS connections each send a request as soon as the previous reply
 *     arrived, for SECONDS; prints "requests N", then STATUS's line; no QUIT.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

struct conn {
    int fd;
    long n;          /* request in flight */
    char buf[64];
    size_t len;
};

static uint16_t port;

static uint64_t now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static int dial(void) {
    struct sockaddr_in a;
    int one = 1;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(port);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

static int send_line(int fd, const char *s) {
    size_t n = strlen(s);
    return write(fd, s, n) == (ssize_t)n ? 0 : -1;
}

/* Sends `cmd` on a new connection and reads one line of answer. */
static int control(const char *cmd, char *out, size_t cap) {
    size_t n = 0;
    int fd = dial();
    if (fd < 0 || send_line(fd, cmd) != 0)
        return -1;
    while (n + 1 < cap) {
        ssize_t r = read(fd, out + n, 1);
        if (r <= 0)
            break;
        if (out[n] == '\n')
            break;
        n++;
    }
    out[n] = 0;
    close(fd);
    return n > 0 ? 0 : -1;
}

static int send_request(struct conn *c, long n) {
    char line[32];
    snprintf(line, sizeof line, "%ld\n", n);
    c->n = n;
    c->len = 0;
    return send_line(c->fd, line);
}

/* Reads what is there on c; 1 when a full reply arrived and was right, 0 if
   not yet complete, -1 on a wrong reply or error. */
static int take_reply(struct conn *c) {
    ssize_t r = read(c->fd, c->buf + c->len, sizeof c->buf - 1 - c->len);
    if (r <= 0)
        return -1;
    c->len += (size_t)r;
    c->buf[c->len] = 0;
    char *nl = strchr(c->buf, '\n');
    if (!nl)
        return c->len + 1 < sizeof c->buf ? 0 : -1;
    long a, b;
    if (sscanf(c->buf, "%ld %ld", &a, &b) != 2 || a != c->n || b != 2 * c->n + 1) {
        fprintf(stderr, "wrong reply to %ld: %s", c->n, c->buf);
        return -1;
    }
    return 1;
}

/* One request on every connection, every reply verified. */
static int round_trip(struct conn *cs, int n, long base, int timeout_s) {
    struct pollfd *ps = calloc((size_t)n, sizeof *ps);
    int left = n;
    uint64_t deadline = now_us() + (uint64_t)timeout_s * 1000000u;
    for (int i = 0; i < n; i++) {
        if (send_request(&cs[i], base + i) != 0) {
            fprintf(stderr, "send on connection %d failed\n", i);
            return -1;
        }
        ps[i].fd = cs[i].fd;
        ps[i].events = POLLIN;
    }
    while (left > 0) {
        if (now_us() > deadline) {
            fprintf(stderr, "%d replies missing after %d s\n", left, timeout_s);
            return -1;
        }
        int k = poll(ps, (nfds_t)n, 1000);
        for (int i = 0; k > 0 && i < n; i++) {
            if (!ps[i].revents)
                continue;
            int r = take_reply(&cs[i]);
            if (r < 0)
                return -1;
            if (r == 1) {
                ps[i].fd = -1;
                left--;
            }
        }
    }
    free(ps);
    return 0;
}

static void raise_nofile(void) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < 8192) {
        rl.rlim_cur = rl.rlim_max < 8192 ? rl.rlim_max : 8192;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

static struct conn *open_all(int n) {
    struct conn *cs = calloc((size_t)n, sizeof *cs);
    for (int i = 0; i < n; i++) {
        cs[i].fd = dial();
        if (cs[i].fd < 0) {
            perror("connect");
            return NULL;
        }
    }
    return cs;
}

static int check(int n, long max_threads, long min_threads) {
    char status[256];
    long threads, served, ticks, late;
    uint64_t t0 = now_us();
    struct conn *cs = open_all(n);
    if (!cs || round_trip(cs, n, 1000000, 60) != 0)
        return 1;
    uint64_t t1 = now_us();
    if (control("STATUS\n", status, sizeof status) != 0 ||
        sscanf(status, "threads %ld served %ld ticks %ld late_max_us %ld", &threads, &served, &ticks, &late) != 4) {
        fprintf(stderr, "bad STATUS answer: %s\n", status);
        return 1;
    }
    printf("%d connections open, every reply right in %.2f s; server: %s\n", n, (double)(t1 - t0) / 1e6, status);
    int ok = 1;
    if (threads > max_threads || threads < min_threads) {
        fprintf(stderr, "server has %ld OS threads; expected %ld..%ld\n", threads, min_threads, max_threads);
        ok = 0;
    }
    if (late > 500000 || ticks < 1) {
        fprintf(stderr, "background thread late by %ld us (ticks %ld)\n", late, ticks);
        ok = 0;
    }
    if (round_trip(cs, n, 2000000, 60) != 0)
        return 1;
    printf("second round on the same %d connections: every reply right\n", n);
    for (int i = 0; i < n; i++)
        close(cs[i].fd);
    usleep(100000);
    if (control("QUIT\n", status, sizeof status) != 0 || strcmp(status, "bye") != 0) {
        fprintf(stderr, "QUIT not answered\n");
        return 1;
    }
    return ok ? 0 : 1;
}

static int bench(int n, int seconds) {
    char status[256];
    struct conn *cs = open_all(n);
    struct pollfd *ps = calloc((size_t)n, sizeof *ps);
    long requests = 0, next = 1;
    if (!cs || !ps)
        return 1;
    for (int i = 0; i < n; i++) {
        ps[i].fd = cs[i].fd;
        ps[i].events = POLLIN;
        if (send_request(&cs[i], next++) != 0)
            return 1;
    }
    /* The measured window starts now: the caller samples the server's CPU
       around this line and the "requests" line. */
    printf("start\n");
    fflush(stdout);
    uint64_t end = now_us() + (uint64_t)seconds * 1000000u;
    while (now_us() < end) {
        int k = poll(ps, (nfds_t)n, 100);
        for (int i = 0; k > 0 && i < n; i++) {
            if (!ps[i].revents)
                continue;
            int r = take_reply(&cs[i]);
            if (r < 0)
                return 1;
            if (r == 1) {
                requests++;
                if (send_request(&cs[i], next++) != 0)
                    return 1;
            }
        }
    }
    control("STATUS\n", status, sizeof status);
    printf("requests %ld\n%s\n", requests, status);
    fflush(stdout);
    /* Hold the connections until the caller has sampled the server. */
    char c;
    if (read(0, &c, 1) < 0)
        return 1;
    for (int i = 0; i < n; i++)
        close(cs[i].fd);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: %s check PORT CONNS MAX_THREADS MIN_THREADS | bench PORT CONNS SECONDS\n", argv[0]);
        return 2;
    }
    raise_nofile();
    port = (uint16_t)atoi(argv[2]);
    if (strcmp(argv[1], "check") == 0 && argc == 6)
        return check(atoi(argv[3]), atol(argv[4]), atol(argv[5]));
    if (strcmp(argv[1], "bench") == 0 && argc == 5)
        return bench(atoi(argv[3]), atoi(argv[4]));
    fprintf(stderr, "bad arguments\n");
    return 2;
}
