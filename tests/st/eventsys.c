/* What libphoton_st adds to State Threads (ours only): ST_EVENTSYS_ALT
 * runs on io_uring where the kernel has it (PHOTON_ENGINE overrides it, as
 * the tests set it), calls before st_init fail instead of crashing,
 * POLLNVAL for a closed fd, and a mutex shared by two OS threads, each
 * with its own runtime. */
#include <pthread.h>
#include <st.h>
#include <stdint.h>

#include "st_check.h"

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
