/*
 * The common case of photon_pread (a buffered file already known, its pages
 * cached, no interrupt pending: one preadv2(RWF_NOWAIT) on the vcpu) keeps
 * every rule of the general path.
 *
 * 1. Fairness: such reads never wait, so each counts against the vcpu's I/O
 *    budget, which polls timers and events every 64 calls and yields after
 *    64 in a row. Beside a thread that loops photon_pread on a cached file
 *    for 300 ms, a 10 ms sleeper wakes in under 100 ms (less the time the
 *    OS kept the vcpu from a CPU) and a thread that keeps yielding gets at
 *    least 100 turns. The reads went to the engine only where
 *    PHOTON_IO_OFF=cached_read under io_uring says so.
 * 2. The errno contract on that same known, cached fd: a NULL buffer and a
 *    negative offset give EINVAL, a buffer reaching past the user address
 *    space EFAULT, a pending interrupt fails the next read (only that one);
 *    a read at or past the end gives 0, of 0 bytes 0, of more than 1 MiB
 *    (in pieces) the whole file.
 */
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"

#define BLOCK 4096
#define NBLOCKS 64
#define SIZE (NBLOCKS * BLOCK)
#define READ_US 300000
#define SLEEP_US 10000
#define CUSTOM_ERRNO 4242

static int g_fd;
static volatile int g_reading;
static uint64_t g_reads, g_turns, g_slept_us, g_delay_us;

static unsigned char byte_at(off_t pos) {
    uint64_t x = (uint64_t)pos * 0x9E3779B97F4A7C15ULL;
    return (unsigned char)(x ^ (x >> 29));
}

static void *reader(void *arg) {
    (void)arg;
    unsigned char buf[BLOCK];
    uint64_t t0 = photon_now_us();
    for (uint64_t i = 0; elapsed_us(t0) < READ_US; i++) {
        int b = (int)(i * 7 % NBLOCKS);
        ssize_t n = photon_pread(g_fd, buf, BLOCK, (off_t)b * BLOCK);
        CHECK(n == BLOCK, "photon_pread of block %d: %zd (%s)", b, n, strerror(errno));
        CHECK(buf[5] == byte_at((off_t)b * BLOCK + 5), "block %d: wrong bytes", b);
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

static void fairness(void) {
    int engine_reads = engine_is("io_uring") && io_feature_listed("PHOTON_IO_OFF", "cached_read");
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
    SAY("%llu reads in %d ms (%llu by the engine); the %d ms sleeper woke after %.1f ms (%.1f ms "
        "kept from a CPU); the yielder had %llu turns",
        (unsigned long long)g_reads, READ_US / 1000, (unsigned long long)to_engine, SLEEP_US / 1000,
        g_slept_us / 1000.0, g_delay_us / 1000.0, (unsigned long long)g_turns);
    CHECK(g_slept_us - (g_delay_us < g_slept_us ? g_delay_us : 0) < 100000,
          "the sleeper starved beside the reader: woke after %.1f ms", g_slept_us / 1000.0);
    CHECK(g_turns >= 100, "the yielder starved beside the reader: %llu turns",
          (unsigned long long)g_turns);
    if (engine_reads)
        CHECK(to_engine >= g_reads, "cached_read off: %llu of %llu reads went to the engine",
              (unsigned long long)to_engine, (unsigned long long)g_reads);
    else
        CHECK(to_engine == 0, "%llu of %llu cached reads went to the engine",
              (unsigned long long)to_engine, (unsigned long long)g_reads);
}

static void contract(void) {
    unsigned char buf[BLOCK];
    CHECK(photon_pread(g_fd, buf, 16, 0) == 16 && buf[3] == byte_at(3), "a plain read");
    CHECK_ERRNO(photon_pread(g_fd, NULL, 4, 0), EINVAL);
    CHECK_ERRNO(photon_pread(g_fd, buf, 4, -1), EINVAL);
    CHECK_ERRNO(photon_pread(g_fd, buf, 4, INT64_MIN), EINVAL);
    /* Reaching past the user address space (47 bits on x86-64, 48 on aarch64). */
    CHECK_ERRNO(photon_pread(g_fd, (void *)(uintptr_t)((1ULL << 48) - 2), 4, 0), EFAULT);
    CHECK_ERRNO(photon_pread(g_fd, (void *)(uintptr_t)0xffff800000000000ULL, 4, 0), EFAULT);
    CHECK_ERRNO(photon_pread(g_fd, buf, SIZE_MAX, 0), EFAULT);
    CHECK_OK(photon_thread_interrupt(photon_thread_self(), CUSTOM_ERRNO));
    CHECK_ERRNO(photon_pread(g_fd, buf, 4, 0), CUSTOM_ERRNO);
    CHECK(photon_pread(g_fd, buf, 4, 0) == 4 && buf[2] == byte_at(2), "the read after the interrupt");
    CHECK(photon_pread(g_fd, buf, 4, SIZE) == 0, "a read at the end");
    CHECK(photon_pread(g_fd, buf, 4, SIZE + 100) == 0, "a read past the end");
    CHECK(photon_pread(g_fd, buf, 4, SIZE - 2) == 2, "a read across the end");
    CHECK(photon_pread(g_fd, buf, 0, 0) == 0, "a read of 0 bytes");
    size_t big = (2 << 20) + 5;
    unsigned char *all = malloc(big);
    CHECK(all != NULL, "malloc");
    CHECK(photon_pread(g_fd, all, big, 0) == SIZE, "a read of 2 MiB: the whole file");
    CHECK(all[SIZE - 1] == byte_at(SIZE - 1), "the whole file's last byte");
    free(all);
    SAY("on a known, cached fd: EINVAL, EFAULT, the interrupt, the end of the file and a big read as "
        "the general path has them");
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
    fairness();
    contract();
    CHECK_OK(photon_close(g_fd));
    CHECK_OK(photon_unlink(path));
    CHECK_OK(rmdir(dir));
    test_fini();
    printf("fs_read_budget: OK\n");
    return 0;
}
