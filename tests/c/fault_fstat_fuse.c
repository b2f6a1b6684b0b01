/*
 * photon_fstat of a file on a FUSE file system (fault_slowfs.h: the test's
 * own daemon, a pthread of this process) keeps the engine's way: FUSE's
 * getattr may wait for its daemon, so it is never an fstat on the vcpu.
 * Each call is one engine operation (photon_stats io_submitted), for the
 * file and for the mount's root directory, whether it is the fd's first
 * use or not, with the attributes fstat(2) gives; a file of the local
 * /tmp in the same run is made on the vcpu (no engine operation) unless
 * PHOTON_IO_OFF=inline_fstat. Where this host does not allow the mount
 * (no CAP_SYS_ADMIN or /dev/fuse) the FUSE part is skipped with a NOTICE.
 */
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fault_slowfs.h"

static struct slowfs fs;

/* n photon_fstat calls of fd, each as fstat(2) says; returns the engine
 * operations they made. */
static uint64_t fstat_ops(const char *what, int fd, int n) {
    uint64_t before = io_submitted();
    for (int i = 0; i < n; i++) {
        struct stat a, b;
        CHECK_OK(photon_fstat(fd, &a));
        CHECK_OK(fstat(fd, &b));
        CHECK(a.st_mode == b.st_mode && a.st_size == b.st_size && a.st_ino == b.st_ino &&
                  a.st_dev == b.st_dev,
              "%s: photon_fstat mode %o size %lld ino %llu, fstat mode %o size %lld ino %llu", what,
              a.st_mode, (long long)a.st_size, (unsigned long long)a.st_ino, b.st_mode,
              (long long)b.st_size, (unsigned long long)b.st_ino);
    }
    return io_submitted() - before;
}

int main(void) {
    test_start("fault_fstat_fuse");
    int inline_on = !io_feature_listed("PHOTON_IO_OFF", "inline_fstat");
    test_init();

    char local[] = "/tmp/photon_fstat_fuse_XXXXXX";
    int lfd = mkstemp(local);
    CHECK(lfd >= 0, "mkstemp: %s", strerror(errno));
    CHECK(write(lfd, "abc", 3) == 3, "write: %s", strerror(errno));
    uint64_t ops = fstat_ops("local file", lfd, 4);
    CHECK(ops == (inline_on ? 0u : 4u), "local file: %llu engine operations for 4 calls (inline_fstat %s)",
          (unsigned long long)ops, inline_on ? "on" : "off");
    CHECK_OK(photon_close(lfd));
    CHECK_OK(unlink(local));
    SAY("local file: %s", inline_on ? "on the vcpu" : "through the engine");

    if (slowfs_mount(&fs, FUSE_ASYNC_READ, 0) != 0) {
        SAY("NOTICE: cannot mount a FUSE file system here (%s): FUSE cases skipped", strerror(errno));
        test_fini();
        SAY("fault_fstat_fuse: OK (FUSE cases skipped)");
        return 0;
    }
    SAY("FUSE file system mounted on %s (its daemon is a pthread of this test)", fs.dir);
    /* The fd's first use is photon_fstat itself (opened with libc). */
    int fd = open(fs.path, O_RDONLY | O_CLOEXEC);
    CHECK(fd >= 0, "open %s: %s", fs.path, strerror(errno));
    ops = fstat_ops("FUSE file", fd, 4);
    CHECK(ops == 4, "FUSE file: %llu engine operations for 4 photon_fstat, want 4",
          (unsigned long long)ops);
    struct stat st;
    CHECK_OK(photon_fstat(fd, &st));
    CHECK(S_ISREG(st.st_mode) && (unsigned long long)st.st_size == SLOWFS_SIZE,
          "FUSE file: mode %o size %lld", st.st_mode, (long long)st.st_size);
    CHECK_OK(photon_close(fd));
    /* Opened by photon_open, read first (the facts learnt by the read). */
    fd = photon_open(fs.path, O_RDONLY, 0);
    CHECK(fd >= 0, "photon_open %s: %s", fs.path, strerror(errno));
    char buf[16];
    CHECK(photon_pread(fd, buf, sizeof buf, 0) == (ssize_t)sizeof buf, "pread: %s", strerror(errno));
    ops = fstat_ops("FUSE file (photon_open, read first)", fd, 4);
    CHECK(ops == 4, "FUSE file after a read: %llu engine operations for 4 photon_fstat, want 4",
          (unsigned long long)ops);
    CHECK_OK(photon_close(fd));
    int dir = open(fs.dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    CHECK(dir >= 0, "open %s: %s", fs.dir, strerror(errno));
    ops = fstat_ops("FUSE root directory", dir, 4);
    CHECK(ops == 4, "FUSE directory: %llu engine operations for 4 photon_fstat, want 4",
          (unsigned long long)ops);
    CHECK_OK(photon_close(dir));
    SAY("FUSE file and directory: through the engine");
    slowfs_unmount(&fs);
    test_fini();
    SAY("fault_fstat_fuse: OK");
    return 0;
}
