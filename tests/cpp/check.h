// check.h: the few helpers the C++ wrapper's tests share (as tests/c/check.h).
//
// CHECK(cond, fmt, ...) prints file:line, the failed condition and a message
// to stderr and exits 1. CHECK_ERRNO(expr, want): expr must give -1 with
// errno == want. CHECK_THROWS(expr, type): expr must throw a `type`.
// SAY(...) prints what is being checked, so a failure shows how far it got.
#ifndef PHOTON_CPP_TEST_CHECK_H
#define PHOTON_CPP_TEST_CHECK_H

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#define CHECK(cond, ...)                                                                      \
    do {                                                                                      \
        if (!(cond)) {                                                                        \
            std::fprintf(stderr, "%s:%d: CHECK FAILED: %s\n  ", __FILE__, __LINE__, #cond);   \
            std::fprintf(stderr, __VA_ARGS__);                                                \
            std::fprintf(stderr, "\n");                                                       \
            std::fflush(stderr);                                                              \
            std::exit(1);                                                                     \
        }                                                                                     \
    } while (0)

#define CHECK_ERRNO(expr, want)                                                                   \
    do {                                                                                          \
        errno = 0;                                                                                \
        const long check_ret_ = static_cast<long>(expr);                                          \
        const int check_errno_ = errno;                                                           \
        CHECK(check_ret_ == -1 && check_errno_ == (want),                                         \
              "%s: want -1 with errno %d (%s), got %ld with errno %d (%s)", #expr, (int)(want),   \
              std::strerror(want), check_ret_, check_errno_, std::strerror(check_errno_));        \
    } while (0)

#define CHECK_OK(expr)                                                                      \
    do {                                                                                    \
        errno = 0;                                                                          \
        const long check_ret_ = static_cast<long>(expr);                                    \
        const int check_errno_ = errno;                                                     \
        CHECK(check_ret_ == 0, "%s: want 0, got %ld with errno %d (%s)", #expr, check_ret_, \
              check_errno_, std::strerror(check_errno_));                                   \
    } while (0)

#define CHECK_THROWS(expr, type)                                              \
    do {                                                                      \
        bool check_thrown_ = false;                                           \
        try {                                                                 \
            (void)(expr);                                                     \
        } catch (const type&) {                                               \
            check_thrown_ = true;                                             \
        }                                                                     \
        CHECK(check_thrown_, "%s: want an exception of type %s", #expr, #type); \
    } while (0)

#define SAY(...)                          \
    do {                                  \
        std::printf("  " __VA_ARGS__);    \
        std::printf("\n");                \
        std::fflush(stdout);              \
    } while (0)

#endif  // PHOTON_CPP_TEST_CHECK_H
