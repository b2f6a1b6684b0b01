/* The OS-thread baseline: THREADS pthreads calling pread(2) (see
 * files_common.h for the command line and output); write mode is one
 * thread calling pwrite(2) then fsync(2). Same data checks and timing as
 * files_photon.c. With THREADS 1 the process's only thread reads (the
 * plain one-thread loop, the bar of the buffered target): a second thread,
 * even one asleep, would make the fd table shared and every pread take
 * the kernel's reference-counting fd lookup (see the library's
 * src/sched/private_fds.rs).
 *
 * FILES_READ=preadv2_nowait makes each read a preadv2(RWF_NOWAIT) of one
 * iovec, the call libphoton makes for a buffered read on a vcpu, with a
 * plain pread after an EAGAIN (a block not in the page cache; counted):
 * the one-thread loop of a read that never blocks, without the library. */
#include <pthread.h>
#include <stdatomic.h>
#include <sys/uio.h>

#include "files_common.h"

struct slot {
    _Alignas(64) atomic_uint_fast64_t ops; /* one cache line per thread */
};

static int g_fd;
static int g_nowait;                  /* FILES_READ=preadv2_nowait */
static atomic_uint_fast64_t g_eagain; /* its reads refused (not cached) */
static uint64_t g_blocks;
static struct slot* g_slots;
static atomic_int g_stop;
static atomic_int g_failed;
static long g_error_ret;
static int g_error_errno;

/* One checked read of a random block; 0 on a failure (recorded, and
 * every reader told to stop). */
static int read_one(uint64_t* seed, unsigned char* buf) {
    uint64_t b = files_rng(seed) % g_blocks;
    ssize_t n;
    if (g_nowait) {
        struct iovec iov = {buf, FILES_BLOCK};
        n = preadv2(g_fd, &iov, 1, (off_t)(b * FILES_BLOCK), RWF_NOWAIT);
        if (n < 0 && errno == EAGAIN) {
            atomic_fetch_add_explicit(&g_eagain, 1, memory_order_relaxed);
            n = pread(g_fd, buf, FILES_BLOCK, (off_t)(b * FILES_BLOCK));
        }
    } else {
        n = pread(g_fd, buf, FILES_BLOCK, (off_t)(b * FILES_BLOCK));
    }
    uint64_t stamp = 0;
    if (n == FILES_BLOCK) memcpy(&stamp, buf, 8);
    if (n != FILES_BLOCK || stamp != FILES_STAMP(b)) {
        if (atomic_fetch_add(&g_failed, 1) == 0) {
            g_error_ret = (long)n;
            g_error_errno = errno;
        }
        atomic_store(&g_stop, 1);
        return 0;
    }
    return 1;
}

static uint64_t seed_of(uintptr_t id) { return 0x9E3779B97F4A7C15ULL * ((uint64_t)id + 1); }

static void* reader(void* arg) {
    uintptr_t id = (uintptr_t)arg;
    uint64_t seed = seed_of(id);
    unsigned char* buf = files_aligned(FILES_BLOCK);
    while (!atomic_load_explicit(&g_stop, memory_order_relaxed) && read_one(&seed, buf))
        atomic_fetch_add_explicit(&g_slots[id].ops, 1, memory_order_relaxed);
    free(buf);
    return NULL;
}

/* THREADS 1: the calling (only) thread reads until `until` (bench_now_s),
 * looking at the clock every 256 reads; returns the reads made, and the
 * clock and CPU time at the end in *t and *c. */
static uint64_t read_until(double until, uint64_t* seed, unsigned char* buf, double* t, double* c) {
    uint64_t ops = 0;
    for (;;) {
        for (int i = 0; i < 256; i++) {
            if (!read_one(seed, buf)) return ops;
            ops++;
        }
        *t = bench_now_s();
        if (*t >= until) break;
    }
    *c = files_cpu_s();
    return ops;
}

static void solo_randread(const struct files_args* a, uint64_t* ops, double* secs, double* cpu) {
    uint64_t seed = seed_of(0);
    unsigned char* buf = files_aligned(FILES_BLOCK);
    double t0 = 0, c0 = 0, t1 = 0, c1 = 0;
    read_until(bench_now_s() + a->warmup, &seed, buf, &t0, &c0);
    *ops = read_until(t0 + a->secs, &seed, buf, &t1, &c1);
    *secs = t1 - t0;
    *cpu = c1 - c0;
    free(buf);
}

static uint64_t total_ops(int n) {
    uint64_t s = 0;
    for (int i = 0; i < n; i++) s += atomic_load_explicit(&g_slots[i].ops, memory_order_relaxed);
    return s;
}

static void sleep_s(double s) {
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static void threaded_randread(const struct files_args* a, uint64_t* ops, double* secs, double* cpu);

static int run_randread(const struct files_args* a) {
    const char* how = getenv("FILES_READ");
    if (how && strcmp(how, "preadv2_nowait") == 0)
        g_nowait = 1;
    else if (how && *how)
        BENCH_DIE("FILES_READ=%s: only preadv2_nowait is known", how);
    g_fd = open(a->path, O_RDONLY | O_CLOEXEC | (a->direct ? O_DIRECT : 0));
    if (g_fd < 0) BENCH_DIE("open(%s, direct=%d)", a->path, a->direct);
    struct stat st;
    if (fstat(g_fd, &st) != 0) BENCH_DIE("fstat");
    g_blocks = (uint64_t)st.st_size / FILES_BLOCK;
    if (g_blocks == 0) BENCH_DIE("%s is empty", a->path);
    uint64_t ops;
    double secs, cpu;
    if (a->threads == 1) {
        solo_randread(a, &ops, &secs, &cpu);
    } else {
        threaded_randread(a, &ops, &secs, &cpu);
    }
    if (atomic_load(&g_failed)) {
        errno = g_error_errno;
        BENCH_DIE("pread returned %ld or a wrong block stamp", g_error_ret);
    }
    close(g_fd);
    if (ops == 0) BENCH_DIE("no read completed in the timed window");
    printf("INFO %llu reads in %.3f s, %d OS threads, direct=%d, %s (%llu refused)\n", (unsigned long long)ops,
           secs, a->threads, a->direct, g_nowait ? "preadv2(RWF_NOWAIT)" : "pread",
           (unsigned long long)atomic_load(&g_eagain));
    printf("RESULT iops=%.1f cpu_us=%.3f\n", (double)ops / secs, cpu * 1e6 / (double)ops);
    return 0;
}

static void threaded_randread(const struct files_args* a, uint64_t* ops, double* secs, double* cpu) {
    g_slots = files_aligned(sizeof(struct slot) * (size_t)a->threads);
    pthread_t* th = calloc((size_t)a->threads, sizeof *th);
    if (!th) BENCH_DIE("calloc");
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 256 * 1024);
    for (int i = 0; i < a->threads; i++) {
        int e = pthread_create(&th[i], &attr, reader, (void*)(uintptr_t)i);
        if (e) {
            errno = e;
            BENCH_DIE("pthread_create");
        }
    }
    sleep_s(a->warmup);
    uint64_t ops0 = total_ops(a->threads);
    double t0 = bench_now_s(), c0 = files_cpu_s();
    sleep_s(a->secs);
    uint64_t ops1 = total_ops(a->threads);
    double t1 = bench_now_s(), c1 = files_cpu_s();
    atomic_store(&g_stop, 1);
    for (int i = 0; i < a->threads; i++) pthread_join(th[i], NULL);
    free(th);
    free(g_slots);
    *ops = ops1 - ops0;
    *secs = t1 - t0;
    *cpu = c1 - c0;
}

static int run_write(const struct files_args* a) {
    unsigned char* buf = files_aligned(FILES_MIB);
    int fd = open(a->path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) BENCH_DIE("open(%s)", a->path);
    double t0 = bench_now_s(), c0 = files_cpu_s();
    for (long m = 0; m < a->size_mib; m++) {
        files_fill_mib(buf, m);
        ssize_t n = pwrite(fd, buf, FILES_MIB, (off_t)m * FILES_MIB);
        if (n != FILES_MIB) BENCH_DIE("pwrite of MiB %ld returned %zd", m, n);
    }
    double tw = bench_now_s();
    if (fsync(fd) != 0) BENCH_DIE("fsync");
    double t1 = bench_now_s(), c1 = files_cpu_s();
    close(fd);
    free(buf);
    printf("INFO %ld MiB: writes %.3f s, fsync %.3f s\n", a->size_mib, tw - t0, t1 - tw);
    printf("RESULT mbps=%.1f cpu_us=%.3f\n", (double)a->size_mib * FILES_MIB / (t1 - t0) / 1e6,
           (c1 - c0) * 1e6 / (double)a->size_mib);
    return 0;
}

int main(int argc, char** argv) {
    struct files_args a = files_parse(argc, argv);
    return a.write_mode ? run_write(&a) : run_randread(&a);
}
