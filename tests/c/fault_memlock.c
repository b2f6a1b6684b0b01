/*
 * Fault: the locked-memory limit too low for io_uring.
 *
 * Kernels before 5.12 charge io_uring's rings to RLIMIT_MEMLOCK, so a low
 * limit makes io_uring_setup fail with ENOMEM; newer kernels charge them to
 * the memory cgroup instead. Whichever this kernel is, photon_init must
 * succeed: on io_uring (that still works), or on epoll with a logged
 * warning that says how to raise the limit (DESIGN: "raise RLIMIT_MEMLOCK
 * where allowed and say how when not"). The process first drops
 * CAP_IPC_LOCK and CAP_SYS_RESOURCE from its effective capabilities (as
 * root, they would bypass the limit) and shows that the limit bites (mlock
 * of 64 KiB fails). Then:
 *  - soft limit 4 KiB under a higher hard limit: photon_init raises the
 *    soft limit to the hard one ("where allowed") when it sets io_uring up;
 *  - soft = hard = 4 KiB (nothing to raise): photon_init(DEFAULT) returns
 *    0; the engine is checked against the captured stderr (a fallback to
 *    epoll must be logged, with the ENOMEM hint when that was the reason;
 *    io_uring must log no fallback); sockets (200 concurrent connections),
 *    files and a 2-vcpu work pool (two more rings) all work under it;
 *  - photon_init(PHOTON_EVENT_IOURING) asked for explicitly on another
 *    thread: 0, or -1 with the setup error, logged.
 */
#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "check.h"
#include "fault_stderr.h"

#define SEC 1000000ULL
#define TINY 4096
#define CONNS 200

#define FALLBACK_MSG "io_uring unavailable, using epoll"
#define EXPLICIT_MSG "io_uring requested but unavailable"
#define MEMLOCK_HINT "locked-memory limit"

/* Drops `caps` from the effective set; returns those that were in it. */
static uint32_t drop_effective(uint32_t caps) {
    struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct d[2];
    memset(d, 0, sizeof d);
    CHECK_OK(syscall(SYS_capget, &h, d));
    uint32_t had = d[0].effective & caps;
    d[0].effective &= ~caps;
    CHECK_OK(syscall(SYS_capset, &h, d));
    return had;
}

static void set_memlock(rlim_t soft, rlim_t hard) {
    struct rlimit r = {soft, hard};
    CHECK_OK(setrlimit(RLIMIT_MEMLOCK, &r));
}

static struct rlimit get_memlock(void) {
    struct rlimit r;
    CHECK_OK(getrlimit(RLIMIT_MEMLOCK, &r));
    return r;
}

/* --- work under the engine --- */

static struct sockaddr_in server_addr;
static atomic_int served;

static int echo(void *userdata, int fd) {
    (void)userdata;
    char buf[512];
    for (;;) {
        ssize_t n = photon_read(fd, buf, sizeof buf, 5 * SEC);
        if (n <= 0 || photon_write_full(fd, buf, (size_t)n, 5 * SEC) != n) break;
    }
    photon_close(fd);
    atomic_fetch_add(&served, 1);
    return 0;
}

struct serve_arg {
    photon_server *s;
    int ret;
};

static void *serve_main(void *arg) {
    struct serve_arg *sa = arg;
    sa->ret = photon_server_serve(sa->s, echo, NULL);
    return NULL;
}

static photon_sem *clients_done;
static atomic_int client_errors;

static void *client(void *arg) {
    uintptr_t id = (uintptr_t)arg;
    int fd = photon_socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0 ||
        photon_connect(fd, (struct sockaddr *)&server_addr, sizeof server_addr, 5 * SEC) != 0) {
        atomic_fetch_add(&client_errors, 1);
    } else {
        for (int m = 0; m < 10; m++) {
            char out[64], in[64];
            for (size_t i = 0; i < sizeof out; i++) out[i] = (char)(id * 7 + (uintptr_t)m + i);
            if (photon_write_full(fd, out, sizeof out, 5 * SEC) != (ssize_t)sizeof out ||
                photon_read_full(fd, in, sizeof in, 5 * SEC) != (ssize_t)sizeof in ||
                memcmp(in, out, sizeof in) != 0) {
                atomic_fetch_add(&client_errors, 1);
                break;
            }
        }
    }
    if (fd >= 0) photon_close(fd);
    photon_sem_signal(clients_done, 1);
    return NULL;
}

static void sockets_work(void) {
    photon_server *s = photon_server_new_tcp("127.0.0.1", 0, 0);
    CHECK(s != NULL, "photon_server_new_tcp: %s", strerror(errno));
    memset(&server_addr, 0, sizeof server_addr);
    server_addr.sin_family = AF_INET;
    server_addr.sin_port = htons((uint16_t)photon_server_port(s));
    server_addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct serve_arg sa = {s, 99};
    photon_thread *st = spawn_joinable(serve_main, &sa, 0);
    clients_done = photon_sem_new(0);
    atomic_store(&served, 0);
    for (uintptr_t i = 0; i < CONNS; i++) {
        CHECK(photon_thread_create(client, (void *)i, 64 * 1024) != NULL, "create: %s",
              strerror(errno));
    }
    CHECK_OK(photon_sem_wait(clients_done, CONNS, 30 * SEC));
    CHECK(atomic_load(&client_errors) == 0, "%d clients failed", atomic_load(&client_errors));
    for (int i = 0; i < 300 && atomic_load(&served) < CONNS; i++) {
        CHECK_OK(photon_thread_usleep(10000));
    }
    CHECK(atomic_load(&served) == CONNS, "served %d", atomic_load(&served));
    CHECK_OK(photon_server_stop(s));
    join_ok(st);
    CHECK(sa.ret == 0, "serve: %d", sa.ret);
    photon_server_free(s);
    CHECK_OK(photon_sem_free(clients_done));
}

static void files_work(void) {
    char path[] = "/tmp/photon-fault-memlock-XXXXXX";
    int t = mkstemp(path);
    CHECK(t >= 0, "mkstemp: %s", strerror(errno));
    close(t);
    int fd = photon_open(path, O_RDWR, 0);
    CHECK(fd >= 0, "photon_open: %s", strerror(errno));
    static unsigned char out[1 << 20], in[1 << 20];
    for (size_t i = 0; i < sizeof out; i++) out[i] = (unsigned char)(i * 11 + (i >> 10));
    CHECK(photon_pwrite(fd, out, sizeof out, 0) == (ssize_t)sizeof out, "pwrite: %s",
          strerror(errno));
    CHECK_OK(photon_fsync(fd));
    CHECK(photon_pread(fd, in, sizeof in, 0) == (ssize_t)sizeof in, "pread: %s", strerror(errno));
    CHECK(memcmp(in, out, sizeof in) == 0, "file data differ");
    CHECK_OK(photon_close(fd));
    CHECK_OK(unlink(path));
}

static void *engine_of_pool_vcpu(void *arg) {
    (void)arg;
    return (void *)photon_engine_name();
}

static void pool_work(const char *engine) {
    photon_workpool *pool = photon_workpool_new(2, PHOTON_EVENT_DEFAULT);
    CHECK(pool != NULL, "photon_workpool_new(2) under the tiny limit: %s", strerror(errno));
    for (int i = 0; i < 2; i++) {
        void *name = NULL;
        CHECK_OK(photon_workpool_call(pool, engine_of_pool_vcpu, NULL, &name));
        CHECK(name != NULL && strcmp((const char *)name, engine) == 0,
              "a pool vcpu runs %s, the main one %s", name ? (const char *)name : "(null)",
              engine);
    }
    photon_workpool_free(pool);
}

/* --- explicit io_uring on a pthread --- */

struct explicit_result {
    int ret, err;
    const char *engine;
};

static void *explicit_iouring(void *arg) {
    struct explicit_result *r = arg;
    errno = 0;
    r->ret = photon_init(PHOTON_EVENT_IOURING, 0);
    r->err = errno;
    if (r->ret == 0) {
        r->engine = photon_engine_name();
        CHECK_OK(photon_fini());
    }
    return NULL;
}

int main(void) {
    CHECK_OK(setenv("PHOTON_LOG", "warn", 1));
    test_start("fault_memlock");
    const char *env = getenv("PHOTON_ENGINE");
    int env_epoll = env != NULL && strcmp(env, "epoll") == 0;

    struct rlimit orig = get_memlock();
    SAY("RLIMIT_MEMLOCK at start: soft %llu, hard %llu", (unsigned long long)orig.rlim_cur,
        (unsigned long long)orig.rlim_max);
    uint32_t had = drop_effective((1u << CAP_IPC_LOCK) | (1u << CAP_SYS_RESOURCE));
    SAY("dropped from the effective capabilities: CAP_IPC_LOCK %s, CAP_SYS_RESOURCE %s",
        had & (1u << CAP_IPC_LOCK) ? "(was set)" : "(was not set)",
        had & (1u << CAP_SYS_RESOURCE) ? "(was set)" : "(was not set)");

    int warned_already = 0; /* the fallback warning is logged once per process */
    rlim_t hard = orig.rlim_max == RLIM_INFINITY || orig.rlim_max > (64u << 20) ? (64u << 20)
                                                                               : orig.rlim_max;
    if (!env_epoll && hard > TINY) {
        SAY("soft limit %d under a hard limit of %llu: photon_init raises the soft one", TINY,
            (unsigned long long)hard);
        set_memlock(TINY, hard);
        struct captured cap;
        capture_start(&cap);
        errno = 0;
        int r = photon_init(PHOTON_EVENT_DEFAULT, 0);
        int err = errno;
        const char *e = r == 0 ? photon_engine_name() : "(none)";
        if (r == 0) CHECK_OK(photon_fini());
        warned_already = count_lines_with(capture_stop(&cap), FALLBACK_MSG) > 0;
        CHECK(r == 0, "photon_init: %d with errno %d (%s)", r, err, strerror(err));
        struct rlimit now = get_memlock();
        SAY("  engine %s; RLIMIT_MEMLOCK now soft %llu, hard %llu", e,
            (unsigned long long)now.rlim_cur, (unsigned long long)now.rlim_max);
        CHECK(now.rlim_cur == hard, "the soft limit was not raised to the hard one (%llu)",
              (unsigned long long)now.rlim_cur);
    }

    SAY("soft = hard = %d bytes: nothing can be raised", TINY);
    set_memlock(TINY, TINY);
    struct rlimit now = get_memlock();
    CHECK(now.rlim_cur == TINY && now.rlim_max == TINY, "setrlimit did not take");
    void *p = mmap(NULL, 65536, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(p != MAP_FAILED, "mmap: %s", strerror(errno));
    errno = 0;
    /* the raw system call: AddressSanitizer's mlock is a no-op */
    long ml = syscall(SYS_mlock, p, 65536);
    int mlerr = errno;
    CHECK(ml == -1 && (mlerr == ENOMEM || mlerr == EPERM),
          "mlock(64 KiB) under a 4 KiB limit without CAP_IPC_LOCK: %ld (%s): the limit does not "
          "bite",
          ml, strerror(mlerr));
    SAY("  the limit bites: mlock(64 KiB) fails with %s", strerror(mlerr));
    munmap(p, 65536);

    struct captured cap;
    capture_start(&cap);
    errno = 0;
    int r = photon_init(PHOTON_EVENT_DEFAULT, 0);
    int err = errno;
    const char *log = capture_stop(&cap);
    CHECK(r == 0, "photon_init(DEFAULT) under a %d-byte memlock limit: %d with errno %d (%s)",
          TINY, r, err, strerror(err));
    const char *engine = photon_engine_name();
    CHECK(engine != NULL, "no engine");
    int fallbacks = count_lines_with(log, FALLBACK_MSG);
    if (env_epoll) {
        CHECK(strcmp(engine, "epoll") == 0, "PHOTON_ENGINE=epoll gave %s", engine);
        CHECK(fallbacks == 0, "PHOTON_ENGINE=epoll logged an io_uring fallback");
        SAY("  PHOTON_ENGINE=epoll: epoll, nothing logged");
    } else if (strcmp(engine, "io_uring") == 0) {
        CHECK(fallbacks == 0, "io_uring works, yet a fallback was logged");
        SAY("  io_uring still works: this kernel does not charge its rings to RLIMIT_MEMLOCK");
    } else {
        CHECK(fallbacks == 1 || (warned_already && fallbacks == 0),
              "fell back to %s without one logged warning", engine);
        if (count_lines_with(log, "Cannot allocate memory") > 0) {
            CHECK(count_lines_with(log, MEMLOCK_HINT) == 1,
                  "the ENOMEM fallback does not say how to raise the locked-memory limit");
        }
        SAY("  fell back to epoll, and said so");
    }

    check_sqpoll_path(); /* PHOTON_IO_SQPOLL=1 (c_fault_memlock_sqpoll): SQPOLL under the limit */

    SAY("sockets (%d concurrent connections), files and a 2-vcpu pool work on %s", CONNS,
        engine);
    sockets_work();
    files_work();
    pool_work(engine);
    now = get_memlock();
    CHECK(now.rlim_cur == TINY && now.rlim_max == TINY, "the limit changed: %llu/%llu",
          (unsigned long long)now.rlim_cur, (unsigned long long)now.rlim_max);

    SAY("photon_init(PHOTON_EVENT_IOURING) explicitly, on a pthread");
    struct explicit_result x = {99, 0, NULL};
    capture_start(&cap);
    pthread_t pt;
    CHECK(pthread_create(&pt, NULL, explicit_iouring, &x) == 0, "pthread_create");
    CHECK(pthread_join(pt, NULL) == 0, "pthread_join");
    log = capture_stop(&cap);
    if (x.ret == 0) {
        CHECK(x.engine != NULL && strcmp(x.engine, "io_uring") == 0, "explicit io_uring gave %s",
              x.engine ? x.engine : "(null)");
        SAY("  0: io_uring");
    } else {
        CHECK(x.ret == -1 && x.err != 0, "explicit io_uring: %d with errno %d", x.ret, x.err);
        CHECK(count_lines_with(log, EXPLICIT_MSG) == 1, "the explicit failure was not logged");
        SAY("  -1 with errno %d (%s), logged", x.err, strerror(x.err));
    }

    CHECK_OK(photon_fini());
    SAY("fault_memlock: OK");
    return 0;
}
