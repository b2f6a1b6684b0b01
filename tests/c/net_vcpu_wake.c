/*
 * Cross-vcpu wake-up of a sleeping engine: a pthread becomes a second vcpu
 * (photon_init) and runs a photon thread that blocks, alternately, in
 * photon_read on an idle pipe and in photon_thread_usleep(PHOTON_FOREVER),
 * so that vcpu sleeps in its engine. The main vcpu interrupts that thread
 * (photon_thread_interrupt from another vcpu) 100 times in a row; each time
 * the blocked call must return -1 with the interrupter's errno within
 * 50 ms of the interrupt. Then the remote thread ends, the second vcpu's
 * main thread joins it and calls photon_fini (0), and the pthread ends.
 * The pipe still works afterwards: no byte was consumed by the interrupted
 * reads.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>
#include <unistd.h>

#include "check.h"

#define ROUNDS 100
#define LIMIT_US 50000ULL

static int pipe_fds[2];
static _Atomic(photon_thread *) remote_th;
static atomic_int blocked_round = -1; /* the round the remote thread is blocked in */
static atomic_ullong interrupted_at[ROUNDS];
static uint64_t woke_at[ROUNDS];
static long ret_of[ROUNDS];
static int errno_of[ROUNDS];
static atomic_int remote_fini_ret = 99;
static atomic_int remote_done;

static void *remote_blocker(void *arg) {
    (void)arg;
    char buf[16];
    for (int i = 0; i < ROUNDS; i++) {
        atomic_store(&blocked_round, i);
        errno = 0;
        if (i % 2 == 0) {
            ret_of[i] = photon_read(pipe_fds[0], buf, sizeof buf, PHOTON_FOREVER);
        } else {
            ret_of[i] = photon_thread_usleep(PHOTON_FOREVER);
        }
        errno_of[i] = errno;
        woke_at[i] = photon_now_us();
    }
    return NULL;
}

static void *second_vcpu(void *arg) {
    (void)arg;
    CHECK_OK(photon_init(PHOTON_EVENT_DEFAULT, 0));
    photon_thread *th = spawn_joinable(remote_blocker, NULL, 0);
    atomic_store(&remote_th, th);
    join_ok(th); /* this vcpu's main thread blocks too: the engine sleeps */
    atomic_store(&remote_fini_ret, photon_fini());
    atomic_store(&remote_done, 1);
    return NULL;
}

int main(void) {
    test_start("net_vcpu_wake");
    test_init();
    CHECK_OK(pipe(pipe_fds));

    pthread_t pt;
    CHECK(pthread_create(&pt, NULL, second_vcpu, NULL) == 0, "pthread_create");
    photon_thread *th = NULL;
    for (int i = 0; i < 5000 && th == NULL; i++) {
        CHECK_OK(photon_thread_usleep(1000));
        th = atomic_load(&remote_th);
    }
    CHECK(th != NULL, "the second vcpu did not start its thread");

    SAY("%d interrupts of a thread blocked on another vcpu (read on an idle pipe / "
        "usleep forever)",
        ROUNDS);
    uint64_t worst = 0, sum = 0;
    for (int i = 0; i < ROUNDS; i++) {
        /* wait until the remote thread entered round i, then let its vcpu
         * go to sleep in the engine */
        for (int spin = 0; spin < 5000 && atomic_load(&blocked_round) != i; spin++) {
            CHECK_OK(photon_thread_usleep(200));
        }
        CHECK(atomic_load(&blocked_round) == i, "round %d: the remote thread is in round %d",
              i, atomic_load(&blocked_round));
        CHECK_OK(photon_thread_usleep(3000));
        int code = i % 3 == 0 ? EINTR : 1000 + i;
        uint64_t t0 = photon_now_us();
        atomic_store(&interrupted_at[i], t0);
        CHECK_OK(photon_thread_interrupt(th, code));
        /* wait for it to wake (its round advances or it ends) */
        int woke = 0;
        for (int spin = 0; spin < 10000 && !woke; spin++) {
            woke = atomic_load(&blocked_round) > i || atomic_load(&remote_done);
            if (!woke) {
                CHECK_OK(photon_thread_usleep(100));
            }
        }
        CHECK(woke, "round %d: the remote thread did not wake within 1 s", i);
        uint64_t lat = woke_at[i] - t0;
        CHECK(ret_of[i] == -1 && errno_of[i] == code,
              "round %d (%s): want -1 with errno %d, got %ld with errno %d (%s)", i,
              i % 2 == 0 ? "read" : "usleep", code, ret_of[i], errno_of[i],
              strerror(errno_of[i]));
        CHECK(lat < LIMIT_US, "round %d (%s): woke %" PRIu64 " us after the interrupt", i,
              i % 2 == 0 ? "read" : "usleep", lat);
        if (lat > worst) {
            worst = lat;
        }
        sum += lat;
    }
    SAY("  wake latency: mean %" PRIu64 " us, worst %" PRIu64 " us", sum / ROUNDS, worst);

    SAY("the remote thread ends; that pthread's photon_fini returns 0");
    for (int i = 0; i < 5000 && !atomic_load(&remote_done); i++) {
        CHECK_OK(photon_thread_usleep(1000));
    }
    CHECK(atomic_load(&remote_done), "the second vcpu did not finish");
    CHECK(pthread_join(pt, NULL) == 0, "pthread_join");
    CHECK(atomic_load(&remote_fini_ret) == 0, "photon_fini on the second vcpu gave %d",
          atomic_load(&remote_fini_ret));
    CHECK_ERRNO(photon_thread_interrupt(th, EINTR), ESRCH);

    SAY("the pipe lost nothing: a byte written now is the first one read");
    CHECK(write(pipe_fds[1], "Z", 1) == 1, "write");
    char c = 0;
    CHECK(photon_read(pipe_fds[0], &c, 1, 1000000) == 1 && c == 'Z', "read after: %c", c);
    CHECK_OK(photon_close(pipe_fds[0]));
    CHECK_OK(photon_close(pipe_fds[1]));

    test_fini();
    SAY("net_vcpu_wake: OK");
    return 0;
}
