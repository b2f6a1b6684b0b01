/* libphoton's locks, measured for `cargo run --release --bin locks`.
 *
 *   locks_photon contended SECS THREADS VCPUS [mutex|sem|rwlock]
 *       THREADS photon threads increment one counter under a photon_mutex
 *       (or a photon_sem of count 1, FIFO; or a photon_rwlock's write lock)
 *       for SECS seconds; VCPUS = 2: half on the main vcpu, half on a work
 *       pool of one vcpu (started with photon_workpool_spawn); VCPUS = 1:
 *       all on the main vcpu, each yielding after every increment (without
 *       a yield a photon thread never lets go of its vcpu). A plain pthread
 *       says when to stop. RESULT value=lock/unlock pairs per second. The
 *       counter must equal the sum of the threads' own counts.
 *   locks_photon uncontended SECS
 *       one photon thread: photon_mutex_lock(FOREVER) + photon_mutex_unlock
 *       in a loop. RESULT value=ns per lock/unlock pair.
 *   locks_photon pingpong SECS sem|cond
 *       the main thread (main vcpu, pinned to CPU 0) and a photon thread on a
 *       work pool of one vcpu (its OS thread pinned to CPU 1) hand a turn
 *       back and forth through two photon_sems, or a photon_cond + mutex,
 *       for SECS seconds. RESULT median_us= p99_us= max_us= (round trip).
 *
 * The engine is PHOTON_EVENT_DEFAULT: the driver sets PHOTON_ENGINE.
 * Output protocol: bench_common.h. */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <unistd.h>

#include "bench_common.h"
#include "photon.h"

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void pin_self(int cpu) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    int r = pthread_setaffinity_np(pthread_self(), sizeof set, &set);
    if (r != 0) {
        errno = r;
        BENCH_DIE("pthread_setaffinity_np(CPU %d)", cpu);
    }
}

static void *pin_entry(void *arg) {
    pin_self((int)(intptr_t)arg);
    return NULL;
}

static photon_workpool *pool_of_one(int cpu) {
    photon_workpool *p = photon_workpool_new(1, PHOTON_EVENT_DEFAULT);
    if (!p) BENCH_DIE("photon_workpool_new(1)");
    if (cpu >= 0 && photon_workpool_call(p, pin_entry, (void *)(intptr_t)cpu, NULL) != 0) {
        BENCH_DIE("pinning the pool's vcpu");
    }
    return p;
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* ------------------------------------------------------------ contended */

static photon_mutex *mtx;
static photon_sem *done;
static photon_sem *sem_lock;
static photon_rwlock *rw_lock;
enum kind { K_MUTEX, K_SEM, K_RWLOCK };
static enum kind kind;

static void take(void) {
    int r = kind == K_MUTEX ? photon_mutex_lock(mtx, PHOTON_FOREVER)
            : kind == K_SEM ? photon_sem_wait(sem_lock, 1, PHOTON_FOREVER)
                            : photon_rwlock_wrlock(rw_lock, PHOTON_FOREVER);
    if (r != 0) BENCH_DIE("lock");
}

static void give(void) {
    int r = kind == K_MUTEX ? photon_mutex_unlock(mtx)
            : kind == K_SEM ? photon_sem_signal(sem_lock, 1)
                            : photon_rwlock_unlock(rw_lock);
    if (r != 0) BENCH_DIE("unlock");
}
static uint64_t counter;
static atomic_int stop;
static atomic_ullong total_ops;
static int yield_each;

static void *incrementer(void *arg) {
    (void)arg;
    uint64_t mine = 0;
    while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
        for (int i = 0; i < 64; i++) {
            take();
            counter++;
            if (yield_each) photon_thread_yield(); /* 1 vcpu: let the others contend */
            give();
        }
        mine += 64;
    }
    atomic_fetch_add(&total_ops, mine);
    if (photon_sem_signal(done, 1) != 0) BENCH_DIE("photon_sem_signal");
    return NULL;
}

static void *stopper(void *arg) {
    usleep((useconds_t)(*(double *)arg * 1e6));
    atomic_store(&stop, 1);
    return NULL;
}

static int contended(double secs, int threads, int vcpus, const char *how) {
    kind = strcmp(how, "sem") == 0 ? K_SEM : strcmp(how, "rwlock") == 0 ? K_RWLOCK : K_MUTEX;
    if (kind == K_MUTEX && strcmp(how, "mutex") != 0) {
        errno = EINVAL;
        BENCH_DIE("contended: mutex, sem or rwlock");
    }
    sem_lock = photon_sem_new(1);
    rw_lock = photon_rwlock_new();
    if (!sem_lock || !rw_lock) BENCH_DIE("new");
    if (threads < 1 || vcpus < 1 || vcpus > 2) {
        errno = EINVAL;
        BENCH_DIE("contended: THREADS >= 1, VCPUS 1 or 2");
    }
    photon_workpool *pool = vcpus == 2 ? pool_of_one(-1) : NULL;
    yield_each = vcpus == 1;
    mtx = photon_mutex_new();
    done = photon_sem_new(0);
    if (!mtx || !done) BENCH_DIE("new");
    int on_pool = vcpus == 2 ? threads / 2 : 0;
    for (int i = 0; i < on_pool; i++) {
        if (photon_workpool_spawn(pool, incrementer, NULL) != 0) BENCH_DIE("photon_workpool_spawn");
    }
    for (int i = on_pool; i < threads; i++) {
        if (!photon_thread_create(incrementer, NULL, 0)) BENCH_DIE("photon_thread_create");
    }
    double t0 = bench_now_s();
    pthread_t st;
    if (pthread_create(&st, NULL, stopper, &secs) != 0) BENCH_DIE("pthread_create");
    if (photon_sem_wait(done, (uint64_t)threads, 60 * 1000000ull) != 0) BENCH_DIE("waiting for the threads");
    double dt = bench_now_s() - t0;
    pthread_join(st, NULL);
    take();
    uint64_t c = counter;
    give();
    uint64_t ops = atomic_load(&total_ops);
    if (c != ops) {
        fprintf(stderr, "ERROR: counter %llu != %llu increments done\n", (unsigned long long)c,
                (unsigned long long)ops);
        return 1;
    }
    printf("INFO %d photon threads on %d vcpu(s), %s: %llu increments in %.3f s\n", threads, vcpus, how,
           (unsigned long long)ops, dt);
    printf("RESULT value=%.1f ops=%llu secs=%.4f engine=%s\n", (double)ops / dt, (unsigned long long)ops, dt,
           photon_engine_name());
    photon_mutex_free(mtx);
    photon_sem_free(done);
    photon_sem_free(sem_lock);
    photon_rwlock_free(rw_lock);
    photon_workpool_free(pool);
    return 0;
}

/* ---------------------------------------------------------- uncontended */

static photon_mutex *solo;

static void uncontended_body(uint64_t n) {
    for (uint64_t i = 0; i < n; i++) {
        if (photon_mutex_lock(solo, PHOTON_FOREVER) != 0) BENCH_DIE("photon_mutex_lock");
        __asm__ volatile("" ::: "memory");
        if (photon_mutex_unlock(solo) != 0) BENCH_DIE("photon_mutex_unlock");
    }
}

static int uncontended(double secs) {
    pin_self(1);
    solo = photon_mutex_new();
    if (!solo) BENCH_DIE("photon_mutex_new");
    uint64_t n = bench_calibrate(uncontended_body, secs);
    double t0 = bench_now_s();
    uncontended_body(n);
    double dt = bench_now_s() - t0;
    printf("INFO %llu lock/unlock pairs in %.3f s\n", (unsigned long long)n, dt);
    printf("RESULT value=%.3f pairs=%llu secs=%.4f engine=%s\n", dt * 1e9 / (double)n, (unsigned long long)n, dt,
           photon_engine_name());
    photon_mutex_free(solo);
    return 0;
}

/* ------------------------------------------------------------- pingpong */

static photon_sem *ping, *pong;
static photon_cond *cv;
static int turn, quit; /* guarded by mtx (cond flavour) */
static atomic_int sem_quit;

static void *sem_partner(void *arg) {
    (void)arg;
    for (;;) {
        if (photon_sem_wait(ping, 1, PHOTON_FOREVER) != 0) BENCH_DIE("partner sem_wait");
        if (atomic_load(&sem_quit)) break;
        if (photon_sem_signal(pong, 1) != 0) BENCH_DIE("partner sem_signal");
    }
    photon_sem_signal(done, 1);
    return NULL;
}

static void *cond_partner(void *arg) {
    (void)arg;
    if (photon_mutex_lock(mtx, PHOTON_FOREVER) != 0) BENCH_DIE("partner lock");
    for (;;) {
        while (turn != 1 && !quit) {
            if (photon_cond_wait(cv, mtx, PHOTON_FOREVER) != 0) BENCH_DIE("partner cond_wait");
        }
        if (quit) break;
        turn = 0;
        photon_cond_notify_one(cv);
    }
    photon_mutex_unlock(mtx);
    photon_sem_signal(done, 1);
    return NULL;
}

static int pingpong(double secs, const char *how) {
    int use_sem = strcmp(how, "sem") == 0;
    if (!use_sem && strcmp(how, "cond") != 0) {
        errno = EINVAL;
        BENCH_DIE("pingpong: sem or cond");
    }
    pin_self(0);
    photon_workpool *pool = pool_of_one(1);
    mtx = photon_mutex_new();
    cv = photon_cond_new();
    ping = photon_sem_new(0);
    pong = photon_sem_new(0);
    done = photon_sem_new(0);
    if (!mtx || !cv || !ping || !pong || !done) BENCH_DIE("new");
    if (photon_workpool_spawn(pool, use_sem ? sem_partner : cond_partner, NULL) != 0) BENCH_DIE("spawn");

    size_t cap = 1 << 20, n = 0;
    uint64_t *rtt = malloc(cap * sizeof *rtt);
    if (!rtt) BENCH_DIE("malloc");
    uint64_t end = now_ns() + (uint64_t)(secs * 1e9), warm_end = now_ns() + 100000000ull;
    if (!use_sem && photon_mutex_lock(mtx, PHOTON_FOREVER) != 0) BENCH_DIE("lock");
    for (;;) {
        uint64_t t = now_ns();
        if (t >= end) break;
        if (use_sem) {
            if (photon_sem_signal(ping, 1) != 0) BENCH_DIE("sem_signal");
            if (photon_sem_wait(pong, 1, PHOTON_FOREVER) != 0) BENCH_DIE("sem_wait");
        } else {
            turn = 1;
            photon_cond_notify_one(cv);
            while (turn != 0) {
                if (photon_cond_wait(cv, mtx, PHOTON_FOREVER) != 0) BENCH_DIE("cond_wait");
            }
        }
        uint64_t d = now_ns() - t;
        if (t < warm_end) continue; /* the first 100 ms warm up */
        if (n == cap) {
            cap *= 2;
            rtt = realloc(rtt, cap * sizeof *rtt);
            if (!rtt) BENCH_DIE("realloc");
        }
        rtt[n++] = d;
    }
    if (use_sem) {
        atomic_store(&sem_quit, 1);
        photon_sem_signal(ping, 1);
    } else {
        quit = 1;
        photon_cond_notify_all(cv);
        photon_mutex_unlock(mtx);
    }
    if (photon_sem_wait(done, 1, 10 * 1000000ull) != 0) BENCH_DIE("partner did not stop");
    if (n < 100) {
        fprintf(stderr, "ERROR: only %zu round trips\n", n);
        return 1;
    }
    qsort(rtt, n, sizeof *rtt, cmp_u64);
    printf("INFO %zu round trips (%s), min %.2f us\n", n, how, rtt[0] / 1e3);
    printf("RESULT median_us=%.3f p99_us=%.3f max_us=%.1f rtts=%zu engine=%s\n", rtt[n / 2] / 1e3,
           rtt[(size_t)(n * 0.99)] / 1e3, rtt[n - 1] / 1e3, n, photon_engine_name());
    free(rtt);
    photon_workpool_free(pool);
    return 0;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc < 3) {
        fprintf(stderr, "usage: locks_photon contended SECS THREADS VCPUS | uncontended SECS | "
                        "pingpong SECS sem|cond\n");
        return 2;
    }
    double secs = bench_secs_arg(argc - 1, argv + 1);
    if (photon_init(PHOTON_EVENT_DEFAULT, 0) != 0) BENCH_DIE("photon_init");
    int r;
    if (strcmp(argv[1], "contended") == 0 && (argc == 5 || argc == 6)) {
        r = contended(secs, atoi(argv[3]), atoi(argv[4]), argc == 6 ? argv[5] : "mutex");
    } else if (strcmp(argv[1], "uncontended") == 0) {
        r = uncontended(secs);
    } else if (strcmp(argv[1], "pingpong") == 0 && argc == 4) {
        r = pingpong(secs, argv[3]);
    } else {
        fprintf(stderr, "bad arguments\n");
        return 2;
    }
    if (photon_fini() != 0) BENCH_DIE("photon_fini");
    return r;
}
