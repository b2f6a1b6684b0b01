/*
 * Many photon threads on one file at once, byte-exact: 16 writers fill
 * interleaved 4 KiB blocks of a 4 MiB file (each block in two uneven
 * pwrites, so writes meet inside pages), then 16 readers pread random
 * ranges (random lengths, some crossing EOF: a short count) and check
 * every byte; then writers rewrite the second half with new contents while
 * readers keep checking the first half; finally the whole file is checked
 * again with plain libc pread, and with photon_preadv across both halves.
 * The calls must overlap (many in flight at once), not run one by one.
 */
#include <fcntl.h>
#include <stdatomic.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "check.h"

#define NTHREADS 16
#define BLOCK 4096
#define NBLOCKS 1024 /* 4 MiB */
#define FILE_SIZE ((off_t)NBLOCKS * BLOCK)
#define READS_PER_THREAD 200
#define MAX_READ 16384

static int g_fd;
static atomic_int g_inflight, g_max_inflight;

/* The byte at file position `pos` written by generation `gen`. */
static unsigned char byte_at(int gen, off_t pos) {
    uint64_t x = (uint64_t)pos * 0x9E3779B97F4A7C15ULL + (uint64_t)gen * 0x632BE59BD9B4E019ULL;
    x ^= x >> 29;
    return (unsigned char)(x ^ (x >> 17));
}

static void fill(unsigned char *p, size_t n, int gen, off_t pos) {
    for (size_t i = 0; i < n; i++) p[i] = byte_at(gen, pos + (off_t)i);
}

/* Which generation a position holds after each phase. */
static int gen_of(int phase, off_t pos) {
    return (phase >= 2 && pos >= FILE_SIZE / 2) ? 2 : 1;
}

static void verify(const unsigned char *p, size_t n, off_t pos, int phase, const char *who) {
    for (size_t i = 0; i < n; i++) {
        off_t at = pos + (off_t)i;
        unsigned char want = byte_at(gen_of(phase, at), at);
        CHECK(p[i] == want, "%s: byte at %lld is 0x%02x, want 0x%02x (phase %d)", who,
              (long long)at, p[i], want, phase);
    }
}

static void enter(void) {
    int now = atomic_fetch_add(&g_inflight, 1) + 1;
    int max = atomic_load(&g_max_inflight);
    while (now > max && !atomic_compare_exchange_weak(&g_max_inflight, &max, now)) {
    }
}

static void leave(void) { atomic_fetch_sub(&g_inflight, 1); }

static uint64_t rng_next(uint64_t *s) {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

struct writer {
    int id;
    int gen;
    int first_block; /* writes blocks [first_block, NBLOCKS) with b % NTHREADS == id */
};

static void *writer_main(void *arg) {
    struct writer *w = arg;
    unsigned char buf[BLOCK];
    for (int b = w->first_block; b < NBLOCKS; b++) {
        if (b % NTHREADS != w->id) continue;
        off_t pos = (off_t)b * BLOCK;
        fill(buf, BLOCK, w->gen, pos);
        /* two uneven pieces: the split point moves with the block */
        size_t split = 1 + (size_t)((b * 37 + w->id * 11) % (BLOCK - 1));
        enter();
        ssize_t n1 = photon_pwrite(g_fd, buf, split, pos);
        int e1 = errno;
        leave();
        CHECK(n1 == (ssize_t)split, "writer %d: pwrite(%zu at %lld) = %zd: %s", w->id, split,
              (long long)pos, n1, strerror(e1));
        enter();
        ssize_t n2 = photon_pwrite(g_fd, buf + split, BLOCK - split, pos + (off_t)split);
        int e2 = errno;
        leave();
        CHECK(n2 == (ssize_t)(BLOCK - split), "writer %d: pwrite(%zu at %lld) = %zd: %s", w->id,
              BLOCK - split, (long long)(pos + (off_t)split), n2, strerror(e2));
    }
    return NULL;
}

struct reader {
    int id;
    int phase;
    off_t lo, hi; /* read ranges start in [lo, hi) */
    long bytes;
    int short_reads;
};

static void *reader_main(void *arg) {
    struct reader *r = arg;
    unsigned char *buf = malloc(MAX_READ);
    CHECK(buf != NULL, "malloc");
    uint64_t s = 0x1234567ULL * (uint64_t)(r->id + 1) + (uint64_t)r->phase;
    for (int i = 0; i < READS_PER_THREAD; i++) {
        off_t pos = r->lo + (off_t)(rng_next(&s) % (uint64_t)(r->hi - r->lo));
        size_t len = 1 + (size_t)(rng_next(&s) % MAX_READ);
        if (r->phase == 1 && i % 10 == 0) pos = FILE_SIZE - (off_t)(rng_next(&s) % 5000); /* cross EOF */
        if (r->phase != 1 && pos + (off_t)len > r->hi) len = (size_t)(r->hi - pos);
        memset(buf, 0xEE, MAX_READ);
        enter();
        errno = 0;
        ssize_t n = photon_pread(g_fd, buf, len, pos);
        int e = errno;
        leave();
        off_t avail = FILE_SIZE - pos;
        size_t want = (off_t)len < avail ? len : (size_t)(avail > 0 ? avail : 0);
        CHECK(n == (ssize_t)want, "reader %d: pread(%zu at %lld) = %zd (%s), want %zu", r->id,
              len, (long long)pos, n, strerror(e), want);
        if (want < len) r->short_reads++;
        verify(buf, (size_t)n, pos, r->phase, "reader");
        for (size_t k = (size_t)n; k < len; k++)
            CHECK(buf[k] == 0xEE, "reader %d: pread wrote past its count (byte %zu)", r->id, k);
        r->bytes += n;
    }
    free(buf);
    return NULL;
}

static void run_writers(int gen, int first_block) {
    struct writer w[NTHREADS];
    photon_thread *th[NTHREADS];
    for (int i = 0; i < NTHREADS; i++) {
        w[i] = (struct writer){i, gen, first_block};
        th[i] = spawn_joinable(writer_main, &w[i], 0);
    }
    for (int i = 0; i < NTHREADS; i++) join_ok(th[i]);
}

int main(void) {
    test_start("fs_concurrent");
    test_init();

    char dir[] = "/tmp/photon_fs_concurrent_XXXXXX";
    CHECK(mkdtemp(dir) != NULL, "mkdtemp: %s", strerror(errno));
    char path[128];
    snprintf(path, sizeof path, "%s/data", dir);
    g_fd = photon_open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    CHECK(g_fd >= 0, "photon_open(%s): %s", path, strerror(errno));

    /* phase 1: 16 writers fill the file */
    uint64_t t0 = photon_now_us();
    run_writers(1, 0);
    SAY("phase 1: %d writers wrote %lld bytes in %llu us, max %d calls in flight", NTHREADS,
        (long long)FILE_SIZE, (unsigned long long)elapsed_us(t0), atomic_load(&g_max_inflight));
    CHECK(atomic_load(&g_max_inflight) >= 2,
          "writes never overlapped (max %d in flight): they ran one by one",
          atomic_load(&g_max_inflight));
    struct stat st;
    CHECK_OK(photon_fstat(g_fd, &st));
    CHECK(st.st_size == FILE_SIZE, "size %lld, want %lld", (long long)st.st_size,
          (long long)FILE_SIZE);

    /* phase 1 reads: 16 readers over the whole file, some crossing EOF */
    atomic_store(&g_max_inflight, 0);
    struct reader r[NTHREADS];
    photon_thread *th[NTHREADS];
    for (int i = 0; i < NTHREADS; i++) {
        r[i] = (struct reader){.id = i, .phase = 1, .lo = 0, .hi = FILE_SIZE};
        th[i] = spawn_joinable(reader_main, &r[i], 0);
    }
    long total = 0;
    int shorts = 0;
    for (int i = 0; i < NTHREADS; i++) {
        join_ok(th[i]);
        total += r[i].bytes;
        shorts += r[i].short_reads;
    }
    SAY("phase 1: %d readers checked %ld bytes, %d short reads at EOF, max %d in flight",
        NTHREADS, total, shorts, atomic_load(&g_max_inflight));
    CHECK(shorts > 0, "no read crossed EOF");
    CHECK(atomic_load(&g_max_inflight) >= 2, "reads never overlapped");

    /* phase 2: writers rewrite the second half while readers check the first */
    struct writer w[NTHREADS];
    photon_thread *wt[NTHREADS];
    for (int i = 0; i < NTHREADS; i++) {
        w[i] = (struct writer){i, 2, NBLOCKS / 2};
        wt[i] = spawn_joinable(writer_main, &w[i], 0);
        r[i] = (struct reader){.id = i, .phase = 2, .lo = 0, .hi = FILE_SIZE / 2};
        th[i] = spawn_joinable(reader_main, &r[i], 0);
    }
    for (int i = 0; i < NTHREADS; i++) {
        join_ok(wt[i]);
        join_ok(th[i]);
    }
    SAY("phase 2: rewrote the second half while reading the first");

    /* phase 2 reads: everything, with preadv straddling the halves */
    for (int i = 0; i < NTHREADS; i++) {
        r[i] = (struct reader){.id = i, .phase = 2, .lo = 0, .hi = FILE_SIZE};
        th[i] = spawn_joinable(reader_main, &r[i], 0);
    }
    for (int i = 0; i < NTHREADS; i++) join_ok(th[i]);
    {
        unsigned char a[3000], b[5000], c[100];
        struct iovec iov[3] = {{a, sizeof a}, {b, sizeof b}, {c, sizeof c}};
        off_t pos = FILE_SIZE / 2 - 4000;
        ssize_t n = photon_preadv(g_fd, iov, 3, pos);
        CHECK(n == 8100, "preadv across the halves = %zd: %s", n, strerror(errno));
        verify(a, sizeof a, pos, 2, "preadv a");
        verify(b, sizeof b, pos + 3000, 2, "preadv b");
        verify(c, sizeof c, pos + 8000, 2, "preadv c");
    }

    /* independent check of the whole file with libc */
    CHECK_OK(photon_fsync(g_fd));
    int fd2 = open(path, O_RDONLY | O_CLOEXEC);
    CHECK(fd2 >= 0, "open: %s", strerror(errno));
    unsigned char *all = malloc((size_t)FILE_SIZE + 1);
    CHECK(all != NULL, "malloc");
    ssize_t got = 0;
    while (got < FILE_SIZE + 1) {
        ssize_t n = pread(fd2, all + got, (size_t)(FILE_SIZE + 1 - got), got);
        CHECK(n >= 0, "pread: %s", strerror(errno));
        if (n == 0) break;
        got += n;
    }
    CHECK(got == FILE_SIZE, "libc read %zd bytes, want %lld", got, (long long)FILE_SIZE);
    verify(all, (size_t)FILE_SIZE, 0, 2, "libc check");
    free(all);
    close(fd2);
    SAY("whole file byte-exact (libc pread)");

    CHECK_OK(photon_close(g_fd));
    CHECK_OK(photon_unlink(path));
    CHECK_OK(rmdir(dir));
    test_fini();
    SAY("fs_concurrent: OK");
    return 0;
}
