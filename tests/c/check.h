/*
 * check.h: the few helpers the C tests of libphoton share.
 *
 * CHECK(cond, fmt, ...) prints file:line, the failed condition and a message
 * to stderr and exits 1. CHECK_ERRNO(expr, want) checks a POSIX-style call:
 * it must return -1 and leave errno == want. Tests print each thing they
 * check with SAY() so a failure's output shows how far they got.
 */
#ifndef PHOTON_TEST_CHECK_H
#define PHOTON_TEST_CHECK_H

#include <arpa/inet.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "photon.h"

#define CHECK(cond, ...)                                                     \
    do {                                                                     \
        if (!(cond)) {                                                       \
            fprintf(stderr, "%s:%d: CHECK FAILED: %s\n  ", __FILE__,         \
                    __LINE__, #cond);                                        \
            fprintf(stderr, __VA_ARGS__);                                    \
            fprintf(stderr, "\n");                                           \
            fflush(stderr);                                                  \
            exit(1);                                                         \
        }                                                                    \
    } while (0)

/* `expr` must evaluate to -1 and set errno to `want`. */
#define CHECK_ERRNO(expr, want)                                              \
    do {                                                                     \
        errno = 0;                                                           \
        long check_ret_ = (long)(expr);                                      \
        int check_errno_ = errno;                                            \
        CHECK(check_ret_ == -1 && check_errno_ == (want),                    \
              "%s: want -1 with errno %d (%s), got %ld with errno %d (%s)",  \
              #expr, (int)(want), strerror(want), check_ret_, check_errno_,  \
              strerror(check_errno_));                                       \
    } while (0)

/* `expr` must evaluate to NULL and set errno to `want`. */
#define CHECK_NULL_ERRNO(expr, want)                                         \
    do {                                                                     \
        errno = 0;                                                           \
        const void *check_ptr_ = (const void *)(expr);                       \
        int check_errno_ = errno;                                            \
        CHECK(check_ptr_ == NULL && check_errno_ == (want),                  \
              "%s: want NULL with errno %d (%s), got %p with errno %d (%s)", \
              #expr, (int)(want), strerror(want), check_ptr_, check_errno_,  \
              strerror(check_errno_));                                       \
    } while (0)

/* `expr` must evaluate to 0 (success). */
#define CHECK_OK(expr)                                                       \
    do {                                                                     \
        errno = 0;                                                           \
        long check_ret_ = (long)(expr);                                      \
        int check_errno_ = errno;                                            \
        CHECK(check_ret_ == 0, "%s: want 0, got %ld with errno %d (%s)",     \
              #expr, check_ret_, check_errno_, strerror(check_errno_));      \
    } while (0)

#define SAY(...)                                                             \
    do {                                                                     \
        printf(__VA_ARGS__);                                                 \
        printf("\n");                                                        \
    } while (0)

/* Unbuffered output: a test that crashes still shows what it checked. */
static inline void test_start(const char *name) {
    setvbuf(stdout, NULL, _IONBF, 0);
    setvbuf(stderr, NULL, _IONBF, 0);
    const char *engine = getenv("PHOTON_ENGINE");
    printf("== %s (PHOTON_ENGINE=%s, libphoton %s)\n", name,
           engine ? engine : "(unset)", photon_version());
}

/* True if the test harness runs this program under Valgrind
 * (PHOTON_TEST_SANITIZE=valgrind, which it passes on): loops that repeat
 * the same checks many times run fewer rounds there, where every
 * instruction costs tens of times more. */
static inline int under_valgrind(void) {
    const char *checker = getenv("PHOTON_TEST_SANITIZE");
    return checker != NULL && strcmp(checker, "valgrind") == 0;
}

/* True if the calling vcpu runs the engine `name` ("io_uring", "epoll"). */
static inline int engine_is(const char *name) {
    const char *engine = photon_engine_name();
    return engine != NULL && strcmp(engine, name) == 0;
}

/* Engine operations the calling vcpu submitted so far (photon_stats). */
static inline uint64_t io_submitted(void) {
    photon_stats s;
    memset(&s, 0, sizeof s);
    s.size = sizeof s;
    CHECK_OK(photon_stats_get(&s));
    return s.io_submitted;
}

/* True if the environment variable `var` (PHOTON_IO_OFF, PHOTON_IO_ON: names
 * separated by commas) names `feature`, matched whole and with the blanks
 * around it ignored, as the library reads the list. */
static inline int io_feature_listed(const char *var, const char *feature) {
    const char *p = getenv(var);
    size_t want = strlen(feature);
    while (p != NULL && *p != 0) {
        while (isspace((unsigned char)*p)) p++;
        const char *end = strchr(p, ',');
        if (end == NULL) end = p + strlen(p);
        const char *last = end;
        while (last > p && isspace((unsigned char)last[-1])) last--;
        if ((size_t)(last - p) == want && strncmp(p, feature, want) == 0) return 1;
        p = *end != 0 ? end + 1 : end;
    }
    return 0;
}

/* Threads of this process whose name (comm) starts with `prefix`. */
static inline int threads_named(const char *prefix) {
    DIR *d = opendir("/proc/self/task");
    CHECK(d != NULL, "opendir /proc/self/task: %s", strerror(errno));
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        char path[300], comm[32];
        snprintf(path, sizeof path, "/proc/self/task/%s/comm", e->d_name);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) continue; /* the thread ended meanwhile */
        ssize_t r = read(fd, comm, sizeof comm - 1);
        close(fd);
        if (r > 0) {
            comm[r] = '\0';
            if (strncmp(comm, prefix, strlen(prefix)) == 0) n++;
        }
    }
    closedir(d);
    return n;
}

/* Threads of this process named "iou-sqp-<pid>": the kernel threads that
 * poll io_uring submission queues set up with SQPOLL (5.12+ makes them
 * threads of the ring's process). */
static inline int sqpoll_threads(void) { return threads_named("iou-sqp-"); }

/* The SQPOLL opt-in took its path: with PHOTON_IO_SQPOLL=1 under io_uring
 * (c_api's *_sqpoll tests) the process has a kernel thread polling a ring,
 * and without the flag none. Where this kernel
 * refuses SQPOLL (the library then makes a ring without it and says so),
 * or keeps the polling thread outside the process (before 5.12), a NOTICE
 * says why nothing was checked. Called by test_init, after photon_init. */
static inline void check_sqpoll_path(void) {
    const char *flag = getenv("PHOTON_IO_SQPOLL");
    int want = flag != NULL && strcmp(flag, "1") == 0 && engine_is("io_uring");
    int n = sqpoll_threads();
    /* The polling thread names itself when it first runs, which on a busy
     * machine can be after io_uring_setup returned: give it up to 2 s. */
    for (int i = 0; want && n == 0 && i < 400; i++) {
        usleep(5000);
        n = sqpoll_threads();
    }
    if (!want) {
        const char *chosen = getenv("PHOTON_ENGINE");
        /* Asked for, but this vcpu fell back to epoll: an earlier vcpu's
         * ring may have had one, and its end is asynchronous. Under
         * PHOTON_ENGINE=epoll no ring was made: the flag is ignored. */
        if (flag != NULL && strcmp(flag, "1") == 0 && !(chosen && strcmp(chosen, "epoll") == 0)) return;
        CHECK(n == 0, "%d io_uring SQPOLL thread(s) (PHOTON_IO_SQPOLL=%s, PHOTON_ENGINE=%s)", n,
              flag ? flag : "(unset)", chosen ? chosen : "(unset)");
        return;
    }
    if (n > 0) {
        printf("io_uring SQPOLL: %d polling thread(s)\n", n);
        return;
    }
    /* None: would this kernel give this process one? io_uring_setup with
     * IORING_SETUP_SQPOLL (2), an idle of 10 ms; struct io_uring_params is
     * 120 bytes, flags at byte 8, sq_thread_idle at byte 16. */
    uint32_t params[30];
    memset(params, 0, sizeof params);
    params[2] = 2;
    params[4] = 10;
    long fd = syscall(__NR_io_uring_setup, 4, params);
    if (fd < 0) {
        printf("NOTICE: this kernel refuses SQPOLL here (%s): the ring without it is tested\n",
               strerror(errno));
        return;
    }
    int seen = sqpoll_threads();
    for (int i = 0; seen == 0 && i < 400; i++) {
        usleep(5000);
        seen = sqpoll_threads();
    }
    close((int)fd);
    if (seen == 0) {
        printf("NOTICE: this kernel's SQPOLL threads are not the process's (before 5.12): not checked\n");
        return;
    }
    CHECK(0, "PHOTON_IO_SQPOLL=1 under io_uring: this kernel makes SQPOLL rings, yet no "
             "SQPOLL thread polls the library's ring");
}

/* photon_init with the default engine (PHOTON_ENGINE picks it in tests). */
static inline void test_init(void) {
    errno = 0;
    int ret = photon_init(PHOTON_EVENT_DEFAULT, 0);
    int err = errno;
    CHECK(ret == 0, "photon_init: got %d with errno %d (%s)", ret, err,
          strerror(err));
    const char *engine = photon_engine_name();
    CHECK(engine != NULL, "photon_engine_name() is NULL on a vcpu");
    CHECK(strcmp(engine, "epoll") == 0 || strcmp(engine, "io_uring") == 0,
          "photon_engine_name() is \"%s\"", engine);
    printf("vcpu up, engine %s\n", engine);
    check_sqpoll_path();
}

static inline void test_fini(void) { CHECK_OK(photon_fini()); }

/* Create a joinable thread, or fail the test. */
static inline photon_thread *spawn_joinable(photon_entry entry, void *arg,
                                            size_t stack_size) {
    errno = 0;
    photon_thread *th = photon_thread_create(entry, arg, stack_size);
    int err = errno;
    CHECK(th != NULL, "photon_thread_create: NULL with errno %d (%s)", err,
          strerror(err));
    CHECK_OK(photon_thread_enable_join(th));
    return th;
}

/* Join a thread and return its return value, or fail the test. */
static inline void *join_ok(photon_thread *th) {
    void *ret = (void *)(uintptr_t)0xdeadbeef;
    CHECK_OK(photon_thread_join(th, &ret));
    return ret;
}

static inline uint64_t elapsed_us(uint64_t since) {
    return photon_now_us() - since;
}

/* Microseconds the calling OS thread has waited for a CPU so far (run_delay,
 * the second field of /proc/thread-self/schedstat). A test that bounds a
 * wall-time gap on a vcpu takes this out of it: time the OS gave to other
 * work on a shared machine is not photon's. A vcpu blocked in a system
 * call sleeps in the kernel, which run_delay does not count. */
static inline uint64_t thread_run_delay_us(void) {
    int fd = open("/proc/thread-self/schedstat", O_RDONLY | O_CLOEXEC);
    CHECK(fd >= 0, "open /proc/thread-self/schedstat: %s", strerror(errno));
    char buf[128];
    ssize_t n = read(fd, buf, sizeof buf - 1);
    CHECK(n > 0, "read /proc/thread-self/schedstat: %s", strerror(errno));
    close(fd);
    buf[n] = '\0';
    unsigned long long on_cpu, delay;
    CHECK(sscanf(buf, "%llu %llu", &on_cpu, &delay) == 2, "schedstat: %s", buf);
    return delay / 1000;
}

/* Microseconds the hypervisor ran other guests while this machine wanted
 * its CPUs ("steal", the eighth figure of /proc/stat's cpu line, all CPUs,
 * counted in clock ticks: 10 ms steps); 0 where the kernel does not say.
 * A VM stolen from stalls every thread in it, which neither the thread's
 * run_delay nor photon can see. */
static inline uint64_t machine_steal_us(void) {
    FILE *f = fopen("/proc/stat", "r");
    if (f == NULL) return 0;
    unsigned long long v[8] = {0};
    int n = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3],
                   &v[4], &v[5], &v[6], &v[7]);
    fclose(f);
    long hz = sysconf(_SC_CLK_TCK);
    if (n < 8 || hz <= 0) return 0;
    return (uint64_t)v[7] * (1000000ULL / (uint64_t)hz);
}

/* The same summed over every thread of the process (threads that end
 * meanwhile drop out of the sum). */
static inline uint64_t process_run_delay_us(void) {
    uint64_t sum = 0;
    DIR *d = opendir("/proc/self/task");
    CHECK(d != NULL, "opendir /proc/self/task: %s", strerror(errno));
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        char path[300]; /* d_name is up to 255 bytes */
        snprintf(path, sizeof(path), "/proc/self/task/%s/schedstat", e->d_name);
        FILE *f = fopen(path, "r");
        if (f == NULL) continue; /* the thread ended meanwhile */
        unsigned long long on_cpu, delay;
        if (fscanf(f, "%llu %llu", &on_cpu, &delay) == 2) sum += delay;
        fclose(f);
    }
    closedir(d);
    return sum / 1000;
}

/* A connected TCP pair on 127.0.0.1 made with photon calls: fds[0]
 * connects (its SO_RCVBUF set to `rcvbuf` first when > 0), fds[1] is the
 * accepted end. Both are photon-made sockets. */
static inline void tcp_loopback_pair(int fds[2], int rcvbuf) {
    int lfd = photon_socket(AF_INET, SOCK_STREAM, 0);
    CHECK(lfd >= 0, "photon_socket: %s", strerror(errno));
    struct sockaddr_in sin;
    memset(&sin, 0, sizeof sin);
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CHECK_OK(bind(lfd, (struct sockaddr *)&sin, sizeof sin));
    CHECK_OK(listen(lfd, 4));
    socklen_t len = sizeof sin;
    CHECK_OK(getsockname(lfd, (struct sockaddr *)&sin, &len));
    fds[0] = photon_socket(AF_INET, SOCK_STREAM, 0);
    CHECK(fds[0] >= 0, "photon_socket: %s", strerror(errno));
    if (rcvbuf > 0) CHECK_OK(setsockopt(fds[0], SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf));
    CHECK_OK(photon_connect(fds[0], (struct sockaddr *)&sin, sizeof sin, 5000000));
    fds[1] = photon_accept(lfd, NULL, NULL, 5000000);
    CHECK(fds[1] >= 0, "photon_accept: %s", strerror(errno));
    CHECK_OK(photon_close(lfd));
}

#endif /* PHOTON_TEST_CHECK_H */
