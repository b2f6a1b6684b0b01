// Instructions the second-pass wrapper pieces add on hot paths, against the
// C API doing the same work, counted by callgrind (hot_paths.sh runs it):
//
//   log off   LOG_DEBUG("x `", i) with the level at WARN, against the C
//             equivalent: a level check guarding an fprintf
//   DEFER     lock; DEFER(unlock) in a scope, against lock; unlock
//   tl get    ++*thread_local_ptr<long>, against photon_getspecific + a
//             null check (+ first-use allocation) + increment
//   getspec   photon::thread_getspecific, against photon_getspecific
//   setspec   photon::thread_setspecific, against photon_setspecific
//
// hot_paths N: for each contender, a warm-up, then N units between a reset
// and a dump of callgrind's counters; prints "INSTR <units> <name>".
#include <photon/common/alog.h>
#include <photon/common/utility.h>
#include <photon/photon.h>
#include <photon/thread/thread-key.h>
#include <photon/thread/thread-local.h>

#include <valgrind/callgrind.h>

#include <cstdio>
#include <cstdlib>

/// The C program's own level variable (set in main, so not a constant).
unsigned g_c_level;

namespace {

#define BARRIER() asm volatile("" ::: "memory")

photon_mutex* g_mutex;
uint32_t g_key;

__attribute__((noinline)) void log_off_c(long n) {
    for (long i = 0; i < n; i++) {
        if (ALOG_DEBUG >= g_c_level) std::fprintf(stderr, "x %ld\n", i);
        BARRIER();
    }
}
__attribute__((noinline)) void log_off_cpp(long n) {
    for (long i = 0; i < n; i++) {
        LOG_DEBUG("x `", i);
        BARRIER();
    }
}

__attribute__((noinline)) void defer_c(long n) {
    for (long i = 0; i < n; i++) {
        photon_mutex_lock(g_mutex, PHOTON_FOREVER);
        BARRIER();
        photon_mutex_unlock(g_mutex);
    }
}
__attribute__((noinline)) void defer_cpp(long n) {
    for (long i = 0; i < n; i++) {
        photon_mutex_lock(g_mutex, PHOTON_FOREVER);
        DEFER(photon_mutex_unlock(g_mutex));
        BARRIER();
    }
}

__attribute__((noinline)) void tl_get_c(long n) {
    for (long i = 0; i < n; i++) {
        long* p = static_cast<long*>(photon_getspecific(g_key));
        if (p == nullptr) {
            p = new long(0);
            photon_setspecific(g_key, p);
        }
        ++*p;
        BARRIER();
    }
}
photon::thread_local_ptr<long>* g_tlp;
__attribute__((noinline)) void tl_get_cpp(long n) {
    photon::thread_local_ptr<long>& tlp = *g_tlp;
    for (long i = 0; i < n; i++) {
        ++*tlp;
        BARRIER();
    }
}

long g_value;
__attribute__((noinline)) void getspec_c(long n) {
    for (long i = 0; i < n; i++) {
        void* p = photon_getspecific(g_key);
        asm volatile("" : : "r"(p) : "memory");
    }
}
__attribute__((noinline)) void getspec_cpp(long n) {
    for (long i = 0; i < n; i++) {
        void* p = photon::thread_getspecific(g_key);
        asm volatile("" : : "r"(p) : "memory");
    }
}
__attribute__((noinline)) void setspec_c(long n) {
    for (long i = 0; i < n; i++) {
        int r = photon_setspecific(g_key, &g_value);
        asm volatile("" : : "r"(r) : "memory");
    }
}
__attribute__((noinline)) void setspec_cpp(long n) {
    for (long i = 0; i < n; i++) {
        int r = photon::thread_setspecific(g_key, &g_value);
        asm volatile("" : : "r"(r) : "memory");
    }
}

struct Contender {
    const char* name;
    void (*body)(long);
};

}  // namespace

int main(int argc, char** argv) {
    const long n = argc > 1 ? std::atol(argv[1]) : 100000;
    if (photon::init() != 0) return 1;
    set_log_output_level(ALOG_WARN);
    g_c_level = ALOG_WARN;
    g_mutex = photon_mutex_new();
    if (g_mutex == nullptr || photon_key_create(&g_key, nullptr) != 0) return 1;
    g_tlp = new photon::thread_local_ptr<long>();
    const Contender cs[] = {
        {"C API      level check (log off)", log_off_c},
        {"C++        LOG_DEBUG (level off)", log_off_cpp},
        {"C API      mutex lock + unlock", defer_c},
        {"C++        lock + DEFER(unlock)", defer_cpp},
        {"C API      getspecific + check + ++", tl_get_c},
        {"C++        ++*thread_local_ptr", tl_get_cpp},
        {"C API      photon_getspecific", getspec_c},
        {"C++        photon::thread_getspecific", getspec_cpp},
        {"C API      photon_setspecific", setspec_c},
        {"C++        photon::thread_setspecific", setspec_cpp},
    };
    for (const Contender& c : cs) {
        c.body(1000);  // warm up (first-use allocations)
        CALLGRIND_ZERO_STATS;
        c.body(n);
        CALLGRIND_DUMP_STATS_AT(c.name);
        std::printf("INSTR %ld %s\n", n, c.name);
    }
    photon_setspecific(g_key, nullptr);
    photon_mutex_free(g_mutex);
    return photon::fini() == 0 ? 0 : 1;
}
