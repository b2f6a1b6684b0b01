/*
 * Stack overflow: a photon thread with a 64 KiB stack recurses without
 * bound. The process must die by SIGABRT with a message on stderr naming
 * the stack overflow and the stack size (65536), not by a bare SIGSEGV and
 * not by returning. The Rust harness (tests/c_api.rs) checks all of that;
 * this program exits 3 if the recursion ever returns.
 */
#include <limits.h>

#include "check.h"

#define STACK_SIZE (64 * 1024)

/* Never reached in practice; volatile so the compiler cannot see that. */
static volatile int stop_depth = INT_MAX;

static int recurse(int depth) {
    volatile char frame[512];
    frame[0] = (char)depth;
    frame[sizeof frame - 1] = (char)(depth >> 8);
    if (depth >= stop_depth) {
        return frame[0];
    }
    /* not a tail call: the frame is read after the recursive call */
    return recurse(depth + 1) + frame[0] + frame[sizeof frame - 1];
}

static void *overflow(void *arg) {
    (void)arg;
    SAY("recursing on a %d-byte stack", STACK_SIZE);
    return (void *)(intptr_t)recurse(0);
}

int main(void) {
    test_start("stack_overflow");
    test_init();
    photon_thread *th = spawn_joinable(overflow, NULL, STACK_SIZE);
    join_ok(th);
    fprintf(stderr, "stack_overflow: the unbounded recursion returned\n");
    return 3;
}
