/* Checks shared by the State Threads test programs (tests/st.rs builds each
 * one against libphoton_st and against Debian's State Threads, runs both,
 * and compares what they print). A failed check prints where and exits 1. */
#ifndef ST_CHECK_H
#define ST_CHECK_H

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(cond)                                                                  \
    do {                                                                             \
        if (!(cond)) {                                                               \
            fprintf(stderr, "%s:%d: check failed: %s (errno %d %s)\n", __FILE__,     \
                    __LINE__, #cond, errno, strerror(errno));                        \
            exit(1);                                                                 \
        }                                                                            \
    } while (0)

/* A call that fails with -1 (or NULL) and errno e. */
#define CHECK_FAILS(call, e)                                                         \
    do {                                                                             \
        errno = 0;                                                                   \
        CHECK((call) == -1 && errno == (e));                                         \
    } while (0)

#define MS 1000ULL

#endif
