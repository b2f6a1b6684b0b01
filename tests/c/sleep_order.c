/*
 * Sleeping: threads that sleep different durations wake in order of their
 * durations, and photon_thread_usleep / photon_thread_sleep return 0 after
 * sleeping at least the time asked for.
 */
#include "check.h"

#define N 8

/* Durations in ms, deliberately not in creation order. */
static const int durations_ms[N] = {70, 10, 50, 30, 80, 20, 60, 40};

static int wake_order[N];
static int woken;

struct sleeper {
    int index;
    int ret;
    int err;
    uint64_t slept_us;
};

static void *sleeper_main(void *arg) {
    struct sleeper *s = arg;
    uint64_t us = (uint64_t)durations_ms[s->index] * 1000;
    uint64_t t0 = photon_now_us();
    errno = 0;
    s->ret = photon_thread_usleep(us);
    s->err = errno;
    s->slept_us = elapsed_us(t0);
    wake_order[woken++] = s->index;
    return NULL;
}

int main(void) {
    test_start("sleep_order");

    uint64_t a = photon_now_us(), b = photon_now_us();
    CHECK(a > 0 && b >= a, "photon_now_us not monotonic: %" PRIu64 " then %" PRIu64, a, b);

    test_init();

    SAY("main thread: photon_thread_usleep(20000) sleeps >= 20 ms and returns 0");
    uint64_t t0 = photon_now_us();
    CHECK_OK(photon_thread_usleep(20000));
    uint64_t slept = elapsed_us(t0);
    CHECK(slept >= 20000, "usleep(20000) returned after %" PRIu64 " us", slept);
    CHECK(slept < 2000000, "usleep(20000) took %" PRIu64 " us", slept);

    SAY("photon_thread_usleep(0) and photon_thread_sleep(0) return 0");
    CHECK_OK(photon_thread_usleep(0));
    CHECK_OK(photon_thread_sleep(0));

    SAY("photon_thread_sleep(1) sleeps >= 1 s and returns 0");
    t0 = photon_now_us();
    CHECK_OK(photon_thread_sleep(1));
    slept = elapsed_us(t0);
    CHECK(slept >= 1000000, "sleep(1) returned after %" PRIu64 " us", slept);
    CHECK(slept < 3000000, "sleep(1) took %" PRIu64 " us", slept);

    SAY("%d threads sleeping 10..80 ms wake in order of duration", N);
    struct sleeper sleepers[N];
    photon_thread *threads[N];
    for (int i = 0; i < N; i++) {
        sleepers[i] = (struct sleeper){.index = i, .ret = 99};
        threads[i] = spawn_joinable(sleeper_main, &sleepers[i], 0);
    }
    for (int i = 0; i < N; i++) {
        join_ok(threads[i]);
    }
    CHECK(woken == N, "%d of %d sleepers woke", woken, N);
    for (int i = 0; i < N; i++) {
        struct sleeper *s = &sleepers[i];
        uint64_t want = (uint64_t)durations_ms[i] * 1000;
        CHECK(s->ret == 0, "sleeper %d: usleep returned %d, errno %d (%s)", i,
              s->ret, s->err, strerror(s->err));
        CHECK(s->slept_us >= want,
              "sleeper %d: usleep(%" PRIu64 ") returned after %" PRIu64 " us", i,
              want, s->slept_us);
    }
    for (int k = 1; k < N; k++) {
        int prev = wake_order[k - 1], cur = wake_order[k];
        CHECK(durations_ms[prev] < durations_ms[cur],
              "wake #%d was the %d ms sleeper, wake #%d the %d ms sleeper", k - 1,
              durations_ms[prev], k, durations_ms[cur]);
    }

    SAY("a sleeping thread does not stop others from running");
    /* the sleepers above overlapped: all 8 together took about 80 ms */
    t0 = photon_now_us();
    for (int i = 0; i < N; i++) {
        sleepers[i] = (struct sleeper){.index = i, .ret = 99};
        threads[i] = spawn_joinable(sleeper_main, &sleepers[i], 0);
    }
    woken = 0;
    for (int i = 0; i < N; i++) {
        join_ok(threads[i]);
    }
    slept = elapsed_us(t0);
    CHECK(slept >= 80000 && slept < 300000,
          "%d overlapping sleeps of 10..80 ms took %" PRIu64 " us", N, slept);

    test_fini();
    SAY("sleep_order: OK");
    return 0;
}
