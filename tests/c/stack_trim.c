/*
 * Memory goes back when idle: 1,000 photon threads, each touching 32 KiB
 * of its stack, are alive at once and then end; their stacks stay pooled
 * (resident) while the vcpu keeps creating threads, and once the vcpu has
 * had nothing to do for PHOTON_STACK_TRIM_MS (set to 300 here) it gives
 * them back: the process's RSS must drop to within 2x of what it was
 * before the load. Then the same load again, and photon_trim() gives the
 * memory back at once (it returns the stack address space it unmapped).
 */
#include <unistd.h>

#include "check.h"

#define THREADS 1000
#define TOUCH (32 * 1024)

static long rss_kb(void) {
    FILE *f = fopen("/proc/self/status", "r");
    CHECK(f != NULL, "open /proc/self/status");
    char line[256];
    long kb = -1;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "VmRSS:", 6) == 0) {
            kb = strtol(line + 6, NULL, 10);
            break;
        }
    }
    fclose(f);
    return kb;
}

static void *toucher(void *arg) {
    volatile char buf[TOUCH];
    for (size_t i = 0; i < sizeof buf; i += 512) buf[i] = (char)i;
    CHECK_OK(photon_thread_usleep(1000));
    return (void *)(uintptr_t)(buf[512] + (intptr_t)arg);
}

static void load(void) {
    static photon_thread *th[THREADS];
    for (int i = 0; i < THREADS; i++) th[i] = spawn_joinable(toucher, NULL, 0);
    for (int i = 0; i < THREADS; i++) join_ok(th[i]);
}

int main(void) {
    setenv("PHOTON_STACK_TRIM_MS", "300", 1);
    test_start("stack_trim");
    test_init();
#if defined(__SANITIZE_ADDRESS__)
    int checked = 0; /* AddressSanitizer's shadow of the stacks stays resident */
#else
    int checked = 1;
#endif
    long before = rss_kb();
    load();
    long loaded = rss_kb();
    SAY("RSS before the load %ld KiB, after %d threads ended %ld KiB", before, THREADS, loaded);
    CHECK(loaded > before + THREADS * TOUCH / 1024 / 2, "the load did not show in RSS (%ld -> %ld KiB)", before,
          loaded);

    CHECK_OK(photon_thread_usleep(1000 * 1000)); /* idle: the pool is trimmed */
    long idle = rss_kb();
    SAY("after 1 s idle: %ld KiB (limit %ld KiB)", idle, 2 * before);
    if (checked) CHECK(idle <= 2 * before, "idle RSS %ld KiB > 2 x %ld KiB", idle, before);

    load();
    long again = rss_kb();
    size_t cleaned = photon_trim();
    long trimmed = rss_kb();
    SAY("load again: %ld KiB; photon_trim() gave back %zu bytes of stack address space: %ld KiB", again, cleaned, trimmed);
    CHECK(cleaned >= (size_t)THREADS * TOUCH / 2, "photon_trim unmapped only %zu bytes", cleaned);
    if (checked) CHECK(trimmed <= 2 * before, "RSS after photon_trim %ld KiB > 2 x %ld KiB", trimmed, before);
    size_t again_cleaned = photon_trim();
    CHECK(again_cleaned == 0, "a second photon_trim unmapped %zu bytes: nothing was left", again_cleaned);

    test_fini();
    SAY("stack_trim: OK");
    return 0;
}
