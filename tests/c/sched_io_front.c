/* Where a thread whose I/O completed goes in the run queue, on one vcpu.
 *
 * 1. Front: beside 400 threads that keep yielding, a thread blocked in
 *    photon_read on a socket gets a byte from another thread. It runs
 *    soon after the vcpu's next poll of events (every 64 scheduling
 *    decisions while threads are runnable), not after every yielder had its
 *    turn: the median number of yields between the byte's write and the
 *    reader's return is under 200 (in FIFO order, PHOTON_IO_WAKE=fifo, it
 *    is above 400).
 * 2. Bound: 200 pairs of threads ping-pong bytes over socketpairs, so every
 *    poll brings more completed reads than the decisions until the next
 *    poll. A third thread that keeps yielding still runs: at least 100 turns
 *    in 600 ms, never more than 200 ms between two (with no bound on the
 *    front it got under 30).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "photon.h"
#include "check.h"

#define SPINNERS 400
#define READS 200
#define PAIRS 200
#define PINGPONG_US 600000

static volatile int stop;
static unsigned long turns; /* yields so far */
static unsigned long written_at;
static int rd_sv[2];
static volatile int consumed;

static void *spinner(void *arg)
{
    (void)arg;
    while (!stop) {
        __atomic_fetch_add(&turns, 1, __ATOMIC_RELAXED);
        photon_thread_yield();
    }
    return NULL;
}

/* Writes one byte at a time, each after the reader took the last, yielding
 * meanwhile. On the same vcpu as the others, so the count of yields between
 * the write and the reader's return measures the queue alone (the OS
 * preempting the vcpu stops every thread of it at once). */
static void *writer(void *arg)
{
    (void)arg;
    for (int i = 0; i < READS; i++) {
        while (__atomic_load_n(&consumed, __ATOMIC_ACQUIRE) < i) {
            __atomic_fetch_add(&turns, 1, __ATOMIC_RELAXED);
            photon_thread_yield();
        }
        for (int k = 0; k < 7; k++) /* a few decisions between write and poll */
            photon_thread_yield();
        written_at = turns;
        CHECK(photon_write(rd_sv[1], "x", 1, PHOTON_FOREVER) == 1, "writer: write");
    }
    return NULL;
}

static int cmp_long(const void *a, const void *b)
{
    long x = *(const long *)a, y = *(const long *)b;
    return (x > y) - (x < y);
}

static long delays[READS];

static void *reader(void *arg)
{
    char c;
    (void)arg;
    for (int i = 0; i < READS; i++) {
        CHECK(photon_read(rd_sv[0], &c, 1, 10 * 1000000ull) == 1, "reader: read %d", i);
        delays[i] = (long)(__atomic_load_n(&turns, __ATOMIC_RELAXED) -
                           __atomic_load_n(&written_at, __ATOMIC_ACQUIRE));
        __atomic_store_n(&consumed, i + 1, __ATOMIC_RELEASE);
    }
    return NULL;
}

static void front(void)
{
    photon_thread *sp[SPINNERS];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, rd_sv) == 0, "socketpair");
    stop = 0;
    for (int i = 0; i < SPINNERS; i++) {
        sp[i] = photon_thread_create(spinner, NULL, 0);
        CHECK(sp[i] && photon_thread_enable_join(sp[i]) == 0, "spinner %d", i);
    }
    photon_thread *r = photon_thread_create(reader, NULL, 0);
    CHECK(r && photon_thread_enable_join(r) == 0, "reader");
    photon_thread *w = photon_thread_create(writer, NULL, 0);
    CHECK(w && photon_thread_enable_join(w) == 0, "writer");
    CHECK(photon_thread_join(r, NULL) == 0, "join reader");
    CHECK(photon_thread_join(w, NULL) == 0, "join writer");
    stop = 1;
    for (int i = 0; i < SPINNERS; i++)
        CHECK(photon_thread_join(sp[i], NULL) == 0, "join spinner");
    qsort(delays, READS, sizeof delays[0], cmp_long);
    printf("%s: a woken reader beside %d yielding threads ran after %ld yields (median; max %ld)\n",
           photon_engine_name(), SPINNERS, delays[READS / 2], delays[READS - 1]);
    CHECK(delays[READS / 2] < 200, "the woken reader waited behind the runnable threads: median %ld yields",
          delays[READS / 2]);
    photon_close(rd_sv[0]);
    photon_close(rd_sv[1]);
}

struct pair {
    int sv[2];
};

static void *ping(void *arg)
{
    struct pair *p = arg;
    char c = 'p';
    while (!stop) {
        CHECK(photon_write(p->sv[0], &c, 1, PHOTON_FOREVER) == 1, "ping: write");
        CHECK(photon_read(p->sv[0], &c, 1, PHOTON_FOREVER) == 1, "ping: read");
    }
    photon_shutdown(p->sv[0], SHUT_WR);
    return NULL;
}

static void *pong(void *arg)
{
    struct pair *p = arg;
    char c;
    while (photon_read(p->sv[1], &c, 1, PHOTON_FOREVER) == 1)
        CHECK(photon_write(p->sv[1], &c, 1, PHOTON_FOREVER) == 1, "pong: write");
    return NULL;
}

static long third_turns;
static uint64_t third_gap;

static void *third(void *arg)
{
    uint64_t t0 = photon_now_us(), last = t0;
    (void)arg;
    while (photon_now_us() - t0 < PINGPONG_US) {
        photon_thread_yield();
        uint64_t now = photon_now_us();
        if (now - last > third_gap)
            third_gap = now - last;
        last = now;
        third_turns++;
    }
    stop = 1;
    return NULL;
}

static void bound(void)
{
    static struct pair pairs[PAIRS];
    photon_thread *th[2 * PAIRS];
    stop = 0;
    for (int i = 0; i < PAIRS; i++) {
        CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, pairs[i].sv) == 0, "socketpair %d", i);
        th[2 * i] = photon_thread_create(ping, &pairs[i], 0);
        th[2 * i + 1] = photon_thread_create(pong, &pairs[i], 0);
        CHECK(th[2 * i] && th[2 * i + 1], "create pair %d", i);
        CHECK(photon_thread_enable_join(th[2 * i]) == 0 && photon_thread_enable_join(th[2 * i + 1]) == 0,
              "enable_join");
    }
    photon_thread *t = photon_thread_create(third, NULL, 0);
    CHECK(t && photon_thread_enable_join(t) == 0, "third");
    CHECK(photon_thread_join(t, NULL) == 0, "join third");
    for (int i = 0; i < 2 * PAIRS; i++)
        CHECK(photon_thread_join(th[i], NULL) == 0, "join pair thread %d", i);
    for (int i = 0; i < PAIRS; i++) {
        photon_close(pairs[i].sv[0]);
        photon_close(pairs[i].sv[1]);
    }
    printf("%s: beside %d ping-pong pairs a yielding thread ran %ld times in %d ms, at most %.1f ms apart\n",
           photon_engine_name(), PAIRS, third_turns, PINGPONG_US / 1000, third_gap / 1000.0);
    CHECK(third_turns >= 100, "the yielding thread starved: %ld turns", third_turns);
    CHECK(third_gap < 200000, "the yielding thread waited %.1f ms for a turn", third_gap / 1000.0);
}

int main(void)
{
    CHECK(photon_init(PHOTON_EVENT_DEFAULT, 0) == 0, "photon_init");
    front();
    bound();
    CHECK(photon_fini() == 0, "photon_fini");
    printf("sched_io_front: OK\n");
    return 0;
}
