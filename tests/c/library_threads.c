/*
 * The library's own threads leave a one-vcpu process's fd table unshared
 * in its steady state (the kernel then looks fds up without counting
 * references: see src/sched/private_fds.rs):
 * - the offload pool's helper threads (photon_offload, and the epoll
 *   engine's file calls) end after a second without work;
 * - the monitor thread (PHOTON_STALL_MS, PHOTON_DUMP_SIGNAL) keeps its own
 *   fd table. Checked from outside, in /proc:
 * - the monitor's table holds none of the program's fds (a file opened
 *   before photon_init and one opened after);
 * - it holds no reference either: a pipe's write end the program made
 *   before photon_init and closes after gives its reader end of file;
 * - its stall warning still reaches the program's standard error of the
 *   moment (fd 2 redirected after photon_init);
 * - a dump on PHOTON_DUMP_SIGNAL still wakes a sleeping vcpu (its own and
 *   a work pool's).
 * On a kernel without pidfd_getfd or close_range (or where a filter, or
 * Valgrind, refuses them) the monitor shares the table as before: the
 * first check is skipped, the others still hold.
 */
#include <signal.h>
#include <stdatomic.h>
#include <sys/syscall.h>
#include <time.h>

#include "check.h"
#include "fault_stderr.h"

/* The kernel gives a thread its own table: the library's probe, redone. */
static int kernel_can(void) {
#if defined(SYS_pidfd_open) && defined(SYS_pidfd_getfd) && defined(SYS_close_range)
    int pidfd = (int)syscall(SYS_pidfd_open, getpid(), 0);
    if (pidfd < 0) return 0;
    int copy = (int)syscall(SYS_pidfd_getfd, pidfd, pidfd, 0);
    int ok = copy >= 0 && syscall(SYS_close_range, ~0U, ~0U, 0) == 0;
    if (copy >= 0) close(copy);
    close(pidfd);
    return ok;
#else
    return 0;
#endif
}

/* The tid of the first thread named `name`, or 0; *count: how many are. */
static long named_thread(const char *name, int *count) {
    DIR *d = opendir("/proc/self/task");
    CHECK(d != NULL, "opendir: %s", strerror(errno));
    long found = 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        char path[320], comm[32] = "";
        snprintf(path, sizeof path, "/proc/self/task/%s/comm", e->d_name);
        FILE *f = fopen(path, "r");
        if (!f) continue;
        if (fgets(comm, sizeof comm, f) && strncmp(comm, name, strlen(name)) == 0) {
            if (!found) found = atol(e->d_name);
            n++;
        }
        fclose(f);
    }
    closedir(d);
    if (count) *count = n;
    return found;
}

static void *on_helper(void *arg) { return arg; }

/* True if fd `fd` is open in task `tid`'s table. */
static int task_has_fd(long tid, int fd) {
    char path[96];
    snprintf(path, sizeof path, "/proc/self/task/%ld/fd/%d", tid, fd);
    return access(path, F_OK) == 0;
}

/* How many fds task `tid`'s table holds. */
static int task_fd_count(long tid) {
    char path[64];
    snprintf(path, sizeof path, "/proc/self/task/%ld/fd", tid);
    DIR *d = opendir(path);
    CHECK(d != NULL, "opendir %s: %s", path, strerror(errno));
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) n += e->d_name[0] != '.';
    closedir(d);
    return n; /* (the directory's own fd is in this thread's table) */
}

static void *spinner(void *arg) {
    (void)arg;
    struct timespec ts = {.tv_sec = 0, .tv_nsec = 400 * 1000000L};
    while (nanosleep(&ts, &ts) != 0) { /* blocks the vcpu's OS thread 400 ms */
    }
    return NULL;
}

/* Sleeps on the work pool's vcpu until main interrupts it after the dump
 * (10 s at most). */
static photon_thread *_Atomic pool_sleeper_th;

static void *pool_sleeper(void *arg) {
    (void)arg;
    photon_thread_set_name(photon_thread_self(), "pool-sleeper");
    atomic_store(&pool_sleeper_th, photon_thread_self());
    photon_thread_usleep(10 * 1000 * 1000);
    return NULL;
}

int main(void) {
    test_start("library_threads");
    setenv("PHOTON_STALL_MS", "100", 1);
    setenv("PHOTON_DUMP_SIGNAL", "SIGUSR2", 1);
    unsetenv("PHOTON_LOG");
    int before = open("/dev/null", O_RDONLY | O_CLOEXEC);
    CHECK(before >= 0, "open: %s", strerror(errno));
    int eof_pipe[2];
    CHECK_OK(pipe2(eof_pipe, O_CLOEXEC | O_NONBLOCK));
    CHECK_OK(photon_init(PHOTON_EVENT_DEFAULT, 0));
    int after = open("/dev/null", O_RDONLY | O_CLOEXEC);
    CHECK(after >= 0, "open: %s", strerror(errno));

    SAY("the offload pool's helper threads end after a second without work");
    void *rv = NULL;
    CHECK_OK(photon_offload(on_helper, (void *)&rv, &rv));
    CHECK(rv == (void *)&rv, "photon_offload's result");
    int helpers = 0;
    named_thread("photon-offload", &helpers);
    CHECK(helpers >= 1, "no photon-offload thread after photon_offload");
    uint64_t t0 = photon_now_us();
    while (named_thread("photon-offload", &helpers), helpers > 0 && elapsed_us(t0) < 10 * 1000 * 1000)
        photon_thread_usleep(50 * 1000);
    CHECK(helpers == 0, "%d photon-offload threads still there after %.1f s idle", helpers, elapsed_us(t0) / 1e6);
    SAY("  gone after %.2f s", elapsed_us(t0) / 1e6);

    long tid = named_thread("photon-monitor", NULL);
    CHECK(tid > 0, "no photon-monitor thread");
    if (kernel_can()) {
        SAY("the monitor's fd table holds none of the program's fds");
        CHECK(!task_has_fd(tid, before) && !task_has_fd(tid, after) && !task_has_fd(tid, 2),
              "the monitor (tid %ld) shares the program's fd table", tid);
        CHECK(task_has_fd(gettid(), before) && task_has_fd(gettid(), after), "the program lost its fds");
        int n = task_fd_count(tid);
        CHECK(n <= 2, "the monitor's table holds %d fds (a pidfd and the signal pipe's end at most)", n);
    } else {
        SAY("skipped: the kernel gives no thread its own fd table (the monitor shares it)");
    }

    SAY("a pipe end made before photon_init and closed after it is closed: its reader sees end of file");
    CHECK_OK(close(eof_pipe[1]));
    char b;
    CHECK(read(eof_pipe[0], &b, 1) == 0, "read: %s (a reference to the write end is held)", strerror(errno));
    close(eof_pipe[0]);

    SAY("a stall warning reaches fd 2 as redirected after photon_init; SIGUSR2 dumps a sleeping work pool");
    struct captured c;
    capture_start(&c);
    photon_workpool *pool = photon_workpool_new(1, PHOTON_EVENT_DEFAULT);
    CHECK(pool != NULL, "photon_workpool_new: %s", strerror(errno));
    CHECK_OK(photon_workpool_spawn(pool, pool_sleeper, NULL));
    photon_thread *sp = photon_thread_create(spinner, NULL, 0);
    CHECK(sp != NULL, "create: %s", strerror(errno));
    CHECK_OK(photon_thread_set_name(sp, "spinner"));
    CHECK_OK(photon_thread_enable_join(sp));
    CHECK_OK(photon_thread_join(sp, NULL));
    photon_thread_usleep(100 * 1000); /* the pool's thread is asleep by now */
    CHECK_OK(kill(getpid(), SIGUSR2));
    photon_thread_usleep(200 * 1000); /* the monitor posts the dump; each vcpu writes its own */
    const char *err = capture_stop(&c);
    CHECK(count_lines_with(err, "\"spinner\"") >= 1 && strstr(err, "without yielding") != NULL,
          "no stall warning naming the spinner in the redirected stderr");
    CHECK(strstr(err, "\"pool-sleeper\": blocked: sleep") != NULL, "SIGUSR2 did not wake and dump the pool's vcpu");
    photon_thread *sleeper = atomic_load(&pool_sleeper_th);
    CHECK(sleeper != NULL, "the pool's sleeper never ran");
    CHECK_OK(photon_thread_interrupt(sleeper, ECANCELED)); /* its sleep ends; the pool can go */
    photon_workpool_free(pool);

    close(before);
    close(after);
    CHECK_OK(photon_fini());
    SAY("ok");
    return 0;
}
