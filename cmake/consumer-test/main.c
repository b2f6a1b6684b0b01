/* Smallest useful libphoton program: one joinable photon thread that sleeps
 * and returns a value. Used to check that an installed libphoton can be found
 * and linked (find_package, pkg-config, static and shared). */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdio.h>

#include "photon.h"

static void *worker(void *arg)
{
    if (photon_thread_usleep(1000) != 0)
        return NULL;
    return (void *)((uintptr_t)arg + 1);
}

int main(void)
{
    photon_thread *th;
    void *ret = NULL;

    if (photon_init(PHOTON_EVENT_DEFAULT, 0) != 0) {
        perror("photon_init");
        return 1;
    }
    th = photon_thread_create(worker, (void *)(uintptr_t)41, 0);
    if (th == NULL || photon_thread_enable_join(th) != 0 ||
        photon_thread_join(th, &ret) != 0) {
        perror("photon thread");
        return 1;
    }
    if ((uintptr_t)ret != 42) {
        fprintf(stderr, "worker returned %lu, expected 42\n",
                (unsigned long)(uintptr_t)ret);
        return 1;
    }
    printf("consumer: libphoton %s on %s: ok\n", photon_version(),
           photon_engine_name());
    return photon_fini() == 0 ? 0 : 1;
}
