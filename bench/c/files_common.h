/* Shared by the file benchmark programs (bench/c/files_*.c), driven by
 * `cargo run --release --bin files` (bench/src/bin/files.rs).
 *
 * The data file: every 4 KiB block starts with an 8-byte stamp,
 * FILES_STAMP(block index), written by the driver when it creates the
 * file; a reader checks the stamp of every block it reads, so a wrong
 * offset, a short read or stale data fails the run instead of counting.
 *
 * Command lines (both programs):
 *   randread PATH DIRECT THREADS SECS WARMUP   4 KiB random preads by THREADS
 *                                              threads, counted for SECS after
 *                                              WARMUP seconds; DIRECT 0/1
 *   write PATH SIZE_MIB                        sequential 1 MiB pwrites into a
 *                                              new file, then one fsync
 * Output: RESULT iops=... cpu_us=... (randread) or RESULT mbps=... cpu_us=...
 * (write), where cpu_us is the process's user+system CPU time per I/O in
 * microseconds over the timed window. */
#ifndef PHOTON_BENCH_FILES_COMMON_H
#define PHOTON_BENCH_FILES_COMMON_H

#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bench_common.h"

#define FILES_BLOCK 4096
#define FILES_MIB (1 << 20)
#define FILES_STAMP(block) ((uint64_t)(block) ^ 0x50484F544F4E0000ULL)

struct files_args {
    int write_mode;
    const char* path;
    int direct;
    int threads;
    double secs, warmup;
    long size_mib;
};

static inline void files_usage(const char* prog) {
    fprintf(stderr,
            "usage: %s randread PATH DIRECT(0|1) THREADS SECS WARMUP\n"
            "       %s write PATH SIZE_MIB\n",
            prog, prog);
    exit(2);
}

static inline struct files_args files_parse(int argc, char** argv) {
    struct files_args a;
    memset(&a, 0, sizeof a);
    if (argc >= 2 && strcmp(argv[1], "randread") == 0 && argc == 7) {
        a.path = argv[2];
        a.direct = atoi(argv[3]);
        a.threads = atoi(argv[4]);
        a.secs = atof(argv[5]);
        a.warmup = atof(argv[6]);
        if ((a.direct != 0 && a.direct != 1) || a.threads < 1 || a.threads > 4096 ||
            !(a.secs > 0) || a.warmup < 0)
            files_usage(argv[0]);
    } else if (argc >= 2 && strcmp(argv[1], "write") == 0 && argc == 4) {
        a.write_mode = 1;
        a.path = argv[2];
        a.size_mib = atol(argv[3]);
        if (a.size_mib < 1) files_usage(argv[0]);
    } else {
        files_usage(argv[0]);
    }
    return a;
}

/* user + system CPU seconds of the whole process (all its threads). */
static inline double files_cpu_s(void) {
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0) BENCH_DIE("getrusage");
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec * 1e-6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec * 1e-6;
}

static inline uint64_t files_rng(uint64_t* s) {
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

static inline void* files_aligned(size_t n) {
    void* p = NULL;
    if (posix_memalign(&p, FILES_BLOCK, n) != 0) BENCH_DIE("posix_memalign(%zu)", n);
    memset(p, 0, n);
    return p;
}

/* The content of MiB number `mib` of a written file (stamped like the data file). */
static inline void files_fill_mib(unsigned char* buf, long mib) {
    for (int b = 0; b < FILES_MIB / FILES_BLOCK; b++) {
        uint64_t stamp = FILES_STAMP(mib * (FILES_MIB / FILES_BLOCK) + b);
        memcpy(buf + (size_t)b * FILES_BLOCK, &stamp, 8);
        memset(buf + (size_t)b * FILES_BLOCK + 8, (int)(b & 0xff), FILES_BLOCK - 8);
    }
}

#endif
