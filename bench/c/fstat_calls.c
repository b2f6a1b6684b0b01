/* libphoton: ns per photon_fstat on the main photon thread, against
 * fstat(2) through libc in the same run (bench/README.md, "photon_fstat on
 * the vcpu").
 *
 *   fstat_calls PATH N REPS
 *
 * For each of a regular file (PATH, opened once), a TCP socket and a pipe:
 * REPS rounds of N photon_fstat calls, then REPS rounds of N libc fstat
 * calls, interleaved (photon, libc, photon, ...); each round timed with
 * CLOCK_MONOTONIC. Then "file+pread": what a static-file server does per
 * request, an fstat and a 4 KiB pread (cached) of the file, photon's calls
 * against libc's. Output, per kind: the median ns per call (or pair) of
 * each, and the range.
 *   RESULT kind=file photon_ns=... (min-max) libc_ns=... (min-max) engine=... */
#define _GNU_SOURCE
#include <photon.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <fcntl.h>
#include <unistd.h>

#include "bench_common.h"

static double now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static int g_pread; /* each round also preads 4 KiB */

static double round_ns(int fd, long n, int photon) {
    struct stat st;
    static char buf[4096];
    double t0 = now_ns();
    for (long i = 0; i < n; i++) {
        int r = photon ? photon_fstat(fd, &st) : fstat(fd, &st);
        if (r != 0) BENCH_DIE("fstat %ld", i);
        if (g_pread) {
            ssize_t got = photon ? photon_pread(fd, buf, sizeof buf, 0) : pread(fd, buf, sizeof buf, 0);
            if (got != (ssize_t)sizeof buf) BENCH_DIE("pread %ld", i);
        }
    }
    return (now_ns() - t0) / (double)n;
}

static void measure(const char *kind, int fd, long n, int reps) {
    double p[64], l[64];
    if (reps > 64) reps = 64;
    round_ns(fd, n / 10 + 1, 1); /* warm-up: the fd's facts are learnt */
    for (int r = 0; r < reps; r++) {
        p[r] = round_ns(fd, n, 1);
        l[r] = round_ns(fd, n, 0);
    }
    qsort(p, (size_t)reps, sizeof p[0], cmp_double);
    qsort(l, (size_t)reps, sizeof l[0], cmp_double);
    printf("RESULT kind=%s photon_ns=%.0f (%.0f-%.0f) libc_ns=%.0f (%.0f-%.0f) engine=%s\n", kind,
           p[reps / 2], p[0], p[reps - 1], l[reps / 2], l[0], l[reps - 1], photon_engine_name());
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s PATH N REPS\n", argv[0]);
        return 2;
    }
    long n = atol(argv[2]);
    int reps = atoi(argv[3]);
    if (photon_init(PHOTON_EVENT_DEFAULT, 0) != 0) BENCH_DIE("photon_init");
    int fd = photon_open(argv[1], O_RDONLY | O_CLOEXEC, 0);
    if (fd < 0) BENCH_DIE("photon_open(%s)", argv[1]);
    measure("file", fd, n, reps);
    int s = photon_socket(AF_INET, SOCK_STREAM, 0);
    if (s < 0) BENCH_DIE("photon_socket");
    measure("socket", s, n, reps);
    int pfd[2];
    if (pipe2(pfd, O_CLOEXEC) != 0) BENCH_DIE("pipe2");
    measure("pipe", pfd[0], n, reps);
    g_pread = 1;
    measure("file+pread", fd, n, reps);
    photon_close(pfd[0]);
    photon_close(pfd[1]);
    photon_close(s);
    photon_close(fd);
    if (photon_fini() != 0) BENCH_DIE("photon_fini");
    return 0;
}
