/* Visibility: photon_stats_get (versioned by size), thread names and
 * photon_dump_threads, the stall detector (PHOTON_STALL_MS) and dumps on a
 * signal (PHOTON_DUMP_SIGNAL). The environment variables are set here,
 * before photon_init, and what the runtime logs to stderr is captured in a
 * temporary file. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include "check.h"

static photon_mutex *mu;
static int pipe_fds[2];

static void *sleeper(void *arg) {
    (void)arg;
    photon_thread_usleep(10 * 1000 * 1000);
    return NULL;
}

static void *reader(void *arg) {
    (void)arg;
    char c;
    photon_read(pipe_fds[0], &c, 1, PHOTON_FOREVER);
    return NULL;
}

static void *locker(void *arg) {
    (void)arg;
    if (photon_mutex_lock(mu, PHOTON_FOREVER) == 0) photon_mutex_unlock(mu);
    return NULL;
}

static volatile int spin_done;
static int stderr_file = -1;

static char *slurp(int fd);

/* Runs without yielding until the stall warning shows in the captured
 * stderr (at least 300 ms; at most 10 s, for slow runs under Valgrind). */
static void *spinner(void *arg) {
    (void)arg;
    uint64_t t0 = photon_now_us();
    for (;;) {
        uint64_t ran = photon_now_us() - t0;
        if (ran > 10 * 1000 * 1000) break;
        if (ran > 300 * 1000 && strstr(slurp(stderr_file), "without yielding") != NULL) break;
    }
    spin_done = 1;
    return NULL;
}

/* Everything in `fd` (a file) from offset 0, as a string. */
static char *slurp(int fd) {
    static char buf[1 << 16];
    ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
    buf[n > 0 ? n : 0] = 0;
    return buf;
}

static void *pool_sleeper(void *arg) {
    (void)arg;
    photon_thread_set_name(photon_thread_self(), "pool-sleeper");
    /* Until photon_workpool_free ends it (ECANCELED): a fixed sleep could
     * be over before the SIGUSR2 dump on a slow run (Valgrind, a loaded
     * machine: the 400 ms it used to sleep were once over by then). */
    photon_thread_usleep(PHOTON_FOREVER);
    return NULL;
}

static void *off_vcpu(void *arg) {
    photon_stats *st = arg;
    st->size = sizeof *st;
    errno = 0;
    long r = photon_stats_get(st);
    return (void *)(long)(r == -1 && errno == EPERM);
}

int main(void) {
    test_start("visibility");
    setenv("PHOTON_STALL_MS", "100", 1);
    setenv("PHOTON_DUMP_SIGNAL", "SIGUSR2", 1);
    test_init();

    SAY("photon_stats_get: size handshake and bad input");
    photon_stats st;
    memset(&st, 0xff, sizeof st);
    st.size = sizeof st;
    CHECK_OK(photon_stats_get(&st));
    CHECK(st.size == sizeof st, "size %u, want %zu", st.size, sizeof st);
    CHECK(st.vcpu_id > 0, "vcpu_id %u", st.vcpu_id);
    CHECK(st.threads_alive == 1, "threads_alive %" PRIu64 " with only main", st.threads_alive);
    CHECK(st.threads_runnable == 1, "threads_runnable %" PRIu64, st.threads_runnable);
    photon_stats small;
    memset(&small, 0xab, sizeof small);
    small.size = 8;
    CHECK_OK(photon_stats_get(&small));
    CHECK(small.size == 8 && small.vcpu_id == st.vcpu_id, "8-byte struct: size %u vcpu %u", small.size,
          small.vcpu_id);
    CHECK(small.threads_alive == 0xababababababababULL, "bytes past size were written");
    CHECK_ERRNO(photon_stats_get(NULL), EINVAL);
    small.size = 4;
    CHECK_ERRNO(photon_stats_get(&small), EINVAL);
    pthread_t pt;
    void *ok = NULL;
    CHECK(pthread_create(&pt, NULL, off_vcpu, &small) == 0, "pthread_create");
    pthread_join(pt, &ok);
    CHECK(ok == (void *)1, "photon_stats_get off a vcpu did not fail with EPERM");

    SAY("names and photon_dump_threads");
    mu = photon_mutex_new();
    CHECK(mu != NULL, "mutex");
    CHECK_OK(photon_mutex_lock(mu, PHOTON_FOREVER));
    CHECK(pipe(pipe_fds) == 0, "pipe");
    photon_thread *s = spawn_joinable(sleeper, NULL, 0);
    photon_thread *r = spawn_joinable(reader, NULL, 0);
    photon_thread *l = spawn_joinable(locker, NULL, 0);
    CHECK_OK(photon_thread_set_name(s, "sleeper"));
    CHECK_OK(photon_thread_set_name(r, "reader-with-a-rather-long-name-that-is-cut"));
    CHECK_OK(photon_thread_set_name(l, "locker"));
    CHECK_OK(photon_thread_set_name(photon_thread_self(), "main-thread"));
    CHECK_ERRNO(photon_thread_set_name(NULL, "x"), EINVAL);
    CHECK_ERRNO(photon_dump_threads(-1), EBADF);
    /* All three block, then the vcpu sleeps in its engine (under Valgrind
     * with the other tests running that can take longer than one nap). */
    for (int i = 0; i < 100; i++) {
        photon_thread_usleep(20 * 1000);
        CHECK_OK(photon_stats_get(&st));
        if (st.idle_waits >= 1) break;
    }

    CHECK_OK(photon_stats_get(&st));
    CHECK(st.threads_alive == 4, "threads_alive %" PRIu64 ", want 4", st.threads_alive);
    CHECK(st.threads_runnable == 1, "threads_runnable %" PRIu64 ", want 1 (main)", st.threads_runnable);
    CHECK(st.sleeps >= 2, "sleeps %" PRIu64, st.sleeps);
    CHECK(st.switches >= 4, "switches %" PRIu64, st.switches);
    CHECK(st.io_submitted >= 1, "io_submitted %" PRIu64 " with a reader blocked", st.io_submitted);
    CHECK(st.idle_waits >= 1, "idle_waits %" PRIu64, st.idle_waits);

    char tmpl[] = "/tmp/photon-dump-XXXXXX";
    int df = mkstemp(tmpl);
    CHECK(df >= 0, "mkstemp");
    unlink(tmpl);
    CHECK_OK(photon_dump_threads(df));
    const char *dump = slurp(df);
    printf("%s", dump);
    CHECK(strstr(dump, "threads") != NULL, "no header");
    CHECK(strstr(dump, "(main) \"main-thread\": running") != NULL, "main not shown running");
    CHECK(strstr(dump, "\"sleeper\": blocked: sleep for") != NULL, "sleeper not shown sleeping");
    CHECK(strstr(dump, "timeout in") != NULL, "the sleeper's timeout is not shown");
    CHECK(strstr(dump, "\"reader-with-a-rather-long-name-\": blocked:") != NULL, "reader (name cut to 31) missing");
    char want[64];
    snprintf(want, sizeof want, "on fd %d", pipe_fds[0]);
    CHECK(strstr(dump, want) != NULL, "the reader's fd (%s) is not shown", want);
    CHECK(strstr(dump, "\"locker\": blocked: mutex for") != NULL, "locker not shown waiting for the mutex");

    CHECK_OK(photon_mutex_unlock(mu));
    CHECK(write(pipe_fds[1], "x", 1) == 1, "write");
    CHECK_OK(photon_thread_interrupt(s, EINTR));
    join_ok(s);
    join_ok(r);
    join_ok(l);
    CHECK_OK(photon_stats_get(&st));
    CHECK(st.threads_alive == 1, "threads_alive %" PRIu64 " after the joins", st.threads_alive);
    CHECK(st.io_completed >= 1, "io_completed %" PRIu64, st.io_completed);

    SAY("stall detector (PHOTON_STALL_MS=100) and a dump on SIGUSR2, captured from stderr");
    char etmpl[] = "/tmp/photon-stderr-XXXXXX";
    int ef = mkstemp(etmpl);
    CHECK(ef >= 0, "mkstemp");
    unlink(etmpl);
    stderr_file = ef;
    int saved = dup(2);
    dup2(ef, 2);
    photon_workpool *pool = photon_workpool_new(1, PHOTON_EVENT_DEFAULT);
    CHECK(pool != NULL, "photon_workpool_new");
    CHECK_OK(photon_workpool_spawn(pool, pool_sleeper, NULL));
    photon_thread *sp = spawn_joinable(spinner, NULL, 0);
    CHECK_OK(photon_thread_set_name(sp, "spinner"));
    join_ok(sp);
    CHECK(spin_done, "spinner did not run");
    kill(getpid(), SIGUSR2);
    photon_thread_usleep(100 * 1000); /* the monitor posts the dump; the vcpu writes it */
    dup2(saved, 2);
    close(saved);
    const char *err = slurp(ef);
    printf("--- captured stderr\n%s---\n", err);
    CHECK(strstr(err, "stall") != NULL && strstr(err, "\"spinner\"") != NULL,
          "no stall warning naming the spinner");
    CHECK(strstr(err, "without yielding") != NULL, "stall warning text");
    CHECK(strstr(err, "(main) \"main-thread\"") != NULL, "no thread dump after SIGUSR2");
    CHECK(strstr(err, "\"pool-sleeper\": blocked: sleep") != NULL, "SIGUSR2 did not dump the work pool's vcpu");
    photon_workpool_free(pool);

    photon_mutex_free(mu);
    test_fini();
    SAY("visibility: OK");
    return 0;
}
