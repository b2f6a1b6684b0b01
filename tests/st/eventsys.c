/* What libphoton_st adds to State Threads (ours only): ST_EVENTSYS_ALT
 * runs on io_uring where the kernel has it (PHOTON_ENGINE overrides it, as
 * the tests set it), calls before st_init fail instead of crashing,
 * POLLNVAL for a closed fd, and a mutex shared by two OS threads, each
 * with its own runtime. */
#include <pthread.h>
#include <st.h>
#include <stdint.h>
#include <unistd.h>

#include "st_check.h"

static int closed_later;
static void *close_later(void *arg)
{
    (void)arg;
    st_usleep(5 * MS);
    close(closed_later);
    return NULL;
}

static volatile int spinner_stop, spinner_runs;
static void *spinner(void *arg)
{
    (void)arg;
    while (!spinner_stop) {
        spinner_runs++;
        st_thread_yield();
    }
    return NULL;
}

static int switched_in, switched_out;
static void count_in(void)
{
    switched_in++;
}
static void count_out(void)
{
    switched_out++;
}
static void *naps(void *arg)
{
    (void)arg;
    for (int i = 0; i < 3; i++)
        st_usleep(1 * MS);
    return NULL;
}

static st_mutex_t shared;
static long counter;

static void *bump(void *arg)
{
    (void)arg;
    for (int i = 0; i < 2000; i++) {
        CHECK(st_mutex_lock(shared) == 0);
        long v = counter;
        if (i % 50 == 0)
            st_usleep(0); /* switch while holding it */
        counter = v + 1;
        CHECK(st_mutex_unlock(shared) == 0);
    }
    return NULL;
}

static void *os_thread(void *arg)
{
    (void)arg;
    CHECK(st_init() == 0);
    st_thread_t t[2];
    for (int i = 0; i < 2; i++)
        CHECK((t[i] = st_thread_create(bump, NULL, 1, 0)) != NULL);
    for (int i = 0; i < 2; i++)
        CHECK(st_thread_join(t[i], NULL) == 0);
    st_destroy();
    return NULL;
}

int main(void)
{
    errno = 0;
    CHECK(st_thread_self() == NULL && errno == EPERM);
    CHECK(st_thread_create(bump, NULL, 1, 0) == NULL && errno == EPERM);
    CHECK_FAILS(st_usleep(1), EPERM);
    CHECK(strcmp(st_get_eventsys_name(), "") == 0);
    CHECK(st_set_eventsys(ST_EVENTSYS_ALT) == 0);
    CHECK(st_init() == 0);
    CHECK(st_get_eventsys() == ST_EVENTSYS_ALT);
    const char *engine = getenv("PHOTON_ENGINE");
    const char *name = st_get_eventsys_name();
    if (engine && *engine)
        CHECK(strcmp(name, engine) == 0 || strcmp(name, "epoll") == 0);
    else
        CHECK(strcmp(name, "io_uring") == 0); /* ALT: io_uring (this kernel has it) */
    printf("eventsys %s (PHOTON_ENGINE=%s)\n", name, engine ? engine : "");

    struct pollfd bad = {999, POLLIN, 0}; /* not open */
    CHECK(st_poll(&bad, 1, 10 * MS) == 1 && (bad.revents & POLLNVAL));

    /* st_poll reuses an epoll instance: an fd closed during a wait while a
     * dup keeps its file open must not leave it waking later waits */
    int p1[2], p2[2], p3[2];
    CHECK(pipe(p1) == 0 && pipe(p2) == 0 && pipe(p3) == 0);
    int dup_fd = dup(p1[0]);
    closed_later = p1[0];
    st_thread_t closer = st_thread_create(close_later, NULL, 1, 0);
    struct pollfd two[2] = {{p1[0], POLLIN, 0}, {p2[0], POLLIN, 0}};
    CHECK(st_poll(two, 2, 20 * MS) >= 0);
    CHECK(st_thread_join(closer, NULL) == 0);
    CHECK(write(p1[1], "x", 1) == 1); /* the dup's file is readable now */
    struct pollfd other[2] = {{p2[0], POLLIN, 0}, {p3[0], POLLIN, 0}};
    st_thread_t spin = st_thread_create(spinner, NULL, 1, 0);
    st_utime_t t0 = st_utime();
    CHECK(st_poll(other, 2, 50 * MS) == 0);
    CHECK(st_utime() - t0 >= 50 * MS);
    spinner_stop = 1;
    CHECK(st_thread_join(spin, NULL) == 0);
    CHECK(spinner_runs > 0); /* st_poll slept: it did not spin without switching */
    close(dup_fd);
    printf("st_poll after a close during its wait: ok\n");

    /* switch callbacks: each thread's runs are bracketed, in then out */
    CHECK(st_set_switch_in_cb(count_in) == NULL);
    CHECK(st_set_switch_out_cb(count_out) == NULL);
    st_thread_t n1 = st_thread_create(naps, NULL, 1, 0), n2 = st_thread_create(naps, NULL, 1, 0);
    CHECK(st_thread_join(n1, NULL) == 0 && st_thread_join(n2, NULL) == 0);
    CHECK(st_set_switch_in_cb(NULL) == count_in && st_set_switch_out_cb(NULL) == count_out);
    /* two threads x (start + 3 naps) and main's joins */
    CHECK(switched_in == switched_out && switched_in >= 2 * 4 + 2);
    printf("switch callbacks: ok\n");

    shared = st_mutex_new();
    pthread_t th[2];
    for (int i = 0; i < 2; i++)
        CHECK(pthread_create(&th[i], NULL, os_thread, NULL) == 0);
    for (int i = 0; i < 2; i++)
        CHECK(pthread_join(th[i], NULL) == 0);
    CHECK(counter == 4 * 2000);
    CHECK(st_mutex_destroy(shared) == 0);
    printf("mutex across OS threads: %ld\n", counter);
    return 0;
}
