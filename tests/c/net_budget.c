/* A photon thread whose I/O never waits (a sender on a socket that a fast
 * reader keeps draining) must not starve the other threads of its vcpu:
 * a 10 ms sleeper on the same vcpu wakes on time. Without the I/O budget the
 * epoll engine let the sender run for its whole second. */
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "photon.h"
#include "check.h"

static int sv[2];
static uint64_t t0, woke_after;

static void *drain(void *arg)
{
    char buf[65536];
    (void)arg;
    while (read(sv[1], buf, sizeof buf) > 0) {
    }
    return NULL;
}

static void *sleeper(void *arg)
{
    (void)arg;
    CHECK(photon_thread_usleep(10000) == 0, "usleep failed");
    woke_after = photon_now_us() - t0;
    return NULL;
}

static void *writer(void *arg)
{
    char buf[16] = {0};
    (void)arg;
    while (photon_now_us() - t0 < 500000) {
        CHECK(photon_write(sv[0], buf, sizeof buf, PHOTON_FOREVER) > 0, "write failed");
    }
    return NULL;
}

int main(void)
{
    pthread_t drainer;
    int big = 64 << 20;
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0, "socketpair");
    /* Big buffers (root only; harmless otherwise) so the writer never waits. */
    (void)setsockopt(sv[0], SOL_SOCKET, SO_SNDBUFFORCE, &big, sizeof big);
    (void)setsockopt(sv[1], SOL_SOCKET, SO_RCVBUFFORCE, &big, sizeof big);
    CHECK(pthread_create(&drainer, NULL, drain, NULL) == 0, "pthread_create");
    CHECK(photon_init(PHOTON_EVENT_DEFAULT, 0) == 0, "photon_init");
    t0 = photon_now_us();
    photon_thread *s = photon_thread_create(sleeper, NULL, 0);
    photon_thread *w = photon_thread_create(writer, NULL, 0);
    CHECK(s && w, "create");
    CHECK(photon_thread_enable_join(s) == 0 && photon_thread_enable_join(w) == 0, "enable_join");
    CHECK(photon_thread_join(s, NULL) == 0 && photon_thread_join(w, NULL) == 0, "join");
    printf("%s: the 10 ms sleeper woke after %.1f ms beside a busy writer\n", photon_engine_name(),
           woke_after / 1000.0);
    CHECK(woke_after < 100000, "sleeper starved: woke after %.1f ms", woke_after / 1000.0);
    close(sv[0]);
    CHECK(pthread_join(drainer, NULL) == 0, "pthread_join");
    close(sv[1]);
    CHECK(photon_fini() == 0, "photon_fini");
    printf("net_budget: OK\n");
    return 0;
}
