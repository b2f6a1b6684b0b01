/* Threads, join, interrupt, sleeps, keys, time and the library settings,
 * as State Threads' reference and its unit tests describe them. Prints one
 * line per scenario; the same output is expected from both libraries. */
#include <st.h>
#include <stdint.h>

#include "st_check.h"

static char order[64];
static int norder;

static void *record(void *arg)
{
    order[norder++] = (char)(uintptr_t)arg;
    st_usleep(0);
    order[norder++] = (char)((uintptr_t)arg + 'a' - 'A');
    return (void *)((uintptr_t)arg * 2);
}

static void *sleeper(void *arg)
{
    int *result = arg;
    errno = 0;
    result[0] = st_usleep(ST_UTIME_NO_TIMEOUT);
    result[1] = errno;
    return NULL;
}

static void *sleeper_secs(void *arg)
{
    int *result = arg;
    errno = 0;
    result[0] = st_sleep(-1);
    result[1] = errno;
    return NULL;
}

static void *self_interrupt(void *arg)
{
    int *result = arg;
    st_thread_interrupt(st_thread_self());
    /* delivered at the next blocking call, even a zero sleep */
    errno = 0;
    result[0] = st_usleep(0);
    result[1] = errno;
    /* consumed: the next sleep sleeps */
    result[2] = st_usleep(1 * MS);
    return NULL;
}

static void *exits_early(void *arg)
{
    (void)arg;
    st_thread_exit((void *)7);
    return (void *)8;
}

static int destroyed[8];
static int ndestroyed;
static void key_dtor(void *v)
{
    destroyed[ndestroyed++] = (int)(uintptr_t)v;
}

static int key_a, key_b;
static void *uses_keys(void *arg)
{
    (void)arg;
    CHECK(st_thread_getspecific(key_a) == NULL);
    CHECK(st_thread_setspecific(key_a, (void *)1) == 0);
    CHECK(st_thread_setspecific(key_a, (void *)1) == 0); /* same value: no destructor */
    CHECK(ndestroyed == 0);
    CHECK(st_thread_setspecific(key_a, (void *)2) == 0); /* replaced: destructor on 1 */
    CHECK(ndestroyed == 1 && destroyed[0] == 1);
    CHECK(st_thread_setspecific(key_b, (void *)3) == 0);
    CHECK(st_thread_getspecific(key_a) == (void *)2);
    return NULL;
}

static int joiner_result[2];
static st_thread_t join_target;
static void *second_joiner(void *arg)
{
    (void)arg;
    errno = 0;
    joiner_result[0] = st_thread_join(join_target, NULL);
    joiner_result[1] = errno;
    return NULL;
}

static void *joins_itself(void *arg)
{
    int *result = arg;
    errno = 0;
    result[0] = st_thread_join(st_thread_self(), NULL);
    result[1] = errno;
    return NULL;
}

static void *long_sleep(void *arg)
{
    (void)arg;
    st_usleep(50 * MS);
    return NULL;
}

int main(void)
{
    CHECK(st_get_eventsys() == -1);
    CHECK_FAILS(st_set_eventsys(99), EINVAL);
    CHECK(st_set_eventsys(ST_EVENTSYS_DEFAULT) == 0);
    CHECK_FAILS(st_set_eventsys(ST_EVENTSYS_ALT), EBUSY);
    CHECK(st_getfdlimit() == -1);
    CHECK(st_init() == 0);
    CHECK(st_init() == 0);
    CHECK(st_getfdlimit() > 0);
    CHECK(strlen(st_get_eventsys_name()) > 0);
    CHECK(st_thread_self() != NULL);
    CHECK_FAILS(st_set_utime_function(st_utime), EINVAL);
    printf("init: ok\n");

    /* creation order, yields, return values */
    st_thread_t a = st_thread_create(record, (void *)'A', 1, 0);
    st_thread_t b = st_thread_create(record, (void *)'B', 1, 64 * 1024);
    CHECK(a && b);
    CHECK(norder == 0); /* new threads run when the creator blocks */
    void *ra, *rb;
    CHECK(st_thread_join(b, &rb) == 0);
    CHECK(st_thread_join(a, &ra) == 0);
    order[norder] = 0;
    printf("order: %s ret %d %d\n", order, (int)(uintptr_t)ra, (int)(uintptr_t)rb);

    /* join errors */
    CHECK_FAILS(st_thread_join(st_thread_self(), NULL), EINVAL); /* main is not joinable */
    int self_join[2];
    st_thread_t sj = st_thread_create(joins_itself, self_join, 1, 0);
    CHECK(st_thread_join(sj, NULL) == 0);
    CHECK(self_join[0] == -1 && self_join[1] == EDEADLK);
    st_thread_t detached = st_thread_create(record, (void *)'C', 0, 0);
    CHECK(detached);
    CHECK_FAILS(st_thread_join(detached, NULL), EINVAL);
    st_usleep(1 * MS);
    join_target = st_thread_create(long_sleep, NULL, 1, 0);
    st_thread_t j2 = st_thread_create(second_joiner, NULL, 1, 0);
    st_usleep(1 * MS);
    CHECK_FAILS(st_thread_join(join_target, NULL), EINVAL); /* j2 joins it already */
    CHECK(st_thread_join(j2, NULL) == 0);
    CHECK(joiner_result[0] == 0);
    printf("join errors: ok\n");

    /* st_thread_exit's value */
    void *rv;
    st_thread_t e = st_thread_create(exits_early, NULL, 1, 0);
    CHECK(st_thread_join(e, &rv) == 0);
    printf("exit value: %d\n", (int)(uintptr_t)rv);

    /* interrupts */
    int res[3] = {0, 0, 0};
    st_thread_t s = st_thread_create(sleeper, res, 1, 0);
    st_usleep(5 * MS);
    st_thread_interrupt(s);
    CHECK(st_thread_join(s, NULL) == 0);
    printf("interrupt forever sleep: %d %s\n", res[0], res[1] == EINTR ? "EINTR" : "?");
    memset(res, 0, sizeof res);
    s = st_thread_create(sleeper_secs, res, 1, 0);
    st_usleep(5 * MS);
    st_thread_interrupt(s);
    CHECK(st_thread_join(s, NULL) == 0);
    printf("interrupt st_sleep(-1): %d %s\n", res[0], res[1] == EINTR ? "EINTR" : "?");
    memset(res, 0, sizeof res);
    s = st_thread_create(self_interrupt, res, 1, 0);
    CHECK(st_thread_join(s, NULL) == 0);
    printf("pending interrupt: %d %s then %d\n", res[0], res[1] == EINTR ? "EINTR" : "?", res[2]);
    /* an interrupted joiner */
    st_thread_t target = st_thread_create(long_sleep, NULL, 1, 0);
    st_thread_interrupt(st_thread_self());
    CHECK_FAILS(st_thread_join(target, NULL), EINTR);
    CHECK(st_thread_join(target, NULL) == 0); /* still joinable */
    printf("interrupted join: ok\n");

    /* sleeping and time */
    st_utime_t t0 = st_utime();
    CHECK(st_usleep(20 * MS) == 0);
    st_utime_t slept = st_utime() - t0;
    CHECK(slept >= 20 * MS && slept < 1000 * MS);
    t0 = st_utime();
    CHECK(st_sleep(0) == 0);
    CHECK(st_utime() - t0 < 10 * MS);
    CHECK(st_utime_last_clock() <= st_utime());
    time_t now = time(NULL);
    CHECK(st_timecache_set(1) == 0);
    CHECK(st_timecache_set(1) == 1);
    CHECK(st_time() >= now && st_time() <= time(NULL));
    CHECK(st_timecache_set(0) == 1);
    CHECK(st_timecache_set(0) == 0);
    CHECK(st_time() >= now);
    printf("time: ok\n");

    /* keys */
    CHECK(st_key_getlimit() == 16);
    CHECK(st_key_create(&key_a, key_dtor) == 0);
    CHECK(st_key_create(&key_b, key_dtor) == 0);
    CHECK(key_b == key_a + 1);
    CHECK_FAILS(st_thread_setspecific(st_key_getlimit() + 5, NULL), EINVAL);
    st_thread_t k = st_thread_create(uses_keys, NULL, 1, 0);
    CHECK(st_thread_join(k, NULL) == 0);
    printf("key destructors: %d calls: %d %d %d\n", ndestroyed, destroyed[0], destroyed[1], destroyed[2]);
    int created = 2, key;
    while (st_key_create(&key, NULL) == 0)
        created++;
    printf("keys: %d, then %s\n", created, errno == EAGAIN ? "EAGAIN" : "?");

    /* settings */
    CHECK(st_randomize_stacks(1) == 0);
    CHECK(st_randomize_stacks(0) != 0);
    st_thread_t r = st_thread_create(record, (void *)'D', 1, 0);
    CHECK(st_thread_join(r, NULL) == 0);
    CHECK(st_set_switch_in_cb(NULL) == NULL);
    printf("settings: ok\n");
    return 0;
}
