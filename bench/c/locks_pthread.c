/* The OS-thread peers of bench/c/locks_photon.c (same modes, same output):
 *
 *   locks_pthread contended SECS THREADS
 *       THREADS pthreads increment one counter under a pthread_mutex_t
 *       (default type) for SECS seconds. RESULT value=pairs per second.
 *   locks_pthread uncontended SECS [single]
 *       one thread: pthread_mutex_lock + pthread_mutex_unlock in a loop,
 *       while a second thread of the process sleeps (as in any process
 *       whose mutexes matter, and as libphoton's, which has its service
 *       threads). With `single` the process has no second thread: glibc
 *       then takes its single-threaded path, without atomic instructions
 *       (2.6 ns a pair against 14.0 with a second thread alive, on an
 *       Intel Xeon VM). RESULT value=ns per pair.
 *   locks_pthread pingpong SECS cond|sem
 *       two pthreads, pinned to CPU 0 and CPU 1, hand a turn back and forth
 *       through a pthread_cond_t + pthread_mutex_t + turn variable, or two
 *       POSIX sem_t. RESULT median_us= p99_us= max_us= (round trip). */
#include <pthread.h>
#include <sched.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <unistd.h>

#include "bench_common.h"

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

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static pthread_mutex_t mtx = PTHREAD_MUTEX_INITIALIZER;

/* ------------------------------------------------------------ contended */

static uint64_t counter;
static atomic_int stop;
static atomic_ullong total_ops;

static void *incrementer(void *arg) {
    (void)arg;
    uint64_t mine = 0;
    while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
        for (int i = 0; i < 64; i++) {
            if (pthread_mutex_lock(&mtx) != 0) BENCH_DIE("pthread_mutex_lock");
            counter++;
            if (pthread_mutex_unlock(&mtx) != 0) BENCH_DIE("pthread_mutex_unlock");
        }
        mine += 64;
    }
    atomic_fetch_add(&total_ops, mine);
    return NULL;
}

static int contended(double secs, int threads) {
    if (threads < 1 || threads > 1024) {
        errno = EINVAL;
        BENCH_DIE("contended: THREADS in 1..1024");
    }
    pthread_t *ts = calloc((size_t)threads, sizeof *ts);
    if (!ts) BENCH_DIE("calloc");
    double t0 = bench_now_s();
    for (int i = 0; i < threads; i++) {
        if (pthread_create(&ts[i], NULL, incrementer, NULL) != 0) BENCH_DIE("pthread_create");
    }
    usleep((useconds_t)(secs * 1e6));
    atomic_store(&stop, 1);
    for (int i = 0; i < threads; i++) pthread_join(ts[i], NULL);
    double dt = bench_now_s() - t0;
    uint64_t ops = atomic_load(&total_ops);
    if (counter != ops) {
        fprintf(stderr, "ERROR: counter %llu != %llu increments done\n", (unsigned long long)counter,
                (unsigned long long)ops);
        return 1;
    }
    printf("INFO %d pthreads: %llu increments in %.3f s\n", threads, (unsigned long long)ops, dt);
    printf("RESULT value=%.1f ops=%llu secs=%.4f\n", (double)ops / dt, (unsigned long long)ops, dt);
    free(ts);
    return 0;
}

/* ---------------------------------------------------------- uncontended */

static void uncontended_body(uint64_t n) {
    for (uint64_t i = 0; i < n; i++) {
        if (pthread_mutex_lock(&mtx) != 0) BENCH_DIE("pthread_mutex_lock");
        __asm__ volatile("" ::: "memory");
        if (pthread_mutex_unlock(&mtx) != 0) BENCH_DIE("pthread_mutex_unlock");
    }
}

static void *sleeper(void *arg) {
    (void)arg;
    for (;;) pause();
    return NULL;
}

static int uncontended(double secs, int single) {
    if (!single) {
        pthread_t t;
        if (pthread_create(&t, NULL, sleeper, NULL) != 0) BENCH_DIE("pthread_create");
        if (pthread_detach(t) != 0) BENCH_DIE("pthread_detach");
    }
    pin_self(1);
    uint64_t n = bench_calibrate(uncontended_body, secs);
    double t0 = bench_now_s();
    uncontended_body(n);
    double dt = bench_now_s() - t0;
    printf("INFO %llu lock/unlock pairs in %.3f s\n", (unsigned long long)n, dt);
    printf("RESULT value=%.3f pairs=%llu secs=%.4f\n", dt * 1e9 / (double)n, (unsigned long long)n, dt);
    return 0;
}

/* ------------------------------------------------------------- pingpong */

static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int turn, quit; /* guarded by mtx */
static sem_t ping, pong;
static atomic_int sem_quit;
static int use_sem;

static void *partner(void *arg) {
    (void)arg;
    pin_self(1);
    if (use_sem) {
        for (;;) {
            while (sem_wait(&ping) != 0) {
                if (errno != EINTR) BENCH_DIE("sem_wait");
            }
            if (atomic_load(&sem_quit)) break;
            sem_post(&pong);
        }
        return NULL;
    }
    pthread_mutex_lock(&mtx);
    for (;;) {
        while (turn != 1 && !quit) pthread_cond_wait(&cv, &mtx);
        if (quit) break;
        turn = 0;
        pthread_cond_signal(&cv);
    }
    pthread_mutex_unlock(&mtx);
    return NULL;
}

static int pingpong(double secs, const char *how) {
    use_sem = strcmp(how, "sem") == 0;
    if (!use_sem && strcmp(how, "cond") != 0) {
        errno = EINVAL;
        BENCH_DIE("pingpong: cond or sem");
    }
    pin_self(0);
    if (sem_init(&ping, 0, 0) != 0 || sem_init(&pong, 0, 0) != 0) BENCH_DIE("sem_init");
    pthread_t pt;
    if (pthread_create(&pt, NULL, partner, NULL) != 0) BENCH_DIE("pthread_create");
    size_t cap = 1 << 20, n = 0;
    uint64_t *rtt = malloc(cap * sizeof *rtt);
    if (!rtt) BENCH_DIE("malloc");
    uint64_t end = now_ns() + (uint64_t)(secs * 1e9), warm_end = now_ns() + 100000000ull;
    if (!use_sem) pthread_mutex_lock(&mtx);
    for (;;) {
        uint64_t t = now_ns();
        if (t >= end) break;
        if (use_sem) {
            sem_post(&ping);
            while (sem_wait(&pong) != 0) {
                if (errno != EINTR) BENCH_DIE("sem_wait");
            }
        } else {
            turn = 1;
            pthread_cond_signal(&cv);
            while (turn != 0) pthread_cond_wait(&cv, &mtx);
        }
        uint64_t d = now_ns() - t;
        if (t < warm_end) continue;
        if (n == cap) {
            cap *= 2;
            rtt = realloc(rtt, cap * sizeof *rtt);
            if (!rtt) BENCH_DIE("realloc");
        }
        rtt[n++] = d;
    }
    if (use_sem) {
        atomic_store(&sem_quit, 1);
        sem_post(&ping);
    } else {
        quit = 1;
        pthread_cond_broadcast(&cv);
        pthread_mutex_unlock(&mtx);
    }
    pthread_join(pt, NULL);
    if (n < 100) {
        fprintf(stderr, "ERROR: only %zu round trips\n", n);
        return 1;
    }
    qsort(rtt, n, sizeof *rtt, cmp_u64);
    printf("INFO %zu round trips (%s), min %.2f us\n", n, how, rtt[0] / 1e3);
    printf("RESULT median_us=%.3f p99_us=%.3f max_us=%.1f rtts=%zu\n", rtt[n / 2] / 1e3,
           rtt[(size_t)(n * 0.99)] / 1e3, rtt[n - 1] / 1e3, n);
    free(rtt);
    return 0;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc < 3) {
        fprintf(stderr, "usage: locks_pthread contended SECS THREADS | uncontended SECS [single] | "
                        "pingpong SECS cond|sem\n");
        return 2;
    }
    double secs = bench_secs_arg(argc - 1, argv + 1);
    if (strcmp(argv[1], "contended") == 0 && argc == 4) return contended(secs, atoi(argv[3]));
    if (strcmp(argv[1], "uncontended") == 0)
        return uncontended(secs, argc == 4 && strcmp(argv[3], "single") == 0);
    if (strcmp(argv[1], "pingpong") == 0 && argc == 4) return pingpong(secs, argv[3]);
    fprintf(stderr, "bad arguments\n");
    return 2;
}
