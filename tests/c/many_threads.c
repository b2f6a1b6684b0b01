/*
 * Many threads: 100,000 threads created and joined, first in batches of
 * 1,000 alive at a time with the default stack, then all 100,000 alive at
 * once with 64 KiB stacks. Each returns its index; every value is checked.
 * Handles of joined threads stay stale (ESRCH) even while their slots or
 * memory serve new threads. Stacks share mappings: with all 100,000 alive
 * the process holds far fewer mappings than threads (the kernel's default
 * vm.max_map_count, 65530, is never raised).
 */
#include "check.h"

#define TOTAL 100000
#define BATCH 1000
#define SMALL_STACK (64 * 1024)

static photon_thread *threads[TOTAL];
static photon_thread *first_batch[BATCH]; /* stale once joined */
static int started;
static int finished;

static void *return_index(void *arg) {
    started++;
    photon_thread_yield(); /* every thread switches at least twice */
    finished++;
    return arg;
}

static long max_map_count(void) {
    long n = -1;
    FILE *f = fopen("/proc/sys/vm/max_map_count", "r");
    if (f != NULL) {
        if (fscanf(f, "%ld", &n) != 1) {
            n = -1;
        }
        fclose(f);
    }
    return n;
}

/* Memory mappings of this process now (lines of /proc/self/maps). */
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

static void create_joinable(int i, size_t stack_size) {
    errno = 0;
    threads[i] = photon_thread_create(return_index, (void *)(uintptr_t)i, stack_size);
    int err = errno;
    CHECK(threads[i] != NULL,
          "photon_thread_create #%d (stack %zu): NULL with errno %d (%s); "
          "vm.max_map_count is %ld", i, stack_size, err, strerror(err), max_map_count());
    errno = 0;
    int ret = photon_thread_enable_join(threads[i]);
    err = errno;
    CHECK(ret == 0, "enable_join #%d: got %d with errno %d (%s)", i, ret, err, strerror(err));
}

static void join_expecting_index(int i) {
    void *ret = (void *)(uintptr_t)0xdeadbeef;
    errno = 0;
    int rc = photon_thread_join(threads[i], &ret);
    int err = errno;
    CHECK(rc == 0, "join #%d: got %d with errno %d (%s)", i, rc, err, strerror(err));
    CHECK((uintptr_t)ret == (uintptr_t)i, "thread #%d returned %p", i, ret);
}

int main(void) {
    test_start("many_threads");
    /* Creating 100,000 threads in one go keeps main on the CPU for over a
     * second on purpose: no stall warning for that. */
    setenv("PHOTON_STALL_MS", "0", 1);
    test_init();

    SAY("%d threads in batches of %d (default stack)", TOTAL, BATCH);
    uint64_t t0 = photon_now_us();
    for (int base = 0; base < TOTAL; base += BATCH) {
        for (int i = base; i < base + BATCH; i++) {
            create_joinable(i, 0);
        }
        for (int i = base; i < base + BATCH; i++) {
            join_expecting_index(i);
        }
        if (base == 0) {
            memcpy(first_batch, threads, sizeof first_batch);
        }
    }
    CHECK(started == TOTAL && finished == TOTAL, "started %d, finished %d", started, finished);
    SAY("  took %" PRIu64 " ms", elapsed_us(t0) / 1000);

    SAY("%d threads alive at once (%d KiB stacks)", TOTAL, SMALL_STACK / 1024);
    long maps_before = mappings();
    started = finished = 0;
    t0 = photon_now_us();
    for (int i = 0; i < TOTAL; i++) {
        create_joinable(i, SMALL_STACK);
    }
    CHECK(started == 0, "%d threads ran before main yielded", started);
    photon_thread_yield(); /* all start, and all are alive in their first yield */
    CHECK(started == TOTAL, "after one yield of main, %d of %d threads started", started,
          TOTAL);
    CHECK(finished == 0, "%d threads finished while main was away", finished);
    long maps_alive = mappings();
    SAY("  memory mappings: %ld before, %ld with %d threads alive", maps_before, maps_alive, TOTAL);
    CHECK(maps_alive - maps_before < TOTAL / 100, "%ld mappings for %d stacks",
          maps_alive - maps_before, TOTAL);
    /* The first batch's slots or memory may now hold live threads: a stale
     * handle must still be told apart from them. */
    for (int i = 0; i < BATCH; i++) {
        CHECK_ERRNO(photon_thread_enable_join(first_batch[i]), ESRCH);
        CHECK_ERRNO(photon_thread_interrupt(first_batch[i], EINTR), ESRCH);
    }
    for (int i = 0; i < TOTAL; i++) {
        join_expecting_index(i);
    }
    CHECK(finished == TOTAL, "finished %d", finished);
    SAY("  took %" PRIu64 " ms", elapsed_us(t0) / 1000);

    SAY("handles of joined threads are stale: enable_join/interrupt give ESRCH");
    for (int i = 0; i < TOTAL; i += 997) {
        CHECK_ERRNO(photon_thread_enable_join(threads[i]), ESRCH);
        CHECK_ERRNO(photon_thread_interrupt(threads[i], ECANCELED), ESRCH);
    }

    test_fini();
    SAY("many_threads: OK");
    return 0;
}
