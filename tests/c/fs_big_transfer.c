/*
 * One big buffered transfer does not stall the vcpu: while one photon
 * thread makes single 64 MiB calls on a file (photon_pwrite, photon_write
 * and photon_writev at the file position, photon_pread, photon_read,
 * photon_readv; the vectored ones over uneven iovecs), a ticker photon thread
 * on the same vcpu sleeps 1 ms in a loop and records the largest gap
 * between its ticks during each call. The library splits such calls into
 * 1 MiB pieces (the vcpu copies between the page cache and the caller's
 * buffer; in one piece a 64 MiB write stalled it for 14-112 ms). Between
 * two ticks the vcpu may spend at most 4 ms of its own CPU time (the aim
 * is 2 ms; CPU time, which other processes on a shared machine do not
 * inflate, measured with CLOCK_THREAD_CPUTIME_ID: every photon thread of a
 * vcpu runs on its OS thread), and at most 250 ms of wall time (this only
 * catches a vcpu blocked in the kernel for a whole call: on a machine
 * shared with builds, wall-time gaps of 100 ms come from the host alone).
 * A call over a limit is repeated, up to three attempts: a host's hiccup
 * does not come back each time, an unsplit call's stall does. Each call
 * must move all 64 MiB, and the data must read back.
 */
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "check.h"

#define MIB (1 << 20)
#define BIG (64 * MIB)
/* Under AddressSanitizer the instrumented ticker and the sanitizer's
 * runtime run on the vcpu too (4.1 ms measured on a clean clone), so the
 * bound doubles there; the data checks are the same. */
#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif
#ifdef UNDER_ASAN
#define MAX_CPU_GAP_US 8000ULL
#else
#define MAX_CPU_GAP_US 4000ULL
#endif
#define MAX_GAP_US 250000ULL

enum { PWRITE, WRITE, WRITEV, PREAD, READ, READV, CALLS };
static const char *const g_names[CALLS] = {"photon_pwrite", "photon_write", "photon_writev",
                                           "photon_pread",  "photon_read",  "photon_readv"};
#define MAX_TICKS 200000
static uint64_t g_tick[MAX_TICKS];  /* when each tick happened */
static uint64_t g_cpu[MAX_TICKS];   /* the vcpu's CPU time then */
static int g_nticks;
static volatile int g_done;
static uint64_t g_start[CALLS], g_end[CALLS]; /* when each call ran */
static int g_fd;

static void *ticker_main(void *arg) {
    (void)arg;
    while (!g_done && g_nticks < MAX_TICKS) {
        struct timespec ts;
        CHECK_OK(clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts));
        g_cpu[g_nticks] = (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
        g_tick[g_nticks++] = photon_now_us();
        CHECK_OK(photon_thread_usleep(1000));
    }
    return NULL;
}

/* The largest gap between ticks that overlaps call c (a call that stalled
 * the vcpu from start to end lies inside one gap), in wall time and in the
 * vcpu's CPU time, and the ticks inside the call. */
static void max_gap(int c, uint64_t *wall, uint64_t *cpu, int *inside) {
    *wall = *cpu = 0;
    *inside = 0;
    for (int i = 0; i + 1 < g_nticks; i++) {
        if (g_tick[i] >= g_start[c] && g_tick[i] <= g_end[c]) ++*inside;
        if (g_tick[i + 1] > g_start[c] && g_tick[i] < g_end[c]) {
            if (g_tick[i + 1] - g_tick[i] > *wall) *wall = g_tick[i + 1] - g_tick[i];
            if (g_cpu[i + 1] - g_cpu[i] > *cpu) *cpu = g_cpu[i + 1] - g_cpu[i];
        }
    }
}

static void fill(unsigned char *buf, size_t len, unsigned seed) {
    for (size_t i = 0; i < len; i += 8) {
        uint64_t v = ((uint64_t)seed << 40) ^ (uint64_t)i;
        memcpy(buf + i, &v, 8);
    }
}

/* Runs call c of 64 MiB on buf and returns its result. The vcpu's own
 * work (filling and checking 64 MiB) happens outside the timed window, with
 * a pause on each side so the ticker ticks just before and just after. */
static ssize_t timed(int c, unsigned char *buf) {
    /* uneven pieces: 3 MiB + 1 byte, 1 byte, 20 MiB - 2 bytes, the rest */
    struct iovec iov[4] = {{buf, 3 * MIB + 1},
                           {buf + 3 * MIB + 1, 1},
                           {buf + 3 * MIB + 2, 20 * MIB - 2},
                           {buf + 23 * MIB, BIG - 23 * MIB}};
    photon_thread_usleep(3000);
    ssize_t n = -1;
    g_start[c] = photon_now_us();
    switch (c) {
    case PWRITE: n = photon_pwrite(g_fd, buf, BIG, 0); break;
    case WRITE: n = photon_write(g_fd, buf, BIG, PHOTON_FOREVER); break;
    case PREAD: n = photon_pread(g_fd, buf, BIG, 0); break;
    case READ: n = photon_read(g_fd, buf, BIG, PHOTON_FOREVER); break;
    case WRITEV: n = photon_writev(g_fd, iov, 4, PHOTON_FOREVER); break;
    case READV: n = photon_readv(g_fd, iov, 4, PHOTON_FOREVER); break;
    }
    g_end[c] = photon_now_us();
    int e = errno;
    photon_thread_usleep(3000);
    errno = e;
    return n;
}

/* Whether call c's largest gap is within the limits. */
static int within_limits(int c) {
    uint64_t wall, cpu;
    int inside;
    max_gap(c, &wall, &cpu, &inside);
    if (cpu <= MAX_CPU_GAP_US && wall <= MAX_GAP_US) return 1;
    SAY("%s: a gap of %.2f ms (%.2f ms of vcpu CPU time) is over the limit", g_names[c],
        wall / 1000.0, cpu / 1000.0);
    return 0;
}

/* Runs call c at file offset off, up to ATTEMPTS times while its largest
 * gap is over the limits (a read first zeroes buf). An unsplit call stalls
 * the vcpu for the whole 64 MiB each time; a split one stalls only when the
 * host does (a CI run once gave one 6 ms gap among 37 ticks of a write),
 * and not three times in a row. main checks the last attempt. */
#define ATTEMPTS 3
static void run(int c, unsigned char *buf, off_t off) {
    for (int a = 1; a <= ATTEMPTS; a++) {
        if (c >= PREAD) memset(buf, 0, BIG);
        CHECK(lseek(g_fd, off, SEEK_SET) == off, "lseek");
        ssize_t n = timed(c, buf);
        CHECK(n == BIG, "%s of 64 MiB = %zd: %s", g_names[c], n, strerror(errno));
        if (within_limits(c)) return;
        if (a < ATTEMPTS) SAY("%s: attempt %d of %d, repeating it", g_names[c], a, ATTEMPTS);
    }
}

static void *worker_main(void *arg) {
    (void)arg;
    unsigned char *buf = malloc(BIG), *want = malloc(BIG);
    CHECK(buf && want, "malloc");

    /* photon_pwrite ignores the position; the others start where lseek put
     * it: three 64 MiB regions, read back in the same order */
    fill(buf, BIG, 1);
    run(PWRITE, buf, 0);
    fill(buf, BIG, 2);
    run(WRITE, buf, BIG);
    fill(buf, BIG, 3);
    run(WRITEV, buf, 2 * (off_t)BIG);

    run(PREAD, buf, 0);
    fill(want, BIG, 1);
    CHECK(memcmp(buf, want, BIG) == 0, "photon_pread: data differ");
    run(READ, buf, BIG);
    fill(want, BIG, 2);
    CHECK(memcmp(buf, want, BIG) == 0, "photon_read: data differ");
    run(READV, buf, 2 * (off_t)BIG);
    fill(want, BIG, 3);
    CHECK(memcmp(buf, want, BIG) == 0, "photon_readv: data differ");

    g_done = 1;
    free(buf);
    free(want);
    return NULL;
}

int main(void) {
    test_start("fs_big_transfer");
    test_init();
    char dir[] = "/tmp/photon_fs_big_XXXXXX";
    CHECK(mkdtemp(dir) != NULL, "mkdtemp: %s", strerror(errno));
    char path[128];
    snprintf(path, sizeof path, "%s/big", dir);
    g_fd = photon_open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    CHECK(g_fd >= 0, "photon_open: %s", strerror(errno));

    photon_thread *ticker = spawn_joinable(ticker_main, NULL, 0);
    photon_thread *worker = spawn_joinable(worker_main, NULL, 0);
    join_ok(worker);
    join_ok(ticker);
    uint64_t wall[CALLS], cpu[CALLS];
    for (int c = 0; c < CALLS; c++) {
        int inside;
        max_gap(c, &wall[c], &cpu[c], &inside);
        SAY("%s of 64 MiB took %.2f ms: %d ticks meanwhile, largest gap %.2f ms (%.2f ms of "
            "vcpu CPU time)",
            g_names[c], (g_end[c] - g_start[c]) / 1000.0, inside, wall[c] / 1000.0,
            cpu[c] / 1000.0);
    }
    for (int c = 0; c < CALLS; c++) {
        CHECK(cpu[c] <= MAX_CPU_GAP_US,
              "%s: the vcpu ran %.2f ms between two ticks (limit %.0f ms)", g_names[c],
              cpu[c] / 1000.0, MAX_CPU_GAP_US / 1000.0);
        CHECK(wall[c] <= MAX_GAP_US, "%s: a gap of %.2f ms between ticks (limit %.0f ms)",
              g_names[c], wall[c] / 1000.0, MAX_GAP_US / 1000.0);
    }
    CHECK_OK(photon_close(g_fd));
    CHECK_OK(unlink(path));
    CHECK_OK(rmdir(dir));
    return 0;
}
