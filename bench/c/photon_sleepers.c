/* libphoton: memory per sleeping photon thread, with COUNT threads alive on
 * one vcpu, each blocked in photon_thread_usleep(PHOTON_FOREVER).
 * Reads VmRSS and VmPTE from /proc/self/status before creating them and once
 * all are asleep, and prints the differences divided by COUNT; then
 * interrupts every thread with ECANCELED, checks that each one's usleep
 * returned -1/ECANCELED, lets them all end, and calls photon_fini.
 * Stacks are carved from shared mappings: vm.max_map_count is read and
 * left as it is, and the number of mappings at the peak is printed (it
 * must stay below the kernel's default limit, 65530, whatever this
 * machine's limit is).
 * Usage: photon_sleepers COUNT STACK_SIZE   (STACK_SIZE 0 = library default) */
#include <photon.h>

#include "bench_common.h"

#define STOCK_MAP_COUNT 65530L

static uint64_t g_asleep;    /* threads that reached their usleep */
static uint64_t g_canceled;  /* threads whose usleep returned -1/ECANCELED */
static uint64_t g_ended;     /* threads past their usleep */

static void* sleeper(void* arg) {
    (void)arg;
    g_asleep++;
    int r = photon_thread_usleep(PHOTON_FOREVER);
    if (r == -1 && errno == ECANCELED) g_canceled++;
    g_ended++;
    return NULL;
}

/* Value in kB of field `name` ("VmRSS:") of /proc/self/status, or -1. */
static long status_kb(const char* name) {
    FILE* f = fopen("/proc/self/status", "r");
    if (!f) return -1;
    char line[256];
    long kb = -1;
    size_t len = strlen(name);
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, name, len) == 0) {
            kb = strtol(line + len, NULL, 10);
            break;
        }
    }
    fclose(f);
    return kb;
}

static long read_map_count(void) {
    FILE* f = fopen("/proc/sys/vm/max_map_count", "r");
    if (!f) return -1;
    long v = -1;
    if (fscanf(f, "%ld", &v) != 1) v = -1;
    fclose(f);
    return v;
}

static long mappings(void) {
    FILE* f = fopen("/proc/self/maps", "r");
    if (!f) BENCH_DIE("open /proc/self/maps");
    long n = 0;
    int c;
    while ((c = fgetc(f)) != EOF) n += c == '\n';
    fclose(f);
    return n;
}

int main(int argc, char** argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s COUNT STACK_SIZE\n", argv[0]);
        return 2;
    }
    uint64_t count = strtoull(argv[1], NULL, 10);
    size_t stack_size = (size_t)strtoull(argv[2], NULL, 10);
    if (count == 0) {
        errno = EINVAL;
        BENCH_DIE("COUNT must be > 0");
    }
    long max_maps = read_map_count();
    setvbuf(stdout, NULL, _IOLBF, 0);

    if (photon_init(PHOTON_EVENT_DEFAULT, 0) != 0) BENCH_DIE("photon_init");
    const char* engine = photon_engine_name();

    /* The handle array is ours, not the library's: commit it before the
     * first reading so it is not counted. */
    photon_thread** handles = malloc(count * sizeof *handles);
    if (!handles) BENCH_DIE("malloc");
    memset(handles, 0xff, count * sizeof *handles);
    (void)status_kb("VmRSS:");
    long rss0 = status_kb("VmRSS:"), pte0 = status_kb("VmPTE:");
    if (rss0 < 0 || pte0 < 0) BENCH_DIE("cannot read VmRSS/VmPTE from /proc/self/status");

    double t0 = bench_now_s();
    for (uint64_t i = 0; i < count; i++) {
        handles[i] = photon_thread_create(sleeper, NULL, stack_size);
        if (!handles[i])
            BENCH_DIE("photon_thread_create failed at thread #%llu of %llu (stack size %zu)",
                      (unsigned long long)i, (unsigned long long)count, stack_size);
    }
    double t_created = bench_now_s();
    /* One vcpu, cooperative: when main runs again, every thread that counted
     * itself asleep is blocked in its usleep. */
    uint64_t rounds = 0;
    while (g_asleep < count) {
        photon_thread_yield();
        if (++rounds > 1000000) {
            errno = 0;
            BENCH_DIE("only %llu of %llu threads reached usleep", (unsigned long long)g_asleep,
                      (unsigned long long)count);
        }
    }
    double t_asleep = bench_now_s();
    long rss1 = status_kb("VmRSS:"), pte1 = status_kb("VmPTE:"), vsz = status_kb("VmSize:");
    long maps = mappings();
    if (maps >= STOCK_MAP_COUNT) {
        errno = 0;
        BENCH_DIE("%ld mappings with %llu threads alive: over the kernel's default vm.max_map_count", maps,
                  (unsigned long long)count);
    }
    if (rss1 < 0 || pte1 < 0) BENCH_DIE("cannot read VmRSS/VmPTE from /proc/self/status");

    for (uint64_t i = 0; i < count; i++)
        if (photon_thread_interrupt(handles[i], ECANCELED) != 0)
            BENCH_DIE("photon_thread_interrupt of thread #%llu", (unsigned long long)i);
    rounds = 0;
    while (g_ended < count) {
        photon_thread_yield();
        if (++rounds > 1000000) {
            errno = 0;
            BENCH_DIE("only %llu of %llu threads woke up after the interrupt",
                      (unsigned long long)g_ended, (unsigned long long)count);
        }
    }
    double t_ended = bench_now_s();
    if (g_canceled != count) {
        errno = 0;
        BENCH_DIE("%llu of %llu threads' usleep did not return -1/ECANCELED",
                  (unsigned long long)(count - g_canceled), (unsigned long long)count);
    }
    if (photon_fini() != 0) BENCH_DIE("photon_fini");
    double t_fini = bench_now_s();
    free(handles);

    double rss_b = (double)(rss1 - rss0) * 1024.0 / (double)count;
    double pte_b = (double)(pte1 - pte0) * 1024.0 / (double)count;
    printf("INFO libphoton %s, engine %s, %llu threads, stack size %zu: VmRSS %ld -> %ld kB, "
           "VmPTE %ld -> %ld kB, VmSize %ld kB; create %.2f s, run to sleep %.2f s, "
           "interrupt+end %.2f s, fini %.2f s\n",
           photon_version(), engine ? engine : "?", (unsigned long long)count, stack_size, rss0,
           rss1, pte0, pte1, vsz, t_created - t0, t_asleep - t_created, t_ended - t_asleep,
           t_fini - t_ended);
    printf("RESULT rss=%.1f pte=%.1f unit=bytes/thread create_per_s=%.0f create_s=%.3f maps=%ld "
           "max_map_count=%ld count=%llu engine=%s\n",
           rss_b, pte_b, (double)count / (t_created - t0), t_created - t0, maps, max_maps,
           (unsigned long long)count, engine ? engine : "?");
    return 0;
}
