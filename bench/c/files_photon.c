/* libphoton: file I/O from photon threads on one vcpu (see files_common.h
 * for the command line and output). The engine is PHOTON_ENGINE's
 * (io_uring or epoll, whose file calls run on the offload pool); the run
 * fails if the vcpu did not get the engine asked for.
 *
 * randread: THREADS photon threads, each with its own 4 KiB-aligned buffer,
 * loop photon_pread(fd, buf, 4096, random block * 4096) and check each
 * block's stamp. The main photon thread sleeps through the warm-up and the
 * timed window, reading the op counter at both ends.
 * write: the main photon thread photon_pwrite()s SIZE_MIB MiB sequentially
 * (1 MiB each) into a new file, then photon_fsync(); timed from the first
 * write to the end of the fsync. */
#include <photon.h>

#include "files_common.h"

static int g_fd;
static uint64_t g_blocks;
static uint64_t g_ops;           /* one vcpu: plain counters */
static volatile int g_stop;
static const char* g_error;      /* first failure, if any */
static long g_error_ret;
static int g_error_errno;

static void* reader(void* arg) {
    uint64_t seed = 0x9E3779B97F4A7C15ULL * ((uint64_t)(uintptr_t)arg + 1);
    unsigned char* buf = files_aligned(FILES_BLOCK);
    while (!g_stop) {
        uint64_t b = files_rng(&seed) % g_blocks;
        ssize_t n = photon_pread(g_fd, buf, FILES_BLOCK, (off_t)(b * FILES_BLOCK));
        if (n != FILES_BLOCK) {
            if (!g_error) {
                g_error = "photon_pread did not return 4096";
                g_error_ret = (long)n;
                g_error_errno = errno;
            }
            g_stop = 1;
            break;
        }
        uint64_t stamp;
        memcpy(&stamp, buf, 8);
        if (stamp != FILES_STAMP(b)) {
            if (!g_error) {
                g_error = "wrong block stamp (wrong data read)";
                g_error_ret = (long)b;
            }
            g_stop = 1;
            break;
        }
        g_ops++;
    }
    free(buf);
    return NULL;
}

static void check_engine(void) {
    const char* want = getenv("PHOTON_ENGINE");
    const char* got = photon_engine_name();
    if (!got) BENCH_DIE("photon_engine_name");
    if (want && *want && strcmp(want, got) != 0)
        BENCH_DIE("PHOTON_ENGINE=%s but the vcpu runs %s", want, got);
}

static int run_randread(const struct files_args* a) {
    /* Opened as the other contenders open it, with open(2) and fstat(2):
     * photon_open and photon_fstat would run on a helper thread (epoll's
     * offload pool, io_uring's io-wq for the statx), which outlives them
     * (the pool's 1 s, io-wq's 5 s) and meanwhile shares the fd table,
     * making every pread of the timed window take the kernel's
     * reference-counting fd lookup: not the steady state of a server long
     * after its opens, and not what fio and the pread loop measure. */
    g_fd = open(a->path, O_RDONLY | O_CLOEXEC | (a->direct ? O_DIRECT : 0));
    if (g_fd < 0) BENCH_DIE("open(%s, direct=%d)", a->path, a->direct);
    struct stat st;
    if (fstat(g_fd, &st) != 0) BENCH_DIE("fstat");
    g_blocks = (uint64_t)st.st_size / FILES_BLOCK;
    if (g_blocks == 0) BENCH_DIE("%s is empty", a->path);

    photon_thread** th = calloc((size_t)a->threads, sizeof *th);
    if (!th) BENCH_DIE("calloc");
    for (int i = 0; i < a->threads; i++) {
        th[i] = photon_thread_create(reader, (void*)(uintptr_t)i, 256 * 1024);
        if (!th[i] || photon_thread_enable_join(th[i]) != 0) BENCH_DIE("photon_thread_create");
    }
    if (photon_thread_usleep((uint64_t)(a->warmup * 1e6)) != 0) BENCH_DIE("usleep");
    uint64_t ops0 = g_ops;
    double t0 = bench_now_s(), c0 = files_cpu_s();
    if (photon_thread_usleep((uint64_t)(a->secs * 1e6)) != 0) BENCH_DIE("usleep");
    uint64_t ops1 = g_ops;
    double t1 = bench_now_s(), c1 = files_cpu_s();
    g_stop = 1;
    for (int i = 0; i < a->threads; i++)
        if (photon_thread_join(th[i], NULL) != 0) BENCH_DIE("photon_thread_join");
    free(th);
    if (g_error) {
        errno = g_error_errno;
        BENCH_DIE("%s (returned/block %ld)", g_error, g_error_ret);
    }
    if (photon_close(g_fd) != 0) BENCH_DIE("photon_close");
    uint64_t ops = ops1 - ops0;
    if (ops == 0) BENCH_DIE("no read completed in the timed window");
    printf("INFO %llu reads in %.3f s, %d photon threads, engine %s, direct=%d\n",
           (unsigned long long)ops, t1 - t0, a->threads, photon_engine_name(), a->direct);
    printf("RESULT iops=%.1f cpu_us=%.3f engine=%s\n", (double)ops / (t1 - t0),
           (c1 - c0) * 1e6 / (double)ops, photon_engine_name());
    return 0;
}

static int run_write(const struct files_args* a) {
    unsigned char* buf = files_aligned(FILES_MIB);
    int fd = photon_open(a->path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) BENCH_DIE("photon_open(%s)", a->path);
    double t0 = bench_now_s(), c0 = files_cpu_s();
    for (long m = 0; m < a->size_mib; m++) {
        files_fill_mib(buf, m);
        ssize_t n = photon_pwrite(fd, buf, FILES_MIB, (off_t)m * FILES_MIB);
        if (n != FILES_MIB) BENCH_DIE("photon_pwrite of MiB %ld returned %zd", m, n);
    }
    double tw = bench_now_s();
    if (photon_fsync(fd) != 0) BENCH_DIE("photon_fsync");
    double t1 = bench_now_s(), c1 = files_cpu_s();
    if (photon_close(fd) != 0) BENCH_DIE("photon_close");
    free(buf);
    double bytes = (double)a->size_mib * FILES_MIB;
    printf("INFO %ld MiB: writes %.3f s, fsync %.3f s, engine %s\n", a->size_mib, tw - t0, t1 - tw,
           photon_engine_name());
    printf("RESULT mbps=%.1f cpu_us=%.3f engine=%s\n", bytes / (t1 - t0) / 1e6,
           (c1 - c0) * 1e6 / (double)a->size_mib, photon_engine_name());
    return 0;
}

int main(int argc, char** argv) {
    struct files_args a = files_parse(argc, argv);
    if (photon_init(PHOTON_EVENT_DEFAULT, 0) != 0) BENCH_DIE("photon_init");
    check_engine();
    int r = a.write_mode ? run_write(&a) : run_randread(&a);
    if (photon_fini() != 0) BENCH_DIE("photon_fini");
    return r;
}
