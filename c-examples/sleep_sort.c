/*
 * sleep_sort: a short tour of the libphoton C API.
 *
 * Sleep sort starts one thread per number; the thread for n sleeps n * 10 ms
 * and then appends n to the output, so the numbers come out in order. With
 * photon threads all of them are coroutines on this one OS thread, and the
 * sleeps are timers of the vcpu's scheduler.
 *
 * Along the way it shows:
 *   - photon_init / photon_fini, photon_version, photon_engine_name
 *   - photon_thread_create, photon_thread_enable_join, photon_thread_join
 *     (with the thread's return value), photon_thread_usleep
 *   - photon_thread_interrupt waking a sleeping thread with a chosen errno
 *   - a thread key with a destructor (photon_key_create, photon_setspecific,
 *     photon_getspecific)
 *
 * Every call follows the POSIX convention: 0 (or a pointer) on success,
 * -1 (or NULL) with errno set on failure.
 *
 * Run with PHOTON_ENGINE=epoll or PHOTON_ENGINE=io_uring to pick the event
 * engine, and PHOTON_LOG=debug to see what the runtime does.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "photon.h"

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* Print what failed with errno's message, and stop. */
static void die(const char *what)
{
    perror(what);
    exit(1);
}

/* ------------------------------------------------------------------------
 * Part 1: sleep sort, with a per-thread label stored under a key
 * ---------------------------------------------------------------------- */

static const unsigned numbers[] = {7, 2, 9, 4, 0, 5, 8, 1, 6, 3};
static unsigned sorted[COUNT(numbers)];
static size_t finished; /* how many sleepers have written their number */

/*
 * All photon threads of this program run on one vcpu (this OS thread) and
 * switch only when one of them blocks or yields, so plain variables need no
 * locking here.
 */
static uint32_t label_key;
static unsigned labels_destroyed;

/* Destructor of label_key: runs when a thread that set a label ends. */
static void destroy_label(void *label)
{
    free(label);
    labels_destroyed++;
}

/* Entry of one sleeper: arg is the number n. Returns its finishing rank. */
static void *sleeper(void *arg)
{
    unsigned n = (unsigned)(uintptr_t)arg;
    char *label = malloc(32);
    size_t rank;

    if (label == NULL)
        die("malloc");
    snprintf(label, 32, "sleeper %u", n);
    /* The value belongs to this photon thread only; the key's destructor
     * frees it when the thread ends. */
    if (photon_setspecific(label_key, label) != 0)
        die("photon_setspecific");

    if (photon_thread_usleep((uint64_t)n * 10000) != 0)
        die("photon_thread_usleep");

    if (photon_getspecific(label_key) != label) {
        fprintf(stderr, "%s: lost its thread-specific value\n", label);
        exit(1);
    }
    rank = finished++;
    sorted[rank] = n;
    return (void *)(uintptr_t)rank;
}

static void sleep_sort(void)
{
    photon_thread *threads[COUNT(numbers)];
    size_t i;

    if (photon_key_create(&label_key, destroy_label) != 0)
        die("photon_key_create");

    printf("input:");
    for (i = 0; i < COUNT(numbers); i++) {
        printf(" %u", numbers[i]);
        /* stack_size 0 = the default stack. The new thread runs once this
         * one blocks (here: in the first photon_thread_join). */
        threads[i] = photon_thread_create(sleeper, (void *)(uintptr_t)numbers[i], 0);
        if (threads[i] == NULL)
            die("photon_thread_create");
        /* A thread is detached unless join is enabled before it ends. */
        if (photon_thread_enable_join(threads[i]) != 0)
            die("photon_thread_enable_join");
    }
    printf("\n");

    /* Join each thread exactly once; ret is what its entry returned. */
    for (i = 0; i < COUNT(numbers); i++) {
        void *ret = NULL;
        if (photon_thread_join(threads[i], &ret) != 0)
            die("photon_thread_join");
        printf("  %u finished %zu of %zu\n", numbers[i],
               (size_t)(uintptr_t)ret + 1, COUNT(numbers));
    }

    printf("sorted:");
    for (i = 0; i < finished; i++)
        printf(" %u", sorted[i]);
    printf("\n");

    if (finished != COUNT(numbers)) {
        fprintf(stderr, "only %zu of %zu threads finished\n", finished,
                COUNT(numbers));
        exit(1);
    }
    for (i = 1; i < finished; i++) {
        if (sorted[i - 1] > sorted[i]) {
            fprintf(stderr, "not sorted at position %zu\n", i);
            exit(1);
        }
    }

    /* Destructors have run by the time photon_thread_join returns. */
    printf("key destructor ran %u times\n", labels_destroyed);
    if (labels_destroyed != COUNT(numbers)) {
        fprintf(stderr, "expected %zu destructor calls\n", COUNT(numbers));
        exit(1);
    }
    if (photon_key_delete(label_key) != 0)
        die("photon_key_delete");
}

/* ------------------------------------------------------------------------
 * Part 2: interrupting a sleeping thread
 * ---------------------------------------------------------------------- */

/* Sleeps 10 s unless interrupted; returns the errno it woke with (0 if none). */
static void *long_sleeper(void *arg)
{
    (void)arg;
    if (photon_thread_usleep(10 * 1000 * 1000) == 0)
        return (void *)(uintptr_t)0;
    /* Interrupted: -1, and errno is the code the interrupter chose. */
    return (void *)(uintptr_t)errno;
}

static void interrupt_demo(void)
{
    photon_thread *th;
    uint64_t start;
    void *ret = NULL;
    int woke_with;

    th = photon_thread_create(long_sleeper, NULL, 0);
    if (th == NULL || photon_thread_enable_join(th) != 0)
        die("photon_thread_create");

    /* Sleep a little ourselves so that the other thread runs and falls asleep. */
    start = photon_now_us();
    if (photon_thread_usleep(1000) != 0)
        die("photon_thread_usleep");

    /* Wake it early, with ECANCELED as the reason. photon_thread_interrupt may
     * be called from any OS thread; here it is a photon thread on the same vcpu. */
    if (photon_thread_interrupt(th, ECANCELED) != 0)
        die("photon_thread_interrupt");
    if (photon_thread_join(th, &ret) != 0)
        die("photon_thread_join");

    woke_with = (int)(uintptr_t)ret;
    printf("interrupted sleeper woke after %llu us with errno %d (%s)\n",
           (unsigned long long)(photon_now_us() - start), woke_with,
           strerror(woke_with));
    if (woke_with != ECANCELED) {
        fprintf(stderr, "expected ECANCELED\n");
        exit(1);
    }
}

int main(void)
{
    /* This OS thread becomes a vcpu, and main() a photon thread on it.
     * PHOTON_EVENT_DEFAULT: io_uring when usable, else epoll. */
    if (photon_init(PHOTON_EVENT_DEFAULT, 0) != 0)
        die("photon_init");
    printf("libphoton %s, event engine %s\n", photon_version(),
           photon_engine_name());

    sleep_sort();
    interrupt_demo();

    /* Waits for any remaining threads of this vcpu, then tears it down. */
    if (photon_fini() != 0)
        die("photon_fini");
    printf("ok\n");
    return 0;
}
