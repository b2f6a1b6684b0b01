/*
 * No waiter starves behind threads that keep re-taking a photon_mutex (the
 * hand-off rule of src/sync/mutex.rs: an unlock wakes the longest waiter
 * to compete, and a waiter parked for more than 1 ms is handed the lock
 * directly). Three "hogs" (two on the main vcpu, one on pool vcpu 0) lock
 * and unlock in a tight loop, holding it about 2 us each time, so the
 * mutex is nearly always taken (they yield only every 256 rounds, so their
 * own vcpu's other threads get to run at all). Meanwhile a "polite" thread
 * on pool vcpu 1, and then one on the main vcpu, takes the lock 300
 * times with pauses of 100 us between. Each of its lock calls must return
 * within 10 ms (the rule predicts about 1 ms plus a wake-up: 1.0-2.2 ms seen,
 * 5.1 ms once at load 9; without the hand-off, 4-36 ms), and the hogs
 * must make progress too. Time the OS kept this process's threads waiting
 * for a CPU during a lock call (run_delay in /proc/self/task/N/schedstat:
 * a hog preempted while holding the lock, on a machine busy with other
 * work) is not photon's and is taken out of that call's wait; on a quiet
 * machine it is about zero.
 */
#include <dirent.h>
#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>

#include "check.h"

#define HOGS 3
#define ROUNDS 300
#define MAX_WAIT_US 10000ULL
#define WATCHDOG_S 30

static photon_workpool *pool;
static photon_mutex *mtx;
static photon_sem *done;
static atomic_int stop;
static atomic_ullong hog_ops;
static atomic_int inside;
static atomic_int finished;

static void *watchdog(void *arg) {
    (void)arg;
    for (int i = 0; i < WATCHDOG_S * 10; i++) {
        if (atomic_load(&finished)) return NULL;
        usleep(100000);
    }
    fprintf(stderr, "WATCHDOG: stalled for %d s; hog ops %llu\n", WATCHDOG_S,
            (unsigned long long)atomic_load(&hog_ops));
    abort();
}

static void *hog(void *arg) {
    (void)arg;
    for (unsigned i = 1; !atomic_load(&stop); i++) {
        if (i % 256 == 0) photon_thread_yield(); /* let its vcpu's other threads run */
        CHECK_OK(photon_mutex_lock(mtx, PHOTON_FOREVER));
        CHECK(atomic_exchange(&inside, 1) == 0, "two owners");
        uint64_t t0 = photon_now_us();
        while (photon_now_us() - t0 < 2) { /* hold it ~2 us: the lock is nearly always taken */
        }
        atomic_store(&inside, 0);
        CHECK_OK(photon_mutex_unlock(mtx));
        atomic_fetch_add_explicit(&hog_ops, 1, memory_order_relaxed);
    }
    CHECK_OK(photon_sem_signal(done, 1));
    return NULL;
}

/* Nanoseconds this process's threads have waited for a CPU so far. */
static uint64_t run_delay_ns(void) {
    uint64_t sum = 0;
    DIR *d = opendir("/proc/self/task");
    CHECK(d != NULL, "opendir /proc/self/task: errno %d", errno);
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        char path[300]; /* d_name is up to 255 bytes */
        snprintf(path, sizeof(path), "/proc/self/task/%s/schedstat", e->d_name);
        FILE *f = fopen(path, "r");
        if (f == NULL) continue; /* the thread ended meanwhile */
        unsigned long long on_cpu, delay;
        if (fscanf(f, "%llu %llu", &on_cpu, &delay) == 2) sum += delay;
        fclose(f);
    }
    closedir(d);
    return sum;
}

struct polite_result {
    uint64_t worst, sum, os_delay;
};

static void *polite(void *arg) {
    struct polite_result *res = arg;
    for (int i = 0; i < ROUNDS; i++) {
        uint64_t d0 = run_delay_ns();
        uint64_t t0 = photon_now_us();
        CHECK_OK(photon_mutex_lock(mtx, PHOTON_FOREVER));
        uint64_t w = elapsed_us(t0);
        uint64_t os = (run_delay_ns() - d0) / 1000;
        res->os_delay += os;
        w = w > os ? w - os : 0;
        CHECK(atomic_exchange(&inside, 1) == 0, "two owners");
        atomic_store(&inside, 0);
        CHECK_OK(photon_mutex_unlock(mtx));
        res->worst = w > res->worst ? w : res->worst;
        res->sum += w;
        CHECK_OK(photon_thread_usleep(100));
    }
    CHECK_OK(photon_sem_signal(done, 1));
    return NULL;
}

/* Runs fn on pool vcpu `index` (0 or 1), by moving it there first. */
struct placed {
    photon_entry fn;
    void *arg;
    photon_vcpu *to;
};

static void *placed_main(void *arg) {
    struct placed *p = arg;
    if (p->to != NULL) CHECK_OK(photon_thread_migrate(photon_thread_self(), p->to));
    return p->fn(p->arg);
}

int main(void) {
    test_start("sync_mutex_fairness");
    test_init();
    pthread_t wd;
    CHECK(pthread_create(&wd, NULL, watchdog, NULL) == 0, "pthread_create watchdog");
    pool = photon_workpool_new(2, PHOTON_EVENT_DEFAULT);
    CHECK(pool != NULL, "photon_workpool_new(2): errno %d", errno);
    mtx = photon_mutex_new();
    done = photon_sem_new(0);
    CHECK(mtx && done, "new");
    photon_vcpu *p0 = photon_workpool_vcpu(pool, 0), *p1 = photon_workpool_vcpu(pool, 1);

    struct placed hogs[HOGS] = {{hog, NULL, NULL}, {hog, NULL, NULL}, {hog, NULL, p0}};
    for (int i = 0; i < HOGS; i++) CHECK(photon_thread_create(placed_main, &hogs[i], 0), "create");
    CHECK_OK(photon_thread_usleep(10000));

    const char *where[2] = {"pool vcpu 1 (no hog there)", "the main vcpu (with two hogs)"};
    for (int k = 0; k < 2; k++) {
        struct polite_result res = {0, 0, 0};
        struct placed pol = {polite, &res, k == 0 ? p1 : NULL};
        uint64_t before = atomic_load(&hog_ops);
        CHECK(photon_thread_create(placed_main, &pol, 0), "create");
        errno = 0;
        CHECK(photon_sem_wait(done, 1, 20 * 1000 * 1000ULL) == 0, "the polite thread: errno %d", errno);
        uint64_t hogged = atomic_load(&hog_ops) - before;
        SAY("polite thread on %s: %d locks, mean wait %.0f us, worst %llu us (OS run delays taken out: "
            "%llu us in all); hogs meanwhile %llu ops",
            where[k], ROUNDS, (double)res.sum / ROUNDS, (unsigned long long)res.worst,
            (unsigned long long)res.os_delay, (unsigned long long)hogged);
        CHECK(res.worst < MAX_WAIT_US, "a lock waited %llu us behind the hogs (limit %llu)",
              (unsigned long long)res.worst, (unsigned long long)MAX_WAIT_US);
        CHECK(hogged > ROUNDS, "the hogs made no progress (%llu ops)", (unsigned long long)hogged);
    }
    atomic_store(&stop, 1);
    errno = 0;
    CHECK(photon_sem_wait(done, HOGS, 10 * 1000 * 1000ULL) == 0, "hogs did not stop: errno %d", errno);

    CHECK_OK(photon_mutex_free(mtx));
    CHECK_OK(photon_sem_free(done));
    photon_workpool_free(pool);
    atomic_store(&finished, 1);
    CHECK(pthread_join(wd, NULL) == 0, "pthread_join watchdog");
    test_fini();
    SAY("ok");
    return 0;
}
