// Boost.Context fcontext ping-pong: main and one context jump to each other.
// Prints ns per switch (one direction): each jump_fcontext is one switch.
// Usage: boost_fcontext [seconds]
#include <boost/context/detail/fcontext.hpp>
#include <sys/mman.h>

#include "bench_common.h"

namespace ctx = boost::context::detail;

static ctx::fcontext_t g_child;

static void child_entry(ctx::transfer_t t) {
    for (;;) t = ctx::jump_fcontext(t.fctx, nullptr);
}

static void body(uint64_t n) {
    ctx::fcontext_t c = g_child;
    for (uint64_t i = 0; i < n; i++) c = ctx::jump_fcontext(c, nullptr).fctx;
    g_child = c;
}

int main(int argc, char** argv) {
    bench_fp_settle();
    double secs = bench_secs_arg(argc, argv);
    const size_t size = 64 * 1024, guard = 4096;
    void* mem = mmap(nullptr, size + guard, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) BENCH_DIE("mmap stack");
    if (mprotect(mem, guard, PROT_NONE) != 0) BENCH_DIE("mprotect guard");
    char* top = static_cast<char*>(mem) + guard + size;
    g_child = ctx::make_fcontext(top, size, child_entry);
    // The first jump enters child_entry; then every jump is a plain switch.
    g_child = ctx::jump_fcontext(g_child, nullptr).fctx;

    uint64_t n = bench_calibrate(body, secs);
    double t0 = bench_now_s();
    body(n);
    double dt = bench_now_s() - t0;
    printf("INFO boost fcontext: %llu round trips in %.3f s\n", (unsigned long long)n, dt);
    printf("RESULT value=%.4f unit=ns/switch switches=%llu secs=%.4f\n", dt * 1e9 / (2.0 * (double)n),
           (unsigned long long)(2 * n), dt);
    return 0;
}
