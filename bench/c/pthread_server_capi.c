/* tests/preload/pthread_server.c ported to libphoton's C API, for the
 * pthread_server benchmark (issue 19): the same protocol and the same work
 * per request (one-byte reads of the request line, a pthread-style lock
 * around shared counters, one outbound connection to the upstream child per
 * request, a background thread sleeping 20 ms at a time).
 *
 * main becomes a vcpu and accepts (photon_accept); each connection is a
 * photon thread on a pool of VCPUS vcpus (environment, default 1), placed
 * round robin by photon_workpool_spawn; the lock is a photon_mutex. Prints
 * "port N"; "QUIT" ends it.
 *
 * With SERVE_ON=1 it is the port a user writes with the server loop
 * instead: photon_server_new_fd on the listening socket and
 * photon_server_serve_on(server, VCPUS, ...) (main's vcpu and VCPUS-1
 * more accept and run connections); "QUIT" calls photon_server_stop.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "photon.h"

#define TICK_US 20000

static photon_mutex *lock;
static long served;
static long table[256];
static long ticks;
static long late_max_us;
static volatile int stopping;
static uint16_t upstream_port;
static photon_server *server; /* SERVE_ON=1 */

static int listen_on(uint16_t *port, int backlog) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    struct sockaddr_in a;
    socklen_t len = sizeof a;
    if (fd < 0)
        return -1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0 || listen(fd, backlog) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) != 0) {
        close(fd);
        return -1;
    }
    *port = ntohs(a.sin_port);
    return fd;
}

/* Plain blocking line read, for the upstream child (no vcpu there). */
static int read_line_plain(int fd, char *buf, size_t cap) {
    size_t n = 0;
    while (n + 1 < cap) {
        ssize_t r = read(fd, buf + n, 1);
        if (r <= 0)
            return -1;
        if (buf[n] == '\n') {
            buf[n] = 0;
            return 1;
        }
        n++;
    }
    return -1;
}

/* One line, one byte per photon_read (as the pthread server reads). */
static int read_line(int fd, char *buf, size_t cap) {
    size_t n = 0;
    while (n + 1 < cap) {
        ssize_t r = photon_read(fd, buf + n, 1, PHOTON_FOREVER);
        if (r == 0)
            return n == 0 ? 0 : -1;
        if (r < 0)
            return -1;
        if (buf[n] == '\n') {
            buf[n] = 0;
            return 1;
        }
        n++;
    }
    return -1;
}

static void upstream(int fd) {
    for (;;) {
        char line[64];
        int c = accept(fd, NULL, NULL);
        if (c < 0)
            continue;
        struct pollfd p = {.fd = c, .events = POLLIN};
        if (poll(&p, 1, 2000) == 1 && read_line_plain(c, line, sizeof line) == 1) {
            char out[64];
            int k = snprintf(out, sizeof out, "%ld\n", 2 * atol(line) + 1);
            if (write(c, out, (size_t)k) < 0)
                perror("upstream write");
        }
        close(c);
    }
}

static long ask_upstream(long n) {
    struct sockaddr_in a;
    char line[64];
    long m = -1;
    int fd = photon_socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(upstream_port);
    if (photon_connect(fd, (struct sockaddr *)&a, sizeof a, PHOTON_FOREVER) == 0) {
        int k = snprintf(line, sizeof line, "%ld\n", n);
        if (photon_write_full(fd, line, (size_t)k, PHOTON_FOREVER) == k && read_line(fd, line, sizeof line) == 1)
            m = atol(line);
    }
    photon_close(fd);
    return m;
}

static long os_threads(void) {
    char line[256];
    long t = -1;
    FILE *f = fopen("/proc/self/status", "r");
    if (!f)
        return -1;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "Threads:", 8) == 0)
            t = atol(line + 8);
    fclose(f);
    return t;
}

static void *connection(void *arg) {
    int fd = (int)(intptr_t)arg;
    char line[64], out[160];
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    while (read_line(fd, line, sizeof line) == 1) {
        int k;
        if (strcmp(line, "STATUS") == 0) {
            photon_mutex_lock(lock, PHOTON_FOREVER);
            k = snprintf(out, sizeof out, "threads %ld served %ld ticks %ld late_max_us %ld\n", os_threads(),
                         served, ticks, late_max_us);
            photon_mutex_unlock(lock);
        } else if (strcmp(line, "QUIT") == 0) {
            stopping = 1;
            if (server) photon_server_stop(server);
            k = snprintf(out, sizeof out, "bye\n");
        } else {
            long n = atol(line);
            long m = ask_upstream(n);
            photon_mutex_lock(lock, PHOTON_FOREVER);
            served++;
            table[n & 255]++;
            photon_mutex_unlock(lock);
            k = snprintf(out, sizeof out, "%ld %ld\n", n, m);
        }
        if (photon_write_full(fd, out, (size_t)k, PHOTON_FOREVER) != k)
            break;
    }
    photon_close(fd);
    return NULL;
}

/* photon_server_serve_on's handler: the same connection code. */
static int serve_connection(void *userdata, int fd) {
    (void)userdata;
    connection((void *)(intptr_t)fd);
    return 0;
}

static uint64_t now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void *background(void *arg) {
    uint64_t next = now_us() + TICK_US;
    (void)arg;
    while (!stopping) {
        photon_thread_usleep(TICK_US);
        uint64_t t = now_us();
        long late = t > next ? (long)(t - next) : 0;
        photon_mutex_lock(lock, PHOTON_FOREVER);
        ticks++;
        if (late > late_max_us)
            late_max_us = late;
        photon_mutex_unlock(lock);
        next = t + TICK_US;
    }
    return NULL;
}

int main(void) {
    struct rlimit rl;
    int status;
    uint16_t port;
    const char *v = getenv("VCPUS");
    uint32_t vcpus = v ? (uint32_t)atoi(v) : 1;

    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < 8192) {
        rl.rlim_cur = rl.rlim_max < 8192 ? rl.rlim_max : 8192;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    signal(SIGPIPE, SIG_IGN);
    int ufd = listen_on(&upstream_port, 4096);
    if (ufd < 0) {
        perror("upstream listen");
        return 2;
    }
    pid_t child = fork();
    if (child == 0) {
        upstream(ufd);
        _exit(0);
    }
    close(ufd);
    int lfd = listen_on(&port, 4096);
    if (lfd < 0 || photon_init(PHOTON_EVENT_DEFAULT, 0) != 0) {
        perror("listen / photon_init");
        return 2;
    }
    if (getenv("SERVE_ON")) {
        lock = photon_mutex_new();
        server = photon_server_new_fd(lfd);
        if (!lock || !server || !photon_thread_create(background, NULL, 0)) {
            perror("photon_server_new_fd");
            return 2;
        }
        printf("port %u\n", port);
        fflush(stdout);
        if (photon_server_serve_on(server, vcpus ? vcpus : 1, serve_connection, NULL) != 0) perror("serve_on");
        kill(child, SIGTERM);
        waitpid(child, &status, 0);
        printf("served %ld\n", served);
        fflush(stdout);
        _exit(0);
    }
    photon_workpool *pool = photon_workpool_new(vcpus ? vcpus : 1, PHOTON_EVENT_DEFAULT);
    lock = photon_mutex_new();
    if (!pool || !lock || photon_workpool_spawn(pool, background, NULL) != 0) {
        perror("photon_workpool_new");
        return 2;
    }
    printf("port %u\n", port);
    fflush(stdout);
    while (!stopping) {
        int c = photon_accept(lfd, NULL, NULL, 100000);
        if (c < 0)
            continue;
        if (photon_workpool_spawn(pool, connection, (void *)(intptr_t)c) != 0)
            photon_close(c);
    }
    kill(child, SIGTERM);
    waitpid(child, &status, 0);
    printf("served %ld\n", served);
    fflush(stdout);
    _exit(0); /* connection threads may still run on the pool */
}
