/* A photon thread whose reads keep finding data (a socket filled with
 * tens of megabytes beforehand: every read is a full buffer, so under
 * epoll the kept readiness never sends it to wait) must still let the rest of its vcpu
 * run: a 10 ms sleeper wakes on time, a thread waiting on a pipe wakes
 * soon after an OS thread writes it, and a ping-pong between two other
 * photon threads of the vcpu keeps going. The vcpu polls for events only
 * when its run queue drains or a budget of calls or decisions after its
 * last poll runs out, and makes the thread that spent the budget alone
 * yield; without that the reader would hold the vcpu for its whole run. */
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "photon.h"
#include "check.h"

#define RUN_US 400000
#define PIPE_AT_US 20000

static int feed[2], pp[2], pipefd[2];
static uint64_t t0;
static uint64_t slept_after, piped_after, reads;
static int round_trips;

static void *pipe_writer(void *arg)
{
    (void)arg;
    usleep(PIPE_AT_US);
    CHECK(write(pipefd[1], "p", 1) == 1, "pipe write");
    return NULL;
}

static void *hog(void *arg)
{
    char buf[64];
    (void)arg;
    while (photon_now_us() - t0 < RUN_US) {
        CHECK(photon_read(feed[0], buf, sizeof buf, PHOTON_FOREVER) > 0, "read failed");
        reads++;
    }
    return NULL;
}

static void *sleeper(void *arg)
{
    (void)arg;
    CHECK(photon_thread_usleep(10000) == 0, "usleep failed");
    slept_after = photon_now_us() - t0;
    return NULL;
}

static void *piper(void *arg)
{
    char c;
    (void)arg;
    CHECK(photon_read(pipefd[0], &c, 1, PHOTON_FOREVER) == 1, "pipe read failed");
    piped_after = photon_now_us() - t0;
    return NULL;
}

static void *ping(void *arg)
{
    char c = 'x';
    (void)arg;
    while (photon_now_us() - t0 < RUN_US) {
        CHECK(photon_write(pp[0], &c, 1, PHOTON_FOREVER) == 1, "ping write");
        CHECK(photon_read(pp[0], &c, 1, PHOTON_FOREVER) == 1, "ping read");
        round_trips++;
    }
    CHECK(shutdown(pp[0], SHUT_WR) == 0, "shutdown");
    return NULL;
}

static void *pong(void *arg)
{
    char c;
    (void)arg;
    while (photon_read(pp[1], &c, 1, PHOTON_FOREVER) == 1)
        CHECK(photon_write(pp[1], &c, 1, PHOTON_FOREVER) == 1, "pong write");
    return NULL;
}

int main(void)
{
    pthread_t pw;
    int big = 64 << 20, left = 0;
    size_t filled = 0;
    static char chunk[65536];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, feed) == 0, "socketpair");
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, pp) == 0, "socketpair");
    CHECK(pipe(pipefd) == 0, "pipe");
    /* Tens of megabytes waiting before the reader starts (forced buffer
     * sizes need root, as the tests run): it never runs dry (checked). */
    CHECK(setsockopt(feed[1], SOL_SOCKET, SO_SNDBUFFORCE, &big, sizeof big) == 0, "SO_SNDBUFFORCE (root)");
    (void)setsockopt(feed[0], SOL_SOCKET, SO_RCVBUFFORCE, &big, sizeof big);
    CHECK(fcntl(feed[1], F_SETFL, O_NONBLOCK) == 0, "O_NONBLOCK");
    memset(chunk, 'f', sizeof chunk);
    for (ssize_t n; (n = write(feed[1], chunk, sizeof chunk)) > 0;)
        filled += (size_t)n;
    CHECK(filled >= (16u << 20), "only %zu bytes fit in the socket", filled);
    CHECK(photon_init(PHOTON_EVENT_DEFAULT, 0) == 0, "photon_init");
    t0 = photon_now_us();
    CHECK(pthread_create(&pw, NULL, pipe_writer, NULL) == 0, "pthread_create");
    photon_thread *th[5] = {
        photon_thread_create(hog, NULL, 0),   photon_thread_create(sleeper, NULL, 0),
        photon_thread_create(piper, NULL, 0), photon_thread_create(ping, NULL, 0),
        photon_thread_create(pong, NULL, 0),
    };
    for (int i = 0; i < 5; i++) {
        CHECK(th[i] != NULL, "create");
        CHECK(photon_thread_enable_join(th[i]) == 0, "enable_join");
    }
    for (int i = 0; i < 5; i++)
        CHECK(photon_thread_join(th[i], NULL) == 0, "join");
    CHECK(pthread_join(pw, NULL) == 0, "pthread_join");
    CHECK(ioctl(feed[0], FIONREAD, &left) == 0 && left > 0, "the reader ran dry (so it waited) after %llu reads",
          (unsigned long long)reads);
    printf("%s: beside a reader that never waited (%llu reads), the 10 ms sleeper woke at %.1f ms, the pipe "
           "written at %d ms was read at %.1f ms, %d ping-pong round trips\n",
           photon_engine_name(), (unsigned long long)reads, slept_after / 1000.0, PIPE_AT_US / 1000,
           piped_after / 1000.0, round_trips);
    CHECK(slept_after < 100000, "sleeper starved: woke after %.1f ms", slept_after / 1000.0);
    CHECK(piped_after < PIPE_AT_US + 100000, "pipe reader starved: woke after %.1f ms", piped_after / 1000.0);
    CHECK(round_trips >= 100, "ping-pong starved: %d round trips in %d ms", round_trips, RUN_US / 1000);
    CHECK(reads > 1000, "the reader itself ran: %llu reads", (unsigned long long)reads);
    close(feed[0]);
    close(feed[1]);
    close(pp[0]);
    close(pp[1]);
    close(pipefd[0]);
    close(pipefd[1]);
    CHECK(photon_fini() == 0, "photon_fini");
    printf("net_fairness: OK\n");
    return 0;
}
