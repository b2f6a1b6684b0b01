/*
 * photon_fstat of an fd whose attributes are in memory (a regular file on
 * the test's local file system, a directory, a socket, a pipe, an eventfd)
 * is an fstat on the vcpu: no engine operation (photon_stats io_submitted
 * does not grow) and, under io_uring, no io_uring worker thread
 * ("iou-wrk-*": the kernel always hands a ring statx to one). An fd photon
 * cannot classify (a namespace file: nsfs is no mount of the process's
 * table) keeps the engine's way, one operation per call. With
 * PHOTON_IO_OFF=inline_fstat every call goes to the engine.
 *
 * Either way st_mode, st_size, st_ino, st_dev, st_nlink, st_uid, st_rdev
 * and st_blksize are fstat(2)'s (through libc). An fd number closed and
 * reused for another file gives the new file's attributes, and the path of
 * the new file's kind: after photon_close, and after a close behind
 * photon's back announced with photon_fd_forget. A bad fd is EBADF, NULL
 * EINVAL, an unwritable struct stat EFAULT (either way: the engine's
 * result is written through the kernel too). A thread that loops
 * photon_fstat lets the vcpu's other threads run (the calls count against
 * the I/O budget).
 */
#include <fcntl.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"

static char g_dir[64];
/* photon_fstat of a local fd is made on the vcpu (inline_fstat not off). */
static int g_inline;
/* An nsfs fd is one photon cannot classify here (see nsfs_unknown). */
static int g_nsfs;

static void path_in(char *out, size_t n, const char *name) {
    snprintf(out, n, "%s/%s", g_dir, name);
}

/* A new file `name` of `size` bytes, opened read-only with libc. */
static int make_file(const char *name, size_t size) {
    char path[128];
    path_in(path, sizeof path, name);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    CHECK(fd >= 0, "open %s: %s", path, strerror(errno));
    char buf[256];
    memset(buf, 'x', sizeof buf);
    for (size_t done = 0; done < size;) {
        size_t n = size - done < sizeof buf ? size - done : sizeof buf;
        CHECK(write(fd, buf, n) == (ssize_t)n, "write %s: %s", path, strerror(errno));
        done += n;
    }
    return fd;
}

/* photon_fstat(fd) says what fstat(2) says. */
static void same_stat(const char *what, int fd) {
    struct stat a, b;
    memset(&a, 0xa5, sizeof a);
    CHECK_OK(photon_fstat(fd, &a));
    CHECK_OK(fstat(fd, &b));
    CHECK(a.st_mode == b.st_mode, "%s: st_mode %o, fstat says %o", what, a.st_mode, b.st_mode);
    CHECK(a.st_size == b.st_size, "%s: st_size %lld, fstat says %lld", what, (long long)a.st_size,
          (long long)b.st_size);
    CHECK(a.st_ino == b.st_ino, "%s: st_ino %llu, fstat says %llu", what,
          (unsigned long long)a.st_ino, (unsigned long long)b.st_ino);
    CHECK(a.st_dev == b.st_dev && a.st_rdev == b.st_rdev, "%s: st_dev/st_rdev differ", what);
    CHECK(a.st_nlink == b.st_nlink && a.st_uid == b.st_uid && a.st_gid == b.st_gid,
          "%s: st_nlink/st_uid/st_gid differ", what);
    CHECK(a.st_blksize == b.st_blksize && a.st_blocks == b.st_blocks,
          "%s: st_blksize/st_blocks differ", what);
}

/* 8 photon_fstat calls of `fd`, each checked against fstat(2): on the vcpu
 * (no engine operation) if `local` and inline_fstat is on, else one engine
 * operation each. */
static void fstat_path(const char *what, int fd, int local) {
    uint64_t before = io_submitted();
    for (int i = 0; i < 8; i++) same_stat(what, fd);
    uint64_t ops = io_submitted() - before;
    int want = local && g_inline ? 0 : 8;
    CHECK(ops == (uint64_t)want, "%s: %llu engine operations for 8 photon_fstat, want %d", what,
          (unsigned long long)ops, want);
    SAY("%s: %s", what, want == 0 ? "on the vcpu" : "through the engine");
}

/* An nsfs fd (a namespace file) is one photon cannot classify: nsfs is the
 * kernel's internal mount, not in the process's mount table. Not where
 * /proc/self/ns cannot be opened, nor where an nsfs bind mount is in the
 * table (a kernel without statx's mount id then finds it by device). */
static int nsfs_unknown(void) {
    int fd = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        SAY("NOTICE: /proc/self/ns/net: %s: the unclassifiable fd is not checked", strerror(errno));
        return 0;
    }
    close(fd);
    FILE *f = fopen("/proc/self/mountinfo", "r");
    CHECK(f != NULL, "fopen mountinfo: %s", strerror(errno));
    char line[4096];
    int bound = 0;
    while (fgets(line, sizeof line, f) != NULL)
        if (strstr(line, " - nsfs ") != NULL) bound = 1;
    fclose(f);
    if (bound) SAY("NOTICE: an nsfs mount is in the mount table: the unclassifiable fd is not checked");
    return !bound;
}

static int open_nsfs(void) {
    int fd = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
    CHECK(fd >= 0, "open /proc/self/ns/net: %s", strerror(errno));
    return fd;
}

/* The kinds of fd, each on its path. Under io_uring (inline_fstat on) no
 * io_uring worker thread was started for them (beyond those there were
 * before: none on kernels whose eventfd reads need none). */
static void kinds(void) {
    int workers = threads_named("iou-wrk");
    if (workers > 0) SAY("NOTICE: %d io_uring worker thread(s) before any photon_fstat", workers);
    int file = make_file("kinds", 1000);
    fstat_path("regular file", file, 1);
    int pfd[2];
    CHECK_OK(pipe2(pfd, O_CLOEXEC));
    fstat_path("pipe (read end)", pfd[0], 1);
    fstat_path("pipe (write end)", pfd[1], 1);
    int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    CHECK(s >= 0, "socket: %s", strerror(errno));
    fstat_path("socket (libc's)", s, 1);
    int ev = eventfd(0, EFD_CLOEXEC);
    CHECK(ev >= 0, "eventfd: %s", strerror(errno));
    fstat_path("eventfd", ev, 1);
    int dir = open(g_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    CHECK(dir >= 0, "open %s: %s", g_dir, strerror(errno));
    fstat_path("directory", dir, 1);
    if (engine_is("io_uring") && g_inline) {
        int n = threads_named("iou-wrk");
        CHECK(n == workers, "%d io_uring worker thread(s) after the fstat calls, %d before", n, workers);
        SAY("no io_uring worker thread started");
    }
    int ps = photon_socket(AF_INET, SOCK_STREAM, 0);
    CHECK(ps >= 0, "photon_socket: %s", strerror(errno));
    fstat_path("socket (photon_socket)", ps, 1);
    if (g_nsfs) {
        int ns = open_nsfs();
        fstat_path("namespace file (unclassifiable)", ns, 0);
        CHECK_OK(photon_close(ns));
    }
    CHECK_OK(photon_close(ps));
    CHECK_OK(photon_close(dir));
    CHECK_OK(photon_close(ev));
    CHECK_OK(photon_close(s));
    CHECK_OK(photon_close(pfd[0]));
    CHECK_OK(photon_close(pfd[1]));
    CHECK_OK(photon_close(file));
}

/* An fd number closed and reused: the new file's attributes and path. */
static void reuse(void) {
    struct stat st;
    /* A file, then another file of another size on the same number. */
    int a = make_file("reuse_a", 10);
    CHECK_OK(photon_fstat(a, &st));
    CHECK(st.st_size == 10, "reuse_a: size %lld", (long long)st.st_size);
    ino_t ino_a = st.st_ino;
    CHECK_OK(photon_close(a));
    int b = make_file("reuse_b", 20);
    CHECK(b == a, "the number was not reused (%d, then %d)", a, b);
    CHECK_OK(photon_fstat(b, &st));
    CHECK(st.st_size == 20 && st.st_ino != ino_a, "reused fd: size %lld, inode %s", (long long)st.st_size,
          st.st_ino == ino_a ? "the old file's" : "new");
    fstat_path("reused fd: a file after a file", b, 1);

    /* A file, then a socket, then a pipe on the same number. */
    CHECK_OK(photon_close(b));
    int s = socket(AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s < 0) s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    CHECK(s == b, "the number was not reused for a socket (%d, then %d)", b, s);
    CHECK_OK(photon_fstat(s, &st));
    CHECK(S_ISSOCK(st.st_mode), "reused fd: mode %o, not a socket", st.st_mode);
    fstat_path("reused fd: a socket after a file", s, 1);
    CHECK_OK(photon_close(s));
    int pfd[2];
    CHECK_OK(pipe2(pfd, O_CLOEXEC));
    CHECK(pfd[0] == s, "the number was not reused for a pipe (%d, then %d)", s, pfd[0]);
    CHECK_OK(photon_fstat(pfd[0], &st));
    CHECK(S_ISFIFO(st.st_mode), "reused fd: mode %o, not a pipe", st.st_mode);
    fstat_path("reused fd: a pipe after a socket", pfd[0], 1);
    CHECK_OK(photon_close(pfd[0]));
    CHECK_OK(photon_close(pfd[1]));

    if (!g_nsfs) return;
    /* Unclassifiable, then local: the engine's way, then the vcpu's. */
    int ns = open_nsfs();
    fstat_path("nsfs fd", ns, 0);
    CHECK_OK(photon_close(ns));
    int f = photon_open(g_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
    CHECK(f == ns, "the number was not reused (%d, then %d)", ns, f);
    fstat_path("reused fd: a directory after an nsfs fd", f, 1);
    /* Local, then unclassifiable: the local fact went with photon_close. */
    CHECK_OK(photon_close(f));
    ns = open_nsfs();
    CHECK(ns == f, "the number was not reused (%d, then %d)", f, ns);
    fstat_path("reused fd: an nsfs fd after a directory (photon_close)", ns, 0);
    CHECK_OK(photon_close(ns));
    /* Closed behind photon's back and announced with photon_fd_forget. */
    int g = make_file("reuse_g", 30);
    fstat_path("a file", g, 1);
    CHECK_OK(close(g));
    ns = open_nsfs();
    CHECK(ns == g, "the number was not reused (%d, then %d)", g, ns);
    CHECK_OK(photon_fd_forget(ns));
    fstat_path("reused fd: an nsfs fd after a file (close + photon_fd_forget)", ns, 0);
    CHECK_OK(photon_close(ns));
}

static void errors(void) {
    struct stat st;
    CHECK_ERRNO(photon_fstat(-1, &st), EBADF);
    int fd = make_file("errors", 5);
    CHECK_ERRNO(photon_fstat(fd, NULL), EINVAL);
    CHECK_OK(photon_fstat(fd, &st)); /* known local now */
    CHECK_OK(photon_close(fd));
    CHECK_ERRNO(photon_fstat(fd, &st), EBADF);
    /* Closed behind photon's back while known local: the kernel's EBADF. */
    fd = make_file("errors", 5);
    CHECK_OK(photon_fstat(fd, &st));
    CHECK_OK(close(fd));
    CHECK_ERRNO(photon_fstat(fd, &st), EBADF);
    CHECK_OK(photon_fd_forget(fd));
    CHECK_ERRNO(photon_fstat(1 << 20, &st), EBADF);
    SAY("EBADF, EINVAL: ok");
}

/* A struct stat the kernel cannot write (a read-only page) gives EFAULT,
 * not a crash: on the vcpu the kernel's own, through the engine (an fd
 * photon cannot classify, or every fd with inline_fstat off) the result
 * is written through the kernel too. Not under Valgrind, which reports the
 * system call's unwritable buffer as an error of its own. */
static void bad_buffer(void) {
    if (under_valgrind()) {
        SAY("EFAULT: not checked under Valgrind");
        return;
    }
    long page = sysconf(_SC_PAGESIZE);
    struct stat *ro = mmap(NULL, (size_t)page, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(ro != MAP_FAILED, "mmap: %s", strerror(errno));
    int fd = make_file("efault", 5);
    CHECK_ERRNO(photon_fstat(fd, ro), EFAULT);
    CHECK_OK(photon_close(fd));
    if (g_nsfs) {
        int ns = open_nsfs();
        uint64_t before = io_submitted();
        CHECK_ERRNO(photon_fstat(ns, ro), EFAULT);
        CHECK(io_submitted() == before + 1, "the nsfs fd's photon_fstat made no engine operation");
        CHECK_OK(photon_close(ns));
    }
    CHECK_OK(munmap(ro, (size_t)page));
    SAY("EFAULT for an unwritable struct stat (%s): ok", g_nsfs ? "a local file and the engine's way" : "a local file");
}

static volatile int g_looping;
static volatile uint64_t g_turns;

static void *yielder(void *arg) {
    (void)arg;
    while (g_looping) {
        g_turns++;
        photon_thread_yield();
    }
    return NULL;
}

/* A thread that loops photon_fstat on a local fd lets the others run. */
static void fairness(void) {
    int fd = make_file("fair", 100);
    g_looping = 1;
    photon_thread *th = spawn_joinable(yielder, NULL, 0);
    struct stat st;
    long calls = 0;
    for (; calls < 200000 && g_turns < 100; calls++) CHECK_OK(photon_fstat(fd, &st));
    g_looping = 0;
    CHECK(join_ok(th) == NULL, "yielder result");
    CHECK(g_turns >= 100, "a thread that keeps yielding got %llu turns in %ld photon_fstat calls",
          (unsigned long long)g_turns, calls);
    SAY("fairness: %llu turns of the other thread in %ld calls", (unsigned long long)g_turns, calls);
    CHECK_OK(photon_close(fd));
}

static void remove_files(void) {
    const char *names[] = {"kinds", "reuse_a", "reuse_b", "reuse_g", "errors", "efault", "fair"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        char path[128];
        path_in(path, sizeof path, names[i]);
        unlink(path);
    }
    CHECK_OK(rmdir(g_dir));
}

int main(void) {
    test_start("fs_fstat");
    g_inline = !io_feature_listed("PHOTON_IO_OFF", "inline_fstat");
    SAY("inline_fstat %s", g_inline ? "on" : "off (PHOTON_IO_OFF)");
    snprintf(g_dir, sizeof g_dir, "/tmp/photon_fs_fstat_XXXXXX");
    CHECK(mkdtemp(g_dir) != NULL, "mkdtemp: %s", strerror(errno));
    g_nsfs = nsfs_unknown();
    test_init();
    kinds();
    reuse();
    errors();
    bad_buffer();
    fairness();
    remove_files();
    test_fini();
    SAY("fs_fstat: OK");
    return 0;
}
