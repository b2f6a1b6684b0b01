/*
 * The file calls one by one, each result checked against what the kernel
 * says through libc: photon_write/photon_read (and writev/readv) at the
 * file position, sequentially, with O_APPEND; pread/pwrite leave the
 * position alone; a short read at EOF and 0 at or past it; preadv/pwritev
 * with several iovecs (one of them empty); fallocate, ftruncate and fstat
 * sizes and block counts; fsync/fdatasync; mkdir, rename (also over an
 * existing file), unlink; photon_close.
 */
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "check.h"

static char g_dir[64];

static void path_in(char *out, size_t n, const char *name) {
    snprintf(out, n, "%s/%s", g_dir, name);
}

static off_t pos_of(int fd) { return lseek(fd, 0, SEEK_CUR); }

static off_t size_of(int fd) {
    struct stat st;
    CHECK_OK(photon_fstat(fd, &st));
    return st.st_size;
}

static void test_sequential(void) {
    char path[128];
    path_in(path, sizeof path, "seq");
    int fd = photon_open(path, O_RDWR | O_CREAT | O_EXCL, 0644);
    CHECK(fd >= 0, "photon_open(%s): %s", path, strerror(errno));
    CHECK(pos_of(fd) == 0, "new file position %lld", (long long)pos_of(fd));

    CHECK(photon_write(fd, "hello ", 6, PHOTON_FOREVER) == 6, "write 1: %s", strerror(errno));
    CHECK(pos_of(fd) == 6, "position after write 1: %lld", (long long)pos_of(fd));
    CHECK(photon_write(fd, "world", 5, PHOTON_FOREVER) == 5, "write 2: %s", strerror(errno));
    CHECK(pos_of(fd) == 11, "position after write 2: %lld", (long long)pos_of(fd));
    char a[] = "--", b[] = "abc";
    struct iovec wv[2] = {{a, 2}, {b, 3}};
    CHECK(photon_writev(fd, wv, 2, PHOTON_FOREVER) == 5, "writev: %s", strerror(errno));
    CHECK(pos_of(fd) == 16, "position after writev: %lld", (long long)pos_of(fd));

    /* pwrite and pread do not move the position */
    CHECK(photon_pwrite(fd, "H", 1, 0) == 1, "pwrite: %s", strerror(errno));
    char c;
    CHECK(photon_pread(fd, &c, 1, 6) == 1 && c == 'w', "pread at 6: '%c'", c);
    CHECK(pos_of(fd) == 16, "pread/pwrite moved the position to %lld", (long long)pos_of(fd));

    /* a read at the position (the end) is EOF */
    char buf[64];
    CHECK(photon_read(fd, buf, sizeof buf, PHOTON_FOREVER) == 0, "read at EOF: not 0");

    CHECK(lseek(fd, 0, SEEK_SET) == 0, "lseek");
    memset(buf, 0, sizeof buf);
    CHECK(photon_read(fd, buf, 4, PHOTON_FOREVER) == 4, "read 1: %s", strerror(errno));
    CHECK(memcmp(buf, "Hell", 4) == 0, "read 1 got '%.4s'", buf);
    CHECK(photon_read(fd, buf + 4, 4, PHOTON_FOREVER) == 4, "read 2: %s", strerror(errno));
    CHECK(memcmp(buf, "Hello wo", 8) == 0, "read 2 got '%.8s'", buf);
    char r1[3], r2[2];
    struct iovec rv[2] = {{r1, 3}, {r2, 2}};
    CHECK(photon_readv(fd, rv, 2, PHOTON_FOREVER) == 5, "readv: %s", strerror(errno));
    CHECK(memcmp(r1, "rld", 3) == 0 && memcmp(r2, "--", 2) == 0, "readv got '%.3s' '%.2s'", r1,
          r2);
    /* short read: 3 bytes left, 64 asked */
    ssize_t n = photon_read(fd, buf, sizeof buf, PHOTON_FOREVER);
    CHECK(n == 3 && memcmp(buf, "abc", 3) == 0, "short read at EOF = %zd", n);
    CHECK(photon_read(fd, buf, sizeof buf, PHOTON_FOREVER) == 0, "second read at EOF not 0");
    CHECK(pos_of(fd) == 16, "position after reading all: %lld", (long long)pos_of(fd));
    CHECK_OK(photon_close(fd));

    /* O_APPEND: every write goes to the end, even after a seek */
    fd = photon_open(path, O_WRONLY | O_APPEND, 0);
    CHECK(fd >= 0, "open O_APPEND: %s", strerror(errno));
    CHECK(lseek(fd, 0, SEEK_SET) == 0, "lseek");
    CHECK(photon_write(fd, "XYZ", 3, PHOTON_FOREVER) == 3, "append write: %s", strerror(errno));
    CHECK(size_of(fd) == 19, "size after append %lld", (long long)size_of(fd));
    CHECK_OK(photon_close(fd));
    fd = photon_open(path, O_RDONLY, 0);
    CHECK(fd >= 0, "reopen: %s", strerror(errno));
    n = photon_pread(fd, buf, sizeof buf, 0);
    CHECK(n == 19 && memcmp(buf, "Hello world--abcXYZ", 19) == 0, "final contents (%zd): '%.*s'",
          n, (int)(n > 0 ? n : 0), buf);
    /* pread: short at EOF, 0 at and past it */
    CHECK(photon_pread(fd, buf, 10, 15) == 4, "pread short at EOF");
    CHECK(photon_pread(fd, buf, 10, 19) == 0, "pread at EOF not 0");
    CHECK(photon_pread(fd, buf, 10, 1 << 20) == 0, "pread past EOF not 0");
    CHECK(photon_pread(fd, buf, 0, 0) == 0, "pread of 0 bytes not 0");
    CHECK_OK(photon_close(fd));
    CHECK_OK(photon_unlink(path));
    SAY("sequential read/write/readv/writev at the position, O_APPEND, EOF: ok");
}

static void test_vectors(void) {
    char path[128];
    path_in(path, sizeof path, "vec");
    int fd = photon_open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    CHECK(fd >= 0, "open: %s", strerror(errno));
    static unsigned char p1[5000], p2[1], p3[70000], p4[123];
    for (size_t i = 0; i < sizeof p1; i++) p1[i] = (unsigned char)(i * 7 + 1);
    p2[0] = 0xAB;
    for (size_t i = 0; i < sizeof p3; i++) p3[i] = (unsigned char)(i * 13 + 5);
    for (size_t i = 0; i < sizeof p4; i++) p4[i] = (unsigned char)(255 - i);
    struct iovec w[5] = {{p1, sizeof p1}, {p2, sizeof p2}, {NULL, 0}, {p3, sizeof p3},
                         {p4, sizeof p4}};
    const size_t total = sizeof p1 + sizeof p2 + sizeof p3 + sizeof p4;
    const off_t at = 4096 + 17;
    ssize_t n = photon_pwritev(fd, w, 5, at);
    CHECK(n == (ssize_t)total, "pwritev = %zd, want %zu: %s", n, total, strerror(errno));
    CHECK(size_of(fd) == at + (off_t)total, "size after pwritev %lld", (long long)size_of(fd));
    CHECK(pos_of(fd) == 0, "pwritev moved the position");

    /* read back with a different split, plus a hole before `at` */
    static unsigned char q[80000];
    memset(q, 0xEE, sizeof q);
    unsigned char head[20];
    struct iovec r[4] = {{head, sizeof head}, {q, 3}, {NULL, 0}, {q + 3, sizeof q - 3}};
    n = photon_preadv(fd, r, 4, at - 20);
    CHECK(n == (ssize_t)(20 + total), "preadv = %zd, want %zu (short at EOF)", n, 20 + total);
    for (int i = 0; i < 20; i++) CHECK(head[i] == 0, "hole byte %d is %d", i, head[i]);
    CHECK(memcmp(q, p1, sizeof p1) == 0, "p1 differs");
    CHECK(q[sizeof p1] == 0xAB, "p2 differs");
    CHECK(memcmp(q + sizeof p1 + 1, p3, sizeof p3) == 0, "p3 differs");
    CHECK(memcmp(q + sizeof p1 + 1 + sizeof p3, p4, sizeof p4) == 0, "p4 differs");
    CHECK(q[total] == 0xEE, "preadv wrote past its count");

    /* many small iovecs */
    enum { NV = 64 };
    unsigned char small[NV][3];
    struct iovec sv[NV];
    for (int i = 0; i < NV; i++) sv[i] = (struct iovec){small[i], 3};
    n = photon_preadv(fd, sv, NV, at);
    CHECK(n == NV * 3, "preadv of %d iovecs = %zd", NV, n);
    for (int i = 0; i < NV; i++)
        for (int k = 0; k < 3; k++)
            CHECK(small[i][k] == p1[i * 3 + k], "small iovec %d byte %d", i, k);
    CHECK(photon_preadv(fd, sv, 0, 0) == 0, "preadv of 0 iovecs not 0");
    CHECK(photon_preadv(fd, sv, NV, at + (off_t)total) == 0, "preadv at EOF not 0");
    CHECK_OK(photon_close(fd));
    CHECK_OK(photon_unlink(path));
    SAY("preadv/pwritev with 4-64 iovecs, holes, EOF: ok");
}

static void test_sizes(void) {
    char path[128];
    path_in(path, sizeof path, "sizes");
    int fd = photon_open(path, O_RDWR | O_CREAT | O_TRUNC, 0640);
    CHECK(fd >= 0, "open: %s", strerror(errno));
    struct stat st, ref;
    CHECK_OK(photon_fstat(fd, &st));
    CHECK_OK(stat(path, &ref));
    CHECK(S_ISREG(st.st_mode) && (st.st_mode & 0777) == (ref.st_mode & 0777),
          "mode %o vs %o", st.st_mode, ref.st_mode);
    CHECK(st.st_ino == ref.st_ino && st.st_dev == ref.st_dev, "ino/dev differ from stat(2)");
    CHECK(st.st_nlink == 1 && st.st_uid == ref.st_uid && st.st_gid == ref.st_gid,
          "nlink/uid/gid differ");
    CHECK(st.st_size == 0 && st.st_blocks == 0, "new file size %lld blocks %lld",
          (long long)st.st_size, (long long)st.st_blocks);
    CHECK(st.st_blksize > 0, "st_blksize %ld", (long)st.st_blksize);

    errno = 0;
    int r = photon_fallocate(fd, 0, 0, 1 << 20);
    if (r == -1 && errno == EOPNOTSUPP) {
        SAY("NOTICE: fallocate unsupported on this filesystem; skipping its checks");
    } else {
        CHECK(r == 0, "fallocate: %s", strerror(errno));
        CHECK_OK(photon_fstat(fd, &st));
        CHECK(st.st_size == 1 << 20, "size after fallocate %lld", (long long)st.st_size);
        CHECK(st.st_blocks >= 2048, "blocks after fallocate %lld", (long long)st.st_blocks);
        /* KEEP_SIZE: blocks grow, size does not */
        CHECK_OK(photon_fallocate(fd, FALLOC_FL_KEEP_SIZE, 1 << 20, 1 << 20));
        CHECK_OK(photon_fstat(fd, &st));
        CHECK(st.st_size == 1 << 20, "size after KEEP_SIZE fallocate %lld",
              (long long)st.st_size);
        CHECK(st.st_blocks >= 4096, "blocks after KEEP_SIZE fallocate %lld",
              (long long)st.st_blocks);
        /* allocated range reads as zeros */
        unsigned char z[4096];
        memset(z, 1, sizeof z);
        CHECK(photon_pread(fd, z, sizeof z, 12345) == (ssize_t)sizeof z, "pread fallocated");
        for (size_t i = 0; i < sizeof z; i++) CHECK(z[i] == 0, "fallocated byte not 0");
        /* punch a hole */
        CHECK_OK(photon_fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, 1 << 20));
        CHECK_OK(photon_fstat(fd, &st));
        CHECK(st.st_size == 1 << 20, "size after punch %lld", (long long)st.st_size);
        SAY("fallocate (extend, KEEP_SIZE, PUNCH_HOLE): sizes ok, %lld blocks after punch",
            (long long)st.st_blocks);
    }

    CHECK(photon_pwrite(fd, "data", 4, 100) == 4, "pwrite");
    CHECK_OK(photon_ftruncate(fd, 3 << 20));
    CHECK(size_of(fd) == 3 << 20, "size after growing ftruncate %lld", (long long)size_of(fd));
    CHECK_OK(photon_ftruncate(fd, 102));
    CHECK(size_of(fd) == 102, "size after shrinking ftruncate %lld", (long long)size_of(fd));
    char buf[16];
    CHECK(photon_pread(fd, buf, sizeof buf, 98) == 4, "pread after truncate");
    CHECK(memcmp(buf, "\0\0da", 4) == 0, "contents after truncate");
    CHECK_OK(photon_ftruncate(fd, 0));
    CHECK_OK(photon_fstat(fd, &st));
    CHECK(st.st_size == 0, "size after ftruncate 0: %lld", (long long)st.st_size);
    CHECK(photon_pread(fd, buf, sizeof buf, 0) == 0, "read of empty file not 0");

    CHECK_OK(photon_fsync(fd));
    CHECK_OK(photon_fdatasync(fd));
    CHECK_OK(photon_close(fd));
    CHECK_OK(photon_unlink(path));

    /* fstat of a directory */
    int dfd = photon_open(g_dir, O_RDONLY | O_DIRECTORY, 0);
    CHECK(dfd >= 0, "open dir: %s", strerror(errno));
    CHECK_OK(photon_fstat(dfd, &st));
    CHECK(S_ISDIR(st.st_mode), "dir fstat mode %o", st.st_mode);
    CHECK_OK(photon_fsync(dfd));
    CHECK_OK(photon_close(dfd));
    SAY("fstat/ftruncate/fsync/fdatasync: ok");
}

static void test_names(void) {
    char sub[128], f1[160], f2[160], f3[160];
    path_in(sub, sizeof sub, "sub");
    CHECK_OK(photon_mkdir(sub, 0750));
    struct stat st;
    CHECK_OK(stat(sub, &st));
    CHECK(S_ISDIR(st.st_mode), "mkdir made mode %o", st.st_mode);
    CHECK_ERRNO(photon_mkdir(sub, 0750), EEXIST);

    snprintf(f1, sizeof f1, "%s/one", sub);
    snprintf(f2, sizeof f2, "%s/two", sub);
    snprintf(f3, sizeof f3, "%s/three", sub);
    int fd = photon_open(f1, O_WRONLY | O_CREAT | O_EXCL, 0600);
    CHECK(fd >= 0, "create: %s", strerror(errno));
    CHECK(photon_write(fd, "first", 5, PHOTON_FOREVER) == 5, "write");
    CHECK_OK(photon_close(fd));
    CHECK_ERRNO(photon_open(f1, O_WRONLY | O_CREAT | O_EXCL, 0600), EEXIST);

    CHECK_OK(photon_rename(f1, f2));
    CHECK(access(f1, F_OK) == -1 && errno == ENOENT, "old name still there");
    CHECK_ERRNO(photon_open(f1, O_RDONLY, 0), ENOENT);
    fd = photon_open(f2, O_RDONLY, 0);
    CHECK(fd >= 0, "open renamed: %s", strerror(errno));
    char buf[8];
    CHECK(photon_read(fd, buf, sizeof buf, PHOTON_FOREVER) == 5 && memcmp(buf, "first", 5) == 0,
          "renamed contents");
    CHECK_OK(photon_close(fd));

    /* rename over an existing file replaces it */
    fd = photon_open(f3, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    CHECK(fd >= 0, "create three");
    CHECK(photon_write(fd, "second!", 7, PHOTON_FOREVER) == 7, "write three");
    CHECK_OK(photon_close(fd));
    CHECK_OK(photon_rename(f3, f2));
    CHECK_OK(stat(f2, &st));
    CHECK(st.st_size == 7, "rename did not replace (size %lld)", (long long)st.st_size);
    CHECK_ERRNO(photon_rename(f3, f2), ENOENT);

    /* directories: unlink refuses, rename works */
    char sub2[128];
    path_in(sub2, sizeof sub2, "sub2");
    CHECK_ERRNO(photon_unlink(sub), EISDIR);
    CHECK_OK(photon_rename(sub, sub2));
    snprintf(f2, sizeof f2, "%s/two", sub2);
    CHECK_OK(photon_unlink(f2));
    CHECK_ERRNO(photon_unlink(f2), ENOENT);
    CHECK_OK(rmdir(sub2));
    SAY("mkdir/rename/unlink: ok");
}

static void *in_thread(void *arg) {
    (void)arg;
    test_sequential();
    test_vectors();
    test_sizes();
    test_names();
    return (void *)1;
}

int main(void) {
    test_start("fs_ops");
    test_init();
    snprintf(g_dir, sizeof g_dir, "/tmp/photon_fs_ops_XXXXXX");
    CHECK(mkdtemp(g_dir) != NULL, "mkdtemp: %s", strerror(errno));
    /* from the main photon thread, then from a spawned one */
    in_thread(NULL);
    photon_thread *th = spawn_joinable(in_thread, NULL, 0);
    CHECK(join_ok(th) == (void *)1, "thread result");
    CHECK_OK(rmdir(g_dir));
    test_fini();
    SAY("fs_ops: OK");
    return 0;
}
