/*
 * Fault: photon_pread interrupted while the read waits in the kernel.
 *
 * A file whose read really blocks: the test mounts its own FUSE file system
 * (fault_slowfs.h; needs CAP_SYS_ADMIN and /dev/fuse, else those cases are
 * skipped with a NOTICE) whose daemon holds a read until the test answers
 * it. Two files:
 *  - "cached": page-cache reads with FUSE_ASYNC_READ, what a libfuse
 *    daemon does by default;
 *  - "direct": FOPEN_DIRECT_IO, every read goes to the daemon (sshfs,
 *    s3fs and network file systems work like this).
 * Each is read with photon_pread and interrupted three ways (by the main
 * thread of the vcpu while the read waits, by a plain pthread, pending
 * before the call), each with its own errno. Checked:
 *  - the vcpu never stalls on the read: a ticker thread of the same vcpu
 *    keeps running (photon.h: files "never stall the vcpu"; README: "They
 *    never stall the vcpu");
 *  - the interrupted pread returns -1 with exactly the interrupter's errno
 *    within PROMPT_US; or, where the engine must wait for an operation the
 *    kernel already started (src/fs: "a ring operation the kernel already
 *    started is waited for"), it returns the right data once the daemon
 *    answers AND the interrupt stays pending for the caller's next blocking
 *    call (photon.h: an interrupt "is never lost to a race");
 *  - afterwards the interrupt is consumed, and the file reads correctly.
 * Also a regular file: a pending interrupt fails pread and preadv at once.
 *
 * A guard pthread answers a read held for more than GUARD_MS (a stalled
 * vcpu cannot answer it itself) and the watchdog aborts the FUSE connection
 * before exiting, so a failure never leaves a process stuck in state D.
 * Failures are counted and reported together at the end.
 */
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/uio.h>
#include <unistd.h>

#include "check.h"
#include "fault_slowfs.h"

#define MS 1000ULL
#define SEC 1000000ULL
#define PROMPT_US (200 * MS)
/* an interrupted read still waiting this long is answered by the daemon */
#define RELEASE_AFTER_US (500 * MS)
/* the ticker (2 ms period) standing still this long means a stalled vcpu */
#define STALL_MS 250
#define GUARD_MS 1500
#define READ_LEN 4096

static struct slowfs fs;
static int mounted;
static int failures;

#define EXPECT(cond, ...)                                                    \
    do {                                                                     \
        if (!(cond)) {                                                       \
            fprintf(stderr, "%s:%d: EXPECT FAILED: %s\n  ", __FILE__,        \
                    __LINE__, #cond);                                        \
            fprintf(stderr, __VA_ARGS__);                                    \
            fprintf(stderr, "\n");                                           \
            failures++;                                                      \
        }                                                                    \
    } while (0)

/* ------------------------------------------------------------------ */
/* watchdog, guard, ticker                                             */

static atomic_int finished;
static const char *_Atomic stage = "start";

static void *watchdog(void *arg) {
    (void)arg;
    for (int i = 0; i < 450; i++) { /* 45 s */
        if (atomic_load(&finished)) return NULL;
        usleep(100000);
    }
    fprintf(stderr, "WATCHDOG: stuck for 45 s in: %s\n", atomic_load(&stage));
    if (mounted) slowfs_abort(&fs);
    _exit(3);
}

static atomic_ullong ticks;

static atomic_int ticker_stop;
static void *ticker(void *arg) {
    (void)arg;
    while (!atomic_load(&ticker_stop)) {
        if (photon_thread_usleep(2 * MS) != 0) break;
        atomic_fetch_add(&ticks, 1);
    }
    return NULL;
}

/* What the guard saw: the longest time the ticker stood still while a read
 * was held, and reads it had to answer. */
static atomic_ullong guard_stall_ms;
static atomic_int guard_released;
static atomic_int guard_stop;

static void *guard(void *arg) {
    (void)arg;
    unsigned long long last_ticks = atomic_load(&ticks);
    int still_ms = 0, held_ms = 0;
    while (!atomic_load(&guard_stop)) {
        usleep(10000);
        unsigned long long t = atomic_load(&ticks);
        int held = atomic_load(&fs.held_unique) != 0;
        still_ms = (t == last_ticks && held) ? still_ms + 10 : 0;
        held_ms = held ? held_ms + 10 : 0;
        last_ticks = t;
        if ((unsigned long long)still_ms > atomic_load(&guard_stall_ms))
            atomic_store(&guard_stall_ms, (unsigned long long)still_ms);
        if (held_ms >= GUARD_MS) {
            if (slowfs_release(&fs)) atomic_fetch_add(&guard_released, 1);
            held_ms = still_ms = 0;
        }
    }
    return NULL;
}

/* ------------------------------------------------------------------ */
/* one case                                                            */

enum way { W_SAME_VCPU, W_PTHREAD, W_PENDING, W_COUNT };
static const char *way_name[W_COUNT] = {"by the main thread of its vcpu", "by a plain pthread",
                                        "pending (sent before the call)"};

struct victim {
    int fd;
    uint64_t off;
    enum way way;
    int code;
    atomic_int entered, returned;
    long ret;
    int err;
    uint64_t called_at, returned_at;
    int data_ok;
    int next_ret, next_err;
    uint64_t next_took;
};

#define NEXT_US (300 * MS)

static void *victim_main(void *arg) {
    struct victim *v = arg;
    unsigned char buf[READ_LEN];
    if (v->way == W_PENDING) CHECK_OK(photon_thread_interrupt(photon_thread_self(), v->code));
    atomic_store(&v->entered, 1);
    v->called_at = photon_now_us();
    errno = 0;
    v->ret = photon_pread(v->fd, buf, sizeof buf, (off_t)v->off);
    v->err = errno;
    v->returned_at = photon_now_us();
    atomic_store(&v->returned, 1);
    v->data_ok = 1;
    for (long i = 0; i < v->ret; i++) {
        if (buf[i] != slowfs_byte(v->off + (uint64_t)i)) v->data_ok = 0;
    }
    uint64_t t0 = photon_now_us();
    errno = 0;
    v->next_ret = photon_thread_usleep(NEXT_US);
    v->next_err = errno;
    v->next_took = elapsed_us(t0);
    return NULL;
}

struct remote {
    struct victim *v;
    photon_thread *th;
    int ret, err;
    uint64_t sent_at;
    int released; /* the daemon was told to answer after RELEASE_AFTER_US */
};

/* The interrupter on a plain pthread; then, if the read has not returned
 * within RELEASE_AFTER_US, it lets the daemon answer. */
static void *remote_main(void *arg) {
    struct remote *r = arg;
    for (int i = 0; i < 5000 && !atomic_load(&r->v->entered); i++) usleep(1000);
    (void)slowfs_wait_held(&fs, 1000);
    usleep(20000);
    r->sent_at = photon_now_us();
    errno = 0;
    r->ret = photon_thread_interrupt(r->th, r->v->code);
    r->err = errno;
    while (!atomic_load(&r->v->returned) && photon_now_us() - r->sent_at < RELEASE_AFTER_US) {
        usleep(1000);
    }
    if (!atomic_load(&r->v->returned)) r->released = slowfs_release(&fs);
    return NULL;
}

static void check_file_reads(int fd, uint64_t off) {
    unsigned char buf[READ_LEN];
    slowfs_set_mode(&fs, SLOWFS_FAST);
    ssize_t n = photon_pread(fd, buf, sizeof buf, (off_t)off);
    CHECK(n == (ssize_t)sizeof buf, "pread after the case: %zd (%s)", n, strerror(errno));
    for (size_t i = 0; i < sizeof buf; i++) {
        CHECK(buf[i] == slowfs_byte(off + i), "byte %zu at offset %llu wrong after the case", i,
              (unsigned long long)off);
    }
}

static void run_case(const char *file, int fd, uint64_t off, enum way w, int code) {
    static char what[160];
    snprintf(what, sizeof what, "pread of the %s file interrupted %s (errno %d)", file,
             way_name[w], code);
    atomic_store(&stage, what);
    atomic_store(&guard_stall_ms, 0);
    int released_before = atomic_load(&guard_released);
    slowfs_set_mode(&fs, SLOWFS_HOLD);

    static struct victim v;
    memset(&v, 0, sizeof v);
    v.fd = fd;
    v.off = off;
    v.way = w;
    v.code = code;
    v.ret = 99;
    int released = 0;
    photon_thread *th = spawn_joinable(victim_main, &v, 0);
    uint64_t sent_at = 0;
    const char *stalled = NULL;
    if (w == W_SAME_VCPU) {
        uint64_t t0 = photon_now_us();
        CHECK_OK(photon_thread_usleep(30 * MS));
        for (int i = 0; i < 100 && atomic_load(&fs.held_unique) == 0 && !atomic_load(&v.returned);
             i++) {
            CHECK_OK(photon_thread_usleep(MS));
        }
        if (atomic_load(&v.returned)) {
            stalled = "the read returned before the interrupt";
            EXPECT(0, "%s: the main thread could not run while the read waited: its 30 ms sleep "
                      "took %" PRIu64 " ms, the read returned %ld first; the vcpu was stalled "
                      "(ticker still for %llu ms)",
                   what, elapsed_us(t0) / 1000, v.ret,
                   (unsigned long long)atomic_load(&guard_stall_ms));
        } else {
            sent_at = photon_now_us();
            CHECK_OK(photon_thread_interrupt(th, code));
            while (!atomic_load(&v.returned) && photon_now_us() - sent_at < RELEASE_AFTER_US) {
                CHECK_OK(photon_thread_usleep(MS));
            }
            if (!atomic_load(&v.returned)) released = slowfs_release(&fs);
        }
        join_ok(th);
    } else if (w == W_PTHREAD) {
        struct remote r = {.v = &v, .th = th, .ret = 99};
        pthread_t pt;
        CHECK(pthread_create(&pt, NULL, remote_main, &r) == 0, "pthread_create");
        join_ok(th);
        CHECK(pthread_join(pt, NULL) == 0, "pthread_join");
        if (v.returned_at < r.sent_at) {
            stalled = "the read returned before the interrupt";
            EXPECT(0, "%s: the read returned %ld before the interrupt was sent (the vcpu was "
                      "stalled: ticker still for %llu ms)",
                   what, v.ret, (unsigned long long)atomic_load(&guard_stall_ms));
        }
        CHECK(r.ret == 0 || stalled, "%s: photon_thread_interrupt: %d (%s)", what, r.ret,
              strerror(r.err));
        sent_at = r.sent_at;
        released = r.released;
    } else {
        join_ok(th);
        sent_at = v.called_at;
    }
    uint64_t stall = atomic_load(&guard_stall_ms);
    int guard_answered = atomic_load(&guard_released) - released_before;
    EXPECT(stall < STALL_MS, "%s: the vcpu stalled for %llu ms while the read waited in the kernel "
                        "(a ticker thread of the same vcpu stood still)",
           what, (unsigned long long)stall);

    if (!stalled) {
        uint64_t took = v.returned_at - sent_at;
        if (v.ret == -1) {
            EXPECT(v.err == code, "%s: -1 with errno %d (%s), want the interrupter's %d", what,
                   v.err, strerror(v.err), code);
            EXPECT(took < PROMPT_US, "%s: returned %" PRIu64 " us after the interrupt", what,
                   took);
            EXPECT(v.next_ret == 0 && v.next_took >= NEXT_US,
                   "%s: the interrupt was not consumed: the next usleep gave %d (errno %d)", what,
                   v.next_ret, v.next_err);
            SAY("%-84s -1/%d after %" PRIu64 " us", what, code, took);
        } else {
            /* completed: allowed only if the interrupt stays pending */
            EXPECT(v.ret == READ_LEN && v.data_ok, "%s: returned %ld (errno %d %s), data %s",
                   what, v.ret, v.err, strerror(v.err), v.data_ok ? "ok" : "WRONG");
            EXPECT(v.next_ret == -1 && v.next_err == code && v.next_took < PROMPT_US,
                   "%s: the read was not cut short (it returned %ld bytes %" PRIu64
                   " ms after the interrupt, once the daemon answered) and the interrupt was "
                   "lost: the next blocking call (usleep %llu ms) returned %d (errno %d) after "
                   "%" PRIu64 " ms instead of failing at once with %d",
                   what, v.ret, took / 1000, (unsigned long long)(NEXT_US / 1000), v.next_ret,
                   v.next_ret == -1 ? v.next_err : 0, v.next_took / 1000, code);
            SAY("%-84s waited for the kernel (%" PRIu64 " ms, daemon told to answer: %s); "
                "the interrupt %s",
                what, took / 1000, released || guard_answered ? "yes" : "no",
                v.next_ret == -1 && v.next_err == code ? "stayed pending" : "was LOST");
        }
    } else {
        SAY("%-84s STALLED the vcpu (the read returned %ld after %llu ms)", what, v.ret,
            (unsigned long long)((v.returned_at - v.called_at) / 1000));
    }
    /* nothing left held; the file reads correctly */
    slowfs_release(&fs);
    check_file_reads(fd, off + 2 * READ_LEN);
}

static void regular_file_pending(void) {
    char path[] = "/tmp/photon-fault-pread-XXXXXX";
    int tfd = mkstemp(path);
    CHECK(tfd >= 0, "mkstemp: %s", strerror(errno));
    close(tfd);
    int fd = photon_open(path, O_RDWR, 0);
    CHECK(fd >= 0, "photon_open: %s", strerror(errno));
    CHECK(photon_pwrite(fd, "abcdef", 6, 0) == 6, "pwrite: %s", strerror(errno));
    char buf[8];
    struct iovec iov = {buf, 6};
    CHECK_OK(photon_thread_interrupt(photon_thread_self(), 4100));
    CHECK_ERRNO(photon_pread(fd, buf, 6, 0), 4100);
    CHECK_OK(photon_thread_interrupt(photon_thread_self(), EINTR));
    CHECK_ERRNO(photon_preadv(fd, &iov, 1, 0), EINTR);
    CHECK(photon_pread(fd, buf, 6, 0) == 6 && memcmp(buf, "abcdef", 6) == 0, "pread after");
    CHECK_OK(photon_close(fd));
    CHECK_OK(unlink(path));
    SAY("regular file: a pending interrupt fails pread and preadv at once, and only them");
}

int main(void) {
    test_start("fault_interrupt_pread");
    test_init();
    pthread_t wd;
    CHECK(pthread_create(&wd, NULL, watchdog, NULL) == 0, "pthread_create watchdog");

    regular_file_pending();

    if (slowfs_mount(&fs, FUSE_ASYNC_READ, 0) != 0) {
        SAY("NOTICE: cannot mount a FUSE file system here (%s): blocking-pread cases skipped",
            strerror(errno));
        atomic_store(&finished, 1);
        pthread_join(wd, NULL);
        test_fini();
        SAY("fault_interrupt_pread: OK (FUSE cases skipped)");
        return 0;
    }
    mounted = 1;
    SAY("FUSE file system mounted on %s (its daemon is a pthread of this test)", fs.dir);
    photon_thread *tk = spawn_joinable(ticker, NULL, 0);
    pthread_t gd;
    CHECK(pthread_create(&gd, NULL, guard, NULL) == 0, "pthread_create guard");

    /* "cached": the page cache, FUSE_ASYNC_READ (the mount's daemon offers it) */
    int cached = photon_open(fs.path, O_RDONLY, 0);
    CHECK(cached >= 0, "photon_open %s: %s", fs.path, strerror(errno));
    check_file_reads(cached, 0);
    for (int w = 0; w < W_COUNT; w++) {
        run_case("cached", cached, (uint64_t)(w + 1) * (4u << 20), (enum way)w, 4200 + w);
    }
    CHECK_OK(photon_close(cached));

    /* "direct": FOPEN_DIRECT_IO for files opened from now on */
    fs.open_flags = FOPEN_DIRECT_IO;
    int direct = photon_open(fs.path, O_RDONLY, 0);
    CHECK(direct >= 0, "photon_open %s: %s", fs.path, strerror(errno));
    check_file_reads(direct, 0);
    for (int w = 0; w < W_COUNT; w++) {
        run_case("direct", direct, (uint64_t)(w + 5) * (4u << 20), (enum way)w,
                 w == 1 ? EINTR : 4210 + w);
    }
    CHECK_OK(photon_close(direct));

    atomic_store(&stage, "teardown");
    atomic_store(&guard_stop, 1);
    CHECK(pthread_join(gd, NULL) == 0, "pthread_join guard");
    atomic_store(&ticker_stop, 1);
    join_ok(tk);
    SAY("daemon: %d reads, %d FUSE_INTERRUPTs (%d honoured); guard answered %d held reads",
        atomic_load(&fs.reads), atomic_load(&fs.interrupts), atomic_load(&fs.honoured),
        atomic_load(&guard_released));
    slowfs_unmount(&fs);
    mounted = 0;
    atomic_store(&finished, 1);
    CHECK(pthread_join(wd, NULL) == 0, "pthread_join watchdog");
    test_fini();
    CHECK(failures == 0, "%d EXPECT checks failed (above)", failures);
    SAY("fault_interrupt_pread: OK");
    return 0;
}
