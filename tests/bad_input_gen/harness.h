/*
 * harness.h: the C half of tests/bad_input_gen.rs.
 *
 * The Rust test parses include/photon.h, crosses it with its table of bad
 * inputs and writes one C file: an array CASES[] of struct case_def (each a
 * setup function, a call function, optionally the equivalent libc call, a
 * context and an expected result) followed by `#include "harness_main.h"`.
 * This header holds what every case uses: the fixtures (lazily created
 * fds, locks, threads, pools, servers and paths, named by the macros the
 * table uses: PIPE_R(), MUTEX(), TH(), ...), and the helper entries.
 *
 * Contexts a call runs in (one forked child per case):
 *  V  on a vcpu: main called photon_init and makes the call as the vcpu's main
 *     photon thread;
 *  T  on a vcpu, in a photon thread main created (and joins);
 *  P  in a plain pthread while main is a vcpu (blocked in pthread_join);
 *  N  in a process that never called photon_init;
 *  F  on main after photon_init + setup + photon_fini (use after fini).
 */
#ifndef PHOTON_BAD_INPUT_GEN_HARNESS_H
#define PHOTON_BAD_INPUT_GEN_HARNESS_H

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "photon.h"

/* Not every case uses every fixture or helper. */
#pragma GCC diagnostic ignored "-Wunused-function"

/* ---- values the table names */

#define T ((uint64_t)1000) /* every timed call waits 1 ms at most */
#define HUGE_FD (1 << 30)
/* A photon_netstack handle that names no stack (slot 0, a generation never used). */
#define FORGED_STACK ((photon_netstack *)(uintptr_t)0x7fff0001u)
#define HUGE_SIZE ((size_t)1 << 40)
#define FORGED_TH ((photon_thread *)(uintptr_t)0x12345)
#define FORGED_VCPU ((photon_vcpu *)(uintptr_t)0x7fff1234)
#define ENTRY return_arg
#define HANDLER close_conn
#define DTOR dtor_noop

enum ctx { CTX_V, CTX_T, CTX_P, CTX_N, CTX_F };
enum ret_kind { RET_INT, RET_PTR, RET_VOID, RET_U64 };
enum exp_kind {
    EXP_OK,       /* int >= 0, pointer non-NULL, void returned */
    EXP_VAL,      /* exactly val (pointer: 0 is NULL) */
    EXP_VAL_KEEP, /* exactly val, and errno left unchanged */
    EXP_ERR,      /* -1 / NULL with errno one of errs[] */
    EXP_ERR_ANY,  /* -1 / NULL, any errno */
    EXP_ANY,      /* anything: the call must only return */
    EXP_LIBC      /* the same return value and errno as the libc call */
};

struct res {
    long ret;
    int err;
    int done;
};

struct case_def {
    const char *text; /* the call as the table wrote it */
    const char *want; /* the expectation as the table wrote it */
    int ctx;
    int ret_kind;
    int exp_kind;
    long val;
    int errs[6];
    int nerrs;
    void (*setup)(void);
    void (*call)(struct res *);
    void (*libc)(struct res *);
};

/* ---- small helpers */

static inline int on_vcpu(void) {
    int saved = errno;
    int r = photon_vcpu_current() != NULL;
    errno = saved;
    return r;
}

static void *return_arg(void *arg) { return arg; }

static void *sleep_forever(void *arg) {
    (void)photon_thread_usleep(PHOTON_FOREVER); /* photon_fini interrupts it */
    return arg;
}

static int close_conn(void *userdata, int fd) {
    (void)userdata;
    return photon_close(fd);
}

static void dtor_noop(void *value) { (void)value; }

static void *stop_server_soon(void *arg) {
    (void)photon_thread_usleep(3000);
    (void)photon_server_stop((photon_server *)arg);
    return NULL;
}

static void *serve_forever(void *arg) {
    (void)photon_server_serve((photon_server *)arg, close_conn, NULL);
    return NULL;
}

/* Runs on a pool vcpu: a sleeping thread there, for "thread of another vcpu". */
static void *create_sleeper(void *arg) {
    (void)arg;
    return photon_thread_create(sleep_forever, NULL, 0);
}

static void *join_arg(void *arg) {
    (void)photon_thread_join((photon_thread *)arg, NULL);
    return NULL;
}

static void *lock_mutex_and_sleep(void *arg) {
    if (photon_mutex_lock((photon_mutex *)arg, PHOTON_FOREVER) == 0) {
        (void)photon_thread_usleep(PHOTON_FOREVER);
        (void)photon_mutex_unlock((photon_mutex *)arg);
    }
    return NULL;
}

static void *wrlock_and_sleep(void *arg) {
    if (photon_rwlock_wrlock((photon_rwlock *)arg, PHOTON_FOREVER) == 0) {
        (void)photon_thread_usleep(PHOTON_FOREVER);
        (void)photon_rwlock_unlock((photon_rwlock *)arg);
    }
    return NULL;
}

static photon_mutex *cond_wait_mutex;
static void *cond_wait_forever(void *arg) {
    if (photon_mutex_lock(cond_wait_mutex, PHOTON_FOREVER) == 0) {
        (void)photon_cond_wait((photon_cond *)arg, cond_wait_mutex, PHOTON_FOREVER);
        (void)photon_mutex_unlock(cond_wait_mutex);
    }
    return NULL;
}

static void *sem_wait_forever(void *arg) {
    (void)photon_sem_wait((photon_sem *)arg, 1000, PHOTON_FOREVER);
    return NULL;
}

/* Waits on a futex word (the word stays 0) until woken or interrupted. */
static void *futex_wait_forever(void *arg) {
    (void)photon_futex_wait((const uint32_t *)arg, 0, PHOTON_FOREVER);
    return NULL;
}

/* Ends itself with photon_thread_exit(arg); the return below never runs. */
static void *exit_with_arg(void *arg) {
    (void)photon_thread_exit(arg);
    return NULL;
}

/* Counts calls of an end callback (photon_thread_on_end). */
static int on_end_calls;
static void count_on_end(void *arg) {
    (void)arg;
    on_end_calls++;
}

/* Registers count_on_end, then returns. */
static void *register_on_end(void *arg) {
    (void)photon_thread_on_end(count_on_end, arg);
    return NULL;
}

/* Hides a constant from the compiler (no -Wstringop-overflow on libc calls). */
static inline size_t opaque_size(size_t x) {
    volatile size_t v = x;
    return v;
}

/* ---- fixtures: created on first use in a case, then reused in it */

static struct {
    char dir[200];
    int pipe_r, pipe_w, sock, sock_peer, udp, listen_fd, file_fd, ro_fd, devnull;
    struct sockaddr_in udp_addr, listen_addr;
    photon_mutex *mutex;
    photon_cond *cond;
    photon_sem *sem;
    photon_rwlock *rwlock;
    photon_workpool *pool;
    photon_server *server;
    int have_key, have_dead_key;
    uint32_t key, dead_key;
} fx = {.pipe_r = -1, .pipe_w = -1, .sock = -1, .sock_peer = -1, .udp = -1,
        .listen_fd = -1, .file_fd = -1, .ro_fd = -1, .devnull = -1};

/* Globals free for a case's own setup and call (semantic cases). */
static struct {
    photon_thread *th, *th2;
    photon_mutex *m;
    photon_cond *c;
    photon_sem *s;
    photon_rwlock *l;
    photon_server *srv;
    int fd, fd2, n;
    uint32_t key;
} G;

static char buf_space[1 << 16];
static struct iovec iov_space;
static struct msghdr msg_space, big_msg_space;
static struct sockaddr_storage saddr_space;
static socklen_t addrlen_space;
static struct stat stat_space;
static photon_stats stats_space, small_stats_space, zero_stats_space;
static uint32_t key_out;
static uint64_t u64_out;
static void *retval_out;
static char long_text[300];

static void fx_fail(const char *what) {
    printf("SETUP FAILED: %s: errno %d (%s)\n", what, errno, strerror(errno));
    fflush(stdout);
    _exit(3);
}

#define DIR_PATH() (fx.dir)
static char path_buf[8][300];
static const char *fx_path(int slot, const char *name) {
    snprintf(path_buf[slot], sizeof path_buf[slot], "%s/%s", fx.dir, name);
    return path_buf[slot];
}
static const char *FILE_PATH(void) {
    const char *p = fx_path(0, "file");
    if (access(p, F_OK) != 0) {
        int fd = open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
        if (fd < 0 || write(fd, "0123456789abcdef", 16) != 16) fx_fail("create file");
        close(fd);
    }
    return p;
}
#define NEW_PATH() fx_path(1, "new")
#define NEW_PATH2() fx_path(2, "new2")
#define UNIX_PATH() fx_path(3, "s.sock")
static const char *LONG_TEXT(void) {
    memset(long_text, 'a', sizeof long_text - 1);
    long_text[sizeof long_text - 1] = '\0';
    return long_text;
}

static int FILE_FD(void) {
    if (fx.file_fd < 0 && (fx.file_fd = open(FILE_PATH(), O_RDWR | O_CLOEXEC)) < 0) fx_fail("open file");
    return fx.file_fd;
}
static int RO_FD(void) {
    if (fx.ro_fd < 0 && (fx.ro_fd = open(FILE_PATH(), O_RDONLY | O_CLOEXEC)) < 0) fx_fail("open file ro");
    return fx.ro_fd;
}
static int DEVNULL(void) {
    if (fx.devnull < 0 && (fx.devnull = open("/dev/null", O_WRONLY | O_CLOEXEC)) < 0) fx_fail("open /dev/null");
    return fx.devnull;
}
static void fx_pipe(void) {
    int p[2];
    if (fx.pipe_r >= 0) return;
    if (pipe2(p, O_CLOEXEC) != 0) fx_fail("pipe");
    fx.pipe_r = p[0];
    fx.pipe_w = p[1];
}
static int PIPE_R(void) { fx_pipe(); return fx.pipe_r; }
static int PIPE_W(void) { fx_pipe(); return fx.pipe_w; }
static void fx_sockpair(void) {
    int sv[2];
    if (fx.sock >= 0) return;
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) fx_fail("socketpair");
    fx.sock = sv[0];
    fx.sock_peer = sv[1];
}
static int SOCK(void) { fx_sockpair(); return fx.sock; }
static int SOCK_PEER(void) { fx_sockpair(); return fx.sock_peer; }
static int fx_bound(int type, struct sockaddr_in *addr) {
    int fd = socket(AF_INET, type | SOCK_CLOEXEC, 0);
    socklen_t len = sizeof *addr;
    memset(addr, 0, sizeof *addr);
    addr->sin_family = AF_INET;
    addr->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || bind(fd, (struct sockaddr *)addr, sizeof *addr) != 0 ||
        getsockname(fd, (struct sockaddr *)addr, &len) != 0)
        fx_fail("bind");
    return fd;
}
static int UDP(void) {
    if (fx.udp < 0) fx.udp = fx_bound(SOCK_DGRAM, &fx.udp_addr);
    return fx.udp;
}
static const struct sockaddr *UDP_ADDR(void) { UDP(); return (const struct sockaddr *)&fx.udp_addr; }
/* 127.0.0.1, port 0: a bind to it always finds a free port (a fixed or
 * borrowed port number may be taken by another process's TCP socket). */
static const struct sockaddr *LOOPBACK_ANY_PORT(void) {
    static struct sockaddr_in a;
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = 0;
    return (const struct sockaddr *)&a;
}
static int LISTEN(void) {
    if (fx.listen_fd < 0) {
        fx.listen_fd = fx_bound(SOCK_STREAM, &fx.listen_addr);
        if (listen(fx.listen_fd, 16) != 0) fx_fail("listen");
    }
    return fx.listen_fd;
}
static const struct sockaddr *LISTEN_ADDR(void) { LISTEN(); return (const struct sockaddr *)&fx.listen_addr; }
static int NEW_TCP(void) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) fx_fail("socket");
    return fd;
}
/* A number that named a socket photon knew about, closed with photon_close.
 * Fixed at 900, so later fixtures do not reuse the number. */
static int CLOSED_FD(void) {
    int s = NEW_TCP();
    if (dup2(s, 900) != 900) fx_fail("dup2");
    close(s);
    if (on_vcpu()) (void)photon_wait_fd(900, PHOTON_WRITABLE, 0);
    (void)photon_close(900);
    return 900;
}
static void *BUF(void) { return buf_space; }
static struct iovec *IOV(void) {
    iov_space.iov_base = buf_space;
    iov_space.iov_len = 16;
    return &iov_space;
}
static struct msghdr *MSG(void) {
    memset(&msg_space, 0, sizeof msg_space);
    msg_space.msg_iov = IOV();
    msg_space.msg_iovlen = 1;
    return &msg_space;
}
/* One iovec of SIZE_MAX bytes (readv(2) and friends say EINVAL). */
static struct iovec *BIG_IOV(void) {
    static struct iovec v;
    v.iov_base = buf_space;
    v.iov_len = opaque_size(SIZE_MAX);
    return &v;
}
/* One iovec of 1 TiB over a 64 KiB buffer. */
static struct iovec *HUGE_IOV(void) {
    static struct iovec v;
    v.iov_base = buf_space;
    v.iov_len = HUGE_SIZE;
    return &v;
}
/* msg_iovlen past UIO_MAXIOV (the kernel says EMSGSIZE). */
static struct msghdr *BIG_MSG(void) {
    big_msg_space = *MSG();
    big_msg_space.msg_iovlen = 1025;
    return &big_msg_space;
}
static struct sockaddr *SADDR(void) { return (struct sockaddr *)&saddr_space; }
static socklen_t *ADDRLEN(void) {
    addrlen_space = sizeof saddr_space;
    return &addrlen_space;
}
static struct stat *STAT(void) { return &stat_space; }
static photon_stats *STATS(void) {
    stats_space.size = sizeof stats_space;
    return &stats_space;
}
static photon_stats *SMALL_STATS(void) {
    small_stats_space.size = 4;
    return &small_stats_space;
}
static photon_stats *ZERO_STATS(void) {
    zero_stats_space.size = 0;
    return &zero_stats_space;
}
static uint32_t *KEYP(void) { return &key_out; }
static void **RETVAL(void) { return &retval_out; }
static uint64_t *U64P(void) { return &u64_out; }
static uint32_t KEY(void) {
    if (!fx.have_key) {
        if (photon_key_create(&fx.key, NULL) != 0) fx_fail("photon_key_create");
        fx.have_key = 1;
    }
    return fx.key;
}
static uint32_t DEAD_KEY(void) {
    if (!fx.have_dead_key) {
        if (photon_key_create(&fx.dead_key, NULL) != 0 || photon_key_delete(fx.dead_key) != 0)
            fx_fail("dead key");
        fx.have_dead_key = 1;
    }
    return fx.dead_key;
}

static photon_mutex *MUTEX(void) {
    if (!fx.mutex && !(fx.mutex = photon_mutex_new())) fx_fail("photon_mutex_new");
    return fx.mutex;
}
/* Locked by main (only when main is on a vcpu). */
static photon_mutex *LOCKED_MUTEX(void) {
    if (on_vcpu() && photon_mutex_lock(MUTEX(), T) != 0) fx_fail("lock");
    return MUTEX();
}
static photon_cond *COND(void) {
    if (!fx.cond && !(fx.cond = photon_cond_new())) fx_fail("photon_cond_new");
    return fx.cond;
}
static photon_sem *SEM(void) {
    if (!fx.sem && !(fx.sem = photon_sem_new(1))) fx_fail("photon_sem_new");
    return fx.sem;
}
static photon_rwlock *RWLOCK(void) {
    if (!fx.rwlock && !(fx.rwlock = photon_rwlock_new())) fx_fail("photon_rwlock_new");
    return fx.rwlock;
}
static photon_rwlock *WRLOCKED_RW(void) {
    if (on_vcpu() && photon_rwlock_wrlock(RWLOCK(), T) != 0) fx_fail("wrlock");
    return RWLOCK();
}
static photon_rwlock *RDLOCKED_RW(void) {
    if (on_vcpu() && photon_rwlock_rdlock(RWLOCK(), T) != 0) fx_fail("rdlock");
    return RWLOCK();
}

/* A live, detached photon thread of main's vcpu that has not run yet (it
 * sleeps until interrupted once it runs); FORGED_TH where there is no vcpu. */
static photon_thread *TH(void) {
    photon_thread *th;
    if (!on_vcpu()) return FORGED_TH;
    if (!(th = photon_thread_create(sleep_forever, NULL, 0))) fx_fail("photon_thread_create");
    return th;
}
/* The same, made joinable. */
static photon_thread *JTH(void) {
    photon_thread *th = TH();
    if (on_vcpu() && photon_thread_enable_join(th) != 0) fx_fail("enable_join");
    return th;
}
/* A joinable thread that returns at once when it runs. */
static photon_thread *DONE_JTH(void) {
    photon_thread *th;
    if (!on_vcpu()) return FORGED_TH;
    if (!(th = photon_thread_create(return_arg, (void *)7, 0)) || photon_thread_enable_join(th) != 0)
        fx_fail("joinable thread");
    return th;
}
/* The handle of a detached thread that has ended. */
static photon_thread *STALE_TH(void) {
    photon_thread *th;
    if (!on_vcpu()) return FORGED_TH;
    if (!(th = photon_thread_create(return_arg, NULL, 0))) fx_fail("photon_thread_create");
    if (photon_thread_usleep(2000) != 0) fx_fail("usleep");
    return th;
}
static photon_thread *SELF(void) { return on_vcpu() ? photon_thread_self() : FORGED_TH; }

static photon_workpool *POOL(void) {
    if (!fx.pool && !(fx.pool = photon_workpool_new(1, PHOTON_EVENT_DEFAULT))) fx_fail("photon_workpool_new");
    return fx.pool;
}
static photon_vcpu *POOL_VCPU(void) {
    photon_vcpu *v = photon_workpool_vcpu(POOL(), 0);
    if (!v) fx_fail("photon_workpool_vcpu");
    return v;
}
/* A sleeping thread on the pool's vcpu (not the caller's). */
static photon_thread *POOL_TH(void) {
    void *th = NULL;
    if (photon_workpool_call(POOL(), create_sleeper, NULL, &th) != 0 || !th) fx_fail("pool thread");
    return (photon_thread *)th;
}
static photon_server *SERVER(void) {
    if (!fx.server && !(fx.server = photon_server_new_tcp("127.0.0.1", 0, 0))) fx_fail("photon_server_new_tcp");
    return fx.server;
}
static photon_server *UNIX_SERVER(void) {
    photon_server *s = photon_server_new_unix(UNIX_PATH(), 0);
    if (!s) fx_fail("photon_server_new_unix");
    return s;
}

#endif /* PHOTON_BAD_INPUT_GEN_HARNESS_H */
