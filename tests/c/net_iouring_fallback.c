/*
 * io_uring unavailable -> epoll. A seccomp filter makes io_uring_setup fail
 * with EPERM (as container runtimes do); then:
 * - photon_init(PHOTON_EVENT_DEFAULT) succeeds on epoll (photon.h: "Use
 *   io_uring when this kernel and process allow it, else epoll (with one
 *   logged warning saying why)"), with PHOTON_ENGINE unset and with
 *   PHOTON_ENGINE=io_uring, which falls back the same way;
 * - a TCP echo through photon_server works on the fallback engine, also on
 *   a second vcpu (a pthread) created after the filter;
 * - photon_init(PHOTON_EVENT_IOURING) asked for explicitly fails with -1:
 *   errno ENOSYS ("the engine asked for explicitly is unavailable") or the
 *   engine's setup error (EPERM here); the thread is then not a vcpu, and
 *   photon_init(PHOTON_EVENT_EPOLL) works after it.
 * Run with PHOTON_LOG=warn to see the fallback warning.
 */
#include <arpa/inet.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "check.h"

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

static void deny_io_uring_setup(void) {
    struct sock_filter prog[] = {
        /* another architecture's syscall numbers mean other things: allow */
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
    /* the filter works: a raw io_uring_setup now fails with EPERM */
    unsigned char params[120];
    memset(params, 0, sizeof params);
    CHECK_ERRNO(syscall(__NR_io_uring_setup, 4, params), EPERM);
}

/* --- a short echo through the server loop --- */

static int echo_handler(void *userdata, int fd) {
    (void)userdata;
    char buf[4096];
    for (;;) {
        ssize_t n = photon_read(fd, buf, sizeof buf, 5 * SEC);
        if (n <= 0 || photon_write_full(fd, buf, (size_t)n, 5 * SEC) != n) {
            break;
        }
    }
    photon_close(fd);
    return 0;
}

struct serve_arg {
    photon_server *server;
    int ret;
};

static void *serve_main(void *arg) {
    struct serve_arg *sa = arg;
    sa->ret = photon_server_serve(sa->server, echo_handler, NULL);
    return NULL;
}

static void echo_through_server(void) {
    photon_server *s = photon_server_new_tcp("127.0.0.1", 0, 0);
    CHECK(s != NULL, "photon_server_new_tcp: %s", strerror(errno));
    struct serve_arg sa = {.server = s, .ret = 99};
    photon_thread *th = spawn_joinable(serve_main, &sa, 0);
    struct sockaddr_in sin;
    memset(&sin, 0, sizeof sin);
    sin.sin_family = AF_INET;
    sin.sin_port = htons((uint16_t)photon_server_port(s));
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    for (int c = 0; c < 3; c++) {
        int fd = photon_socket(AF_INET, SOCK_STREAM, 0);
        CHECK(fd >= 0, "photon_socket: %s", strerror(errno));
        CHECK_OK(photon_connect(fd, (struct sockaddr *)&sin, sizeof sin, SEC));
        for (int m = 0; m < 20; m++) {
            unsigned char out[3000], in[3000];
            size_t len = 1 + (size_t)(m * 149 + c * 7) % sizeof out;
            for (size_t i = 0; i < len; i++) {
                out[i] = (unsigned char)(i * 5 + m + c);
            }
            CHECK(photon_write_full(fd, out, len, SEC) == (ssize_t)len, "write: %s",
                  strerror(errno));
            CHECK(photon_read_full(fd, in, len, SEC) == (ssize_t)len, "read: %s",
                  strerror(errno));
            CHECK(memcmp(in, out, len) == 0, "echo differs");
        }
        CHECK_OK(photon_close(fd));
    }
    CHECK_OK(photon_server_stop(s));
    join_ok(th);
    CHECK(sa.ret == 0, "serve returned %d", sa.ret);
    photon_server_free(s);
}

static void init_expect_epoll(uint64_t engine, const char *how) {
    errno = 0;
    int r = photon_init(engine, 0);
    int err = errno;
    CHECK(r == 0, "photon_init(%s) without io_uring: %d with errno %d (%s)", how, r, err,
          strerror(err));
    const char *name = photon_engine_name();
    CHECK(name != NULL && strcmp(name, "epoll") == 0,
          "photon_init(%s) without io_uring: engine \"%s\", want \"epoll\"", how,
          name ? name : "(null)");
}

static void *second_vcpu(void *arg) {
    (void)arg;
    init_expect_epoll(PHOTON_EVENT_DEFAULT, "DEFAULT, on a second vcpu");
    echo_through_server();
    CHECK_OK(photon_fini());
    return NULL;
}

int main(void) {
    test_start("net_iouring_fallback");
    unsetenv("PHOTON_ENGINE");

    SAY("before the filter: photon_init(DEFAULT) picks what this host offers");
    CHECK_OK(photon_init(PHOTON_EVENT_DEFAULT, 0));
    SAY("  engine %s", photon_engine_name());
    CHECK_OK(photon_fini());

    SAY("seccomp filter installed: io_uring_setup fails with EPERM");
    deny_io_uring_setup();

    SAY("PHOTON_ENGINE unset: photon_init(DEFAULT) succeeds on epoll; echo works");
    init_expect_epoll(PHOTON_EVENT_DEFAULT, "DEFAULT");
    echo_through_server();
    CHECK_OK(photon_fini());

    SAY("PHOTON_ENGINE=io_uring: photon_init(DEFAULT) falls back to epoll too");
    CHECK_OK(setenv("PHOTON_ENGINE", "io_uring", 1));
    init_expect_epoll(PHOTON_EVENT_DEFAULT, "DEFAULT with PHOTON_ENGINE=io_uring");
    echo_through_server();

    SAY("a second vcpu (a pthread made after the filter) falls back and echoes too");
    pthread_t pt;
    CHECK(pthread_create(&pt, NULL, second_vcpu, NULL) == 0, "pthread_create");
    CHECK(pthread_join(pt, NULL) == 0, "pthread_join");
    CHECK_OK(photon_fini());
    CHECK_OK(unsetenv("PHOTON_ENGINE"));

    SAY("photon_init(PHOTON_EVENT_IOURING) explicitly: -1 (ENOSYS, or the setup error EPERM)");
    errno = 0;
    int r = photon_init(PHOTON_EVENT_IOURING, 0);
    int err = errno;
    CHECK(r == -1 && (err == EPERM || err == ENOSYS),
          "photon_init(IOURING) without io_uring: want -1 with EPERM or ENOSYS, got %d with "
          "errno %d (%s)",
          r, err, strerror(err));
    SAY("  errno %s", err == EPERM ? "EPERM" : "ENOSYS");
    SAY("the failed init left no vcpu behind; photon_init(EPOLL) works after it");
    CHECK_NULL_ERRNO(photon_engine_name(), EPERM);
    CHECK_ERRNO(photon_fini(), EPERM);
    init_expect_epoll(PHOTON_EVENT_EPOLL, "EPOLL");
    echo_through_server();
    CHECK_OK(photon_fini());

    SAY("net_iouring_fallback: OK");
    return 0;
}
