/*
 * O_DIRECT through photon_pread/pwrite/preadv/pwritev: aligned transfers
 * work and are byte-exact (also from 16 photon threads at once, and short
 * at EOF); a misaligned buffer, offset or length fails with the kernel's
 * EINVAL under both engines (the epoll offload pool's bounce buffers must
 * keep the caller's alignment, no better and no worse): each misaligned
 * call is made with libc too, and photon must give what it gives. The
 * alignments are the file's own (statx STATX_DIOALIGN where the kernel
 * reports them; then the kernel's answer must be EINVAL).
 * Skipped, with a notice, where the temporary directory's filesystem has no
 * O_DIRECT (open fails with EINVAL).
 */
#include <fcntl.h>
#include <stdatomic.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "check.h"

#define ALIGN 4096 /* what "aligned" means here: enough for any alignment rule */
#define FILE_BLOCKS 256
#define FILE_SIZE ((off_t)FILE_BLOCKS * ALIGN) /* 1 MiB */
#define NTHREADS 16

static int g_fd;
static unsigned g_mem_align = 512, g_off_align = 512;
static atomic_int g_inflight, g_max_inflight;
static int g_rules_known;    /* statx reported the O_DIRECT alignments */
static int g_kernel_accepted; /* misaligned calls the kernel itself accepted */

/* A misaligned O_DIRECT call: `libc_call` first, then `photon_call` (the
 * same arguments) must give the same; with known rules, EINVAL. */
#define MISALIGNED(libc_call, photon_call)                                        \
    do {                                                                          \
        errno = 0;                                                                \
        long k_ = (long)(libc_call);                                              \
        int ke_ = errno;                                                          \
        CHECK(!g_rules_known || (k_ == -1 && ke_ == EINVAL),                      \
              "the kernel did not reject %s (%ld, %s)", #libc_call, k_,           \
              strerror(ke_));                                                     \
        if (k_ == -1) {                                                           \
            CHECK_ERRNO(photon_call, ke_);                                        \
        } else {                                                                  \
            g_kernel_accepted++;                                                  \
            long p_ = (long)(photon_call);                                        \
            CHECK(p_ == k_, "%s = %ld, the kernel gave %ld", #photon_call, p_, k_); \
        }                                                                         \
    } while (0)

static unsigned char byte_at(int gen, off_t pos) {
    uint64_t x = (uint64_t)pos * 0x9E3779B97F4A7C15ULL + (uint64_t)gen * 0xD1B54A32D192ED03ULL;
    return (unsigned char)(x >> 40);
}

static void *aligned(size_t n) {
    void *p = NULL;
    CHECK(posix_memalign(&p, ALIGN, n) == 0, "posix_memalign(%zu)", n);
    return p;
}

static void alignments(const char *path) {
#ifdef STATX_DIOALIGN
    struct statx x;
    memset(&x, 0, sizeof x);
    if (statx(AT_FDCWD, path, 0, STATX_DIOALIGN, &x) == 0 && (x.stx_mask & STATX_DIOALIGN) &&
        x.stx_dio_mem_align > 0) {
        g_mem_align = x.stx_dio_mem_align;
        g_off_align = x.stx_dio_offset_align;
        g_rules_known = 1;
        SAY("statx: O_DIRECT memory alignment %u, offset/length alignment %u", g_mem_align,
            g_off_align);
        return;
    }
#else
    (void)path;
#endif
    SAY("statx gives no O_DIRECT alignments here; assuming %u/%u", g_mem_align, g_off_align);
}

static void enter(void) {
    int now = atomic_fetch_add(&g_inflight, 1) + 1;
    int max = atomic_load(&g_max_inflight);
    while (now > max && !atomic_compare_exchange_weak(&g_max_inflight, &max, now)) {
    }
}

static void *writer_main(void *arg) {
    int id = (int)(intptr_t)arg;
    unsigned char *buf = aligned(ALIGN);
    for (int b = id; b < FILE_BLOCKS; b += NTHREADS) {
        off_t pos = (off_t)b * ALIGN;
        for (int i = 0; i < ALIGN; i++) buf[i] = byte_at(1, pos + i);
        enter();
        ssize_t n = photon_pwrite(g_fd, buf, ALIGN, pos);
        atomic_fetch_sub(&g_inflight, 1);
        CHECK(n == ALIGN, "O_DIRECT pwrite of block %d = %zd: %s", b, n, strerror(errno));
    }
    free(buf);
    return NULL;
}

static void *reader_main(void *arg) {
    int id = (int)(intptr_t)arg;
    unsigned char *buf = aligned(4 * ALIGN);
    uint64_t s = 88172645463325252ULL + (uint64_t)id;
    for (int i = 0; i < 100; i++) {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        int b = (int)(s % FILE_BLOCKS);
        size_t len = (size_t)(1 + (s >> 32) % 4) * ALIGN; /* may cross EOF */
        off_t pos = (off_t)b * ALIGN;
        enter();
        ssize_t n = photon_pread(g_fd, buf, len, pos);
        atomic_fetch_sub(&g_inflight, 1);
        size_t want = pos + (off_t)len <= FILE_SIZE ? len : (size_t)(FILE_SIZE - pos);
        CHECK(n == (ssize_t)want, "O_DIRECT pread(%zu at %lld) = %zd (%s), want %zu", len,
              (long long)pos, n, strerror(errno), want);
        for (size_t k = 0; k < want; k++)
            CHECK(buf[k] == byte_at(1, pos + (off_t)k), "O_DIRECT read byte at %lld",
                  (long long)(pos + (off_t)k));
    }
    free(buf);
    return NULL;
}

int main(void) {
    test_start("fs_direct");
    test_init();
    char dir[] = "/tmp/photon_fs_direct_XXXXXX";
    CHECK(mkdtemp(dir) != NULL, "mkdtemp: %s", strerror(errno));
    char path[128];
    snprintf(path, sizeof path, "%s/data", dir);

    errno = 0;
    g_fd = photon_open(path, O_RDWR | O_CREAT | O_TRUNC | O_DIRECT, 0600);
    if (g_fd < 0 && errno == EINVAL) {
        SAY("NOTICE: O_DIRECT is not supported on the filesystem of %s (open: EINVAL); "
            "skipping fs_direct",
            dir);
        photon_unlink(path);
        CHECK_OK(rmdir(dir));
        test_fini();
        return 0;
    }
    CHECK(g_fd >= 0, "photon_open(O_DIRECT): %s", strerror(errno));
    CHECK(fcntl(g_fd, F_GETFL) & O_DIRECT, "O_DIRECT not set on the fd");
    alignments(path);

    /* 16 writers, then 16 readers, all O_DIRECT */
    photon_thread *th[NTHREADS];
    for (int i = 0; i < NTHREADS; i++)
        th[i] = spawn_joinable(writer_main, (void *)(intptr_t)i, 0);
    for (int i = 0; i < NTHREADS; i++) join_ok(th[i]);
    CHECK_OK(photon_fsync(g_fd));
    struct stat st;
    CHECK_OK(photon_fstat(g_fd, &st));
    CHECK(st.st_size == FILE_SIZE, "size %lld", (long long)st.st_size);
    for (int i = 0; i < NTHREADS; i++)
        th[i] = spawn_joinable(reader_main, (void *)(intptr_t)i, 0);
    for (int i = 0; i < NTHREADS; i++) join_ok(th[i]);
    SAY("16 writers + 16 readers with O_DIRECT: byte-exact, max %d in flight",
        atomic_load(&g_max_inflight));
    CHECK(atomic_load(&g_max_inflight) >= 2, "O_DIRECT calls never overlapped");

    unsigned char *buf = aligned(8 * ALIGN);
    /* short read at EOF, 0 at EOF */
    ssize_t n = photon_pread(g_fd, buf, 2 * ALIGN, FILE_SIZE - ALIGN);
    CHECK(n == ALIGN, "O_DIRECT pread across EOF = %zd: %s", n, strerror(errno));
    CHECK(photon_pread(g_fd, buf, ALIGN, FILE_SIZE) == 0, "O_DIRECT pread at EOF not 0");

    /* aligned vectors: three segments, each aligned */
    {
        unsigned char *a = aligned(ALIGN), *b = aligned(2 * ALIGN), *c = aligned(ALIGN);
        for (int i = 0; i < ALIGN; i++) a[i] = (unsigned char)(i ^ 0x5A);
        for (int i = 0; i < 2 * ALIGN; i++) b[i] = (unsigned char)(i * 3);
        for (int i = 0; i < ALIGN; i++) c[i] = (unsigned char)(~i);
        struct iovec w[3] = {{a, ALIGN}, {b, 2 * ALIGN}, {c, ALIGN}};
        n = photon_pwritev(g_fd, w, 3, 8 * ALIGN);
        CHECK(n == 4 * ALIGN, "O_DIRECT pwritev = %zd: %s", n, strerror(errno));
        memset(buf, 0, 8 * ALIGN);
        unsigned char *r0 = aligned(3 * ALIGN);
        struct iovec r[2] = {{r0, 3 * ALIGN}, {buf, ALIGN}};
        n = photon_preadv(g_fd, r, 2, 8 * ALIGN);
        CHECK(n == 4 * ALIGN, "O_DIRECT preadv = %zd: %s", n, strerror(errno));
        CHECK(memcmp(r0, a, ALIGN) == 0 && memcmp(r0 + ALIGN, b, 2 * ALIGN) == 0 &&
                  memcmp(buf, c, ALIGN) == 0,
              "O_DIRECT preadv contents differ from pwritev's");
        /* and the page cache agrees (a buffered fd of the same file) */
        int bfd = photon_open(path, O_RDONLY, 0);
        CHECK(bfd >= 0, "buffered open: %s", strerror(errno));
        unsigned char chk[ALIGN];
        CHECK(photon_pread(bfd, chk, ALIGN, 11 * ALIGN) == ALIGN && memcmp(chk, c, ALIGN) == 0,
              "buffered view of the O_DIRECT write differs");
        CHECK_OK(photon_close(bfd));
        free(a);
        free(b);
        free(c);
        free(r0);
        SAY("O_DIRECT preadv/pwritev with aligned segments: ok");
    }

    /* aligned to the file's rules but not to a page: allowed */
    if (g_mem_align < ALIGN && g_off_align < ALIGN) {
        unsigned char *p = buf + g_mem_align;
        n = photon_pread(g_fd, p, g_off_align, g_off_align);
        CHECK(n == (ssize_t)g_off_align, "O_DIRECT pread at the minimal alignment (%u) = %zd: %s",
              g_off_align, n, strerror(errno));
        for (unsigned k = 0; k < g_off_align; k++)
            CHECK(p[k] == byte_at(1, g_off_align + k), "minimal-alignment read byte %u", k);
        n = photon_pwrite(g_fd, p, g_off_align, g_off_align);
        CHECK(n == (ssize_t)g_off_align, "O_DIRECT pwrite at the minimal alignment = %zd: %s", n,
              strerror(errno));
        SAY("O_DIRECT at the minimal alignment (buffer %% %u, offset/length %% %u): ok",
            g_mem_align, g_off_align);
    }

    /* misaligned: buffer, offset, length; each alone. Each call is made
     * with libc first: photon must give what the kernel gives, and where
     * statx told the rules, that must be EINVAL. */
    if (g_mem_align > 1) {
        unsigned char *mis = buf + g_mem_align / 2;
        MISALIGNED(pread(g_fd, mis, ALIGN, 0), photon_pread(g_fd, mis, ALIGN, 0));
        MISALIGNED(pwrite(g_fd, mis, ALIGN, 0), photon_pwrite(g_fd, mis, ALIGN, 0));
        struct iovec v = {mis, ALIGN};
        MISALIGNED(preadv(g_fd, &v, 1, 0), photon_preadv(g_fd, &v, 1, 0));
        MISALIGNED(pwritev(g_fd, &v, 1, 0), photon_pwritev(g_fd, &v, 1, 0));
        unsigned char *odd = buf + 1;
        MISALIGNED(pread(g_fd, odd, ALIGN, 0), photon_pread(g_fd, odd, ALIGN, 0));
        MISALIGNED(pwrite(g_fd, odd, ALIGN, 0), photon_pwrite(g_fd, odd, ALIGN, 0));
        SAY("misaligned buffer (+%u, +1), 4 KiB transfers: EINVAL as from the kernel",
            g_mem_align / 2);
    } else {
        SAY("NOTICE: this filesystem accepts any buffer address for O_DIRECT; "
            "buffer misalignment not tested");
    }
    if (g_off_align > 1) {
        off_t mis_off = (off_t)g_off_align / 2;
        MISALIGNED(pread(g_fd, buf, ALIGN, mis_off), photon_pread(g_fd, buf, ALIGN, mis_off));
        MISALIGNED(pwrite(g_fd, buf, ALIGN, mis_off), photon_pwrite(g_fd, buf, ALIGN, mis_off));
        MISALIGNED(pread(g_fd, buf, ALIGN, 1), photon_pread(g_fd, buf, ALIGN, 1));
        MISALIGNED(pwrite(g_fd, buf, ALIGN, ALIGN + 1), photon_pwrite(g_fd, buf, ALIGN, ALIGN + 1));
        size_t mis_len = g_off_align + g_off_align / 2;
        MISALIGNED(pread(g_fd, buf, mis_len, 0), photon_pread(g_fd, buf, mis_len, 0));
        MISALIGNED(pwrite(g_fd, buf, mis_len, 0), photon_pwrite(g_fd, buf, mis_len, 0));
        MISALIGNED(pread(g_fd, buf, 100, 0), photon_pread(g_fd, buf, 100, 0));
        struct iovec v = {buf, mis_len};
        MISALIGNED(preadv(g_fd, &v, 1, 0), photon_preadv(g_fd, &v, 1, 0));
        MISALIGNED(pwritev(g_fd, &v, 1, 0), photon_pwritev(g_fd, &v, 1, 0));
        v.iov_len = ALIGN;
        MISALIGNED(preadv(g_fd, &v, 1, 1), photon_preadv(g_fd, &v, 1, 1));
        MISALIGNED(pwritev(g_fd, &v, 1, 1), photon_pwritev(g_fd, &v, 1, 1));
        SAY("misaligned offset (+%lld, +1) and length (%zu, 100): EINVAL as from the kernel",
            (long long)mis_off, mis_len);
    }
    if (g_kernel_accepted)
        SAY("NOTICE: the kernel accepted %d of the misaligned calls here (no alignment rules "
            "from statx); photon matched it",
            g_kernel_accepted);

    /* the misaligned attempts changed nothing */
    if (!g_kernel_accepted) {
        n = photon_pread(g_fd, buf, ALIGN, 0);
        CHECK(n == ALIGN, "pread after the errors: %zd", n);
        for (int k = 0; k < ALIGN; k++)
            CHECK(buf[k] == byte_at(1, k), "block 0 byte %d changed", k);
    }

    free(buf);
    CHECK_OK(photon_close(g_fd));
    CHECK_OK(photon_unlink(path));
    CHECK_OK(rmdir(dir));
    test_fini();
    SAY("fs_direct: OK");
    return 0;
}
