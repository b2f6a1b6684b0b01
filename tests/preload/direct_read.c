/* Reads a byte at a time, written for plain pthreads; run under
 * libphoton_preload.so with PHOTON_PRELOAD_THREADS=photon and PHOTON_VCPUS=1.
 *
 * A writer thread puts 4,000 numbered bytes into a socketpair in one write;
 * a reader thread then reads them one read(2) at a time and checks each,
 * then reads past them while a third thread writes the rest a byte at a
 * time, 1 ms apart, and checks those too. On io_uring the shim reads a
 * socket whose last read returned all it asked for with a plain syscall
 * first, so the reader's vcpu submits far fewer ring operations than there
 * were reads: with DIRECT=1 at most one per 16 reads of the 4,000 (one per
 * 32 goes the ring's way so the vcpu's other threads run), with DIRECT=0
 * (PHOTON_PRELOAD_DIRECT_READ=0, and PHOTON_IO_OFF=direct_recv: the
 * engine's own direct receive would serve these reads too) at least one
 * per read. The counts come
 * from libphoton's photon_stats_get, found with dlsym.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define N 4000
#define LATE 50

static int sv[2];
static int failures;

#define CHECK(cond, ...)                                                                                               \
    do {                                                                                                               \
        if (!(cond)) {                                                                                                 \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                                                       \
            fprintf(stderr, __VA_ARGS__);                                                                              \
            fprintf(stderr, "\n");                                                                                     \
            failures++;                                                                                                \
        }                                                                                                              \
    } while (0)

/* The leading fields of libphoton's photon_stats (include/photon.h; the
   struct is versioned by its size, so a prefix is a valid caller's view). */
struct stats {
    uint32_t size;
    uint32_t vcpu_id;
    uint64_t threads_alive;
    uint64_t threads_runnable;
    uint64_t switches;
    uint64_t sleeps;
    uint64_t idle_waits;
    uint64_t io_submitted;
};

static int (*stats_get)(struct stats *);
static const char *(*engine_name)(void);

static uint64_t submitted(void) {
    struct stats s;
    memset(&s, 0, sizeof s);
    s.size = sizeof s;
    if (stats_get(&s) != 0 || s.size < sizeof s) {
        CHECK(0, "photon_stats_get");
        return 0;
    }
    return s.io_submitted;
}

static void *writer(void *arg) {
    unsigned char buf[N];
    (void)arg;
    for (int i = 0; i < N; i++)
        buf[i] = (unsigned char)(i * 7);
    CHECK(write(sv[1], buf, N) == N, "write of %d bytes", N);
    return NULL;
}

static void *late_writer(void *arg) {
    (void)arg;
    for (int i = 0; i < LATE; i++) {
        unsigned char c = (unsigned char)(i * 3);
        usleep(1000);
        CHECK(write(sv[1], &c, 1) == 1, "late write %d", i);
    }
    return NULL;
}

static void *reader(void *arg) {
    pthread_t w;
    uint64_t before, after;
    (void)arg;
    CHECK(pthread_create(&w, NULL, writer, NULL) == 0, "pthread_create writer");
    CHECK(pthread_join(w, NULL) == 0, "join writer");
    before = submitted();
    for (int i = 0; i < N; i++) {
        unsigned char c;
        if (read(sv[0], &c, 1) != 1) {
            CHECK(0, "read %d", i);
            return NULL;
        }
        CHECK(c == (unsigned char)(i * 7), "byte %d is %u, not %u", i, c, (unsigned char)(i * 7));
    }
    after = submitted();
    printf("%s: %d one-byte reads of waiting data made %llu engine operations\n", engine_name(), N,
           (unsigned long long)(after - before));
    const char *direct = getenv("DIRECT");
    if (direct && strcmp(engine_name(), "io_uring") == 0) {
        if (strcmp(direct, "1") == 0)
            CHECK(after - before <= N / 16, "%llu submissions for %d reads of waiting data",
                  (unsigned long long)(after - before), N);
        else
            CHECK(after - before >= N, "only %llu submissions for %d reads with direct reads off",
                  (unsigned long long)(after - before), N);
    }
    /* Reads that have to wait still wait, and get every byte. */
    CHECK(pthread_create(&w, NULL, late_writer, NULL) == 0, "pthread_create late writer");
    for (int i = 0; i < LATE; i++) {
        unsigned char c;
        if (read(sv[0], &c, 1) != 1) {
            CHECK(0, "late read %d", i);
            break;
        }
        CHECK(c == (unsigned char)(i * 3), "late byte %d is %u", i, c);
    }
    CHECK(pthread_join(w, NULL) == 0, "join late writer");
    return NULL;
}

int main(void) {
    pthread_t r;
    stats_get = (int (*)(struct stats *))dlsym(RTLD_DEFAULT, "photon_stats_get");
    engine_name = (const char *(*)(void))dlsym(RTLD_DEFAULT, "photon_engine_name");
    if (!stats_get || !engine_name) {
        fprintf(stderr, "FAIL: libphoton is not loaded (run under the shim)\n");
        return 1;
    }
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0, "socketpair");
    CHECK(pthread_create(&r, NULL, reader, NULL) == 0, "pthread_create reader");
    CHECK(pthread_join(r, NULL) == 0, "join reader");
    close(sv[0]);
    close(sv[1]);
    if (failures)
        return 1;
    printf("direct_read: OK\n");
    return 0;
}
