/*
 * Timer accuracy: 1,000 photon_thread_usleep(100) calls on an otherwise
 * idle vcpu (the engine sleeps until the timer: epoll_pwait2 or io_uring's
 * wait, with the vcpu's timer slack at 1 us). Median and p99 of the time
 * each call took are printed; the median must be at most 150 us. Noise
 * from a busy machine is allowed for by up to three series of 1,000: one
 * must meet the bound. No sleep may return early.
 *
 * Then the same while another OS thread signals a semaphore every 2 ms
 * that a photon thread of the vcpu waits on: a vcpu woken from outside
 * lately watches its inbox (PHOTON_IDLE_SPIN_US, set to 80 us here)
 * before each sleep, and the sleep after that watch must end at the
 * timer's deadline, not the watch's length later. The best median may be
 * at most 40 us over the idle one (it was ~80 us over when the sleep kept
 * its whole timeout; this VM's idle median is 130-150 us).
 */
#include "check.h"

#include <pthread.h>
#include <stdatomic.h>

#define SLEEPS 1000
#define SLEEP_US 100
#define MEDIAN_MAX_US 150
#define SERIES 3

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* How long the vcpu watches its inbox, and how much later than the idle
 * series' the watched series' median may be. */
#define WATCH_US "80"
#define WATCHED_OVER_US 40
#define SIGNAL_EVERY_US 2000

static photon_sem *ping;
static atomic_int stop;

/* Another OS thread (not a vcpu): its signals reach the vcpu as messages. */
static void *signaller(void *arg) {
    (void)arg;
    while (!atomic_load(&stop)) {
        CHECK_OK(photon_sem_signal(ping, 1));
        usleep(SIGNAL_EVERY_US);
    }
    CHECK_OK(photon_sem_signal(ping, 1)); /* the waiter's last */
    return NULL;
}

static void *waiter(void *arg) {
    (void)arg;
    while (!atomic_load(&stop))
        CHECK_OK(photon_sem_wait(ping, 1, PHOTON_FOREVER));
    return NULL;
}

/* Up to SERIES series of SLEEPS sleeps; returns the best median. */
static uint64_t series(const char *what, uint64_t bound) {
    static uint64_t took[SLEEPS];
    uint64_t best = UINT64_MAX;
    for (int s = 0; s < SERIES && best > bound; s++) {
        for (int i = 0; i < SLEEPS; i++) {
            uint64_t t0 = photon_now_us();
            CHECK_OK(photon_thread_usleep(SLEEP_US));
            took[i] = photon_now_us() - t0;
            CHECK(took[i] >= SLEEP_US, "usleep(%d) returned after %" PRIu64 " us", SLEEP_US, took[i]);
        }
        qsort(took, SLEEPS, sizeof took[0], cmp_u64);
        SAY("%s, series %d: %d x usleep(%d): median %" PRIu64 " us, p99 %" PRIu64 " us, max %" PRIu64 " us", what,
            s + 1, SLEEPS, SLEEP_US, took[SLEEPS / 2], took[SLEEPS * 99 / 100], took[SLEEPS - 1]);
        if (took[SLEEPS / 2] < best) best = took[SLEEPS / 2];
    }
    return best;
}

int main(void) {
    /* A watch of the inbox long beside the sleep, so a sleep that keeps
     * its whole timeout after it shows. */
    setenv("PHOTON_IDLE_SPIN_US", WATCH_US, 1);
    test_start("timer_accuracy");
    test_init();
    uint64_t idle = series("idle", MEDIAN_MAX_US);
    CHECK(idle <= MEDIAN_MAX_US, "median %" PRIu64 " us in the best of %d series (at most %d)", idle, SERIES,
          MEDIAN_MAX_US);

    ping = photon_sem_new(0);
    CHECK(ping != NULL, "photon_sem_new: %s", strerror(errno));
    photon_thread *w = photon_thread_create(waiter, NULL, 0);
    CHECK(w != NULL, "photon_thread_create: %s", strerror(errno));
    CHECK_OK(photon_thread_enable_join(w));
    pthread_t sig;
    CHECK(pthread_create(&sig, NULL, signaller, NULL) == 0, "pthread_create");
    uint64_t best = series("woken from outside every 2 ms", idle + WATCHED_OVER_US);
    atomic_store(&stop, 1);
    CHECK(pthread_join(sig, NULL) == 0, "pthread_join");
    CHECK_OK(photon_thread_join(w, NULL));
    CHECK_OK(photon_sem_free(ping));
    CHECK(best <= idle + WATCHED_OVER_US,
          "median %" PRIu64 " us in the best of %d series with the inbox watched, %" PRIu64
          " us idle: the sleep after the watch kept its whole timeout",
          best, SERIES, idle);
    test_fini();
    SAY("timer_accuracy: OK");
    return 0;
}
