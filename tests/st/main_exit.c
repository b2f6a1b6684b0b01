/* st_thread_exit in main: the process lives on until the last thread ends,
 * then exits with status 0 (State Threads' reference, st_thread_exit). */
#include <st.h>
#include <stdint.h>

#include "st_check.h"

static void *worker(void *arg)
{
    st_usleep((st_utime_t)(uintptr_t)arg * MS);
    printf("worker %d done\n", (int)(uintptr_t)arg);
    fflush(stdout);
    return NULL;
}

int main(void)
{
    CHECK(st_init() == 0);
    CHECK(st_thread_create(worker, (void *)20, 0, 0) != NULL);
    CHECK(st_thread_create(worker, (void *)10, 0, 0) != NULL);
    printf("main exits\n");
    fflush(stdout);
    st_thread_exit(NULL);
    printf("not reached\n");
    return 3;
}
