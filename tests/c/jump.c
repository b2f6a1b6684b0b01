/* setjmp/longjmp inside photon threads, across yields: each thread jumps
 * out of a deep call chain while the others are suspended mid-chain. Under
 * AddressSanitizer longjmp asks ASan to unpoison the current stack
 * (__asan_handle_no_return): ASan must know that stack is the photon
 * thread's (libphoton announces every switch), or it warns "ASan is
 * ignoring requested __asan_handle_no_return" and may report false errors;
 * the harness fails the run on any such message. */
#include <setjmp.h>

#include "check.h"

#define THREADS 8
#define DEPTH 40

static int rounds_done[THREADS];
static volatile int stop_early; /* never set: a visible way out for the compiler */

static int descend(jmp_buf *env, int depth, int id) {
    volatile char pad[256];
    pad[0] = (char)depth;
    if (stop_early) return 0;
    if (depth == 0) {
        photon_thread_yield(); /* the others are suspended deep in their chains */
        longjmp(*env, id + 1);
    }
    return descend(env, depth - 1, id) + pad[0];
}

static void *jumper(void *arg) {
    int id = (int)(intptr_t)arg;
    for (int round = 0; round < 50; round++) {
        jmp_buf env;
        int r = setjmp(env);
        if (r == 0) {
            descend(&env, DEPTH + id, id);
            CHECK(0, "descend returned instead of jumping");
        }
        CHECK(r == id + 1, "thread %d: longjmp delivered %d", id, r);
        rounds_done[id]++;
        photon_thread_yield();
    }
    return NULL;
}

int main(void) {
    test_start("jump");
    test_init();
    SAY("%d photon threads longjmp out of %d-deep call chains, 50 rounds each, yielding at the bottom", THREADS,
        DEPTH);
    photon_thread *th[THREADS];
    for (int i = 0; i < THREADS; i++) th[i] = spawn_joinable(jumper, (void *)(intptr_t)i, 0);
    for (int i = 0; i < THREADS; i++) join_ok(th[i]);
    for (int i = 0; i < THREADS; i++) CHECK(rounds_done[i] == 50, "thread %d did %d rounds", i, rounds_done[i]);
    test_fini();
    SAY("jump: OK");
    return 0;
}
