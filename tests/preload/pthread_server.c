/* An unmodified thread-per-connection server, written for plain pthreads.
 *
 * Run under libphoton_preload.so with PHOTON_PRELOAD_THREADS=photon its
 * pthreads become photon threads; without the variable (or the shim) they
 * are OS threads. Nothing here knows about libphoton.
 *
 * - main forks a small upstream service (a serial accept loop in a child
 *   process), listens on 127.0.0.1 (port printed as "port N"), and makes a
 *   detached pthread per accepted connection;
 * - each connection thread reads lines "<n>\n": a pthread_mutex guards the
 *   shared counters; it makes one outbound connection to the upstream
 *   (which answers "<2n+1>\n") and replies "<n> <2n+1>\n"; the line
 *   "STATUS" gets "threads T served S ticks K late_max_us L"; "QUIT" stops
 *   the server;
 * - a background pthread sleeps 20 ms at a time (usleep) and records how
 *   late it wakes, and how often.
 *
 * Exit status 0 after QUIT, when the background thread was joined with its
 * result.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
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

#define TICK_US 20000

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static long served;
static long table[256];
static long ticks;
static long late_max_us;
static volatile int stopping;
static int listen_fd = -1;
static uint16_t upstream_port;

static uint64_t now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

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

/* Reads one line (without '\n') into buf; 1 on a line, 0 at EOF, -1 on error. */
static int read_line(int fd, char *buf, size_t cap) {
    size_t n = 0;
    while (n + 1 < cap) {
        ssize_t r = read(fd, buf + n, 1);
        if (r == 0)
            return n == 0 ? 0 : -1;
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (buf[n] == '\n') {
            buf[n] = 0;
            return 1;
        }
        n++;
    }
    return -1;
}

static int write_all(int fd, const char *p, size_t n) {
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* The upstream service: serial, one request per connection. */
static void upstream(int fd) {
    for (;;) {
        char line[64];
        int c = accept(fd, NULL, NULL);
        if (c < 0)
            continue;
        struct pollfd p = {.fd = c, .events = POLLIN};
        if (poll(&p, 1, 2000) == 1 && read_line(c, line, sizeof line) == 1) {
            char out[64];
            int k = snprintf(out, sizeof out, "%ld\n", 2 * atol(line) + 1);
            write_all(c, out, (size_t)k);
        }
        close(c);
    }
}

static long ask_upstream(long n) {
    struct sockaddr_in a;
    char line[64];
    long m = -1;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(upstream_port);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) == 0) {
        int k = snprintf(line, sizeof line, "%ld\n", n);
        if (write_all(fd, line, (size_t)k) == 0 && read_line(fd, line, sizeof line) == 1)
            m = atol(line);
    }
    close(fd);
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
            pthread_mutex_lock(&lock);
            k = snprintf(out, sizeof out, "threads %ld served %ld ticks %ld late_max_us %ld\n", os_threads(),
                         served, ticks, late_max_us);
            pthread_mutex_unlock(&lock);
        } else if (strcmp(line, "QUIT") == 0) {
            stopping = 1;
            shutdown(listen_fd, SHUT_RDWR); /* main's accept returns */
            k = snprintf(out, sizeof out, "bye\n");
        } else {
            long n = atol(line);
            long m = ask_upstream(n);
            pthread_mutex_lock(&lock);
            served++;
            table[n & 255]++;
            pthread_mutex_unlock(&lock);
            k = snprintf(out, sizeof out, "%ld %ld\n", n, m);
        }
        if (write_all(fd, out, (size_t)k) != 0)
            break;
    }
    close(fd);
    return NULL;
}

static void *background(void *arg) {
    uint64_t next = now_us() + TICK_US;
    (void)arg;
    while (!stopping) {
        usleep(TICK_US);
        uint64_t t = now_us();
        long late = t > next ? (long)(t - next) : 0;
        pthread_mutex_lock(&lock);
        ticks++;
        if (late > late_max_us)
            late_max_us = late;
        pthread_mutex_unlock(&lock);
        next = t + TICK_US;
    }
    return (void *)(intptr_t)42;
}

int main(void) {
    struct rlimit rl;
    pthread_t bg;
    void *bg_result = NULL;
    int ufd, status;
    pid_t child;

    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < 8192) {
        rl.rlim_cur = rl.rlim_max < 8192 ? rl.rlim_max : 8192;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    signal(SIGPIPE, SIG_IGN);
    ufd = listen_on(&upstream_port, 4096);
    if (ufd < 0) {
        perror("upstream listen");
        return 2;
    }
    child = fork();
    if (child == 0) {
        upstream(ufd);
        _exit(0);
    }
    close(ufd);
    uint16_t port;
    listen_fd = listen_on(&port, 4096);
    if (listen_fd < 0) {
        perror("listen");
        return 2;
    }
    if (pthread_create(&bg, NULL, background, NULL) != 0) {
        fprintf(stderr, "pthread_create (background) failed\n");
        return 2;
    }
    printf("port %u\n", port);
    fflush(stdout);
    while (!stopping) {
        pthread_t th;
        int c = accept(listen_fd, NULL, NULL);
        if (c < 0) {
            if (stopping)
                break;
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            perror("accept");
            usleep(1000);
            continue;
        }
        int rc = pthread_create(&th, NULL, connection, (void *)(intptr_t)c);
        if (rc != 0) {
            fprintf(stderr, "pthread_create: %s\n", strerror(rc));
            close(c);
            continue;
        }
        pthread_detach(th);
    }
    int rc = pthread_join(bg, &bg_result);
    kill(child, SIGTERM);
    waitpid(child, &status, 0);
    printf("served %ld, background ticks %ld, late at most %ld us, joined %d result %ld\n", served, ticks,
           late_max_us, rc, (long)(intptr_t)bg_result);
    return rc == 0 && bg_result == (void *)(intptr_t)42 ? 0 : 1;
}
