/*
 * "errno is the kernel's, unchanged": for inputs the kernel itself rejects
 * (or accepts) in a particular way, each photon file call must give what
 * the same libc call gives on the same arguments, under both engines. Each
 * case runs the libc call and the photon call on equal fresh state and
 * compares return value and errno; every case is reported, and the test
 * fails at the end if any differed. The cases:
 *  - pread/pwrite/preadv/pwritev on a pipe and on a socket: ESPIPE (the
 *    pipe holds data, so a call that wrongly reads it returns instead of
 *    blocking);
 *  - photon_fstat(AT_FDCWD): EBADF (AT_FDCWD is not an fd);
 *  - preadv/pwritev with IOV_MAX + 1 iovecs: EINVAL;
 *  - O_DIRECT preadv/pwritev whose segments are misaligned one by one
 *    although their total is aligned (the kernel checks each segment);
 *  - photon_open(FIFO, O_RDONLY) with no writer waits, as open(2) does
 *    (checked by interrupting it after 50 ms: it must still be waiting);
 *  - preadv into one 64 GiB iovec (valid memory: a MAP_NORESERVE mapping)
 *    from a 10-byte file: the kernel returns 10. Run in a child process
 *    forked before photon_init, so that a crash is reported as a
 *    difference rather than ending the test.
 */
#include <fcntl.h>
#include <limits.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"

static int g_cases, g_diffs;
static char g_dir[64];

static void compare(const char *what, long want_ret, int want_err, long got_ret, int got_err) {
    g_cases++;
    int same = want_ret == got_ret && (want_ret != -1 || want_err == got_err);
    if (same) {
        SAY("  same    %-52s %ld%s%s", what, got_ret, got_ret == -1 ? " " : "",
            got_ret == -1 ? strerror(got_err) : "");
    } else {
        g_diffs++;
        SAY("  DIFFERS %-52s libc %ld (%s), photon %ld (%s)", what, want_ret,
            want_ret == -1 ? strerror(want_err) : "ok", got_ret,
            got_ret == -1 ? strerror(got_err) : "ok");
    }
}

/* Runs `libc_call` and `photon_call` (expressions) and compares them. */
#define COMPARE(what, libc_call, photon_call)                                \
    do {                                                                     \
        errno = 0;                                                           \
        long want_ = (long)(libc_call);                                      \
        int want_err_ = errno;                                               \
        errno = 0;                                                           \
        long got_ = (long)(photon_call);                                     \
        int got_err_ = errno;                                                \
        compare(what, want_, want_err_, got_, got_err_);                     \
    } while (0)

/* A pipe (or socketpair) whose read end holds 8 bytes. */
static void filled_pair(int fds[2], int socket) {
    if (socket)
        CHECK_OK(socketpair(AF_UNIX, SOCK_STREAM, 0, fds));
    else
        CHECK_OK(pipe(fds));
    CHECK(write(fds[1], "12345678", 8) == 8, "fill: %s", strerror(errno));
}

static void close_pair(int fds[2]) {
    photon_close(fds[0]);
    photon_close(fds[1]);
}

static void stream_cases(int socket) {
    const char *kind = socket ? "socket" : "pipe";
    char name[96], buf[8] = {0};
    struct iovec iov = {buf, sizeof buf};
    int a[2], b[2];

    filled_pair(a, socket);
    filled_pair(b, socket);
    snprintf(name, sizeof name, "pread on a %s holding data", kind);
    COMPARE(name, pread(a[0], buf, 4, 0), photon_pread(b[0], buf, 4, 0));
    close_pair(a);
    close_pair(b);

    filled_pair(a, socket);
    filled_pair(b, socket);
    snprintf(name, sizeof name, "preadv on a %s holding data", kind);
    COMPARE(name, preadv(a[0], &iov, 1, 0), photon_preadv(b[0], &iov, 1, 0));
    close_pair(a);
    close_pair(b);

    filled_pair(a, socket);
    filled_pair(b, socket);
    snprintf(name, sizeof name, "pwrite on a %s", kind);
    COMPARE(name, pwrite(a[1], "x", 1, 0), photon_pwrite(b[1], "x", 1, 0));
    snprintf(name, sizeof name, "pwritev on a %s", kind);
    COMPARE(name, pwritev(a[1], &iov, 1, 0), photon_pwritev(b[1], &iov, 1, 0));
    close_pair(a);
    close_pair(b);
}

static void regular_cases(void) {
    char path[128];
    snprintf(path, sizeof path, "%s/f", g_dir);
    int fd = photon_open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    CHECK(fd >= 0, "open: %s", strerror(errno));
    CHECK(photon_pwrite(fd, "0123456789", 10, 0) == 10, "pwrite");

    struct stat st;
    COMPARE("fstat(AT_FDCWD)", fstat(AT_FDCWD, &st), photon_fstat(AT_FDCWD, &st));

    enum { TOO_MANY = IOV_MAX + 1 };
    static struct iovec many[TOO_MANY];
    static char one[TOO_MANY];
    for (int i = 0; i < TOO_MANY; i++) many[i] = (struct iovec){one + i, 1};
    COMPARE("preadv with IOV_MAX + 1 iovecs", preadv(fd, many, TOO_MANY, 0),
            photon_preadv(fd, many, TOO_MANY, 0));
    COMPARE("pwritev with IOV_MAX + 1 iovecs", pwritev(fd, many, TOO_MANY, 100),
            photon_pwritev(fd, many, TOO_MANY, 200));
    COMPARE("preadv with IOV_MAX iovecs", preadv(fd, many, IOV_MAX, 0),
            photon_preadv(fd, many, IOV_MAX, 0));
    CHECK_OK(photon_close(fd));
    CHECK_OK(photon_unlink(path));
}

static void direct_cases(void) {
    char path[128];
    snprintf(path, sizeof path, "%s/direct", g_dir);
    errno = 0;
    int fd = photon_open(path, O_RDWR | O_CREAT | O_TRUNC | O_DIRECT, 0600);
    if (fd < 0 && errno == EINVAL) {
        SAY("NOTICE: no O_DIRECT on %s; O_DIRECT cases skipped", g_dir);
        return;
    }
    CHECK(fd >= 0, "open O_DIRECT: %s", strerror(errno));
    unsigned char *a = NULL, *b = NULL;
    CHECK(posix_memalign((void **)&a, 4096, 8192) == 0, "posix_memalign");
    CHECK(posix_memalign((void **)&b, 4096, 8192) == 0, "posix_memalign");
    memset(a, 'a', 8192);
    memset(b, 'b', 8192);
    CHECK(photon_pwrite(fd, a, 8192, 0) == 8192, "O_DIRECT pwrite: %s", strerror(errno));

    struct iovec lens[2] = {{a, 256}, {b, 768}};       /* total 1024, segments not */
    struct iovec addr[2] = {{a, 512}, {b + 256, 512}}; /* second segment's address */
    struct iovec first[2] = {{a + 256, 256}, {b, 256}};
    COMPARE("O_DIRECT preadv, segment lengths 256 + 768", preadv(fd, lens, 2, 0),
            photon_preadv(fd, lens, 2, 0));
    COMPARE("O_DIRECT pwritev, segment lengths 256 + 768", pwritev(fd, lens, 2, 0),
            photon_pwritev(fd, lens, 2, 0));
    COMPARE("O_DIRECT preadv, 2nd segment at +256", preadv(fd, addr, 2, 0),
            photon_preadv(fd, addr, 2, 0));
    COMPARE("O_DIRECT pwritev, 2nd segment at +256", pwritev(fd, addr, 2, 0),
            photon_pwritev(fd, addr, 2, 0));
    COMPARE("O_DIRECT preadv, 256 at +256 then 256", preadv(fd, first, 2, 0),
            photon_preadv(fd, first, 2, 0));
    free(a);
    free(b);
    CHECK_OK(photon_close(fd));
    CHECK_OK(photon_unlink(path));
}

struct fifo_open {
    const char *path;
    int ret, err, done;
};

static void *fifo_open_main(void *arg) {
    struct fifo_open *f = arg;
    errno = 0;
    f->ret = photon_open(f->path, O_RDONLY, 0);
    f->err = errno;
    f->done = 1;
    return NULL;
}

static void fifo_case(void) {
    char fifo[128];
    snprintf(fifo, sizeof fifo, "%s/fifo", g_dir);
    CHECK_OK(mkfifo(fifo, 0600));
    struct fifo_open f = {fifo, 0, 0, 0};
    photon_thread *th = spawn_joinable(fifo_open_main, &f, 0);
    CHECK_OK(photon_thread_usleep(50000));
    int waited = !f.done;
    if (waited) CHECK_OK(photon_thread_interrupt(th, EINTR));
    join_ok(th);
    g_cases++;
    if (waited) {
        SAY("  same    %-52s waits (interrupted: %s)", "open(FIFO, O_RDONLY), no writer",
            strerror(f.err));
    } else {
        g_diffs++;
        SAY("  DIFFERS %-52s open(2) waits for a writer; photon returned %d (%s) at once",
            "open(FIFO, O_RDONLY), no writer", f.ret, f.ret < 0 ? strerror(f.err) : "an fd");
    }
    if (f.ret >= 0) photon_close(f.ret);
    /* release an open still pending on a helper thread (its fd is closed by photon) */
    int w = open(fifo, O_WRONLY | O_NONBLOCK);
    if (w >= 0) close(w);
    CHECK_OK(unlink(fifo));
}

/* In a child forked before photon_init: preadv into a 64 GiB iovec. */
static int huge_iovec_child(const char *path) {
    size_t len = (size_t)64 << 30;
    void *big = mmap(NULL, len, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (big == MAP_FAILED) return 3; /* cannot set up: reported as skipped */
    int fd = open(path, O_RDONLY);
    if (fd < 0) return 4;
    struct iovec v = {big, len};
    errno = 0;
    ssize_t want = preadv(fd, &v, 1, 0);
    if (photon_init(PHOTON_EVENT_DEFAULT, 0) != 0) return 5;
    errno = 0;
    ssize_t got = photon_preadv(fd, &v, 1, 0);
    int err = errno;
    printf("  (child: libc %zd, photon %zd %s)\n", want, got, got < 0 ? strerror(err) : "");
    photon_fini();
    return got == want ? 0 : 1;
}

int main(void) {
    test_start("fs_parity");
    snprintf(g_dir, sizeof g_dir, "/tmp/photon_fs_parity_XXXXXX");
    CHECK(mkdtemp(g_dir) != NULL, "mkdtemp: %s", strerror(errno));

    /* the 64 GiB iovec case, in a child that starts its own vcpu */
    char small[128] = {0};
    snprintf(small, sizeof small, "%s/small", g_dir);
    int sfd = open(small, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    CHECK(sfd >= 0 && write(sfd, "0123456789", 10) == 10, "small file: %s", strerror(errno));
    close(sfd);
    fflush(stdout);
    pid_t pid = fork();
    CHECK(pid >= 0, "fork: %s", strerror(errno));
    if (pid == 0) _exit(huge_iovec_child(small));
    int status = 0;
    CHECK(waitpid(pid, &status, 0) == pid, "waitpid: %s", strerror(errno));
    CHECK_OK(unlink(small));

    test_init();
    if (WIFEXITED(status) && WEXITSTATUS(status) >= 3) {
        SAY("NOTICE: 64 GiB iovec case not run (child setup step %d failed)",
            WEXITSTATUS(status));
    } else {
        g_cases++;
        if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
            SAY("  same    %-52s", "preadv into a 64 GiB iovec from a 10-byte file");
        } else {
            g_diffs++;
            if (WIFSIGNALED(status))
                SAY("  DIFFERS %-52s libc 10, photon: process killed by signal %d",
                    "preadv into a 64 GiB iovec from a 10-byte file", WTERMSIG(status));
            else
                SAY("  DIFFERS %-52s (see the child's line above)",
                    "preadv into a 64 GiB iovec from a 10-byte file");
        }
    }

    stream_cases(0);
    stream_cases(1);
    regular_cases();
    direct_cases();
    fifo_case();

    CHECK_OK(rmdir(g_dir));
    test_fini();
    SAY("%d cases, %d differ from the kernel", g_cases, g_diffs);
    CHECK(g_diffs == 0, "%d of %d calls did not give what the kernel gives", g_diffs, g_cases);
    SAY("fs_parity: OK");
    return 0;
}
