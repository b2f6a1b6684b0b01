/*
 * Interrupting photon threads blocked in slow file operations. A FIFO
 * (mkfifo, opened O_RDWR by photon_open, so the open itself does not
 * block) stands for a file whose read never completes:
 *  - photon_read / photon_readv on it block; photon_thread_interrupt wakes
 *    the thread promptly with the chosen errno (a custom code, and EINTR
 *    sent from a plain pthread that is no vcpu), and no data is lost: bytes
 *    written afterwards are what the next read returns;
 *  - a timeout gives ETIMEDOUT;
 *  - photon_write blocked on a full FIFO, interrupted, wrote nothing;
 *  - 16 threads blocked on one FIFO, all interrupted, all wake;
 *  - photon_close of the fd wakes a blocked reader (ECANCELED);
 *  - photon_open of a FIFO for reading blocks in the kernel until a writer
 *    comes: interrupted, it returns the errno promptly, and the fd the open
 *    makes once a writer does come is not leaked;
 *  - an interrupt sent before a regular-file pread fails it at once;
 *  - photon_fini does not hang on a thread blocked in a FIFO read.
 */
#include <fcntl.h>
#include <dirent.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "check.h"

#define MS 1000ULL
#define PROMPT_US (100 * MS)
#define CUSTOM_ERRNO 4242

static char g_fifo[128];

enum op { OP_READ, OP_READV, OP_WRITE, OP_OPEN };
static const char *op_name[] = {"photon_read", "photon_readv", "photon_write", "photon_open"};

struct blocked {
    enum op op;
    int fd;
    uint64_t timeout;
    atomic_int entered;
    long ret;
    int err;
    uint64_t woke_at;
};

static void *blocked_main(void *arg) {
    struct blocked *b = arg;
    char buf[128] = {0};
    struct iovec iov[2] = {{buf, 3}, {buf + 3, sizeof buf - 3}};
    atomic_store(&b->entered, 1);
    errno = 0;
    switch (b->op) {
    case OP_READ: b->ret = photon_read(b->fd, buf, sizeof buf, b->timeout); break;
    case OP_READV: b->ret = photon_readv(b->fd, iov, 2, b->timeout); break;
    case OP_WRITE: b->ret = photon_write(b->fd, buf, 100, b->timeout); break;
    case OP_OPEN: b->ret = photon_open(g_fifo, O_RDONLY, 0); break;
    }
    b->err = errno;
    b->woke_at = photon_now_us();
    return NULL;
}

static photon_thread *start_blocked(struct blocked *b, enum op op, int fd) {
    memset(b, 0, sizeof *b);
    b->op = op;
    b->fd = fd;
    b->timeout = PHOTON_FOREVER;
    photon_thread *th = spawn_joinable(blocked_main, b, 0);
    CHECK_OK(photon_thread_usleep(50 * MS)); /* let it block */
    CHECK(atomic_load(&b->entered) && b->woke_at == 0, "%s did not block", op_name[op]);
    return th;
}

static int fifo_rdwr(void) {
    int fd = photon_open(g_fifo, O_RDWR, 0);
    CHECK(fd >= 0, "photon_open(fifo, O_RDWR): %s", strerror(errno));
    return fd;
}

struct remote {
    photon_thread *th;
    int err;
    uint64_t sent_at;
};

static void *remote_interrupter(void *arg) {
    struct remote *r = arg;
    usleep(20000);
    r->sent_at = photon_now_us();
    CHECK_OK(photon_thread_interrupt(r->th, r->err));
    return NULL;
}

static void check_woke(struct blocked *b, int want_err, uint64_t since) {
    CHECK(b->ret == -1 && b->err == want_err, "%s: got %ld with errno %d (%s), want errno %d",
          op_name[b->op], b->ret, b->err, strerror(b->err), want_err);
    uint64_t took = b->woke_at - since;
    CHECK(b->woke_at >= since && took < PROMPT_US, "%s woke %llu us after the interrupt",
          op_name[b->op], (unsigned long long)took);
}

/* Writes `s` to the FIFO from the side and reads it back through `fd`. */
static void no_data_lost(int fd) {
    int w = open(g_fifo, O_WRONLY | O_NONBLOCK);
    CHECK(w >= 0, "open fifo for writing: %s", strerror(errno));
    CHECK(write(w, "after", 5) == 5, "write: %s", strerror(errno));
    char buf[16] = {0};
    ssize_t n = photon_read(fd, buf, sizeof buf, 2000 * MS);
    CHECK(n == 5 && memcmp(buf, "after", 5) == 0, "read after the interrupt: %zd (%s)", n,
          strerror(errno));
    close(w);
}

static void test_read_interrupted(enum op op) {
    int fd = fifo_rdwr();
    struct blocked b;
    photon_thread *th = start_blocked(&b, op, fd);
    uint64_t t0 = photon_now_us();
    CHECK_OK(photon_thread_interrupt(th, CUSTOM_ERRNO));
    join_ok(th);
    check_woke(&b, CUSTOM_ERRNO, t0);
    no_data_lost(fd);
    SAY("%s on a FIFO: interrupted with errno %d after %llu us; later data intact",
        op_name[op], CUSTOM_ERRNO, (unsigned long long)(b.woke_at - t0));

    /* again, with EINTR from a plain pthread */
    th = start_blocked(&b, op, fd);
    struct remote r = {th, EINTR, 0};
    pthread_t pt;
    CHECK(pthread_create(&pt, NULL, remote_interrupter, &r) == 0, "pthread_create");
    join_ok(th);
    CHECK(pthread_join(pt, NULL) == 0, "pthread_join");
    check_woke(&b, EINTR, r.sent_at);
    no_data_lost(fd);
    SAY("%s on a FIFO: EINTR from another OS thread after %llu us", op_name[op],
        (unsigned long long)(b.woke_at - r.sent_at));
    CHECK_OK(photon_close(fd));
}

static void test_timeout(void) {
    int fd = fifo_rdwr();
    char buf[8] = {0};
    uint64_t t0 = photon_now_us();
    CHECK_ERRNO(photon_read(fd, buf, sizeof buf, 100 * MS), ETIMEDOUT);
    uint64_t took = elapsed_us(t0);
    CHECK(took >= 95 * MS && took < 1000 * MS, "100 ms timeout took %llu us",
          (unsigned long long)took);
    no_data_lost(fd);
    CHECK_OK(photon_close(fd));
    SAY("photon_read on a FIFO with a 100 ms timeout: ETIMEDOUT after %llu us",
        (unsigned long long)took);
}

static void test_write_interrupted(void) {
    int fd = fifo_rdwr();
    int w = open(g_fifo, O_WRONLY | O_NONBLOCK);
    CHECK(w >= 0, "open: %s", strerror(errno));
    static char junk[4096];
    long filled = 0;
    for (;;) {
        ssize_t n = write(w, junk, sizeof junk);
        if (n < 0) {
            CHECK(errno == EAGAIN, "fill: %s", strerror(errno));
            break;
        }
        filled += n;
    }
    for (;;) { /* the last few bytes, one at a time */
        ssize_t n = write(w, junk, 1);
        if (n < 0) break;
        filled += n;
    }
    close(w);
    struct blocked b;
    photon_thread *th = start_blocked(&b, OP_WRITE, fd);
    uint64_t t0 = photon_now_us();
    CHECK_OK(photon_thread_interrupt(th, CUSTOM_ERRNO));
    join_ok(th);
    check_woke(&b, CUSTOM_ERRNO, t0);
    /* drain: exactly what was filled, nothing from the interrupted write */
    int r = open(g_fifo, O_RDONLY | O_NONBLOCK);
    CHECK(r >= 0, "open: %s", strerror(errno));
    long drained = 0;
    for (;;) {
        ssize_t n = read(r, junk, sizeof junk);
        if (n <= 0) break;
        drained += n;
    }
    close(r);
    CHECK(drained == filled, "drained %ld bytes, filled %ld: the interrupted write wrote %ld",
          drained, filled, drained - filled);
    CHECK_OK(photon_close(fd));
    SAY("photon_write on a full FIFO (%ld bytes): interrupted, wrote nothing", filled);
}

static void test_many(void) {
    enum { N = 16 };
    int fd = fifo_rdwr();
    static struct blocked b[N];
    photon_thread *th[N];
    for (int i = 0; i < N; i++) {
        memset(&b[i], 0, sizeof b[i]);
        b[i].op = i % 2 ? OP_READV : OP_READ;
        b[i].fd = fd;
        b[i].timeout = PHOTON_FOREVER;
        th[i] = spawn_joinable(blocked_main, &b[i], 0);
    }
    CHECK_OK(photon_thread_usleep(50 * MS));
    uint64_t t0 = photon_now_us();
    for (int i = 0; i < N; i++) CHECK_OK(photon_thread_interrupt(th[i], CUSTOM_ERRNO + i));
    for (int i = 0; i < N; i++) {
        join_ok(th[i]);
        check_woke(&b[i], CUSTOM_ERRNO + i, t0);
    }
    no_data_lost(fd);
    CHECK_OK(photon_close(fd));
    SAY("%d threads blocked on one FIFO: all woke with their own errno", N);
}

static void test_close_wakes(void) {
    int fd = fifo_rdwr();
    struct blocked b;
    photon_thread *th = start_blocked(&b, OP_READ, fd);
    uint64_t t0 = photon_now_us();
    CHECK_OK(photon_close(fd));
    join_ok(th);
    check_woke(&b, ECANCELED, t0);
    SAY("photon_close wakes a reader blocked on the FIFO: ECANCELED");
}

static int count_fds(void) {
    DIR *d = opendir("/proc/self/fd");
    CHECK(d != NULL, "opendir /proc/self/fd: %s", strerror(errno));
    int n = 0;
    while (readdir(d) != NULL) n++;
    closedir(d);
    return n;
}

static void test_open_interrupted(void) {
    int before = count_fds();
    struct blocked b;
    memset(&b, 0, sizeof b);
    b.op = OP_OPEN;
    photon_thread *th = spawn_joinable(blocked_main, &b, 0);
    CHECK_OK(photon_thread_usleep(50 * MS));
    if (b.woke_at != 0 && b.ret >= 0) {
        /* io_uring's IORING_OP_OPENAT first tries the open with O_NONBLOCK
         * added, which for a FIFO means "do not wait for a writer"; see
         * fs_parity.c, which reports it */
        SAY("NOTICE: photon_open(FIFO, O_RDONLY) returned fd %ld at once, without waiting "
            "for a writer as open(2) does; interrupting a blocked open not tested here",
            b.ret);
        join_ok(th);
        CHECK_OK(photon_close((int)b.ret));
        return;
    }
    CHECK(b.woke_at == 0, "photon_open of a FIFO failed at once: errno %d (%s)", b.err,
          strerror(b.err));
    uint64_t t0 = photon_now_us();
    CHECK_OK(photon_thread_interrupt(th, CUSTOM_ERRNO));
    join_ok(th);
    check_woke(&b, CUSTOM_ERRNO, t0);
    SAY("photon_open of a FIFO blocked waiting for a writer: interrupted after %llu us",
        (unsigned long long)(b.woke_at - t0));
    /* a writer comes: an open still pending somewhere completes; its fd must be closed */
    errno = 0;
    int w = open(g_fifo, O_WRONLY | O_NONBLOCK);
    int werr = errno;
    CHECK(w >= 0 || werr == ENXIO, "open writer: %s", strerror(werr));
    int after = -1;
    for (int i = 0; i < 100; i++) {
        CHECK_OK(photon_thread_usleep(10 * MS));
        after = count_fds() - (w >= 0 ? 1 : 0);
        if (after <= before) break;
    }
    if (w >= 0) close(w);
    CHECK(after <= before, "fds: %d before, %d after the abandoned open: leaked", before, after);
    SAY("no fd leaked by the abandoned open (%s)",
        w >= 0 ? "it was still pending: a writer completed it" : "nothing was pending");
}

static void test_pending_interrupt(const char *dir) {
    char path[160];
    snprintf(path, sizeof path, "%s/regular", dir);
    int fd = photon_open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    CHECK(fd >= 0, "open: %s", strerror(errno));
    CHECK(photon_pwrite(fd, "abc", 3, 0) == 3, "pwrite");
    char buf[4] = {0};
    CHECK_OK(photon_thread_interrupt(photon_thread_self(), CUSTOM_ERRNO));
    CHECK_ERRNO(photon_pread(fd, buf, 3, 0), CUSTOM_ERRNO);
    CHECK(photon_pread(fd, buf, 3, 0) == 3 && memcmp(buf, "abc", 3) == 0, "pread after");
    CHECK_OK(photon_thread_interrupt(photon_thread_self(), CUSTOM_ERRNO));
    CHECK_ERRNO(photon_fsync(fd), CUSTOM_ERRNO);
    CHECK_OK(photon_fsync(fd));
    CHECK_OK(photon_close(fd));
    CHECK_OK(photon_unlink(path));
    SAY("a pending interrupt fails the next file call at once, and only that one");
}

static void *fini_victim(void *arg) {
    int fd = *(int *)arg;
    char buf[8] = {0};
    errno = 0;
    ssize_t n = photon_read(fd, buf, sizeof buf, PHOTON_FOREVER);
    CHECK(n == -1, "read returned %zd", n);
    return NULL;
}

int main(void) {
    test_start("fs_interrupt");
    test_init();
    char dir[] = "/tmp/photon_fs_interrupt_XXXXXX";
    CHECK(mkdtemp(dir) != NULL, "mkdtemp: %s", strerror(errno));
    snprintf(g_fifo, sizeof g_fifo, "%s/fifo", dir);
    CHECK_OK(mkfifo(g_fifo, 0600));

    test_read_interrupted(OP_READ);
    test_read_interrupted(OP_READV);
    test_timeout();
    test_write_interrupted();
    test_many();
    test_close_wakes();
    test_pending_interrupt(dir);
    test_open_interrupted();

    /* photon_fini with a detached thread blocked on a FIFO read */
    int fd = fifo_rdwr();
    CHECK(photon_thread_create(fini_victim, &fd, 0) != NULL, "create: %s", strerror(errno));
    CHECK_OK(photon_thread_usleep(20 * MS));
    uint64_t t0 = photon_now_us();
    test_fini();
    uint64_t took = elapsed_us(t0);
    CHECK(took < 1000 * MS, "photon_fini took %llu us with a reader blocked on a FIFO",
          (unsigned long long)took);
    SAY("photon_fini with a thread blocked on a FIFO read: returned after %llu us",
        (unsigned long long)took);
    close(fd);

    CHECK_OK(unlink(g_fifo));
    CHECK_OK(rmdir(dir));
    SAY("fs_interrupt: OK");
    return 0;
}
