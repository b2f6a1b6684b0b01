/* The shim's waiting hooks allocate nothing on their own: a hook may run
 * while the program is inside malloc (another photon thread of the vcpu
 * switched out there) or in a signal handler. This program counts every
 * malloc/calloc/realloc/aligned allocation made on its thread (its own
 * definitions come first in the symbol search, so the shim's allocations
 * reach them too) around select, pselect and poll calls in a photon thread
 * (the vcpu's main thread) on a ready pipe, which the shim answers itself
 * (a zero-timeout check by libc, no wait): each must allocate nothing. The
 * calls also give libc's answers (ready set, count), and a select that must
 * wait returns when another photon thread makes its fd ready. Runs under
 * LD_PRELOAD=libphoton_preload.so; exit status 0 when every check passed. */
#define _GNU_SOURCE
#include <errno.h>
#include <photon.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <unistd.h>

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);

static _Thread_local int counting;
static _Thread_local long allocations;

void *malloc(size_t n) {
    if (counting) allocations++;
    return __libc_malloc(n);
}
void *calloc(size_t k, size_t n) {
    if (counting) allocations++;
    return __libc_calloc(k, n);
}
void *realloc(void *p, size_t n) {
    if (counting) allocations++;
    return __libc_realloc(p, n);
}
void *memalign(size_t a, size_t n) {
    if (counting) allocations++;
    return __libc_memalign(a, n);
}
void *aligned_alloc(size_t a, size_t n) {
    if (counting) allocations++;
    return __libc_memalign(a, n);
}
int posix_memalign(void **out, size_t a, size_t n) {
    if (counting) allocations++;
    void *p = __libc_memalign(a, n);
    if (p == NULL) return ENOMEM;
    *out = p;
    return 0;
}

static int failures;

#define CHECK(cond, ...)                                                   \
    do {                                                                   \
        if (!(cond)) {                                                     \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);           \
            fprintf(stderr, __VA_ARGS__);                                  \
            fprintf(stderr, "\n");                                         \
            failures++;                                                    \
        }                                                                  \
    } while (0)

static int pipe_r, pipe_w, other_r;

static int do_select(void) {
    fd_set r;
    FD_ZERO(&r);
    FD_SET(pipe_r, &r);
    FD_SET(other_r, &r);
    struct timeval tv = {1, 0};
    int k = select((pipe_r > other_r ? pipe_r : other_r) + 1, &r, NULL, NULL, &tv);
    CHECK(k == 1 && FD_ISSET(pipe_r, &r) && !FD_ISSET(other_r, &r), "select: %d (%s)", k, strerror(errno));
    return k;
}

static int do_pselect(void) {
    fd_set r, w;
    FD_ZERO(&r);
    FD_ZERO(&w);
    FD_SET(pipe_r, &r);
    FD_SET(other_r, &r);
    FD_SET(pipe_w, &w);
    struct timespec ts = {1, 0};
    int k = pselect(64, &r, &w, NULL, &ts, NULL);
    CHECK(k == 2 && FD_ISSET(pipe_r, &r) && FD_ISSET(pipe_w, &w) && !FD_ISSET(other_r, &r),
          "pselect: %d (%s)", k, strerror(errno));
    return k;
}

static int do_poll(void) {
    struct pollfd p[2] = {{pipe_r, POLLIN, 0}, {other_r, POLLIN, 0}};
    int k = poll(p, 2, 1000);
    CHECK(k == 1 && (p[0].revents & POLLIN) && p[1].revents == 0, "poll: %d (%s)", k, strerror(errno));
    return k;
}

static void expect_no_allocation(const char *what, int (*call)(void)) {
    call(); /* the first call may resolve and cache what later calls use */
    allocations = 0;
    counting = 1;
    call();
    counting = 0;
    CHECK(allocations == 0, "%s in a photon thread allocated %ld times", what, allocations);
    if (allocations == 0) printf("%s: no allocation\n", what);
}

static int late_w;
static void *write_later(void *arg) {
    (void)arg;
    usleep(20 * 1000); /* hooked: a photon sleep */
    CHECK(write(late_w, "y", 1) == 1, "write");
    return NULL;
}

int main(void) {
    if (photon_init(PHOTON_EVENT_DEFAULT, 0) != 0) {
        perror("photon_init");
        return 1;
    }
    CHECK(photon_preload_active() == 1, "run me under LD_PRELOAD=libphoton_preload.so");
    int p[2], q[2];
    if (pipe(p) != 0 || pipe(q) != 0) {
        perror("pipe");
        return 1;
    }
    pipe_r = p[0];
    pipe_w = p[1];
    other_r = q[0];
    CHECK(write(pipe_w, "x", 1) == 1, "write");
    expect_no_allocation("select", do_select);
    expect_no_allocation("pselect", do_pselect);
    expect_no_allocation("poll", do_poll);

    /* A select that has to wait still works: the fd becomes ready later. */
    late_w = q[1];
    photon_thread *t = photon_thread_create(write_later, NULL, 0);
    CHECK(t != NULL && photon_thread_enable_join(t) == 0, "create");
    fd_set r;
    FD_ZERO(&r);
    FD_SET(other_r, &r);
    struct timeval tv = {5, 0};
    int k = select(other_r + 1, &r, NULL, NULL, &tv);
    CHECK(k == 1 && FD_ISSET(other_r, &r), "a waiting select: %d (%s)", k, strerror(errno));
    CHECK(photon_thread_join(t, NULL) == 0, "join");
    printf("a select that waits: woken by the write\n");
    photon_fini();
    if (failures) return 1;
    printf("no_alloc: all checks passed\n");
    return 0;
}
