/*
 * The common case of photon_pread, photon_read, photon_preadv and
 * photon_readv (a buffered file already known, its pages cached, no
 * interrupt pending: one preadv2(RWF_NOWAIT) on the vcpu, at the offset
 * given or, for photon_read and photon_readv, at the file position) keeps
 * every rule of the general path.
 *
 * 1. Fairness, for each of the four calls: such reads never wait, so each
 *    counts against the vcpu's I/O budget, which polls timers and events
 *    every 64 calls and yields after 64 in a row. Beside a thread that loops
 *    the call on a cached file for 300 ms, a 10 ms sleeper wakes in under
 *    100 ms (less the time the OS kept the vcpu from a CPU) and a thread
 *    that keeps yielding gets at least 100 turns. The reads went to the
 *    engine only where PHOTON_IO_OFF=cached_read under io_uring says so.
 * 2. The errno contract on that same known, cached fd, for each call: a
 *    NULL buffer (or iovec array), a negative offset, a bad iovec count or
 *    lengths give EINVAL, a buffer reaching past the user address space
 *    EFAULT, a bad or closed fd EBADF, a pending interrupt fails the next
 *    read (only that one, which moves nothing); a read at or past the end
 *    gives 0, of 0 bytes 0, of 2 MiB (in pieces) 2 MiB. photon_read moves
 *    the file position by exactly what it read, also between lseek calls,
 *    and the positioned calls leave it alone.
 */
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "check.h"

#define BLOCK 4096
#define NBLOCKS 768 /* 3 MiB: a read of 2 MiB goes in pieces */
#define SIZE (NBLOCKS * BLOCK)
#define READ_US 300000
#define SLEEP_US 10000
#define CUSTOM_ERRNO 4242
#define MIB (1 << 20)

/* Which call the fairness reader loops. */
enum call { PREAD, READ, PREADV, READV };
static const char *const CALL_NAME[] = {"photon_pread", "photon_read", "photon_preadv", "photon_readv"};

static int g_fd;
static enum call g_call;
static volatile int g_reading;
static uint64_t g_reads, g_turns, g_slept_us, g_delay_us;

static unsigned char byte_at(off_t pos) {
    uint64_t x = (uint64_t)pos * 0x9E3779B97F4A7C15ULL;
    return (unsigned char)(x ^ (x >> 29));
}

static off_t position(void) { return lseek(g_fd, 0, SEEK_CUR); }

/* Reads block b into buf with the call under test: photon_read and
 * photon_readv read the blocks in order from the start, whatever b.
 * Returns the block read. */
static int read_block(unsigned char *buf, int b) {
    if (g_call == READ || g_call == READV) {
        off_t pos = position();
        if (pos >= SIZE) pos = lseek(g_fd, 0, SEEK_SET);
        CHECK(pos >= 0 && pos % BLOCK == 0, "the file position: %lld", (long long)pos);
        struct iovec iov[2] = {{buf, 100}, {buf + 100, BLOCK - 100}};
        ssize_t n = g_call == READ ? photon_read(g_fd, buf, BLOCK, PHOTON_FOREVER)
                                   : photon_readv(g_fd, iov, 2, PHOTON_FOREVER);
        CHECK(n == BLOCK, "%s at %lld: %zd (%s)", CALL_NAME[g_call], (long long)pos, n, strerror(errno));
        CHECK(position() == pos + BLOCK, "%s moved the position from %lld to %lld", CALL_NAME[g_call],
              (long long)pos, (long long)position());
        return (int)(pos / BLOCK);
    }
    ssize_t n;
    if (g_call == PREAD) {
        n = photon_pread(g_fd, buf, BLOCK, (off_t)b * BLOCK);
    } else {
        /* Two pieces, the first short. */
        struct iovec iov[2] = {{buf, 100}, {buf + 100, BLOCK - 100}};
        n = photon_preadv(g_fd, iov, 2, (off_t)b * BLOCK);
    }
    CHECK(n == BLOCK, "%s of block %d: %zd (%s)", CALL_NAME[g_call], b, n, strerror(errno));
    return b;
}

static void *reader(void *arg) {
    (void)arg;
    unsigned char buf[BLOCK];
    uint64_t t0 = photon_now_us();
    for (uint64_t i = 0; elapsed_us(t0) < READ_US; i++) {
        int b = read_block(buf, (int)(i * 7 % NBLOCKS));
        CHECK(buf[5] == byte_at((off_t)b * BLOCK + 5) && buf[BLOCK - 1] == byte_at((off_t)b * BLOCK + BLOCK - 1),
              "block %d: wrong bytes", b);
        g_reads++;
    }
    g_reading = 0;
    return NULL;
}

static void *sleeper(void *arg) {
    (void)arg;
    uint64_t d0 = thread_run_delay_us();
    uint64_t t0 = photon_now_us();
    CHECK_OK(photon_thread_usleep(SLEEP_US));
    g_slept_us = elapsed_us(t0);
    g_delay_us = thread_run_delay_us() - d0;
    return NULL;
}

static void *yielder(void *arg) {
    (void)arg;
    while (g_reading) {
        g_turns++;
        photon_thread_yield();
    }
    return NULL;
}

static void fairness(enum call call) {
    int engine_reads = engine_is("io_uring") && io_feature_listed("PHOTON_IO_OFF", "cached_read");
    g_call = call;
    g_reads = g_turns = 0;
    uint64_t s0 = io_submitted();
    g_reading = 1;
    photon_thread *s = spawn_joinable(sleeper, NULL, 0);
    photon_thread_yield(); /* the sleeper is asleep before the reader starts */
    photon_thread *r = spawn_joinable(reader, NULL, 0);
    photon_thread *y = spawn_joinable(yielder, NULL, 0);
    join_ok(r);
    join_ok(s);
    join_ok(y);
    uint64_t to_engine = io_submitted() - s0;
    SAY("%s: %llu reads in %d ms (%llu by the engine); the %d ms sleeper woke after %.1f ms (%.1f ms "
        "kept from a CPU); the yielder had %llu turns",
        CALL_NAME[call], (unsigned long long)g_reads, READ_US / 1000, (unsigned long long)to_engine, SLEEP_US / 1000,
        g_slept_us / 1000.0, g_delay_us / 1000.0, (unsigned long long)g_turns);
    CHECK(g_slept_us - (g_delay_us < g_slept_us ? g_delay_us : 0) < 100000,
          "%s: the sleeper starved beside the reader: woke after %.1f ms", CALL_NAME[call], g_slept_us / 1000.0);
    CHECK(g_turns >= 100, "%s: the yielder starved beside the reader: %llu turns", CALL_NAME[call],
          (unsigned long long)g_turns);
    if (engine_reads)
        CHECK(to_engine >= g_reads, "%s, cached_read off: %llu of %llu reads went to the engine", CALL_NAME[call],
              (unsigned long long)to_engine, (unsigned long long)g_reads);
    else
        CHECK(to_engine == 0, "%s: %llu of %llu cached reads went to the engine", CALL_NAME[call],
              (unsigned long long)to_engine, (unsigned long long)g_reads);
}

/* The bytes at pos.. are the file's. */
static int holds(const unsigned char *buf, off_t pos, size_t n) {
    for (size_t i = 0; i < n; i += 997)
        if (buf[i] != byte_at(pos + (off_t)i)) return 0;
    return n == 0 || buf[n - 1] == byte_at(pos + (off_t)n - 1);
}

/* A dup of g_fd, learned by the library through one read, then closed
 * behind its back (libc's close: its facts stay known, so the common case
 * still takes it). */
static int closed_known_fd(void) {
    unsigned char b[1];
    off_t pos = position(); /* the dup shares it */
    int d = dup(g_fd);
    CHECK(d >= 0, "dup: %s", strerror(errno));
    CHECK(lseek(d, 0, SEEK_SET) == 0, "lseek");
    CHECK(photon_pread(d, b, 1, 0) == 1 && photon_read(d, b, 1, PHOTON_FOREVER) == 1, "a read of the dup");
    CHECK(lseek(g_fd, pos, SEEK_SET) == pos, "lseek");
    CHECK_OK(close(d));
    return d;
}

static void contract_pread(void) {
    unsigned char buf[BLOCK];
    off_t pos = position();
    CHECK(photon_pread(g_fd, buf, 16, 0) == 16 && buf[3] == byte_at(3), "a plain read");
    CHECK_ERRNO(photon_pread(g_fd, NULL, 4, 0), EINVAL);
    CHECK_ERRNO(photon_pread(g_fd, buf, 4, -1), EINVAL);
    CHECK_ERRNO(photon_pread(g_fd, buf, 4, INT64_MIN), EINVAL);
    /* Reaching past the user address space (47 bits on x86-64, 48 on aarch64). */
    CHECK_ERRNO(photon_pread(g_fd, (void *)(uintptr_t)((1ULL << 48) - 2), 4, 0), EFAULT);
    CHECK_ERRNO(photon_pread(g_fd, (void *)(uintptr_t)0xffff800000000000ULL, 4, 0), EFAULT);
    CHECK_ERRNO(photon_pread(g_fd, buf, SIZE_MAX, 0), EFAULT);
    CHECK_ERRNO(photon_pread(-1, buf, 4, 0), EBADF);
    int d = closed_known_fd();
    CHECK_ERRNO(photon_pread(d, buf, 4, 0), EBADF);
    CHECK_ERRNO(photon_close(d), EBADF); /* forgets it */
    CHECK_OK(photon_thread_interrupt(photon_thread_self(), CUSTOM_ERRNO));
    CHECK_ERRNO(photon_pread(g_fd, buf, 4, 0), CUSTOM_ERRNO);
    CHECK(photon_pread(g_fd, buf, 4, 0) == 4 && buf[2] == byte_at(2), "the read after the interrupt");
    CHECK(photon_pread(g_fd, buf, 4, SIZE) == 0, "a read at the end");
    CHECK(photon_pread(g_fd, buf, 4, SIZE + 100) == 0, "a read past the end");
    CHECK(photon_pread(g_fd, buf, 4, SIZE - 2) == 2, "a read across the end");
    CHECK(photon_pread(g_fd, buf, 0, 0) == 0, "a read of 0 bytes");
    size_t big = 2 * MIB + 5;
    unsigned char *all = malloc(big);
    CHECK(all != NULL, "malloc");
    CHECK(photon_pread(g_fd, all, big, 7) == (ssize_t)big && holds(all, 7, big), "a read of 2 MiB");
    CHECK(photon_pread(g_fd, all, big, 2 * MIB) == SIZE - 2 * MIB && holds(all, 2 * MIB, SIZE - 2 * MIB),
          "a read of 2 MiB across the end");
    free(all);
    CHECK(position() == pos, "photon_pread moved the file position");
    SAY("photon_pread on a known, cached fd: EINVAL, EFAULT, EBADF, the interrupt, the end of the file and "
        "big reads as the general path has them");
}

static void contract_read(void) {
    unsigned char buf[BLOCK];
    CHECK(lseek(g_fd, 100, SEEK_SET) == 100, "lseek");
    CHECK(photon_read(g_fd, buf, 16, PHOTON_FOREVER) == 16 && holds(buf, 100, 16), "a plain read");
    CHECK(position() == 116, "the position after a read of 16: %lld", (long long)position());
    CHECK(photon_read(g_fd, buf, BLOCK, 1000000) == BLOCK && holds(buf, 116, BLOCK), "a read with a time limit");
    CHECK(position() == 116 + BLOCK, "the position after a read of a block");
    if (!(engine_is("io_uring") && io_feature_listed("PHOTON_IO_OFF", "cached_read"))) {
        /* From the page cache nothing waits: no time to wait is enough (the
         * epoll engine's helper-thread read used to give up at once). */
        CHECK(photon_read(g_fd, buf, 4, 0) == 4 && holds(buf, 116 + BLOCK, 4), "a read with no time to wait");
        CHECK(lseek(g_fd, -4, SEEK_CUR) == 116 + BLOCK, "lseek back");
    }
    CHECK(lseek(g_fd, -12, SEEK_CUR) == 104 + BLOCK, "lseek back");
    CHECK(photon_read(g_fd, buf, 5, PHOTON_FOREVER) == 5 && holds(buf, 104 + BLOCK, 5), "a read after lseek");
    CHECK(position() == 109 + BLOCK, "the position after lseek and a read");
    /* Errors move nothing. */
    CHECK_ERRNO(photon_read(g_fd, NULL, 4, PHOTON_FOREVER), EINVAL);
    CHECK_ERRNO(photon_read(g_fd, (void *)(uintptr_t)((1ULL << 48) - 2), 4, PHOTON_FOREVER), EFAULT);
    CHECK_ERRNO(photon_read(g_fd, (void *)(uintptr_t)0xffff800000000000ULL, 4, PHOTON_FOREVER), EFAULT);
    CHECK_ERRNO(photon_read(g_fd, buf, SIZE_MAX, PHOTON_FOREVER), EFAULT);
    CHECK_ERRNO(photon_read(-1, buf, 4, PHOTON_FOREVER), EBADF);
    int d = closed_known_fd();
    CHECK_ERRNO(photon_read(d, buf, 4, PHOTON_FOREVER), EBADF);
    CHECK_ERRNO(photon_close(d), EBADF);
    CHECK_OK(photon_thread_interrupt(photon_thread_self(), CUSTOM_ERRNO));
    CHECK_ERRNO(photon_read(g_fd, buf, 4, PHOTON_FOREVER), CUSTOM_ERRNO);
    CHECK(position() == 109 + BLOCK, "the errors moved the position to %lld", (long long)position());
    CHECK(photon_read(g_fd, buf, 4, PHOTON_FOREVER) == 4 && holds(buf, 109 + BLOCK, 4), "the read after the interrupt");
    CHECK(photon_read(g_fd, buf, 0, PHOTON_FOREVER) == 0 && position() == 113 + BLOCK, "a read of 0 bytes");
    /* Photon_pread and photon_preadv in between leave the position alone. */
    struct iovec one = {buf, 8};
    CHECK(photon_pread(g_fd, buf, 8, 0) == 8 && photon_preadv(g_fd, &one, 1, 0) == 8, "positioned reads");
    CHECK(position() == 113 + BLOCK, "positioned reads moved the position");
    size_t big = 2 * MIB + 5;
    unsigned char *all = malloc(big);
    CHECK(all != NULL, "malloc");
    CHECK(lseek(g_fd, 7, SEEK_SET) == 7, "lseek");
    CHECK(photon_read(g_fd, all, big, PHOTON_FOREVER) == (ssize_t)big && holds(all, 7, big), "a read of 2 MiB");
    CHECK(position() == 7 + (off_t)big, "the position after a read of 2 MiB");
    ssize_t rest = SIZE - 7 - (ssize_t)big;
    CHECK(photon_read(g_fd, all, big, PHOTON_FOREVER) == rest && holds(all, 7 + (off_t)big, (size_t)rest),
          "a read of 2 MiB across the end");
    CHECK(position() == SIZE, "the position at the end");
    free(all);
    CHECK(photon_read(g_fd, buf, 4, PHOTON_FOREVER) == 0 && position() == SIZE, "a read at the end");
    CHECK(lseek(g_fd, SIZE + 100, SEEK_SET) == SIZE + 100, "lseek past the end");
    CHECK(photon_read(g_fd, buf, 4, PHOTON_FOREVER) == 0 && position() == SIZE + 100, "a read past the end");
    CHECK(lseek(g_fd, -2, SEEK_END) == SIZE - 2, "lseek");
    CHECK(photon_read(g_fd, buf, 4, PHOTON_FOREVER) == 2 && holds(buf, SIZE - 2, 2), "a read across the end");
    CHECK(position() == SIZE, "the position after a read across the end");
    SAY("photon_read on a known, cached fd: EINVAL, EFAULT, EBADF, the interrupt, the end of the file, big "
        "reads and the file position as the general path has them");
}

static void contract_preadv(void) {
    unsigned char buf[BLOCK];
    static struct iovec many[1025];
    off_t pos = position();
    struct iovec iov[3] = {{buf, 10}, {buf + 10, 0}, {buf + 10, 6}};
    CHECK(photon_preadv(g_fd, iov, 3, 50) == 16 && holds(buf, 50, 16), "a plain read");
    CHECK_ERRNO(photon_preadv(g_fd, NULL, 1, 0), EINVAL);
    CHECK_ERRNO(photon_preadv(g_fd, iov, 3, -1), EINVAL);
    CHECK_ERRNO(photon_preadv(g_fd, iov, -1, 0), EINVAL);
    for (int i = 0; i < 1025; i++) many[i] = (struct iovec){buf + i % BLOCK, 1};
    CHECK(photon_preadv(g_fd, many, 1024, 0) == 1024, "IOV_MAX iovecs");
    CHECK_ERRNO(photon_preadv(g_fd, many, 1025, 0), EINVAL);
    struct iovec huge[2] = {{buf, SIZE_MAX / 2 + 1}, {buf, SIZE_MAX / 2 + 1}};
    CHECK_ERRNO(photon_preadv(g_fd, huge, 2, 0), EINVAL);
    struct iovec far[2] = {{buf, 4}, {(void *)(uintptr_t)((1ULL << 48) - 2), 4}};
    CHECK_ERRNO(photon_preadv(g_fd, far, 2, 0), EFAULT);
    CHECK_ERRNO(photon_preadv(-1, iov, 3, 0), EBADF);
    int d = closed_known_fd();
    CHECK_ERRNO(photon_preadv(d, iov, 3, 0), EBADF);
    CHECK_ERRNO(photon_close(d), EBADF);
    CHECK_OK(photon_thread_interrupt(photon_thread_self(), CUSTOM_ERRNO));
    CHECK_ERRNO(photon_preadv(g_fd, iov, 3, 0), CUSTOM_ERRNO);
    CHECK(photon_preadv(g_fd, iov, 3, 8) == 16 && holds(buf, 8, 16), "the read after the interrupt");
    CHECK(photon_preadv(g_fd, iov, 3, SIZE) == 0, "a read at the end");
    CHECK(photon_preadv(g_fd, iov, 3, SIZE + 100) == 0, "a read past the end");
    CHECK(photon_preadv(g_fd, iov, 3, SIZE - 2) == 2, "a read across the end");
    CHECK(photon_preadv(g_fd, iov, 0, 0) == 0, "no iovecs");
    struct iovec empty[2] = {{buf, 0}, {NULL, 0}};
    CHECK(photon_preadv(g_fd, empty, 2, 0) == 0, "iovecs of 0 bytes");
    size_t big = 2 * MIB + 5;
    unsigned char *all = malloc(big);
    CHECK(all != NULL, "malloc");
    struct iovec pieces[3] = {{all, 3}, {all + 3, MIB}, {all + 3 + MIB, big - 3 - MIB}};
    CHECK(photon_preadv(g_fd, pieces, 3, 7) == (ssize_t)big && holds(all, 7, big), "a read of 2 MiB");
    CHECK(photon_preadv(g_fd, pieces, 3, 2 * MIB) == SIZE - 2 * MIB && holds(all, 2 * MIB, SIZE - 2 * MIB),
          "a read of 2 MiB across the end");
    free(all);
    CHECK(position() == pos, "photon_preadv moved the file position");
    SAY("photon_preadv on a known, cached fd: EINVAL, EFAULT, EBADF, the interrupt, the end of the file and "
        "big reads as the general path has them");
}

static void contract_readv(void) {
    unsigned char buf[BLOCK];
    struct iovec iov[3] = {{buf, 10}, {buf + 10, 0}, {buf + 10, 6}};
    CHECK(lseek(g_fd, 100, SEEK_SET) == 100, "lseek");
    CHECK(photon_readv(g_fd, iov, 3, PHOTON_FOREVER) == 16 && holds(buf, 100, 16) && position() == 116,
          "a plain read");
    CHECK_ERRNO(photon_readv(g_fd, NULL, 1, PHOTON_FOREVER), EINVAL);
    CHECK_ERRNO(photon_readv(g_fd, iov, -1, PHOTON_FOREVER), EINVAL);
    struct iovec far[2] = {{buf, 4}, {(void *)(uintptr_t)((1ULL << 48) - 2), 4}};
    CHECK_ERRNO(photon_readv(g_fd, far, 2, PHOTON_FOREVER), EFAULT);
    CHECK_ERRNO(photon_readv(-1, iov, 3, PHOTON_FOREVER), EBADF);
    CHECK_OK(photon_thread_interrupt(photon_thread_self(), CUSTOM_ERRNO));
    CHECK_ERRNO(photon_readv(g_fd, iov, 3, PHOTON_FOREVER), CUSTOM_ERRNO);
    CHECK(position() == 116, "the interrupted read moved the position");
    CHECK(photon_readv(g_fd, iov, 3, PHOTON_FOREVER) == 16 && holds(buf, 116, 16), "the read after the interrupt");
    CHECK(photon_readv(g_fd, iov, 0, PHOTON_FOREVER) == 0 && position() == 132, "no iovecs");
    size_t big = 2 * MIB + 5;
    unsigned char *all = malloc(big);
    CHECK(all != NULL, "malloc");
    struct iovec pieces[3] = {{all, 3}, {all + 3, MIB}, {all + 3 + MIB, big - 3 - MIB}};
    CHECK(lseek(g_fd, 7, SEEK_SET) == 7, "lseek");
    CHECK(photon_readv(g_fd, pieces, 3, PHOTON_FOREVER) == (ssize_t)big && holds(all, 7, big) &&
              position() == 7 + (off_t)big,
          "a read of 2 MiB");
    CHECK(photon_readv(g_fd, pieces, 3, PHOTON_FOREVER) == SIZE - 7 - (ssize_t)big &&
              holds(all, 7 + (off_t)big, SIZE - 7 - big) && position() == SIZE,
          "a read of 2 MiB across the end");
    CHECK(photon_readv(g_fd, iov, 3, PHOTON_FOREVER) == 0 && position() == SIZE, "a read at the end");
    free(all);
    SAY("photon_readv on a known, cached fd: EINVAL, EFAULT, EBADF, the interrupt, the end of the file, big "
        "reads and the file position as the general path has them");
}

int main(void) {
    test_start("fs_read_budget");
    test_init();
    char dir[] = "/tmp/photon_fs_budget_XXXXXX";
    CHECK(mkdtemp(dir) != NULL, "mkdtemp: %s", strerror(errno));
    char path[128];
    snprintf(path, sizeof path, "%s/data", dir);
    g_fd = photon_open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    CHECK(g_fd >= 0, "photon_open: %s", strerror(errno));
    unsigned char *all = malloc(SIZE);
    CHECK(all != NULL, "malloc");
    for (off_t i = 0; i < SIZE; i++) all[i] = byte_at(i);
    CHECK(photon_pwrite(g_fd, all, SIZE, 0) == SIZE, "photon_pwrite: %s", strerror(errno));
    free(all);
    /* Written through the page cache: every block is there now. */
    fairness(PREAD);
    fairness(READ);
    fairness(PREADV);
    fairness(READV);
    contract_pread();
    contract_read();
    contract_preadv();
    contract_readv();
    CHECK_OK(photon_close(g_fd));
    CHECK_OK(photon_unlink(path));
    CHECK_OK(rmdir(dir));
    test_fini();
    printf("fs_read_budget: OK\n");
    return 0;
}
