/* What the kernel charges for a non-blocking page-cache read: pread(2)
 * against preadv2(2) with one iovec, without and with RWF_NOWAIT (the
 * call photon's cached-read fast path makes, so that a page-cache miss
 * says EAGAIN instead of stalling the vcpu on the disk). No libphoton:
 *
 *   cc -O2 -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -I bench/c \
 *      bench/c/pread_nowait.c -o pread_nowait
 *   taskset -c 1 ./pread_nowait FILE [READS] [ROUNDS]
 *
 * FILE (at least 4 KiB, read once first so that it is in the page cache)
 * is read at random 4 KiB-aligned offsets, READS (default 2,000,000)
 * times per call and round, the calls interleaved within each of ROUNDS
 * (default 3) rounds. Prints one INFO line per call and round (ns per
 * read) and a RESULT line with each call's median over the rounds. A
 * short read or an error (EAGAIN: a page not cached) stops it. */
#include <fcntl.h>
#include <sys/uio.h>
#include <unistd.h>

#include "bench_common.h"

enum { PREAD, PREADV2, PREADV2_NOWAIT, CALLS };
static const char *const NAMES[CALLS] = {"pread", "preadv2", "preadv2_nowait"};

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s FILE [READS] [ROUNDS]\n", argv[0]);
        return 2;
    }
    uint64_t reads = argc > 2 ? strtoull(argv[2], NULL, 10) : 2000000;
    int rounds = argc > 3 ? atoi(argv[3]) : 3;
    if (reads == 0 || rounds < 1 || rounds > 64) {
        errno = EINVAL;
        BENCH_DIE("bad READS or ROUNDS");
    }
    int fd = open(argv[1], O_RDONLY | O_CLOEXEC);
    if (fd < 0) BENCH_DIE("open %s", argv[1]);
    off_t size = lseek(fd, 0, SEEK_END);
    uint64_t blocks = (uint64_t)size / 4096;
    if (blocks == 0) {
        errno = EINVAL;
        BENCH_DIE("%s is smaller than 4 KiB", argv[1]);
    }
    static char buf[4096] __attribute__((aligned(4096)));
    for (uint64_t b = 0; b < blocks; b++) /* into the page cache */
        if (pread(fd, buf, sizeof buf, (off_t)(b * 4096)) != (ssize_t)sizeof buf) BENCH_DIE("warm-up read");

    double ns[CALLS][64];
    uint64_t x = 88172645463325252ULL; /* xorshift64 */
    for (int r = 0; r < rounds; r++) {
        for (int c = 0; c < CALLS; c++) {
            double t0 = bench_now_s();
            for (uint64_t i = 0; i < reads; i++) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                off_t off = (off_t)((x % blocks) * 4096);
                struct iovec v = {buf, sizeof buf};
                ssize_t n = c == PREAD    ? pread(fd, buf, sizeof buf, off)
                            : c == PREADV2 ? preadv2(fd, &v, 1, off, 0)
                                           : preadv2(fd, &v, 1, off, RWF_NOWAIT);
                if (n != (ssize_t)sizeof buf) BENCH_DIE("%s at %lld returned %zd", NAMES[c], (long long)off, n);
            }
            ns[c][r] = (bench_now_s() - t0) * 1e9 / (double)reads;
            printf("INFO round %d %s %.1f ns per read\n", r + 1, NAMES[c], ns[c][r]);
        }
    }
    printf("RESULT reads=%llu rounds=%d", (unsigned long long)reads, rounds);
    for (int c = 0; c < CALLS; c++) {
        qsort(ns[c], (size_t)rounds, sizeof ns[c][0], cmp_double);
        printf(" %s_ns=%.1f", NAMES[c], ns[c][rounds / 2]);
    }
    printf("\n");
    close(fd);
    return 0;
}
