/*
 * The errno contract of the file calls: EPERM off a vcpu; EINVAL for NULL
 * pointers, negative offsets/lengths/counts (checked before the kernel
 * sees them); and the kernel's own codes passed through
 * unchanged, the same under both engines: EBADF (bad, closed, wrong-mode
 * fds), ENOENT, ENOTDIR, EISDIR (photon_read/pread/readv on a directory fd,
 * a directory opened for writing, unlink of a directory), EEXIST,
 * ENAMETOOLONG, EFBIG. Each failing call returns exactly -1. Runs on the
 * main photon thread and again on a spawned one; after all the failures
 * the fds still work. (Odd inputs where the engines part from the kernel
 * are in fs_parity.c.)
 */
#include <fcntl.h>
#include <limits.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "check.h"

static char g_dir[64];

static void off_vcpu_checks(const char *when) {
    char buf[8] = {0};
    struct stat st;
    struct iovec iov = {buf, sizeof buf};
    CHECK_ERRNO(photon_open("/tmp", O_RDONLY, 0), EPERM);
    CHECK_ERRNO(photon_pread(0, buf, 1, 0), EPERM);
    CHECK_ERRNO(photon_pwrite(1, buf, 1, 0), EPERM);
    CHECK_ERRNO(photon_preadv(0, &iov, 1, 0), EPERM);
    CHECK_ERRNO(photon_pwritev(1, &iov, 1, 0), EPERM);
    CHECK_ERRNO(photon_fsync(0), EPERM);
    CHECK_ERRNO(photon_fdatasync(0), EPERM);
    CHECK_ERRNO(photon_fallocate(0, 0, 0, 1), EPERM);
    CHECK_ERRNO(photon_ftruncate(0, 0), EPERM);
    CHECK_ERRNO(photon_fstat(0, &st), EPERM);
    CHECK_ERRNO(photon_unlink("/tmp/photon-no-such-file"), EPERM);
    CHECK_ERRNO(photon_rename("/tmp/photon-no-such-a", "/tmp/photon-no-such-b"), EPERM);
    CHECK_ERRNO(photon_mkdir("/tmp/photon-no-such-dir", 0700), EPERM);
    int fd = open("/proc/self/stat", O_RDONLY | O_CLOEXEC);
    CHECK(fd >= 0, "open: %s", strerror(errno));
    CHECK_ERRNO(photon_read(fd, buf, sizeof buf, PHOTON_FOREVER), EPERM);
    CHECK_OK(photon_close(fd)); /* needs no vcpu */
    SAY("off a vcpu (%s): every file call fails with EPERM", when);
}

static void error_checks(void) {
    char path[128], dpath[128], missing[128], longpath[PATH_MAX + 64];
    char buf[64] = {0};
    struct stat st;
    struct iovec iov[2] = {{buf, 8}, {buf + 8, 8}};

    snprintf(path, sizeof path, "%s/file", g_dir);
    snprintf(dpath, sizeof dpath, "%s/dir", g_dir);
    snprintf(missing, sizeof missing, "%s/missing", g_dir);
    int fd = photon_open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    CHECK(fd >= 0, "open: %s", strerror(errno));
    CHECK(photon_pwrite(fd, "0123456789abcdef", 16, 0) == 16, "pwrite");
    CHECK_OK(photon_mkdir(dpath, 0700));

    /* EINVAL: caught before the kernel */
    CHECK_ERRNO(photon_open(NULL, O_RDONLY, 0), EINVAL);
    CHECK_ERRNO(photon_pread(fd, NULL, 4, 0), EINVAL);
    CHECK_ERRNO(photon_pwrite(fd, NULL, 4, 0), EINVAL);
    CHECK_ERRNO(photon_preadv(fd, NULL, 1, 0), EINVAL);
    CHECK_ERRNO(photon_pwritev(fd, NULL, 1, 0), EINVAL);
    CHECK_ERRNO(photon_fstat(fd, NULL), EINVAL);
    CHECK_ERRNO(photon_unlink(NULL), EINVAL);
    CHECK_ERRNO(photon_rename(NULL, path), EINVAL);
    CHECK_ERRNO(photon_rename(path, NULL), EINVAL);
    CHECK_ERRNO(photon_mkdir(NULL, 0700), EINVAL);
    /* negative offsets, lengths, counts */
    const off_t negs[] = {-1, -4096, (off_t)INT64_MIN};
    for (size_t i = 0; i < sizeof negs / sizeof negs[0]; i++) {
        off_t o = negs[i];
        CHECK_ERRNO(photon_pread(fd, buf, 4, o), EINVAL);
        CHECK_ERRNO(photon_pwrite(fd, buf, 4, o), EINVAL);
        CHECK_ERRNO(photon_preadv(fd, iov, 2, o), EINVAL);
        CHECK_ERRNO(photon_pwritev(fd, iov, 2, o), EINVAL);
        CHECK_ERRNO(photon_ftruncate(fd, o), EINVAL);
        CHECK_ERRNO(photon_fallocate(fd, 0, o, 4096), EINVAL);
        CHECK_ERRNO(photon_fallocate(fd, 0, 0, o), EINVAL);
    }
    CHECK_ERRNO(photon_fallocate(fd, 0, 0, 0), EINVAL);
    CHECK_ERRNO(photon_preadv(fd, iov, -1, 0), EINVAL);
    CHECK_ERRNO(photon_pwritev(fd, iov, -1, 0), EINVAL);
    SAY("EINVAL: NULL pointers, negative offsets, lengths and counts");

    /* EBADF: never-open, negative, closed, wrong access mode */
    const int bads[] = {-1, -2, 1 << 20}; /* AT_FDCWD (-100): see fs_parity.c */
    for (size_t i = 0; i < sizeof bads / sizeof bads[0]; i++) {
        int b = bads[i];
        CHECK_ERRNO(photon_pread(b, buf, 4, 0), EBADF);
        CHECK_ERRNO(photon_pwrite(b, buf, 4, 0), EBADF);
        CHECK_ERRNO(photon_preadv(b, iov, 2, 0), EBADF);
        CHECK_ERRNO(photon_pwritev(b, iov, 2, 0), EBADF);
        CHECK_ERRNO(photon_fsync(b), EBADF);
        CHECK_ERRNO(photon_fdatasync(b), EBADF);
        CHECK_ERRNO(photon_fallocate(b, 0, 0, 4096), EBADF);
        CHECK_ERRNO(photon_ftruncate(b, 0), EBADF);
        CHECK_ERRNO(photon_fstat(b, &st), EBADF);
        CHECK_ERRNO(photon_read(b, buf, 4, PHOTON_FOREVER), EBADF);
        CHECK_ERRNO(photon_write(b, buf, 4, PHOTON_FOREVER), EBADF);
        CHECK_ERRNO(photon_close(b), EBADF);
    }
    int closed = photon_open(path, O_RDONLY, 0);
    CHECK(closed >= 0, "open: %s", strerror(errno));
    CHECK_OK(photon_close(closed));
    CHECK_ERRNO(photon_pread(closed, buf, 4, 0), EBADF);
    CHECK_ERRNO(photon_pwrite(closed, buf, 4, 0), EBADF);
    CHECK_ERRNO(photon_fstat(closed, &st), EBADF);
    CHECK_ERRNO(photon_fsync(closed), EBADF);
    CHECK_ERRNO(photon_read(closed, buf, 4, PHOTON_FOREVER), EBADF);
    CHECK_ERRNO(photon_close(closed), EBADF);
    int ro = photon_open(path, O_RDONLY, 0);
    CHECK(ro >= 0, "open O_RDONLY: %s", strerror(errno));
    CHECK_ERRNO(photon_pwrite(ro, "x", 1, 0), EBADF);
    CHECK_ERRNO(photon_pwritev(ro, iov, 2, 0), EBADF);
    CHECK_ERRNO(photon_write(ro, "x", 1, PHOTON_FOREVER), EBADF);
    CHECK_ERRNO(photon_ftruncate(ro, 0), EINVAL); /* ftruncate(2) on a read-only fd */
    CHECK_ERRNO(photon_fallocate(ro, 0, 0, 4096), EBADF);
    int wo = photon_open(path, O_WRONLY, 0);
    CHECK(wo >= 0, "open O_WRONLY: %s", strerror(errno));
    CHECK_ERRNO(photon_pread(wo, buf, 4, 0), EBADF);
    CHECK_ERRNO(photon_preadv(wo, iov, 2, 0), EBADF);
    CHECK_ERRNO(photon_read(wo, buf, 4, PHOTON_FOREVER), EBADF);
    SAY("EBADF: bad, closed and wrong-mode fds");

    /* ENOENT, ENOTDIR, EEXIST, ENAMETOOLONG */
    CHECK_ERRNO(photon_open(missing, O_RDONLY, 0), ENOENT);
    CHECK_ERRNO(photon_open("/tmp/photon-no-such-dir-xyz/f", O_RDWR | O_CREAT, 0600), ENOENT);
    CHECK_ERRNO(photon_open("", O_RDONLY, 0), ENOENT);
    CHECK_ERRNO(photon_unlink(missing), ENOENT);
    CHECK_ERRNO(photon_rename(missing, dpath), ENOENT);
    CHECK_ERRNO(photon_mkdir("/tmp/photon-no-such-dir-xyz/sub", 0700), ENOENT);
    char under_file[160];
    snprintf(under_file, sizeof under_file, "%s/x", path);
    CHECK_ERRNO(photon_open(under_file, O_RDONLY, 0), ENOTDIR);
    CHECK_ERRNO(photon_mkdir(under_file, 0700), ENOTDIR);
    CHECK_ERRNO(photon_open(path, O_RDONLY | O_DIRECTORY, 0), ENOTDIR);
    CHECK_ERRNO(photon_mkdir(dpath, 0700), EEXIST);
    CHECK_ERRNO(photon_mkdir(path, 0700), EEXIST);
    CHECK_ERRNO(photon_open(path, O_RDWR | O_CREAT | O_EXCL, 0600), EEXIST);
    memset(longpath, 'a', sizeof longpath - 1);
    longpath[0] = '/';
    longpath[sizeof longpath - 1] = '\0';
    CHECK_ERRNO(photon_open(longpath, O_RDONLY, 0), ENAMETOOLONG);
    CHECK_ERRNO(photon_unlink(longpath), ENAMETOOLONG);
    SAY("ENOENT, ENOTDIR, EEXIST, ENAMETOOLONG");

    /* EISDIR */
    CHECK_ERRNO(photon_open(dpath, O_WRONLY, 0), EISDIR);
    CHECK_ERRNO(photon_open(dpath, O_RDWR, 0), EISDIR);
    int dfd = photon_open(dpath, O_RDONLY, 0);
    CHECK(dfd >= 0, "open dir: %s", strerror(errno));
    CHECK_ERRNO(photon_read(dfd, buf, sizeof buf, PHOTON_FOREVER), EISDIR);
    CHECK_ERRNO(photon_read(dfd, buf, sizeof buf, 100000), EISDIR);
    CHECK_ERRNO(photon_pread(dfd, buf, sizeof buf, 0), EISDIR);
    CHECK_ERRNO(photon_preadv(dfd, iov, 2, 0), EISDIR);
    CHECK_ERRNO(photon_readv(dfd, iov, 2, PHOTON_FOREVER), EISDIR);
    CHECK_ERRNO(photon_pwrite(dfd, "x", 1, 0), EBADF); /* read-only directory fd */
    CHECK_ERRNO(photon_unlink(dpath), EISDIR);
    CHECK_OK(photon_close(dfd));
    SAY("EISDIR: read/pread/readv/preadv on a directory fd, directory opened for writing");

    /* EFBIG: past the filesystem's largest file */
    errno = 0;
    ssize_t n = photon_pwrite(fd, "x", 1, (off_t)1 << 62);
    CHECK(n == -1 && (errno == EFBIG || errno == EINVAL),
          "pwrite at 2^62: %zd, errno %d (%s), want EFBIG", n, errno, strerror(errno));
    SAY("pwrite at 2^62: %s", strerror(errno));

    /* the fds survived all that */
    CHECK(photon_pread(ro, buf, 16, 0) == 16 && memcmp(buf, "0123456789abcdef", 16) == 0,
          "read after the errors");
    CHECK(photon_pwrite(wo, "Z", 1, 0) == 1, "write after the errors");
    CHECK(photon_pread(fd, buf, 2, 0) == 2 && memcmp(buf, "Z1", 2) == 0, "pread after pwrite");
    CHECK_OK(photon_close(ro));
    CHECK_OK(photon_close(wo));
    CHECK_OK(photon_close(fd));
    CHECK_OK(photon_unlink(path));
    CHECK_OK(rmdir(dpath));
}

static void *thread_main(void *arg) {
    (void)arg;
    error_checks();
    return (void *)1;
}

int main(void) {
    test_start("fs_errors");
    off_vcpu_checks("before photon_init");
    test_init();
    snprintf(g_dir, sizeof g_dir, "/tmp/photon_fs_errors_XXXXXX");
    CHECK(mkdtemp(g_dir) != NULL, "mkdtemp: %s", strerror(errno));
    error_checks();
    SAY("-- again in a spawned photon thread");
    photon_thread *th = spawn_joinable(thread_main, NULL, 0);
    CHECK(join_ok(th) == (void *)1, "thread result");
    CHECK_OK(rmdir(g_dir));
    test_fini();
    off_vcpu_checks("after photon_fini");
    SAY("fs_errors: OK");
    return 0;
}
