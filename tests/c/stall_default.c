/*
 * The stall warning is on by default (issue 19): with PHOTON_STALL_MS
 * unset, a vcpu's main thread that blocks its OS thread for 1.6 s in a
 * call that is not a photon wait (here a plain nanosleep, as a program
 * written for the LD_PRELOAD shim does when started without it) gets one
 * warning naming it "main"; with PHOTON_STALL_MS=0 there is none, and a
 * photon thread that keeps yielding is never reported. Each case runs in
 * its own child process (the variable is read once per process), with
 * stderr captured; the three run side by side.
 */
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "fault_stderr.h"

static void block_os_thread_ms(long ms) {
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0) {
    }
}

static void *yielder(void *arg) {
    uint64_t until = photon_now_us() + (uint64_t)(uintptr_t)arg * 1000;
    while (photon_now_us() < until) photon_thread_usleep(1000);
    return NULL;
}

/* One case: `stall` (a variable value, or NULL for unset); returns how many
 * stall lines named "main". */
static int run_case(const char *stall, int block_ms) {
    if (stall) {
        setenv("PHOTON_STALL_MS", stall, 1);
    } else {
        unsetenv("PHOTON_STALL_MS");
    }
    unsetenv("PHOTON_LOG");
    struct captured c;
    capture_start(&c);
    CHECK_OK(photon_init(PHOTON_EVENT_DEFAULT, 0));
    /* A photon thread that yields for 1.3 s: never a stall. */
    photon_thread *th = photon_thread_create(yielder, (void *)(uintptr_t)1300, 0);
    CHECK(th != NULL, "create: %s", strerror(errno));
    CHECK_OK(photon_thread_enable_join(th));
    CHECK_OK(photon_thread_join(th, NULL));
    if (block_ms) block_os_thread_ms(block_ms);
    CHECK_OK(photon_fini());
    const char *err = capture_stop(&c);
    int stalls = count_lines_with(err, "stall");
    int mains = count_lines_with(err, "\"main\"");
    CHECK(stalls == mains, "%d stall lines, %d naming main:\n%s", stalls, mains, err);
    if (mains) {
        CHECK(strstr(err, "without yielding") != NULL && strstr(err, "PHOTON_STALL_MS") != NULL,
              "the warning does not say what happened and how to turn it off:\n%s", err);
    }
    return mains;
}

/* Starts `run_case(stall, block_ms)` in a child process; its exit status
 * is 10 plus the warnings naming main (a failed CHECK exits 1). */
static pid_t start_child(const char *stall, int block_ms) {
    fflush(stdout);
    pid_t pid = fork();
    CHECK(pid >= 0, "fork: %s", strerror(errno));
    if (pid == 0) _exit(10 + run_case(stall, block_ms));
    return pid;
}

static int child_result(pid_t pid) {
    int status = 0;
    CHECK(waitpid(pid, &status, 0) == pid, "waitpid: %s", strerror(errno));
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) >= 10, "child failed (status %#x)", status);
    return WEXITSTATUS(status) - 10;
}

int main(void) {
    test_start("stall_default");
    /* The three cases run side by side, each in its own process (they
     * share nothing), so the program takes as long as the longest. */
    pid_t unset_block = start_child(NULL, 1600);
    pid_t zero_block = start_child("0", 1600);
    pid_t unset_yield = start_child(NULL, 0);
    SAY("PHOTON_STALL_MS unset: main blocks its vcpu 1.6 s: one warning naming \"main\"");
    int n = child_result(unset_block);
    CHECK(n == 1, "%d warnings naming main, want 1", n);
    SAY("PHOTON_STALL_MS=0: the same block, no warning");
    n = child_result(zero_block);
    CHECK(n == 0, "%d warnings with PHOTON_STALL_MS=0", n);
    SAY("PHOTON_STALL_MS unset: a thread that keeps yielding and no block: no warning");
    n = child_result(unset_yield);
    CHECK(n == 0, "%d warnings without a stall", n);
    SAY("ok");
    return 0;
}
