/*
 * A million threads: 1,000,000 joinable photon threads (32 KiB stacks)
 * alive at once on one vcpu, each asleep in photon_thread_usleep(FOREVER),
 * on the machine's own vm.max_map_count (read, never raised). Creation must
 * not stop short; the process must hold fewer memory mappings than the
 * kernel's default limit (65530) would allow, whatever this machine's limit
 * is, and at most 8 KiB of resident memory per thread. Then every thread
 * but one is interrupted with ECANCELED and joined (each returns its index),
 * and the last one, interrupted with EOVERFLOW, recurses until its stack
 * overflows: the process must die by SIGABRT with the named message (the
 * harness in tests/c_api.rs checks that).
 *
 * Needs about 6 GB of memory: with less available it says so and exits 0
 * (a notice, not a pass of the checks).
 */
#include "check.h"

#define TOTAL 1000000
#define STACK (32 * 1024)
#define STOCK_MAP_COUNT 65530L
#define OVERFLOWER (TOTAL - 1)

static photon_thread **threads;
static long asleep;
static long woken;

static volatile int stop_depth = 1 << 30;

static int recurse(int depth) {
    volatile char frame[512];
    frame[0] = (char)depth;
    frame[sizeof frame - 1] = (char)(depth >> 8);
    if (depth >= stop_depth) {
        return frame[0];
    }
    return recurse(depth + 1) + frame[0] + frame[sizeof frame - 1];
}

static void *sleeper(void *arg) {
    asleep++;
    int r = photon_thread_usleep(PHOTON_FOREVER);
    int err = errno;
    woken++;
    if (r == -1 && err == EOVERFLOW) {
        printf("thread #%ld: recursing on its %d-byte stack\n", (long)(intptr_t)arg, STACK);
        return (void *)(intptr_t)recurse(0);
    }
    CHECK(r == -1 && err == ECANCELED, "thread #%ld: usleep gave %d, errno %d", (long)(intptr_t)arg,
          r, err);
    return arg;
}

static long read_long(const char *path, const char *field) {
    FILE *f = fopen(path, "r");
    CHECK(f != NULL, "open %s", path);
    long v = -1;
    char line[256];
    size_t n = field ? strlen(field) : 0;
    while (fgets(line, sizeof line, f)) {
        if (!field || strncmp(line, field, n) == 0) {
            v = strtol(line + n, NULL, 10);
            break;
        }
    }
    fclose(f);
    return v;
}

static long mappings(void) {
    FILE *f = fopen("/proc/self/maps", "r");
    CHECK(f != NULL, "open /proc/self/maps");
    long n = 0;
    int c;
    while ((c = fgetc(f)) != EOF) {
        n += c == '\n';
    }
    fclose(f);
    return n;
}

int main(void) {
    test_start("million_threads");
    long avail_kb = read_long("/proc/meminfo", "MemAvailable:");
    if (avail_kb < 6L * 1024 * 1024) {
        printf("NOTICE: only %ld MiB available, 6 GiB needed: not run\n", avail_kb / 1024);
        return 0;
    }
    long max_maps = read_long("/proc/sys/vm/max_map_count", NULL);
    SAY("vm.max_map_count is %ld (left as it is); the kernel's default is %ld", max_maps,
        STOCK_MAP_COUNT);
    test_init();
    threads = malloc(sizeof *threads * TOTAL);
    CHECK(threads != NULL, "malloc");
    memset(threads, 0, sizeof *threads * TOTAL);
    long maps0 = mappings();
    long rss0 = read_long("/proc/self/status", "VmRSS:");

    uint64_t t0 = photon_now_us();
    for (long i = 0; i < TOTAL; i++) {
        errno = 0;
        threads[i] = photon_thread_create(sleeper, (void *)(intptr_t)i, STACK);
        int err = errno;
        CHECK(threads[i] != NULL,
              "photon_thread_create stopped short at #%ld of %d: errno %d (%s); %ld mappings, "
              "vm.max_map_count %ld",
              i, TOTAL, err, strerror(err), mappings(), max_maps);
        CHECK_OK(photon_thread_enable_join(threads[i]));
    }
    uint64_t created = elapsed_us(t0);
    photon_thread_yield(); /* every thread runs to its usleep */
    CHECK(asleep == TOTAL, "%ld of %d threads reached their sleep", asleep, TOTAL);
    long maps1 = mappings();
    long rss1 = read_long("/proc/self/status", "VmRSS:");
    long per_thread = (rss1 - rss0) * 1024 / TOTAL;
    SAY("%d threads asleep: created in %" PRIu64 " ms; %ld memory mappings (%ld before); "
        "%ld bytes resident per thread",
        TOTAL, created / 1000, maps1, maps0, per_thread);
    CHECK(maps1 < STOCK_MAP_COUNT / 2, "%ld mappings: would not fit the default vm.max_map_count",
          maps1);
    CHECK(per_thread <= 8192, "%ld bytes resident per sleeping thread (at most 8192)", per_thread);

    t0 = photon_now_us();
    for (long i = 0; i < TOTAL; i++) {
        if (i != OVERFLOWER) CHECK_OK(photon_thread_interrupt(threads[i], ECANCELED));
    }
    for (long i = 0; i < TOTAL; i++) {
        if (i != OVERFLOWER) CHECK(join_ok(threads[i]) == (void *)(intptr_t)i, "thread #%ld's value", i);
    }
    CHECK(woken == TOTAL - 1, "%ld threads woke", woken);
    SAY("%d threads interrupted and joined in %" PRIu64 " ms; %ld mappings now", TOTAL - 1,
        elapsed_us(t0) / 1000, mappings());

    CHECK_OK(photon_thread_interrupt(threads[OVERFLOWER], EOVERFLOW));
    join_ok(threads[OVERFLOWER]);
    fprintf(stderr, "million_threads: the unbounded recursion returned\n");
    return 3;
}
