/*
 * Randomized schedules: for 200 seeds, 6 photon threads on 3 vcpus (3
 * created on the main vcpu, 3 spawned on a work pool of two) each run 200
 * random operations (20 where the engine rounds every sleep up to a
 * millisecond, as epoll's millisecond timeout does here, to stay short) on one mutex, one rwlock and one semaphore of count K
 * (1..3, from the seed): lock without timeout, timed lock (0..300 us),
 * trylock / timeout-0, rdlock or wrlock, sem_wait, plus yields and
 * usleep(0..50 us), holding the lock across a yield or a sleep at random,
 * and nesting them in a fixed order (mutex, then rwlock, then semaphore),
 * so deadlock is impossible and every schedule must finish. The weights of
 * the operations change with the seed too.
 *
 * Checked all along: at most one mutex owner; no reader with a writer, at
 * most one writer; at most K semaphore holders; trylock fails only with
 * EBUSY, timed waits only with ETIMEDOUT and only after their timeout.
 * After each seed: every lock is idle (each _free returns 0, so no waiter
 * or holder was left behind) and the semaphore holds exactly K again.
 * A seed that does not finish within 10 s fails the test with its number;
 * a watchdog pthread aborts with the stuck seed and each thread's current
 * operation if the whole run stalls.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>

#include "check.h"

#define SEEDS 200
#define THREADS 6
#define OPS_FINE 200  /* ops per thread when sleeps are as short as asked */
#define OPS_COARSE 20 /* when the engine rounds sleeps up to a millisecond */
#define SEED_TIMEOUT_US (10 * 1000 * 1000ULL)
#define WATCHDOG_STALL_S 20

enum op { OP_MUTEX, OP_MUTEX_TIMED, OP_MUTEX_TRY, OP_READ, OP_WRITE, OP_SEM, OP_YIELD, OP_SLEEP, OP_N };
static const char *op_name[OP_N] = {"mutex", "mutex_timed", "mutex_try", "read",
                                    "write", "sem", "yield", "sleep"};

static photon_workpool *pool;
static photon_mutex *mtx;
static photon_rwlock *rw;
static photon_sem *sem;
static photon_sem *done;
static uint64_t sem_k;
static unsigned weights[OP_N];
static unsigned weight_sum;
static uint64_t cur_seed;
static int ops_per_thread;

static atomic_int m_owners, w_in, r_in, s_in;
static atomic_int seed_running = -1;
static atomic_ullong ops_done;           /* across all seeds: progress for the watchdog */
static atomic_int doing[THREADS];        /* each thread's current op (-1 idle) */
static atomic_int finished;
static atomic_ullong timeouts, successes;

static uint64_t rnd(uint64_t *x) {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    return *x;
}

/* Holds whatever was taken for a random while: nothing, a yield or a sleep. */
static void dwell(uint64_t *x) {
    switch (rnd(x) % 8) {
    case 0:
    case 1: photon_thread_yield(); break;
    case 2: CHECK_OK(photon_thread_usleep(rnd(x) % 51)); break;
    default: break;
    }
}

static void timed_out(const char *what, int r, int err, uint64_t took, uint64_t timeout) {
    CHECK(r == -1 && err == ETIMEDOUT, "seed %llu: %s: %d errno %d", (unsigned long long)cur_seed,
          what, r, err);
    CHECK(took >= timeout, "seed %llu: %s timed out after %llu us < %llu us",
          (unsigned long long)cur_seed, what, (unsigned long long)took, (unsigned long long)timeout);
    atomic_fetch_add_explicit(&timeouts, 1, memory_order_relaxed);
}

static uint64_t pick_timeout(uint64_t *x) {
    switch (rnd(x) % 4) {
    case 0: return 0;
    case 1: return PHOTON_FOREVER;
    default: return rnd(x) % 301;
    }
}

static void in_sem(uint64_t *x) {
    uint64_t timeout = pick_timeout(x);
    uint64_t t0 = photon_now_us();
    errno = 0;
    int r = photon_sem_wait(sem, 1, timeout);
    int err = errno;
    if (r != 0) {
        timed_out("sem_wait", r, err, elapsed_us(t0), timeout);
        return;
    }
    int n = atomic_fetch_add(&s_in, 1) + 1;
    CHECK((uint64_t)n <= sem_k, "seed %llu: %d semaphore holders, K=%llu", (unsigned long long)cur_seed,
          n, (unsigned long long)sem_k);
    dwell(x);
    atomic_fetch_sub(&s_in, 1);
    CHECK_OK(photon_sem_signal(sem, 1));
    atomic_fetch_add_explicit(&successes, 1, memory_order_relaxed);
}

static void in_rwlock(uint64_t *x, int write) {
    uint64_t timeout = pick_timeout(x);
    uint64_t t0 = photon_now_us();
    errno = 0;
    int r = write ? photon_rwlock_wrlock(rw, timeout) : photon_rwlock_rdlock(rw, timeout);
    int err = errno;
    if (r != 0) {
        timed_out(write ? "wrlock" : "rdlock", r, err, elapsed_us(t0), timeout);
        return;
    }
    if (write) {
        CHECK(atomic_fetch_add(&w_in, 1) == 0, "seed %llu: two writers", (unsigned long long)cur_seed);
        CHECK(atomic_load(&r_in) == 0, "seed %llu: a writer with readers", (unsigned long long)cur_seed);
    } else {
        atomic_fetch_add(&r_in, 1);
        CHECK(atomic_load(&w_in) == 0, "seed %llu: a reader with a writer", (unsigned long long)cur_seed);
    }
    dwell(x);
    if (rnd(x) % 3 == 0) in_sem(x); /* nested, in lock order */
    dwell(x);
    if (write) {
        CHECK(atomic_load(&r_in) == 0, "seed %llu: a reader entered under a writer",
              (unsigned long long)cur_seed);
        atomic_fetch_sub(&w_in, 1);
    } else {
        CHECK(atomic_load(&w_in) == 0, "seed %llu: a writer entered under a reader",
              (unsigned long long)cur_seed);
        atomic_fetch_sub(&r_in, 1);
    }
    CHECK_OK(photon_rwlock_unlock(rw));
    atomic_fetch_add_explicit(&successes, 1, memory_order_relaxed);
}

static void in_mutex(uint64_t *x, enum op how) {
    int r, err = 0;
    uint64_t timeout = 0, t0 = photon_now_us();
    errno = 0;
    if (how == OP_MUTEX) {
        r = photon_mutex_lock(mtx, PHOTON_FOREVER);
        CHECK(r == 0, "seed %llu: mutex_lock: errno %d", (unsigned long long)cur_seed, errno);
    } else if (how == OP_MUTEX_TIMED) {
        timeout = rnd(x) % 301;
        r = photon_mutex_lock(mtx, timeout);
        err = errno;
        if (r != 0) {
            timed_out("mutex_lock", r, err, elapsed_us(t0), timeout);
            return;
        }
    } else {
        r = photon_mutex_trylock(mtx);
        err = errno;
        if (r != 0) {
            CHECK(r == -1 && err == EBUSY, "seed %llu: trylock: %d errno %d", (unsigned long long)cur_seed,
                  r, err);
            return;
        }
    }
    CHECK(atomic_fetch_add(&m_owners, 1) == 0, "seed %llu: two mutex owners", (unsigned long long)cur_seed);
    dwell(x);
    uint64_t nest = rnd(x) % 4;
    if (nest == 0) in_rwlock(x, (int)(rnd(x) % 2));
    if (nest == 1) in_sem(x);
    dwell(x);
    CHECK(atomic_load(&m_owners) == 1, "seed %llu: mutex owners %d", (unsigned long long)cur_seed,
          atomic_load(&m_owners));
    atomic_fetch_sub(&m_owners, 1);
    CHECK_OK(photon_mutex_unlock(mtx));
    atomic_fetch_add_explicit(&successes, 1, memory_order_relaxed);
}

static void *worker(void *arg) {
    int id = (int)(intptr_t)arg;
    uint64_t x = (cur_seed + 1) * 0x9E3779B97F4A7C15ULL ^ (uint64_t)(id + 1) * 0xBF58476D1CE4E5B9ULL;
    if (x == 0) x = 1;
    for (int i = 0; i < ops_per_thread; i++) {
        unsigned w = (unsigned)(rnd(&x) % weight_sum);
        enum op op = OP_MUTEX;
        for (int k = 0; k < OP_N; k++) {
            if (w < weights[k]) {
                op = (enum op)k;
                break;
            }
            w -= weights[k];
        }
        atomic_store(&doing[id], op);
        switch (op) {
        case OP_MUTEX:
        case OP_MUTEX_TIMED:
        case OP_MUTEX_TRY: in_mutex(&x, op); break;
        case OP_READ: in_rwlock(&x, 0); break;
        case OP_WRITE: in_rwlock(&x, 1); break;
        case OP_SEM: in_sem(&x); break;
        case OP_YIELD: photon_thread_yield(); break;
        case OP_SLEEP: CHECK_OK(photon_thread_usleep(rnd(&x) % 51)); break;
        default: break;
        }
        atomic_fetch_add_explicit(&ops_done, 1, memory_order_relaxed);
    }
    atomic_store(&doing[id], -1);
    CHECK_OK(photon_sem_signal(done, 1));
    return NULL;
}

static void *watchdog(void *arg) {
    (void)arg;
    unsigned long long last = (unsigned long long)-1;
    int still = 0;
    while (!atomic_load(&finished)) {
        usleep(100000);
        unsigned long long now = atomic_load(&ops_done);
        still = now == last ? still + 1 : 0;
        last = now;
        if (still >= WATCHDOG_STALL_S * 10) {
            fprintf(stderr, "WATCHDOG: no progress for %d s in seed %d; m_owners=%d w_in=%d r_in=%d s_in=%d;",
                    WATCHDOG_STALL_S, atomic_load(&seed_running), atomic_load(&m_owners),
                    atomic_load(&w_in), atomic_load(&r_in), atomic_load(&s_in));
            for (int i = 0; i < THREADS; i++) {
                int d = atomic_load(&doing[i]);
                fprintf(stderr, " thread %d: %s;", i, d < 0 ? "done" : op_name[d]);
            }
            fprintf(stderr, "\n");
            abort();
        }
    }
    return NULL;
}

int main(void) {
    test_start("sync_random");
    test_init();
    pthread_t wd;
    CHECK(pthread_create(&wd, NULL, watchdog, NULL) == 0, "pthread_create watchdog");
    pool = photon_workpool_new(2, PHOTON_EVENT_DEFAULT);
    CHECK(pool != NULL, "photon_workpool_new(2): errno %d", errno);
    done = photon_sem_new(0);
    CHECK(done != NULL, "photon_sem_new");

    uint64_t t_tick = photon_now_us();
    for (int i = 0; i < 10; i++) CHECK_OK(photon_thread_usleep(1));
    uint64_t tick = elapsed_us(t_tick) / 10;
    ops_per_thread = tick > 200 ? OPS_COARSE : OPS_FINE;
    SAY("usleep(1) takes %llu us here: %d ops per thread", (unsigned long long)tick, ops_per_thread);
    SAY("%d seeds x %d threads (3 on main, 3 on a pool of 2) x %d random ops", SEEDS, THREADS,
        ops_per_thread);
    uint64_t t_all = photon_now_us(), worst = 0;
    for (uint64_t seed = 0; seed < SEEDS; seed++) {
        cur_seed = seed;
        atomic_store(&seed_running, (int)seed);
        uint64_t x = seed * 0xD1B54A32D192ED03ULL + 7;
        sem_k = 1 + rnd(&x) % 3;
        weight_sum = 0;
        for (int k = 0; k < OP_N; k++) {
            weights[k] = 1 + (unsigned)(rnd(&x) % 8);
            weight_sum += weights[k];
        }
        mtx = photon_mutex_new();
        rw = photon_rwlock_new();
        sem = photon_sem_new(sem_k);
        CHECK(mtx && rw && sem, "new lock failed");

        uint64_t t0 = photon_now_us();
        for (int i = 0; i < THREADS; i++) atomic_store(&doing[i], -2);
        for (int i = 0; i < THREADS; i++) {
            if (i % 2) {
                CHECK_OK(photon_workpool_spawn(pool, worker, (void *)(intptr_t)i));
            } else {
                CHECK(photon_thread_create(worker, (void *)(intptr_t)i, 0), "create: errno %d", errno);
            }
        }
        errno = 0;
        int r = photon_sem_wait(done, THREADS, SEED_TIMEOUT_US);
        if (r != 0) {
            fprintf(stderr, "seed %llu did not finish in %llu s (errno %d):", (unsigned long long)seed,
                    (unsigned long long)(SEED_TIMEOUT_US / 1000000), errno);
            for (int i = 0; i < THREADS; i++) {
                int d = atomic_load(&doing[i]);
                fprintf(stderr, " thread %d: %s;", i, d == -1 ? "done" : d == -2 ? "not started" : op_name[d]);
            }
            fprintf(stderr, "\n");
            CHECK(0, "seed %llu stalled", (unsigned long long)seed);
        }
        uint64_t took = elapsed_us(t0);
        worst = took > worst ? took : worst;

        CHECK(atomic_load(&m_owners) == 0 && atomic_load(&w_in) == 0 && atomic_load(&r_in) == 0 &&
                  atomic_load(&s_in) == 0,
              "seed %llu: holders left", (unsigned long long)seed);
        CHECK_OK(photon_sem_wait(sem, sem_k, 0)); /* exactly K again */
        CHECK_ERRNO(photon_sem_wait(sem, 1, 0), ETIMEDOUT);
        CHECK_OK(photon_sem_signal(sem, sem_k));
        errno = 0;
        CHECK(photon_mutex_free(mtx) == 0, "seed %llu: mutex_free: errno %d", (unsigned long long)seed, errno);
        CHECK(photon_rwlock_free(rw) == 0, "seed %llu: rwlock_free: errno %d", (unsigned long long)seed, errno);
        CHECK(photon_sem_free(sem) == 0, "seed %llu: sem_free: errno %d", (unsigned long long)seed, errno);
    }
    SAY("all %d seeds finished in %.2f s (slowest seed %.1f ms); %llu lock holds, %llu timeouts",
        SEEDS, elapsed_us(t_all) / 1e6, worst / 1e3, (unsigned long long)atomic_load(&successes),
        (unsigned long long)atomic_load(&timeouts));

    CHECK_OK(photon_sem_free(done));
    photon_workpool_free(pool);
    atomic_store(&finished, 1);
    CHECK(pthread_join(wd, NULL) == 0, "pthread_join watchdog");
    test_fini();
    SAY("ok");
    return 0;
}
