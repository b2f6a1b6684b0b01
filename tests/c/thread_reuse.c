/*
 * A thread's control block is reused: when a thread ends, its TCB stays
 * initialised on its stack in a per-vcpu cache (up to 64), and the next
 * thread created with the same stack size gets it with only the per-thread
 * fields rewritten. Nothing of the previous thread may show through:
 *  1. a thread that ended with a name, a key value and a pending interrupt
 *     (sent while it ran, never consumed) is followed by threads that find
 *     no name in the dump, NULL for the key and no interrupt;
 *  2. a TCB cached from a small stack is never handed to a default-stack
 *     thread (which then uses 2 MiB of its stack) and the other way round;
 *  3. 200 threads ending at once overflow the cache (the rest go back to
 *     the stack pool), photon_trim empties it, and creation goes on;
 *  4. a thread ending hands the CPU straight to a joiner on its vcpu while
 *     another OS thread's vcpu joins other threads of the same vcpu (woken
 *     through the handle): every join gets its own thread's value.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>

#include "check.h"

#define LEFTOVER "leftover-name"

static uint32_t key;
static atomic_int dtor_runs;

static void count_dtor(void *v) {
    CHECK(v == (void *)0x5eed, "destructor got %p", v);
    atomic_fetch_add(&dtor_runs, 1);
}

/* Reads what photon_dump_threads writes about this vcpu. */
static void dump(char *buf, size_t cap) {
    FILE *f = tmpfile();
    CHECK(f != NULL, "tmpfile: %s", strerror(errno));
    CHECK(photon_dump_threads(fileno(f)) >= 0, "dump: %s", strerror(errno));
    rewind(f);
    size_t n = fread(buf, 1, cap - 1, f);
    buf[n] = 0;
    fclose(f);
}

/* Leaves a name, a key value and a pending interrupt behind. */
static void *messy(void *arg) {
    photon_thread *self = photon_thread_self();
    CHECK_OK(photon_thread_set_name(self, LEFTOVER));
    char buf[16384];
    dump(buf, sizeof buf);
    CHECK(strstr(buf, LEFTOVER) != NULL, "the dump shows names:\n%s", buf);
    CHECK_OK(photon_setspecific(key, (void *)0x5eed));
    CHECK_OK(photon_thread_interrupt(self, ECANCELED)); /* pending: it never blocks again */
    return arg;
}

/* What a fresh thread must see. */
static void *clean(void *arg) {
    CHECK(photon_getspecific(key) == NULL, "a key value of a previous thread: %p",
          photon_getspecific(key));
    CHECK_OK(photon_thread_usleep(10)); /* no interrupt pending */
    char buf[16384];
    dump(buf, sizeof buf);
    CHECK(strstr(buf, LEFTOVER) == NULL, "a previous thread's name in the dump:\n%s", buf);
    return arg;
}

static void *join_value(photon_thread *th) {
    void *ret = NULL;
    CHECK_OK(photon_thread_join(th, &ret));
    return ret;
}

static photon_thread *spawn(photon_entry f, uintptr_t arg, size_t stack) {
    photon_thread *th = photon_thread_create(f, (void *)arg, stack);
    CHECK(th != NULL, "create: %s", strerror(errno));
    CHECK_OK(photon_thread_enable_join(th));
    return th;
}

/* Uses about 2 MiB of stack (32 frames of 64 KiB, each touched). */
static uintptr_t deep(int depth) {
    volatile unsigned char frame[64 << 10];
    for (size_t i = 0; i < sizeof frame; i += 512) {
        frame[i] = (unsigned char)(depth + i);
    }
    uintptr_t below = depth > 0 ? deep(depth - 1) : 0;
    return below + frame[512 * (size_t)depth];
}

static void *deep_thread(void *arg) {
    uintptr_t want = 0;
    for (int d = 0; d <= 31; d++) {
        want += (unsigned char)(d + 512 * (size_t)d);
    }
    CHECK(deep(31) == want, "deep recursion result");
    return arg;
}

static void *small_thread(void *arg) {
    volatile unsigned char frame[4096];
    frame[0] = 1;
    return frame[0] ? arg : NULL;
}

static photon_sem *gate;

static void *gated(void *arg) {
    CHECK_OK(photon_sem_wait(gate, 1, UINT64_MAX));
    return arg;
}

static void *ident(void *arg) {
    return arg;
}

#define REMOTE 400
static photon_thread *remote_th[REMOTE];
static atomic_int remote_ready;

/* An OS thread with its own vcpu, joining threads of main's vcpu. */
static void *pthread_joiner(void *unused) {
    (void)unused;
    CHECK_OK(photon_init(PHOTON_EVENT_DEFAULT, 0));
    while (atomic_load(&remote_ready) == 0) {
        sched_yield();
    }
    for (uintptr_t i = 0; i < REMOTE; i++) {
        CHECK(join_value(remote_th[i]) == (void *)(0x10000 + i), "pthread's join %zu", (size_t)i);
    }
    CHECK_OK(photon_fini());
    return NULL;
}

int main(void) {
    test_start("thread_reuse");
    CHECK_OK(photon_init(PHOTON_EVENT_DEFAULT, 0));
    CHECK_OK(photon_key_create(&key, count_dtor));

    SAY("1. leftovers of an ended thread do not show in the next");
    for (uintptr_t i = 1; i <= 100; i++) {
        CHECK(join_value(spawn(messy, i, 0)) == (void *)i, "messy %zu", (size_t)i);
        CHECK(join_value(spawn(clean, i + 1000, 0)) == (void *)(i + 1000), "clean %zu", (size_t)i);
    }
    CHECK(atomic_load(&dtor_runs) == 100, "key destructors ran %d times", atomic_load(&dtor_runs));

    SAY("2. cached TCBs keep to their stack size");
    for (uintptr_t i = 1; i <= 40; i++) {
        /* Both alive at once, so the small one's stack comes from the pool;
         * the small one ends last and its TCB is the cache's newest. */
        photon_thread *a = spawn(small_thread, i, 0);
        photon_thread *b = spawn(small_thread, i + 1, 64 << 10);
        CHECK(join_value(a) == (void *)i, "default %zu", (size_t)i);
        CHECK(join_value(b) == (void *)(i + 1), "small %zu", (size_t)i);
        CHECK(join_value(spawn(deep_thread, i, 0)) == (void *)i, "deep %zu", (size_t)i);
        CHECK(join_value(spawn(small_thread, i, 64 << 10)) == (void *)i, "small again %zu", (size_t)i);
    }

    SAY("3. more ends at once than the cache holds; photon_trim empties it");
    gate = photon_sem_new(0);
    CHECK(gate != NULL, "sem");
    for (int round = 0; round < 3; round++) {
        photon_thread *th[200];
        for (uintptr_t i = 0; i < 200; i++) {
            th[i] = spawn(gated, i * 3 + 1, 0);
        }
        photon_thread_yield(); /* all block on the gate */
        CHECK_OK(photon_sem_signal(gate, 200));
        for (uintptr_t i = 0; i < 200; i++) {
            CHECK(join_value(th[i]) == (void *)(i * 3 + 1), "gated %zu", (size_t)i);
        }
        if (round == 1) {
            photon_trim();
        }
        CHECK(join_value(spawn(clean, 77, 0)) == (void *)77, "after the burst");
    }
    CHECK_OK(photon_sem_free(gate));

    SAY("4. direct hand-off to local joiners while another vcpu joins others");
    pthread_t pj;
    CHECK(pthread_create(&pj, NULL, pthread_joiner, NULL) == 0, "pthread_create");
    for (uintptr_t i = 0; i < REMOTE; i++) {
        remote_th[i] = spawn(ident, 0x10000 + i, 0);
    }
    atomic_store(&remote_ready, 1);
    for (uintptr_t i = 0; i < 20000; i++) {
        CHECK(join_value(spawn(ident, i + 7, 0)) == (void *)(i + 7), "local %zu", (size_t)i);
        if (i % 64 == 0) {
            photon_thread_yield(); /* let the remote ones end meanwhile */
        }
    }
    CHECK(pthread_join(pj, NULL) == 0, "pthread_join");

    CHECK_OK(photon_key_delete(key));
    CHECK_OK(photon_fini());
    SAY("ok");
    return 0;
}
