/*
 * File I/O never stalls the vcpu: while one photon thread writes 256 MiB
 * (1 MiB pwrites) and then fsyncs, a ticker photon thread on the same vcpu
 * calls photon_thread_usleep(1000) in a loop and records the largest gap
 * between ticks. No gap may exceed 20 ms (a write or fsync run on the vcpu
 * itself would stall it for far longer). Time the vcpu's OS thread spent
 * waiting for a CPU within a gap (run_delay in /proc/thread-self/schedstat:
 * a machine busy with other work) is not photon's and is taken out of that
 * gap; a write or fsync run on the vcpu would sleep in the kernel, which
 * run_delay does not count. The file's size and a sample of its contents
 * are checked afterwards.
 */
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"

#define MIB (1 << 20)
#define TOTAL_MIB 256
#define MAX_GAP_US 20000ULL

static volatile int g_phase; /* 0 writing, 1 fsync, 2 done */
static uint64_t g_max_gap[2], g_raw_gap[2], g_ticks[2];
static int g_fd;

static void *ticker_main(void *arg) {
    (void)arg;
    uint64_t last = photon_now_us(), last_delay = thread_run_delay_us();
    while (g_phase < 2) {
        int phase = g_phase;
        CHECK_OK(photon_thread_usleep(1000));
        uint64_t now = photon_now_us(), delay = thread_run_delay_us();
        uint64_t raw = now - last, os = delay - last_delay;
        uint64_t gap = raw > os ? raw - os : 0;
        last = now;
        last_delay = delay;
        if (gap > g_max_gap[phase]) g_max_gap[phase] = gap;
        if (raw > g_raw_gap[phase]) g_raw_gap[phase] = raw;
        g_ticks[phase]++;
    }
    return NULL;
}

static void fill(unsigned char *buf, int mib) {
    for (int i = 0; i < MIB; i += 8) {
        uint64_t v = ((uint64_t)mib << 32) | (uint64_t)i;
        memcpy(buf + i, &v, 8);
    }
}

static void *writer_main(void *arg) {
    (void)arg;
    unsigned char *buf = malloc(MIB);
    CHECK(buf != NULL, "malloc");
    uint64_t t0 = photon_now_us();
    for (int m = 0; m < TOTAL_MIB; m++) {
        fill(buf, m);
        ssize_t n = photon_pwrite(g_fd, buf, MIB, (off_t)m * MIB);
        CHECK(n == MIB, "pwrite of MiB %d = %zd: %s", m, n, strerror(errno));
    }
    uint64_t t1 = photon_now_us();
    g_phase = 1;
    CHECK_OK(photon_fsync(g_fd));
    uint64_t t2 = photon_now_us();
    g_phase = 2;
    SAY("wrote %d MiB in %llu ms (%.0f MB/s), fsync took %llu ms", TOTAL_MIB,
        (unsigned long long)(t1 - t0) / 1000, (double)TOTAL_MIB * MIB / (double)(t1 - t0),
        (unsigned long long)(t2 - t1) / 1000);
    free(buf);
    return NULL;
}

int main(void) {
    test_start("fs_liveness");
    test_init();
    char dir[] = "/tmp/photon_fs_liveness_XXXXXX";
    CHECK(mkdtemp(dir) != NULL, "mkdtemp: %s", strerror(errno));
    char path[128];
    snprintf(path, sizeof path, "%s/big", dir);
    g_fd = photon_open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    CHECK(g_fd >= 0, "photon_open: %s", strerror(errno));

    photon_thread *ticker = spawn_joinable(ticker_main, NULL, 0);
    photon_thread *writer = spawn_joinable(writer_main, NULL, 0);
    join_ok(writer);
    join_ok(ticker);
    SAY("ticker: %llu ticks while writing, largest gap %.2f ms (%.2f ms with waits for a CPU); "
        "%llu ticks during fsync, largest gap %.2f ms (%.2f ms)",
        (unsigned long long)g_ticks[0], g_max_gap[0] / 1000.0, g_raw_gap[0] / 1000.0,
        (unsigned long long)g_ticks[1], g_max_gap[1] / 1000.0, g_raw_gap[1] / 1000.0);
    CHECK(g_ticks[0] > 0, "the ticker never ran while the writer wrote");
    CHECK(g_max_gap[0] <= MAX_GAP_US, "gap of %.2f ms between ticks while writing (limit 20 ms)",
          g_max_gap[0] / 1000.0);
    CHECK(g_max_gap[1] <= MAX_GAP_US, "gap of %.2f ms between ticks during fsync (limit 20 ms)",
          g_max_gap[1] / 1000.0);

    struct stat st;
    CHECK_OK(photon_fstat(g_fd, &st));
    CHECK(st.st_size == (off_t)TOTAL_MIB * MIB, "size %lld", (long long)st.st_size);
    unsigned char *want = malloc(MIB), *got = malloc(MIB);
    CHECK(want && got, "malloc");
    const int samples[] = {0, 1, 77, 128, 200, TOTAL_MIB - 1};
    for (size_t i = 0; i < sizeof samples / sizeof samples[0]; i++) {
        int m = samples[i];
        fill(want, m);
        CHECK(photon_pread(g_fd, got, MIB, (off_t)m * MIB) == MIB, "pread MiB %d", m);
        CHECK(memcmp(want, got, MIB) == 0, "MiB %d differs", m);
    }
    free(want);
    free(got);
    CHECK_OK(photon_close(g_fd));
    CHECK_OK(photon_unlink(path));
    CHECK_OK(rmdir(dir));
    test_fini();
    SAY("fs_liveness: OK");
    return 0;
}
