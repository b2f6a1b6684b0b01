/*
 * Fault: io_uring unavailable at init -> epoll, and the fallback is logged.
 * (net_iouring_fallback.c checks the fallback itself and that echo works on
 * it, but not the log line; this program checks the log.)
 *
 * A seccomp filter makes io_uring_setup fail with EPERM, as container
 * runtimes do. stderr is captured (fault_stderr.h; the library logs with
 * write(2) on fd 2, PHOTON_LOG=warn). Checked:
 *  - before the filter, photon_init(DEFAULT) on this host logs no fallback;
 *  - with PHOTON_ENGINE=epoll, photon_init(DEFAULT) is epoll and logs no
 *    fallback either (io_uring is not even tried);
 *  - PHOTON_ENGINE=io_uring and unset: photon_init(DEFAULT) succeeds on
 *    epoll (photon.h: "Use io_uring when this kernel and process allow it,
 *    else epoll (with one logged warning saying why)"), a socket round trip
 *    works; a WARN line says io_uring is unavailable, that epoll is used,
 *    and why (io_uring_setup: Operation not permitted), and the warning is
 *    not repeated for every vcpu (a second vcpu on a pthread falls back
 *    too);
 *  - photon_init(PHOTON_EVENT_IOURING) asked for explicitly fails (EPERM or
 *    ENOSYS) and logs that too.
 */
#include <arpa/inet.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "check.h"
#include "fault_stderr.h"

#define SEC 1000000ULL

#ifndef __NR_io_uring_setup
#define __NR_io_uring_setup 425
#endif

#if defined(__x86_64__)
#define THIS_AUDIT_ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define THIS_AUDIT_ARCH AUDIT_ARCH_AARCH64
#else
#error "add this architecture's AUDIT_ARCH_*"
#endif

#define FALLBACK_MSG "io_uring unavailable, using epoll"
#define EXPLICIT_MSG "io_uring requested but unavailable"

static void deny_io_uring_setup(void) {
    struct sock_filter prog[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, THIS_AUDIT_ARCH, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (EPERM & SECCOMP_RET_DATA)),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog fprog = {.len = (unsigned short)(sizeof prog / sizeof prog[0]),
                               .filter = prog};
    CHECK_OK(prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0));
    CHECK_OK(prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &fprog, 0, 0));
    unsigned char params[120];
    memset(params, 0, sizeof params);
    CHECK_ERRNO(syscall(__NR_io_uring_setup, 4, params), EPERM);
}

static const char *init_default(void) {
    errno = 0;
    int r = photon_init(PHOTON_EVENT_DEFAULT, 0);
    int err = errno;
    CHECK(r == 0, "photon_init(DEFAULT): %d with errno %d (%s)", r, err, strerror(err));
    const char *name = photon_engine_name();
    CHECK(name != NULL, "photon_engine_name is NULL on a vcpu");
    return name;
}

/* A loopback TCP round trip through photon calls on the current vcpu. */
static void round_trip(void) {
    int fds[2];
    tcp_loopback_pair(fds, 0);
    char buf[8];
    CHECK(photon_write(fds[0], "ping", 4, SEC) == 4, "write: %s", strerror(errno));
    CHECK(photon_read_full(fds[1], buf, 4, SEC) == 4 && memcmp(buf, "ping", 4) == 0, "read");
    CHECK_OK(photon_close(fds[1]));
    CHECK_OK(photon_close(fds[0]));
}

static const char *_Atomic second_engine;

static void *second_vcpu(void *arg) {
    (void)arg;
    atomic_store(&second_engine, init_default());
    round_trip();
    CHECK_OK(photon_fini());
    return NULL;
}

int main(void) {
    /* the library reads PHOTON_LOG once, at its first photon_init */
    CHECK_OK(setenv("PHOTON_LOG", "warn", 1));
    test_start("fault_iouring_fallback_log");
    const char *env = getenv("PHOTON_ENGINE");
    int env_epoll = env != NULL && strcmp(env, "epoll") == 0;
    struct captured cap;

    SAY("before the filter: photon_init(DEFAULT) logs no fallback on this host");
    capture_start(&cap);
    const char *e0 = init_default();
    SAY("  engine %s", e0);
    round_trip();
    CHECK_OK(photon_fini());
    const char *log = capture_stop(&cap);
    int host_has_uring = strcmp(e0, "io_uring") == 0 || env_epoll;
    if (host_has_uring) {
        CHECK(count_lines_with(log, FALLBACK_MSG) == 0, "a fallback was logged before the filter");
    } else {
        SAY("NOTICE: this host has no usable io_uring: the fallback was logged already");
    }

    SAY("seccomp filter installed: io_uring_setup fails with EPERM");
    deny_io_uring_setup();

    if (env_epoll) {
        SAY("PHOTON_ENGINE=epoll: photon_init(DEFAULT) is epoll, logs nothing");
        capture_start(&cap);
        const char *e = init_default();
        CHECK(strcmp(e, "epoll") == 0, "engine %s", e);
        round_trip();
        CHECK_OK(photon_fini());
        log = capture_stop(&cap);
        CHECK(count_lines_with(log, FALLBACK_MSG) == 0,
              "PHOTON_ENGINE=epoll logged an io_uring fallback: io_uring was tried");
    }

    SAY("PHOTON_ENGINE=io_uring, then unset, and a second vcpu: each falls back to epoll");
    capture_start(&cap);
    CHECK_OK(setenv("PHOTON_ENGINE", "io_uring", 1));
    const char *e1 = init_default();
    CHECK(strcmp(e1, "epoll") == 0, "PHOTON_ENGINE=io_uring without io_uring: engine %s", e1);
    round_trip();
    CHECK_OK(photon_fini());
    CHECK_OK(unsetenv("PHOTON_ENGINE"));
    const char *e2 = init_default();
    CHECK(strcmp(e2, "epoll") == 0, "PHOTON_ENGINE unset without io_uring: engine %s", e2);
    pthread_t pt;
    CHECK(pthread_create(&pt, NULL, second_vcpu, NULL) == 0, "pthread_create");
    /* a blocking join is fine here: no photon thread of this vcpu is needed */
    CHECK(pthread_join(pt, NULL) == 0, "pthread_join");
    CHECK(strcmp(atomic_load(&second_engine), "epoll") == 0, "second vcpu engine %s",
          atomic_load(&second_engine));
    round_trip();
    CHECK_OK(photon_fini());
    log = capture_stop(&cap);
    int warnings = count_lines_with(log, FALLBACK_MSG);
    SAY("  %d fallback warning line(s) for 3 fallbacks", warnings);
    CHECK(warnings >= 1, "no log line says \"" FALLBACK_MSG "\"");
    CHECK(warnings <= 3, "%d fallback lines for 3 inits", warnings);
    /* and nothing else is logged: with PHOTON_IO_SQPOLL=1 (c_api runs it so)
     * a "SQPOLL refused; using a ring without it" line at every init
     * misled, io_uring being refused altogether */
    CHECK(count_lines_with(log, "photon: ") == warnings,
          "%d log lines, %d of them the fallback: the others mislead", count_lines_with(log, "photon: "),
          warnings);
    if (host_has_uring) {
        CHECK(warnings == 1, "the fallback warning was repeated %d times (photon.h: \"one "
                             "logged warning\")",
              warnings);
    }
    int good = 0;
    const char *line = strstr(log, FALLBACK_MSG);
    if (line != NULL) {
        while (line > log && line[-1] != '\n') line--;
        const char *end = strchr(line, '\n');
        char buf[1024];
        size_t len = end ? (size_t)(end - line) : strlen(line);
        if (len >= sizeof buf) len = sizeof buf - 1;
        memcpy(buf, line, len);
        buf[len] = '\0';
        SAY("  the warning: %s", buf);
        CHECK(strstr(buf, "WARN") != NULL, "the fallback line is not at level WARN: %s", buf);
        CHECK(strstr(buf, "io_uring_setup") != NULL && strstr(buf, "Operation not permitted"),
              "the fallback line does not say why (io_uring_setup: Operation not permitted): %s",
              buf);
        good = 1;
    }
    CHECK(good, "no fallback line");

    SAY("photon_init(PHOTON_EVENT_IOURING) explicitly: -1, and logged");
    capture_start(&cap);
    errno = 0;
    int r = photon_init(PHOTON_EVENT_IOURING, 0);
    int err = errno;
    log = capture_stop(&cap);
    CHECK(r == -1 && (err == EPERM || err == ENOSYS),
          "photon_init(IOURING) without io_uring: %d with errno %d (%s)", r, err, strerror(err));
    CHECK(count_lines_with(log, EXPLICIT_MSG) == 1,
          "no (or more than one) log line says \"" EXPLICIT_MSG "\"");
    CHECK(count_lines_with(log, "photon: ") == 1, "%d log lines: want the one saying why",
          count_lines_with(log, "photon: "));
    CHECK_NULL_ERRNO(photon_engine_name(), EPERM);

    SAY("fault_iouring_fallback_log: OK");
    return 0;
}
