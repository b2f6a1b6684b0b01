/* The hiredis GET client shared by preload_redis_photon.c and
 * preload_redis_pthreads.c (header-only; driven by
 * `cargo run --release --bin preload`).
 *
 *   PROGRAM PORT CONNS SECS WARMUP SERVER_PID
 *
 * CONNS workers (photon threads or pthreads), each with its own blocking
 * hiredis connection (redisConnect / redisCommand, unmodified libhiredis),
 * loop `GET photon:bench:preload:key` against the redis-server on
 * 127.0.0.1:PORT, checking every reply against the value SET before they
 * start. Once every worker is connected, WARMUP seconds of warm-up, then
 * SECS seconds counted; then the workers stop and are joined.
 * SERVER_PID (0: unknown) is the server's pid, whose CPU time over the
 * counted window is read from /proc.
 *
 * Prints: RESULT gets_s=... gets=... secs=... errors=... client_cpu=...
 *         server_cpu=... other_cpu=... conns=... shim=0|1 [engine=...]
 * client_cpu and server_cpu are CPU seconds per second of the counted
 * window (user + system; server_cpu -1 when unknown); other_cpu is the
 * machine's busy CPU time per second (/proc/stat) minus those two: work of
 * other processes that ran meanwhile (-1 when unknown). Any error (failed
 * connect, NULL reply, wrong reply) is counted, the first few are printed
 * on stderr, and the program exits 1. */
#ifndef PHOTON_BENCH_PRELOAD_REDIS_COMMON_H
#define PHOTON_BENCH_PRELOAD_REDIS_COMMON_H

#include "preload_common.h"

#include <hiredis/hiredis.h>

#define REDIS_KEY "photon:bench:preload:key"
#define REDIS_VALUE "photon-preload-benchmark-value-0123456789abcdef"
#define REDIS_HOST "127.0.0.1"

struct redis_args {
    int port;
    int conns;
    double secs;
    double warmup;
    long server_pid;
};

/* One worker's state. gets/errors/state are written by the worker only
 * (relaxed atomic stores) and read by the main thread. */
struct redis_worker {
    uint64_t gets;
    uint64_t errors;
    int state; /* 0 connecting, 1 connected, 2 done */
    int index;
    char first_error[160];
} __attribute__((aligned(64)));

static struct redis_args redis_args;
static struct redis_worker *redis_workers;
static int redis_stop;

static inline void redis_parse_args(int argc, char **argv) {
    if (argc != 6) {
        fprintf(stderr, "usage: %s PORT CONNS SECS WARMUP SERVER_PID\n", argv[0]);
        exit(2);
    }
    redis_args.port = atoi(argv[1]);
    redis_args.conns = atoi(argv[2]);
    redis_args.secs = atof(argv[3]);
    redis_args.warmup = atof(argv[4]);
    redis_args.server_pid = atol(argv[5]);
    if (redis_args.port <= 0 || redis_args.port > 65535 || redis_args.conns <= 0 || redis_args.conns > 100000 ||
        !(redis_args.secs > 0.0) || !(redis_args.warmup >= 0.0)) {
        errno = EINVAL;
        BENCH_DIE("bad arguments");
    }
    redis_workers = calloc((size_t)redis_args.conns, sizeof *redis_workers);
    if (redis_workers == NULL) BENCH_DIE("calloc");
    for (int i = 0; i < redis_args.conns; i++) redis_workers[i].index = i;
}

static inline void redis_fail(struct redis_worker *w, const char *what, const redisContext *c) {
    if (__atomic_load_n(&w->errors, __ATOMIC_RELAXED) == 0) {
        snprintf(w->first_error, sizeof w->first_error, "%s: %s", what,
                 c == NULL ? "no context" : (c->err ? c->errstr : "no error code"));
    }
    __atomic_store_n(&w->errors, w->errors + 1, __ATOMIC_RELAXED);
}

/* SETs the key every worker GETs (on the calling thread). */
static inline void redis_set_key(void) {
    redisContext *c = redisConnect(REDIS_HOST, redis_args.port);
    if (c == NULL || c->err) {
        fprintf(stderr, "ERROR: redisConnect %s:%d: %s\n", REDIS_HOST, redis_args.port, c ? c->errstr : "NULL");
        exit(1);
    }
    redisReply *r = redisCommand(c, "SET %s %s", REDIS_KEY, REDIS_VALUE);
    if (r == NULL || r->type != REDIS_REPLY_STATUS || strcmp(r->str, "OK") != 0) {
        fprintf(stderr, "ERROR: SET %s: %s\n", REDIS_KEY, r ? (r->str ? r->str : "wrong reply type") : c->errstr);
        exit(1);
    }
    freeReplyObject(r);
    redisFree(c);
}

/* A worker's whole life: connect, GET until redis_stop, disconnect. */
static inline void redis_worker_run(struct redis_worker *w) {
    const size_t vlen = strlen(REDIS_VALUE);
    redisContext *c = redisConnect(REDIS_HOST, redis_args.port);
    if (c == NULL || c->err) {
        redis_fail(w, "redisConnect", c);
        if (c) redisFree(c);
        __atomic_store_n(&w->state, 2, __ATOMIC_RELEASE);
        return;
    }
    __atomic_store_n(&w->state, 1, __ATOMIC_RELEASE);
    uint64_t gets = 0;
    while (!__atomic_load_n(&redis_stop, __ATOMIC_RELAXED)) {
        redisReply *r = redisCommand(c, "GET %s", REDIS_KEY);
        if (r == NULL) {
            redis_fail(w, "GET: no reply", c);
            break; /* the context is unusable after an I/O error */
        }
        if (r->type != REDIS_REPLY_STRING || (size_t)r->len != vlen || memcmp(r->str, REDIS_VALUE, vlen) != 0) {
            redis_fail(w, "GET: wrong reply", c);
        }
        freeReplyObject(r);
        __atomic_store_n(&w->gets, ++gets, __ATOMIC_RELAXED);
    }
    redisFree(c);
    __atomic_store_n(&w->state, 2, __ATOMIC_RELEASE);
}

static inline uint64_t redis_total_gets(void) {
    uint64_t s = 0;
    for (int i = 0; i < redis_args.conns; i++) s += __atomic_load_n(&redis_workers[i].gets, __ATOMIC_RELAXED);
    return s;
}

/* What the main thread measured. */
struct redis_window {
    uint64_t gets;
    double secs, client_cpu, server_cpu, other_cpu;
};

/* On the main thread once the workers are started: waits until all are
 * connected (or one failed), warms up, counts, then sets redis_stop. The
 * caller joins the workers afterwards. `sleep_us` sleeps the main thread
 * without blocking the workers (a photon sleep on a vcpu). */
static inline struct redis_window redis_measure(void (*sleep_us)(uint64_t)) {
    struct redis_window win = {0, 0.0, 0.0, -1.0, -1.0};
    double deadline = bench_now_s() + 30.0;
    for (;;) {
        int connected = 0, failed = 0;
        for (int i = 0; i < redis_args.conns; i++) {
            int s = __atomic_load_n(&redis_workers[i].state, __ATOMIC_ACQUIRE);
            connected += s == 1;
            failed += s == 2;
        }
        if (failed > 0) {
            __atomic_store_n(&redis_stop, 1, __ATOMIC_RELAXED);
            return win;
        }
        if (connected == redis_args.conns) break;
        if (bench_now_s() > deadline) {
            fprintf(stderr, "ERROR: only %d of %d connections up after 30 s\n", connected, redis_args.conns);
            __atomic_store_n(&redis_stop, 1, __ATOMIC_RELAXED);
            win.gets = 0;
            win.secs = -1.0;
            return win;
        }
        sleep_us(1000);
    }
    printf("INFO %d connections up\n", redis_args.conns);
    if (redis_args.warmup > 0.0) sleep_us((uint64_t)(redis_args.warmup * 1e6));
    uint64_t g0 = redis_total_gets();
    double m0 = preload_machine_busy_s();
    double c0 = preload_self_cpu_s(), s0 = preload_proc_cpu_s(redis_args.server_pid), t0 = bench_now_s();
    sleep_us((uint64_t)(redis_args.secs * 1e6));
    uint64_t g1 = redis_total_gets();
    double c1 = preload_self_cpu_s(), s1 = preload_proc_cpu_s(redis_args.server_pid), t1 = bench_now_s();
    double m1 = preload_machine_busy_s();
    __atomic_store_n(&redis_stop, 1, __ATOMIC_RELAXED);
    win.gets = g1 - g0;
    win.secs = t1 - t0;
    win.client_cpu = (c1 - c0) / win.secs;
    win.server_cpu = (s0 >= 0.0 && s1 >= 0.0) ? (s1 - s0) / win.secs : -1.0;
    if (m0 >= 0.0 && m1 >= 0.0 && win.server_cpu >= 0.0) {
        double o = (m1 - m0) / win.secs - win.client_cpu - win.server_cpu;
        win.other_cpu = o < 0.0 ? 0.0 : o; /* /proc counts in 10 ms ticks */
    }
    return win;
}

/* After the workers are joined: prints the RESULT line, or the errors and
 * exits 1. */
static inline int redis_report(struct redis_window win, int shim, const char *engine) {
    uint64_t errors = 0, min_gets = UINT64_MAX, max_gets = 0;
    int shown = 0;
    for (int i = 0; i < redis_args.conns; i++) {
        struct redis_worker *w = &redis_workers[i];
        errors += w->errors;
        if (w->gets < min_gets) min_gets = w->gets;
        if (w->gets > max_gets) max_gets = w->gets;
        if (w->errors && shown < 5) {
            fprintf(stderr, "worker %d: %llu errors, first: %s\n", i, (unsigned long long)w->errors, w->first_error);
            shown++;
        }
    }
    if (win.secs <= 0.0 && errors == 0) errors = 1; /* the connections did not come up */
    printf("INFO GETs per worker over the whole run: min %llu, max %llu\n", (unsigned long long)min_gets,
           (unsigned long long)max_gets);
    printf("RESULT gets_s=%.1f gets=%llu secs=%.4f errors=%llu client_cpu=%.4f server_cpu=%.4f other_cpu=%.4f conns=%d shim=%d%s%s\n",
           win.secs > 0.0 ? (double)win.gets / win.secs : 0.0, (unsigned long long)win.gets, win.secs,
           (unsigned long long)errors, win.client_cpu, win.server_cpu, win.other_cpu, redis_args.conns, shim,
           engine ? " engine=" : "", engine ? engine : "");
    fflush(stdout);
    if (errors) {
        fprintf(stderr, "ERROR: %llu errors\n", (unsigned long long)errors);
        return 1;
    }
    return 0;
}

#endif
