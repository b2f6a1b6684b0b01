/*
 * Fault: a photon thread interrupted in every kind of wait, in one table.
 *
 * Kinds: photon_thread_usleep, photon_thread_join, photon_mutex_lock,
 * photon_cond_wait, photon_sem_wait, photon_rwlock_rdlock,
 * photon_rwlock_wrlock, photon_read on an idle socket, photon_write on a
 * full socket, photon_accept on an idle listener, photon_connect to a
 * listener whose backlog is full (the SYN is dropped: the connect waits),
 * photon_wait_fd, photon_workpool_call and photon_offload. (File reads that
 * block in the kernel: fault_interrupt_pread.c.)
 *
 * Each kind is interrupted three ways: by the main thread of the same vcpu
 * while the victim waits; by a plain pthread (no vcpu) while it waits; and
 * by the victim itself just before the call (a pending interrupt). Each
 * (kind, way) uses its own errno code. photon.h says:
 *  - an interrupted wait returns -1 with exactly the interrupter's errno,
 *    promptly (here: within PROMPT_US), and the interrupt is consumed: the
 *    victim's next blocking call works normally;
 *  - a pending interrupt fails the next blocking call at once;
 *  - photon_workpool_call: "interruptible; the work still runs to its end";
 *  - photon_offload: "The wait cannot be interrupted ... an interrupt
 *    arriving meanwhile stays pending for the caller's next blocking call":
 *    it returns 0 with fn's value once fn is done, and the next blocking
 *    call fails at once with the code.
 * After each case the resource works normally again (a lock can be taken
 * and freed: no phantom waiter; a socket reads exactly what is sent next;
 * a listener accepts; a joinable thread is still joinable).
 * A ticker thread checks that the vcpu never stalls meanwhile; a watchdog
 * turns a hang into a failure.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "check.h"

#define MS 1000ULL
#define SEC 1000000ULL
#define PROMPT_US (200 * MS)
#define OFFLOAD_WORK_US (300 * MS)
#define WORK_US (300 * MS)

/* ------------------------------------------------------------------ */
/* watchdog and ticker                                                 */

static atomic_int finished;
static const char *_Atomic stage = "start";

static void *watchdog(void *arg) {
    (void)arg;
    for (int i = 0; i < 450; i++) { /* 45 s */
        if (atomic_load(&finished)) return NULL;
        usleep(100000);
    }
    fprintf(stderr, "WATCHDOG: stuck for 45 s in: %s\n", atomic_load(&stage));
    _exit(3);
}

static atomic_int ticker_stop;
static uint64_t ticker_max_gap;
static uint64_t ticks;

static void *ticker(void *arg) {
    (void)arg;
    uint64_t last = photon_now_us();
    while (!atomic_load(&ticker_stop)) {
        if (photon_thread_usleep(2 * MS) != 0) break;
        uint64_t now = photon_now_us();
        if (now - last > ticker_max_gap) ticker_max_gap = now - last;
        last = now;
        ticks++;
    }
    return NULL;
}

/* ------------------------------------------------------------------ */
/* resources                                                           */

static photon_mutex *mtx;    /* mutex_lock: held by main */
static photon_mutex *cmtx;   /* cond_wait's mutex */
static photon_cond *cv;
static photon_sem *sem;      /* count 0 */
static photon_rwlock *rw;    /* held by main (write for rdlock, read for wrlock) */
static photon_workpool *pool;
static int pair[2];          /* a connected TCP pair */
static int lfd = -1;         /* a listener */
static struct sockaddr_in laddr;
static int fill_fd = -1;     /* connect: the connection filling the backlog */
static int conn_fd = -1;     /* connect: the victim's socket */
static size_t filled;        /* write: bytes queued before the call */
static photon_thread *joinee;
static atomic_int joinee_go;
static atomic_int work_done; /* workpool_call's and offload's work finished */
static int cond_unlock_ret;  /* cond_wait: the victim's unlock after the wait */
static unsigned char big[1 << 20];

static void tcp_listener(int backlog) {
    lfd = photon_socket(AF_INET, SOCK_STREAM, 0);
    CHECK(lfd >= 0, "photon_socket: %s", strerror(errno));
    memset(&laddr, 0, sizeof laddr);
    laddr.sin_family = AF_INET;
    laddr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CHECK_OK(bind(lfd, (struct sockaddr *)&laddr, sizeof laddr));
    CHECK_OK(listen(lfd, backlog));
    socklen_t len = sizeof laddr;
    CHECK_OK(getsockname(lfd, (struct sockaddr *)&laddr, &len));
}

static void close_listener(void) {
    CHECK_OK(photon_close(lfd));
    lfd = -1;
}

static void tcp_pair(void) {
    tcp_listener(4);
    pair[0] = photon_socket(AF_INET, SOCK_STREAM, 0);
    CHECK(pair[0] >= 0, "photon_socket: %s", strerror(errno));
    CHECK_OK(photon_connect(pair[0], (struct sockaddr *)&laddr, sizeof laddr, 5 * SEC));
    pair[1] = photon_accept(lfd, NULL, NULL, 5 * SEC);
    CHECK(pair[1] >= 0, "photon_accept: %s", strerror(errno));
    close_listener();
}

static void close_pair(void) {
    CHECK_OK(photon_close(pair[0]));
    CHECK_OK(photon_close(pair[1]));
}

/* Nothing is sent or lost by the interrupted call: what is written now is
 * exactly what the next read returns. */
static void pair_still_works(void) {
    char buf[64];
    CHECK(photon_write(pair[0], "next", 4, SEC) == 4, "write: %s", strerror(errno));
    ssize_t n = photon_read(pair[1], buf, sizeof buf, SEC);
    CHECK(n == 4 && memcmp(buf, "next", 4) == 0, "read after the interrupt: %zd (%s)", n,
          n < 0 ? strerror(errno) : "wrong bytes");
}

/* ------------------------------------------------------------------ */
/* the kinds of wait                                                   */

enum kind {
    K_SLEEP,
    K_JOIN,
    K_MUTEX,
    K_COND,
    K_SEM,
    K_RDLOCK,
    K_WRLOCK,
    K_READ,
    K_WRITE,
    K_ACCEPT,
    K_CONNECT,
    K_WAIT_FD,
    K_WORKPOOL_CALL,
    K_OFFLOAD,
    K_COUNT
};
static const char *kind_name[K_COUNT] = {
    "photon_thread_usleep", "photon_thread_join",   "photon_mutex_lock",
    "photon_cond_wait",     "photon_sem_wait",      "photon_rwlock_rdlock",
    "photon_rwlock_wrlock", "photon_read (socket)", "photon_write (full socket)",
    "photon_accept",        "photon_connect (full backlog)", "photon_wait_fd",
    "photon_workpool_call", "photon_offload"};

enum way { W_SAME_VCPU, W_PTHREAD, W_PENDING, W_COUNT };
static const char *way_name[W_COUNT] = {"by the main thread of its vcpu", "by a plain pthread",
                                        "pending (sent before the call)"};

static void *joinee_main(void *arg) {
    (void)arg;
    while (!atomic_load(&joinee_go)) {
        if (photon_thread_usleep(2 * MS) != 0) return (void *)2;
    }
    return (void *)0x4a;
}

static void *pool_work(void *arg) {
    (void)arg;
    photon_thread_usleep(WORK_US);
    atomic_store(&work_done, 1);
    return (void *)0x55;
}

static void *offload_work(void *arg) {
    (void)arg;
    /* a plain blocking OS sleep, on the helper thread */
    struct timespec t = {0, (long)(OFFLOAD_WORK_US * 1000)};
    nanosleep(&t, NULL);
    atomic_store(&work_done, 1);
    return (void *)0x66;
}

static void setup(enum kind k) {
    atomic_store(&work_done, 0);
    switch (k) {
    case K_SLEEP: break;
    case K_JOIN:
        atomic_store(&joinee_go, 0);
        joinee = spawn_joinable(joinee_main, NULL, 0);
        break;
    case K_MUTEX: CHECK_OK(photon_mutex_lock(mtx, PHOTON_FOREVER)); break;
    case K_COND: break;
    case K_SEM: break;
    case K_RDLOCK: CHECK_OK(photon_rwlock_wrlock(rw, PHOTON_FOREVER)); break;
    case K_WRLOCK: CHECK_OK(photon_rwlock_rdlock(rw, PHOTON_FOREVER)); break;
    case K_READ:
    case K_WAIT_FD: tcp_pair(); break;
    case K_WRITE: {
        tcp_pair();
        int small = 4096;
        CHECK_OK(setsockopt(pair[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof small));
        CHECK_OK(setsockopt(pair[1], SOL_SOCKET, SO_RCVBUF, &small, sizeof small));
        filled = 0;
        for (int round = 0; round < 2; round++) {
            for (;;) {
                ssize_t w = photon_send(pair[0], big, sizeof big, MSG_DONTWAIT, 0);
                if (w < 0) {
                    CHECK(errno == EAGAIN, "filling send: %s", strerror(errno));
                    break;
                }
                filled += (size_t)w;
            }
            CHECK_OK(photon_thread_usleep(20 * MS)); /* loopback moves some over */
        }
        break;
    }
    case K_ACCEPT: tcp_listener(16); break;
    case K_CONNECT:
        /* backlog 0: one queued connection fills it; the next SYN is dropped */
        tcp_listener(0);
        fill_fd = photon_socket(AF_INET, SOCK_STREAM, 0);
        CHECK(fill_fd >= 0, "photon_socket: %s", strerror(errno));
        CHECK_OK(photon_connect(fill_fd, (struct sockaddr *)&laddr, sizeof laddr, SEC));
        conn_fd = photon_socket(AF_INET, SOCK_STREAM, 0);
        CHECK(conn_fd >= 0, "photon_socket: %s", strerror(errno));
        break;
    case K_WORKPOOL_CALL: break;
    case K_OFFLOAD: break;
    default: break;
    }
}

/* The victim's preparation that may itself wait (not interrupted). */
static void prepare(enum kind k) {
    if (k == K_COND) CHECK_OK(photon_mutex_lock(cmtx, PHOTON_FOREVER));
}

static void *retval;

static long call(enum kind k) {
    switch (k) {
    case K_SLEEP: return photon_thread_usleep(30 * SEC);
    case K_JOIN: return photon_thread_join(joinee, &retval);
    case K_MUTEX: return photon_mutex_lock(mtx, PHOTON_FOREVER);
    case K_COND: {
        long r = photon_cond_wait(cv, cmtx, PHOTON_FOREVER);
        int e = errno;
        cond_unlock_ret = photon_mutex_unlock(cmtx); /* held again, whatever the result */
        errno = e;
        return r;
    }
    case K_SEM: return photon_sem_wait(sem, 1, PHOTON_FOREVER);
    case K_RDLOCK: return photon_rwlock_rdlock(rw, PHOTON_FOREVER);
    case K_WRLOCK: return photon_rwlock_wrlock(rw, PHOTON_FOREVER);
    case K_READ: {
        char buf[64];
        return photon_read(pair[1], buf, sizeof buf, PHOTON_FOREVER);
    }
    case K_WRITE: return photon_write(pair[0], big, sizeof big, PHOTON_FOREVER);
    case K_ACCEPT: return photon_accept(lfd, NULL, NULL, PHOTON_FOREVER);
    case K_CONNECT:
        return photon_connect(conn_fd, (struct sockaddr *)&laddr, sizeof laddr, PHOTON_FOREVER);
    case K_WAIT_FD: return photon_wait_fd(pair[1], PHOTON_READABLE, PHOTON_FOREVER);
    case K_WORKPOOL_CALL: return photon_workpool_call(pool, pool_work, NULL, &retval);
    case K_OFFLOAD: return photon_offload(offload_work, NULL, &retval);
    default: return -2;
    }
}

/* ------------------------------------------------------------------ */
/* one case                                                            */

struct victim {
    enum kind kind;
    enum way way;
    int code;
    atomic_int entered;   /* about to make the call */
    atomic_int returned;  /* the call returned */
    long ret;
    int err;
    uint64_t called_at, returned_at;
    /* the next blocking call after it: usleep(next_us) */
    int next_ret, next_err;
    uint64_t next_took;
};

/* Long enough for a stale interrupt or a late wake-up of the interrupted
 * wait to land in it (either ends it early: the check below fails), short
 * because 42 cases sleep it once each in every run of the program. */
#define NEXT_US (100 * MS)

static void *victim_main(void *arg) {
    struct victim *v = arg;
    prepare(v->kind);
    if (v->way == W_PENDING) CHECK_OK(photon_thread_interrupt(photon_thread_self(), v->code));
    atomic_store(&v->entered, 1);
    v->called_at = photon_now_us();
    errno = 0;
    v->ret = call(v->kind);
    v->err = errno;
    v->returned_at = photon_now_us();
    atomic_store(&v->returned, 1);
    /* the interrupt is consumed by the call (or, for photon_offload, still
     * pending): this sleep tells which */
    uint64_t t0 = photon_now_us();
    errno = 0;
    v->next_ret = photon_thread_usleep(NEXT_US);
    v->next_err = errno;
    v->next_took = elapsed_us(t0);
    return NULL;
}

struct remote {
    struct victim *v;
    photon_thread *th;
    int ret, err;
    uint64_t sent_at;
};

static void *remote_main(void *arg) {
    struct remote *r = arg;
    for (int i = 0; i < 5000 && !atomic_load(&r->v->entered); i++) usleep(1000);
    usleep(30000); /* the victim is waiting by now */
    r->sent_at = photon_now_us();
    errno = 0;
    r->ret = photon_thread_interrupt(r->th, r->v->code);
    r->err = errno;
    return NULL;
}

static void after(struct victim *v) {
    enum kind k = v->kind;
    switch (k) {
    case K_JOIN:
        /* the joinee stays joinable: join it now */
        atomic_store(&joinee_go, 1);
        CHECK(join_ok(joinee) == (void *)0x4a, "the joinee's value after the interrupted join");
        break;
    case K_MUTEX:
        CHECK_OK(photon_mutex_unlock(mtx));
        CHECK_OK(photon_mutex_lock(mtx, SEC)); /* no phantom owner */
        CHECK_OK(photon_mutex_unlock(mtx));
        break;
    case K_COND:
        CHECK(cond_unlock_ret == 0, "cond_wait returned without the mutex held (unlock: %d)",
              cond_unlock_ret);
        break;
    case K_SEM:
        CHECK_OK(photon_sem_signal(sem, 1));
        CHECK_OK(photon_sem_wait(sem, 1, SEC)); /* the unit was not taken by a phantom */
        break;
    case K_RDLOCK:
    case K_WRLOCK:
        CHECK_OK(photon_rwlock_unlock(rw));
        CHECK_OK(photon_rwlock_wrlock(rw, SEC));
        CHECK_OK(photon_rwlock_unlock(rw));
        break;
    case K_READ:
    case K_WAIT_FD:
        pair_still_works();
        close_pair();
        break;
    case K_WRITE: {
        /* the peer finds exactly what was queued before the call */
        unsigned char *got = malloc(sizeof big);
        CHECK(got != NULL, "malloc");
        ssize_t r = photon_read_full(pair[1], got, filled, 5 * SEC);
        CHECK(r == (ssize_t)filled, "drain %zu queued bytes: got %zd (%s)", filled, r,
              strerror(errno));
        CHECK_OK(photon_thread_usleep(20 * MS));
        errno = 0;
        r = photon_recv(pair[1], got, sizeof big, MSG_DONTWAIT, 0);
        CHECK(r == -1 && errno == EAGAIN, "the interrupted write sent %zd bytes anyway", r);
        free(got);
        pair_still_works();
        close_pair();
        break;
    }
    case K_ACCEPT: {
        int c = photon_socket(AF_INET, SOCK_STREAM, 0);
        CHECK(c >= 0, "photon_socket: %s", strerror(errno));
        CHECK_OK(photon_connect(c, (struct sockaddr *)&laddr, sizeof laddr, SEC));
        int a = photon_accept(lfd, NULL, NULL, SEC);
        CHECK(a >= 0, "accept after the interrupt: %s", strerror(errno));
        CHECK_OK(photon_close(a));
        CHECK_OK(photon_close(c));
        close_listener();
        break;
    }
    case K_CONNECT:
        CHECK_OK(photon_close(conn_fd)); /* photon.h: left mid-connect, close it */
        CHECK_OK(photon_close(fill_fd));
        close_listener();
        break;
    case K_WORKPOOL_CALL:
        /* "the work still runs to its end" */
        for (int i = 0; i < 300 && !atomic_load(&work_done); i++) {
            CHECK_OK(photon_thread_usleep(10 * MS));
        }
        CHECK(atomic_load(&work_done), "the interrupted call's work never finished");
        break;
    default: break;
    }
}

static void run_case(enum kind k, enum way w, int code) {
    static char what[160];
    snprintf(what, sizeof what, "%s interrupted %s (errno %d)", kind_name[k], way_name[w], code);
    atomic_store(&stage, what);
    setup(k);
    static struct victim v;
    memset(&v, 0, sizeof v);
    v.kind = k;
    v.way = w;
    v.code = code;
    v.ret = 99;
    photon_thread *th = spawn_joinable(victim_main, &v, 0);
    uint64_t sent_at;
    if (w == W_SAME_VCPU) {
        CHECK_OK(photon_thread_usleep(30 * MS));
        CHECK(atomic_load(&v.entered) && !atomic_load(&v.returned),
              "%s: the call did not wait (returned %ld, errno %d %s)", what, v.ret, v.err,
              strerror(v.err));
        sent_at = photon_now_us();
        CHECK_OK(photon_thread_interrupt(th, code));
        join_ok(th);
    } else if (w == W_PTHREAD) {
        struct remote r = {.v = &v, .th = th, .ret = 99};
        pthread_t pt;
        CHECK(pthread_create(&pt, NULL, remote_main, &r) == 0, "pthread_create");
        join_ok(th);
        CHECK(pthread_join(pt, NULL) == 0, "pthread_join");
        CHECK(r.ret == 0, "%s: photon_thread_interrupt from a pthread: %d (%s)", what, r.ret,
              strerror(r.err));
        CHECK(v.returned_at >= r.sent_at, "%s: the call returned (%ld, %s) before the interrupt",
              what, v.ret, strerror(v.err));
        sent_at = r.sent_at;
    } else {
        join_ok(th);
        sent_at = v.called_at;
    }
    uint64_t took = v.returned_at - sent_at;

    if (k == K_OFFLOAD) {
        /* uninterruptible: completes, and the interrupt stays pending */
        CHECK(v.ret == 0 && retval == (void *)0x66,
              "%s: photon_offload gave %ld (errno %d %s), value %p; want 0 and fn's value",
              what, v.ret, v.err, strerror(v.err), retval);
        CHECK(atomic_load(&work_done), "%s: returned before fn finished", what);
        CHECK(v.returned_at - v.called_at >= OFFLOAD_WORK_US - 20 * MS,
              "%s: returned after %" PRIu64 " us, before fn's %llu us", what,
              v.returned_at - v.called_at, (unsigned long long)OFFLOAD_WORK_US);
        CHECK(v.next_ret == -1 && v.next_err == code && v.next_took < PROMPT_US,
              "%s: the interrupt was not left pending: the next usleep gave %d (errno %d %s) "
              "after %" PRIu64 " us",
              what, v.next_ret, v.next_err, strerror(v.next_err), v.next_took);
        SAY("%-88s completed after %3" PRIu64 " ms; next call failed with it at once", what,
            (v.returned_at - v.called_at) / 1000);
    } else {
        CHECK(v.ret == -1 && v.err == code, "%s: want -1 with errno %d, got %ld with errno %d (%s)",
              what, code, v.ret, v.err, strerror(v.err));
        CHECK(took < PROMPT_US, "%s: returned %" PRIu64 " us after the interrupt", what, took);
        CHECK(v.next_ret == 0 && v.next_took >= NEXT_US,
              "%s: the interrupt was not consumed: the next usleep gave %d (errno %d %s) after "
              "%" PRIu64 " us",
              what, v.next_ret, v.next_err, strerror(v.next_err), v.next_took);
        SAY("%-88s -1/%-5d after %5" PRIu64 " us", what, code, took);
    }
    after(&v);
}

int main(void) {
    test_start("fault_interrupt_waits");
    test_init();
    pthread_t wd;
    CHECK(pthread_create(&wd, NULL, watchdog, NULL) == 0, "pthread_create watchdog");
    mtx = photon_mutex_new();
    cmtx = photon_mutex_new();
    cv = photon_cond_new();
    sem = photon_sem_new(0);
    rw = photon_rwlock_new();
    CHECK(mtx && cmtx && cv && sem && rw, "a lock _new failed");
    pool = photon_workpool_new(1, PHOTON_EVENT_DEFAULT);
    CHECK(pool != NULL, "photon_workpool_new: %s", strerror(errno));
    for (size_t i = 0; i < sizeof big; i++) big[i] = (unsigned char)(i * 13 + (i >> 9));
    photon_thread *tk = spawn_joinable(ticker, NULL, 0);

    const int special[] = {EINTR, ECANCELED, ETIMEDOUT};
    for (int k = 0; k < K_COUNT; k++) {
        for (int w = 0; w < W_COUNT; w++) {
            int n = k * W_COUNT + w;
            int code = n % 4 == 3 ? special[(n / 4) % 3] : 4000 + n;
            run_case((enum kind)k, (enum way)w, code);
        }
    }

    atomic_store(&stage, "teardown");
    atomic_store(&ticker_stop, 1);
    join_ok(tk);
    SAY("ticker: %" PRIu64 " ticks, longest gap %" PRIu64 " ms", ticks, ticker_max_gap / 1000);
    CHECK(ticker_max_gap < 250 * MS, "the vcpu stalled for %" PRIu64 " ms", ticker_max_gap / 1000);
    SAY("every lock is idle again: each _free returns 0");
    CHECK_OK(photon_mutex_free(mtx));
    CHECK_OK(photon_mutex_free(cmtx));
    CHECK_OK(photon_cond_free(cv));
    CHECK_OK(photon_sem_free(sem));
    CHECK_OK(photon_rwlock_free(rw));
    photon_workpool_free(pool);
    atomic_store(&finished, 1);
    CHECK(pthread_join(wd, NULL) == 0, "pthread_join watchdog");
    test_fini();
    SAY("fault_interrupt_waits: OK");
    return 0;
}
