/* Hooked read/write on a plain pthread: the cost libphoton_preload.so adds
 * to a call it hooks when the caller is not a photon thread (this program
 * never calls photon_init, and does not link libphoton; the shim loads it).
 *
 *   preload_rw SECS
 *
 * On the main thread: read(fd, buf, 64) on /dev/zero and write(fd, buf, 64)
 * on /dev/null, plain libc calls (through the shim when the driver runs it
 * with LD_PRELOAD=libphoton_preload.so), and, as a reference measured in
 * the same process, the same system calls made with syscall(2), which the
 * shim does not hook. For each of read and write: the chunk size is
 * calibrated to ~20 ms, then chunks of the libc call and of the raw
 * syscall alternate (ABBA order) for about SECS seconds in all, so that
 * the host drifting during the run affects both alike.
 * Prints: RESULT read_ns=... read_raw_ns=... write_ns=... write_raw_ns=...
 *         shim=0|1 */
#include "preload_common.h"

#include <fcntl.h>
#include <sys/syscall.h>

static int fd_zero = -1, fd_null = -1;
static char buf[64];

static void read_loop(uint64_t n) {
    for (uint64_t i = 0; i < n; i++) {
        if (read(fd_zero, buf, sizeof buf) != (ssize_t)sizeof buf) BENCH_DIE("read(/dev/zero)");
    }
}

static void raw_read_loop(uint64_t n) {
    for (uint64_t i = 0; i < n; i++) {
        if (syscall(SYS_read, fd_zero, buf, sizeof buf) != (long)sizeof buf) BENCH_DIE("syscall(SYS_read)");
    }
}

static void write_loop(uint64_t n) {
    for (uint64_t i = 0; i < n; i++) {
        if (write(fd_null, buf, sizeof buf) != (ssize_t)sizeof buf) BENCH_DIE("write(/dev/null)");
    }
}

static void raw_write_loop(uint64_t n) {
    for (uint64_t i = 0; i < n; i++) {
        if (syscall(SYS_write, fd_null, buf, sizeof buf) != (long)sizeof buf) BENCH_DIE("syscall(SYS_write)");
    }
}

static double time_once(bench_body body, uint64_t n) {
    double t0 = bench_now_s();
    body(n);
    return bench_now_s() - t0;
}

/* ns per call of `call` and of `raw`, alternating chunks for ~secs in all. */
static void time_pair(const char *name, bench_body call, bench_body raw, double secs, double *call_ns,
                      double *raw_ns) {
    uint64_t n = bench_calibrate(call, 0.02);
    bench_calibrate(raw, 0.02); /* warm-up only */
    uint64_t rounds = (uint64_t)(secs / 0.04) / 2;
    if (rounds < 1) rounds = 1;
    double tc = 0.0, tr = 0.0;
    for (uint64_t i = 0; i < rounds; i++) {
        tc += time_once(call, n);
        tr += time_once(raw, n);
        tr += time_once(raw, n);
        tc += time_once(call, n);
    }
    uint64_t calls = 2 * rounds * n;
    *call_ns = tc * 1e9 / (double)calls;
    *raw_ns = tr * 1e9 / (double)calls;
    printf("INFO %s: %llu calls each in chunks of %llu: libc %.4f s, raw syscall %.4f s\n", name,
           (unsigned long long)calls, (unsigned long long)n, tc, tr);
}

int main(int argc, char **argv) {
    double secs = bench_secs_arg(argc, argv);
    fd_zero = open("/dev/zero", O_RDONLY | O_CLOEXEC);
    if (fd_zero < 0) BENCH_DIE("open /dev/zero");
    fd_null = open("/dev/null", O_WRONLY | O_CLOEXEC);
    if (fd_null < 0) BENCH_DIE("open /dev/null");
    int shim = preload_shim_loaded();
    double r, rr, w, wr;
    memset(buf, 0x5a, sizeof buf);
    time_pair("read", read_loop, raw_read_loop, secs, &r, &rr);
    for (size_t i = 0; i < sizeof buf; i++) {
        if (buf[i] != 0) {
            errno = EIO;
            BENCH_DIE("read(/dev/zero) gave a non-zero byte");
        }
    }
    time_pair("write", write_loop, raw_write_loop, secs, &w, &wr);
    printf("RESULT read_ns=%.2f read_raw_ns=%.2f write_ns=%.2f write_raw_ns=%.2f shim=%d\n", r, rr, w, wr, shim);
    close(fd_zero);
    close(fd_null);
    return 0;
}
