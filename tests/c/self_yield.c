/*
 * photon_thread_self and photon_thread_yield: self is non-NULL in the main
 * thread (after photon_init) and inside threads, and is the handle that
 * photon_thread_create returned; yield runs ready threads round-robin.
 */
#include "check.h"

#define NTHREADS 3
#define ROUNDS 5

static int log_ids[NTHREADS * ROUNDS];
static int log_len;
static photon_thread *seen_self[NTHREADS];

static void *round_robin(void *arg) {
    int id = (int)(uintptr_t)arg;
    seen_self[id] = photon_thread_self();
    for (int r = 0; r < ROUNDS; r++) {
        log_ids[log_len++] = id;
        photon_thread_yield();
        CHECK(photon_thread_self() == seen_self[id],
              "thread %d: photon_thread_self() changed across a yield", id);
    }
    return NULL;
}

int main(void) {
    test_start("self_yield");
    test_init();

    SAY("photon_thread_self() in the main thread is not NULL and is stable");
    photon_thread *main_self = photon_thread_self();
    CHECK(main_self != NULL, "photon_thread_self() is NULL in main after photon_init");
    photon_thread_yield();
    CHECK(photon_thread_self() == main_self, "main's photon_thread_self() changed across a yield");

    SAY("photon_thread_yield with no other thread returns at once");
    uint64_t t0 = photon_now_us();
    for (int i = 0; i < 1000; i++) {
        photon_thread_yield();
    }
    uint64_t took = elapsed_us(t0);
    CHECK(took < 1000000, "1000 lone yields took %" PRIu64 " us", took);

    SAY("%d threads yielding %d times run round-robin", NTHREADS, ROUNDS);
    photon_thread *th[NTHREADS];
    for (int i = 0; i < NTHREADS; i++) {
        th[i] = spawn_joinable(round_robin, (void *)(uintptr_t)i, 0);
    }
    for (int i = 0; i < NTHREADS; i++) {
        join_ok(th[i]);
    }
    CHECK(log_len == NTHREADS * ROUNDS, "log has %d entries", log_len);
    for (int k = 0; k < log_len; k++) {
        CHECK(log_ids[k] == k % NTHREADS,
              "entry %d of the run log is thread %d, want thread %d (round-robin)", k,
              log_ids[k], k % NTHREADS);
    }

    SAY("photon_thread_self() in a thread is its handle, distinct from main's");
    for (int i = 0; i < NTHREADS; i++) {
        CHECK(seen_self[i] != NULL, "thread %d: photon_thread_self() is NULL", i);
        CHECK(seen_self[i] != main_self, "thread %d: photon_thread_self() is main's", i);
        CHECK(seen_self[i] == th[i],
              "thread %d: photon_thread_self() %p is not the handle %p that create returned", i,
              (void *)seen_self[i], (void *)th[i]);
    }

    SAY("the main thread takes its turn in the round-robin too");
    log_len = 0;
    for (int i = 0; i < NTHREADS; i++) {
        th[i] = spawn_joinable(round_robin, (void *)(uintptr_t)i, 0);
    }
    /* Each of main's yields lets every other thread run exactly once. */
    for (int r = 0; r < ROUNDS; r++) {
        photon_thread_yield();
        CHECK(log_len == (r + 1) * NTHREADS,
              "after main's yield #%d, the threads logged %d entries, want %d", r + 1, log_len,
              (r + 1) * NTHREADS);
    }
    for (int i = 0; i < NTHREADS; i++) {
        join_ok(th[i]);
    }

    test_fini();
    SAY("self_yield: OK");
    return 0;
}
