/* libphoton: the library's own instructions per cached file read, by call
 * (photon_pread, photon_read, photon_preadv), for callgrind:
 *
 *   files_calls MODE READS [IOVCNT]
 *
 * MODE: pread (4 KiB at a random block), read (4 KiB at the file position,
 * the file read front to back, then lseek back to the start), preadv
 * (IOVCNT iovecs, default 2, that together cover 4 KiB at a random block),
 * or sock (photon_read of the 64 bytes just written into a Unix socketpair
 * with photon_write: what the files' common case costs a read it does not
 * serve). The file (16 MiB, in a fresh directory under /tmp) is written
 * first through the page cache, so every read is a page-cache hit. Every
 * read goes through one_read(), kept out of line, so that
 *
 *   cc -O2 -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -I include -I bench/c \
 *      bench/c/files_calls.c -L target/release -lphoton -o files_calls
 *   LD_LIBRARY_PATH=target/release \
 *      valgrind --tool=callgrind --toggle-collect=one_read ./files_calls read 200000
 *
 * collects exactly the reads: the total divided by READS is the library's
 * instructions per read, plus one_read's own handful (its call and the
 * switch on MODE). The engine is PHOTON_ENGINE's (io_uring asked for
 * explicitly: under Valgrind the default is epoll). Prints RESULT reads=N
 * ns_per_read=T (the loop's wall-clock time per read, lseek included). */
#include <fcntl.h>
#include <photon.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "bench_common.h"

#define BLOCK 4096
#define NBLOCKS 4096
#define SIZE ((off_t)NBLOCKS * BLOCK)

enum mode { PREAD, READ, PREADV, SOCK };

static int g_fd, g_sock[2];
static enum mode g_mode;
static int g_iovcnt;
static unsigned char g_buf[BLOCK];
static struct iovec g_iov[16];

static uint64_t stamp_of(off_t pos) { return (uint64_t)pos * 0x9E3779B97F4A7C15ULL; }

__attribute__((noinline)) static ssize_t one_read(off_t off) {
    switch (g_mode) {
        case PREAD:
            return photon_pread(g_fd, g_buf, BLOCK, off);
        case READ:
            return photon_read(g_fd, g_buf, BLOCK, PHOTON_FOREVER);
        case SOCK:
            return photon_read(g_sock[0], g_buf, 64, PHOTON_FOREVER);
        default:
            return photon_preadv(g_fd, g_iov, g_iovcnt, off);
    }
}

static double g_secs;

static void *run(void *arg) {
    uint64_t reads = *(uint64_t *)arg, seed = 12345;
    double t0 = bench_now_s();
    for (uint64_t i = 0; i < reads; i++) {
        seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
        off_t off = (off_t)((seed >> 33) % NBLOCKS) * BLOCK;
        if (g_mode == SOCK) {
            uint64_t s = stamp_of(off);
            unsigned char msg[64] = {0};
            memcpy(msg, &s, 8);
            if (photon_write(g_sock[1], msg, 64, PHOTON_FOREVER) != 64) BENCH_DIE("photon_write");
            if (one_read(off) != 64 || memcmp(g_buf, msg, 8) != 0) BENCH_DIE("socket read %llu", (unsigned long long)i);
            continue;
        }
        if (g_mode == READ) {
            off = (off_t)(i % NBLOCKS) * BLOCK;
            if (off == 0 && lseek(g_fd, 0, SEEK_SET) != 0) BENCH_DIE("lseek");
        }
        ssize_t n = one_read(off);
        uint64_t got;
        memcpy(&got, g_buf, 8);
        if (n != BLOCK || got != stamp_of(off)) BENCH_DIE("read %llu at %lld: %zd", (unsigned long long)i, (long long)off, n);
    }
    g_secs = bench_now_s() - t0;
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s pread|read|preadv|sock READS [IOVCNT]\n", argv[0]);
        return 2;
    }
    const char *modes[] = {"pread", "read", "preadv", "sock"};
    g_mode = PREAD;
    while (g_mode <= SOCK && strcmp(argv[1], modes[g_mode]) != 0) g_mode++;
    if (g_mode > SOCK) BENCH_DIE("unknown mode %s", argv[1]);
    uint64_t reads = strtoull(argv[2], NULL, 10);
    g_iovcnt = argc > 3 ? atoi(argv[3]) : 2;
    if (g_iovcnt < 1 || g_iovcnt > 16) BENCH_DIE("IOVCNT 1..16");
    /* IOVCNT pieces of the one buffer: the first ones 8 bytes (the stamp
     * stays in the first), the last the rest. */
    for (int i = 0; i < g_iovcnt; i++) {
        g_iov[i].iov_base = g_buf + 8 * i;
        g_iov[i].iov_len = i + 1 < g_iovcnt ? 8 : BLOCK - 8 * (size_t)i;
    }
    const char *engine = getenv("PHOTON_ENGINE");
    int event = engine && strcmp(engine, "io_uring") == 0 ? PHOTON_EVENT_IOURING : PHOTON_EVENT_DEFAULT;
    if (photon_init(event, 0) != 0) BENCH_DIE("photon_init");
    char dir[] = "/tmp/photon_files_calls_XXXXXX";
    if (!mkdtemp(dir)) BENCH_DIE("mkdtemp");
    char path[64];
    snprintf(path, sizeof path, "%s/data", dir);
    g_fd = photon_open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (g_fd < 0) BENCH_DIE("photon_open");
    unsigned char *all = malloc(SIZE);
    if (!all) BENCH_DIE("malloc");
    for (off_t b = 0; b < NBLOCKS; b++) {
        uint64_t s = stamp_of(b * BLOCK);
        memset(all + b * BLOCK, (int)b, BLOCK);
        memcpy(all + b * BLOCK, &s, 8);
    }
    if (photon_pwrite(g_fd, all, SIZE, 0) != SIZE) BENCH_DIE("photon_pwrite");
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, g_sock) != 0) BENCH_DIE("socketpair");
    free(all);
    photon_thread *t = photon_thread_create(run, &reads, 256 * 1024);
    if (!t || photon_thread_enable_join(t) != 0 || photon_thread_join(t, NULL) != 0) BENCH_DIE("thread");
    if (photon_close(g_sock[0]) != 0 || photon_close(g_sock[1]) != 0) BENCH_DIE("close");
    if (photon_close(g_fd) != 0 || unlink(path) != 0 || rmdir(dir) != 0) BENCH_DIE("cleanup");
    printf("INFO engine %s\nRESULT reads=%llu ns_per_read=%.1f\n", photon_engine_name(), (unsigned long long)reads,
           g_secs * 1e9 / (double)reads);
    photon_fini();
    return 0;
}
