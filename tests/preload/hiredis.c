/* Unmodified hiredis (blocking API) under libphoton_preload.so.
 *
 *   hiredis photon PORT    100 photon threads on one vcpu: a batch of
 *                          BLPOPs with a 0.3 s timeout ends in well under
 *                          1.5 s (serially: 30 s), a ticker thread keeps
 *                          running meanwhile, a BLPOP is woken by an LPUSH
 *                          from another photon thread, SET/GET/INCR from
 *                          100 threads give the right values.
 *   hiredis pthread PORT   the same client calls on a plain pthread (no
 *                          photon_init): unchanged behaviour.
 * Exit status 0 when every check passed. */
#include <hiredis/hiredis.h>
#include <photon.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define THREADS 100
#define ROUNDS 50

static int port;
static int failures;

#define CHECK(cond, ...)                                                   \
    do {                                                                   \
        if (!(cond)) {                                                     \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);           \
            fprintf(stderr, __VA_ARGS__);                                  \
            fprintf(stderr, "\n");                                         \
            __atomic_add_fetch(&failures, 1, __ATOMIC_RELAXED);            \
        }                                                                  \
    } while (0)

static redisContext *connect_redis(void) {
    redisContext *c = redisConnect("127.0.0.1", port);
    if (c == NULL || c->err) {
        fprintf(stderr, "FAIL: redisConnect: %s\n", c ? c->errstr : "NULL");
        exit(1);
    }
    return c;
}

static double now_s(void) { return photon_now_us() / 1e6; }

/* ---- BLPOP batch: each thread blocks 0.3 s in the server ---- */

static volatile int batch_running;
static long ticks;

static void *ticker(void *arg) {
    (void)arg;
    while (batch_running) {
        photon_thread_usleep(1000);
        ticks++;
    }
    return NULL;
}

static void *blpop_timeout(void *arg) {
    long i = (long)arg;
    redisContext *c = connect_redis();
    redisReply *r = redisCommand(c, "BLPOP photon:test:empty:%ld 0.3", i);
    CHECK(r != NULL, "BLPOP %ld: %s", i, c->errstr);
    if (r) {
        CHECK(r->type == REDIS_REPLY_NIL, "BLPOP %ld: reply type %d, not nil", i, r->type);
        freeReplyObject(r);
    }
    redisFree(c);
    return NULL;
}

/* ---- SET/GET/INCR from many threads ---- */

static void *set_get(void *arg) {
    long i = (long)arg;
    redisContext *c = connect_redis();
    for (int j = 0; j < ROUNDS; j++) {
        char key[64], val[64];
        snprintf(key, sizeof key, "photon:test:k:%ld:%d", i, j);
        snprintf(val, sizeof val, "value-%ld-%d-%ld", i, j, i * 7919 + j);
        redisReply *r = redisCommand(c, "SET %s %s", key, val);
        CHECK(r && r->type == REDIS_REPLY_STATUS && strcmp(r->str, "OK") == 0, "SET %s", key);
        if (r) freeReplyObject(r);
        r = redisCommand(c, "GET %s", key);
        CHECK(r && r->type == REDIS_REPLY_STRING && strcmp(r->str, val) == 0, "GET %s: got %s, want %s", key,
              r && r->str ? r->str : "(none)", val);
        if (r) freeReplyObject(r);
        r = redisCommand(c, "INCR photon:test:counter");
        CHECK(r && r->type == REDIS_REPLY_INTEGER, "INCR");
        if (r) freeReplyObject(r);
    }
    redisFree(c);
    return NULL;
}

/* ---- a BLPOP woken by an LPUSH from another photon thread ---- */

static void *blpop_woken(void *arg) {
    (void)arg;
    redisContext *c = connect_redis();
    double t0 = now_s();
    redisReply *r = redisCommand(c, "BLPOP photon:test:wake 5");
    double dt = now_s() - t0;
    CHECK(r && r->type == REDIS_REPLY_ARRAY && r->elements == 2 && strcmp(r->element[1]->str, "hello") == 0,
          "woken BLPOP: wrong reply");
    CHECK(dt > 0.04 && dt < 2.0, "woken BLPOP took %.3f s", dt);
    if (r) freeReplyObject(r);
    redisFree(c);
    return NULL;
}

static void *lpush_later(void *arg) {
    (void)arg;
    redisContext *c = connect_redis();
    photon_thread_usleep(50000);
    redisReply *r = redisCommand(c, "LPUSH photon:test:wake hello");
    CHECK(r && r->type == REDIS_REPLY_INTEGER, "LPUSH");
    if (r) freeReplyObject(r);
    redisFree(c);
    return NULL;
}

static void run_all(photon_entry fn, int n, photon_thread **ths) {
    for (long i = 0; i < n; i++) {
        ths[i] = photon_thread_create(fn, (void *)i, 0);
        if (!ths[i] || photon_thread_enable_join(ths[i]) != 0) {
            perror("photon_thread_create");
            exit(1);
        }
    }
}

static void join_all(int n, photon_thread **ths) {
    for (int i = 0; i < n; i++) photon_thread_join(ths[i], NULL);
}

static long counter_value(redisContext *c) {
    redisReply *r = redisCommand(c, "GET photon:test:counter");
    long v = (r && r->type == REDIS_REPLY_STRING) ? atol(r->str) : -1;
    if (r) freeReplyObject(r);
    return v;
}

static void reset_keys(void) {
    redisContext *c = connect_redis();
    redisReply *r = redisCommand(c, "FLUSHALL");
    if (r) freeReplyObject(r);
    redisFree(c);
}

static int photon_mode(void) {
    if (photon_init(PHOTON_EVENT_DEFAULT, 0) != 0) {
        perror("photon_init");
        return 1;
    }
    printf("engine: %s\n", photon_engine_name());
    reset_keys();
    photon_thread *ths[THREADS + 1];

    batch_running = 1;
    photon_thread *tk = photon_thread_create(ticker, NULL, 0);
    photon_thread_enable_join(tk);
    double t0 = now_s();
    run_all(blpop_timeout, THREADS, ths);
    join_all(THREADS, ths);
    double dt = now_s() - t0;
    batch_running = 0;
    photon_thread_join(tk, NULL);
    printf("%d blocking BLPOPs (0.3 s each) on one vcpu: %.3f s, ticker ran %ld times meanwhile\n", THREADS, dt,
           ticks);
    CHECK(dt >= 0.29, "the batch ended too early (%.3f s): BLPOP did not wait", dt);
    CHECK(dt < 1.5, "the batch took %.3f s: BLPOPs did not overlap", dt);
    CHECK(ticks >= 50, "the ticker ran only %ld times: the vcpu was blocked", ticks);

    photon_thread *w[2];
    w[0] = photon_thread_create(blpop_woken, NULL, 0);
    w[1] = photon_thread_create(lpush_later, NULL, 0);
    photon_thread_enable_join(w[0]);
    photon_thread_enable_join(w[1]);
    join_all(2, w);
    printf("BLPOP woken by an LPUSH from another photon thread: ok\n");

    t0 = now_s();
    run_all(set_get, THREADS, ths);
    join_all(THREADS, ths);
    dt = now_s() - t0;
    redisContext *c = connect_redis();
    long v = counter_value(c);
    redisFree(c);
    CHECK(v == (long)THREADS * ROUNDS, "counter %ld, want %d", v, THREADS * ROUNDS);
    printf("SET/GET/INCR from %d photon threads x %d rounds: %.3f s, counter %ld\n", THREADS, ROUNDS, dt, v);

    if (photon_fini() != 0) {
        perror("photon_fini");
        return 1;
    }
    return failures ? 1 : 0;
}

static void *pthread_main(void *arg) {
    (void)arg;
    reset_keys();
    double t0 = now_s();
    for (long i = 0; i < 3; i++) blpop_timeout((void *)i);
    double dt = now_s() - t0;
    CHECK(dt >= 0.87, "3 BLPOPs of 0.3 s on a pthread took only %.3f s", dt);
    printf("3 BLPOPs (0.3 s each) on a plain pthread: %.3f s\n", dt);
    set_get((void *)0);
    redisContext *c = connect_redis();
    long v = counter_value(c);
    redisFree(c);
    CHECK(v == ROUNDS, "counter %ld, want %d", v, ROUNDS);
    printf("SET/GET/INCR on a plain pthread: ok\n");
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s photon|pthread PORT\n", argv[0]);
        return 2;
    }
    port = atoi(argv[2]);
    if (strcmp(argv[1], "photon") == 0) return photon_mode();
    pthread_t t;
    if (pthread_create(&t, NULL, pthread_main, NULL) != 0) return 1;
    pthread_join(t, NULL);
    return failures ? 1 : 0;
}
