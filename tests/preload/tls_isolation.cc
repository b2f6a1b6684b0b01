// Thread-locals that follow the photon thread (photon_tls_isolate).
//
//   tls_isolation isolated shim   under libphoton_preload.so (default "*"):
//                                 hooked usleep/read, C++ thread_local
//                                 objects destroyed at each photon thread's end
//   tls_isolation isolated api    no shim: photon_tls_isolate("libtlsprobe")
//   tls_isolation mixed shim      PHOTON_TLS_ISOLATE=none: the mix-up shows
//
// 100 photon threads on one vcpu each keep their own values of a library's
// __thread int and thread_local object across waits; main's and a plain
// pthread's values stay untouched; a photon thread suspended inside a catch
// block rethrows its own exception; values survive migration between two
// vcpus. Exit 0 and "tls_isolation: ok" on success.
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <atomic>

#include "photon.h"

extern "C" {
void tlsprobe_set(int v);
int tlsprobe_get(void);
void tlsprobe_obj_set(long v);
long tlsprobe_obj_get(void);
int tlsprobe_constructed(void);
int tlsprobe_destroyed(void);
long tlsprobe_destroyed_sum(void);
}

#define CHECK(c)                                                                   \
    do {                                                                           \
        if (!(c)) {                                                                \
            fprintf(stderr, "%s:%d: check failed: %s (errno %d)\n", __FILE__, __LINE__, #c, errno); \
            exit(1);                                                               \
        }                                                                          \
    } while (0)

static bool shim = false;
static std::atomic<int> mismatches{0};
static std::atomic<int> exception_mismatches{0};
static int zero_fd = -1;

static void nap(unsigned us) {
    if (shim) {
        usleep(us); // hooked: a photon sleep
        char buf[16];
        CHECK(read(zero_fd, buf, sizeof buf) == (ssize_t)sizeof buf); // hooked file read
    } else {
        CHECK(photon_thread_usleep(us) == 0);
    }
}

static void expect(int id) {
    if (tlsprobe_get() != id)
        mismatches++;
    if (shim && tlsprobe_obj_get() != id)
        mismatches++;
}

static void *worker(void *arg) {
    int id = (int)(intptr_t)arg;
    tlsprobe_set(id);
    if (shim)
        tlsprobe_obj_set(id);
    for (int r = 0; r < 5; r++) {
        nap(100 + (unsigned)((id * 7919 + r * 104729) % 1900));
        expect(id);
    }
    try {
        throw id;
    } catch (int) {
        nap(500); // other threads throw and catch meanwhile
        try {
            throw; // rethrows the exception this thread is handling
        } catch (int again) {
            if (again != id)
                exception_mismatches++;
        }
    }
    expect(id);
    return nullptr;
}

static std::atomic<int> plain_phase{0};

static void *plain_thread(void *) {
    tlsprobe_set(777);
    plain_phase = 1;
    while (plain_phase.load() != 2)
        usleep(1000);
    return (void *)(intptr_t)(tlsprobe_get() == 777);
}

static photon_vcpu *vcpus[2];

static void *migrator(void *arg) {
    int id = (int)(intptr_t)arg;
    tlsprobe_set(id);
    if (shim)
        tlsprobe_obj_set(id);
    for (int r = 0; r < 3; r++) { // ends on the pool's vcpu, where its object is destroyed
        CHECK(photon_thread_migrate(photon_thread_self(), vcpus[(r + 1) % 2]) == 0);
        nap(200 + (unsigned)(id % 7) * 100);
        expect(id);
    }
    return nullptr;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: tls_isolation isolated|mixed shim|api\n");
        return 2;
    }
    bool isolated = strcmp(argv[1], "isolated") == 0;
    shim = strcmp(argv[2], "shim") == 0;
    setvbuf(stdout, nullptr, _IONBF, 0);
    zero_fd = open("/dev/zero", O_RDONLY | O_CLOEXEC);
    CHECK(zero_fd >= 0);
    CHECK(photon_init(PHOTON_EVENT_DEFAULT, 0) == 0);
    CHECK(photon_preload_active() == (shim ? 1 : 0));
    if (!shim && isolated) {
        errno = 0;
        CHECK(photon_tls_isolate(nullptr) == -1 && errno == EINVAL);
        CHECK(photon_tls_isolate("") == -1 && errno == EINVAL);
        CHECK(photon_tls_isolate("libno-such-module-here") == -1 && errno == ENOENT);
        CHECK(photon_tls_isolate("libtlsprobe") == 0);
        CHECK(photon_tls_isolate("libtlsprobe") == 0); // again: no change
    }

    tlsprobe_set(4242); // main keeps the OS thread's copy
    pthread_t plain;
    CHECK(pthread_create(&plain, nullptr, plain_thread, nullptr) == 0);
    while (plain_phase.load() != 1)
        usleep(1000);

    enum { N = 100 };
    photon_thread *th[N];
    for (int i = 0; i < N; i++) {
        th[i] = photon_thread_create(worker, (void *)(intptr_t)(i + 1), 0);
        CHECK(th[i] && photon_thread_enable_join(th[i]) == 0);
    }
    for (int i = 0; i < N; i++)
        CHECK(photon_thread_join(th[i], nullptr) == 0);
    int one_vcpu = mismatches.load();
    printf("exception mismatches %d\n", exception_mismatches.load());
    CHECK(exception_mismatches.load() == 0);
    printf("one vcpu: %d mismatches in %d photon threads\n", one_vcpu, N);

    if (isolated) {
        CHECK(tlsprobe_get() == 4242);
        CHECK(one_vcpu == 0);
        if (shim) {
            // Each photon thread built its own object and destroyed it when it ended.
            printf("thread_local objects: %d constructed, %d destroyed\n", tlsprobe_constructed(),
                   tlsprobe_destroyed());
            CHECK(tlsprobe_constructed() == N);
            CHECK(tlsprobe_destroyed() == N);
            CHECK(tlsprobe_destroyed_sum() == (long)N * (N + 1) / 2); // each on its own values
        }
    } else {
        CHECK(one_vcpu > 0); // without isolation they share one copy
        plain_phase = 2;
        void *ok = nullptr;
        CHECK(pthread_join(plain, &ok) == 0 && ok);
        CHECK(photon_fini() == 0);
        printf("tls_isolation: mix-up shown without isolation\n");
        return 0;
    }

    // Two vcpus: values travel with migrating threads.
    photon_workpool *pool = photon_workpool_new(1, PHOTON_EVENT_DEFAULT);
    CHECK(pool);
    vcpus[0] = photon_vcpu_current();
    vcpus[1] = photon_workpool_vcpu(pool, 0);
    CHECK(vcpus[0] && vcpus[1]);
    mismatches = 0;
    enum { M = 20 };
    photon_thread *mt[M];
    for (int i = 0; i < M; i++) {
        mt[i] = photon_thread_create(migrator, (void *)(intptr_t)(1000 + i), 0);
        CHECK(mt[i] && photon_thread_enable_join(mt[i]) == 0);
    }
    for (int i = 0; i < M; i++)
        CHECK(photon_thread_join(mt[i], nullptr) == 0);
    printf("two vcpus: %d mismatches in %d migrating photon threads\n", mismatches.load(), M);
    CHECK(mismatches.load() == 0);
    CHECK(tlsprobe_get() == 4242);
    if (shim) {
        // Destroyed where each ended (the other vcpu), on its own values.
        long sum = (long)N * (N + 1) / 2;
        for (int i = 0; i < M; i++)
            sum += 1000 + i;
        CHECK(tlsprobe_destroyed() == N + M);
        CHECK(tlsprobe_destroyed_sum() == sum);
    }
    photon_workpool_free(pool);

    plain_phase = 2;
    void *ok = nullptr;
    CHECK(pthread_join(plain, &ok) == 0 && ok);
    CHECK(photon_fini() == 0);
    CHECK(tlsprobe_get() == 4242);
    printf("tls_isolation: ok\n");
    return 0;
}
