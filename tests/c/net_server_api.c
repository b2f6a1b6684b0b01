/*
 * The server loop's affordances (issue 19):
 * - photon_server_new_fd adopts a socket the program bound (listening or
 *   not) and serves it; photon_server_fd gives it back; EBADF, ENOTSOCK
 *   and EINVAL (a datagram socket) otherwise, the fd staying the caller's;
 * - photon_server_set_sockopt: TCP_NODELAY is off on a connection accepted
 *   before the call and on on every connection after it; options the
 *   kernel refuses fail at once with its errno;
 * - photon_server_set_stack_size: a handler that needs 10 MiB of stack
 *   (more than the default 8 MiB) runs;
 * - photon_server_serve_on(s, 2, ...): connections are handled on two
 *   different vcpus (the caller's and one it started), EBUSY for a second
 *   serve meanwhile, 0 after photon_server_stop; EINVAL for 0 vcpus,
 *   EPERM off a vcpu;
 * - photon_server_stop_on_signal(s, SIGTERM): a child process serving on 2
 *   vcpus exits 0 after SIGTERM, with SIGTERM's previous action restored;
 *   a server stopped otherwise also restores it; a forked child that gets
 *   the signal dies of it without stopping the parent's server; SIGKILL
 *   gives EINVAL.
 * Every client here is a plain pthread with blocking sockets.
 */
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check.h"

#define SEC 1000000ULL

/* ---- a plain blocking client */

static int dial(int port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(fd >= 0, "socket: %s", strerror(errno));
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CHECK_OK(connect(fd, (struct sockaddr *)&a, sizeof a));
    return fd;
}

/* Sends "ping", expects the one-byte reply the handler computed. */
static char ask(int fd) {
    CHECK(write(fd, "ping", 4) == 4, "client write: %s", strerror(errno));
    char c = 0;
    CHECK(read(fd, &c, 1) == 1, "client read: %s", strerror(errno));
    return c;
}

/* ---- handlers */

/* Replies '1' if the connection has TCP_NODELAY set, else '0'. */
static int nodelay_handler(void *userdata, int fd) {
    (void)userdata;
    char buf[4];
    if (photon_read_full(fd, buf, 4, 10 * SEC) == 4) {
        int v = -1;
        socklen_t len = sizeof v;
        CHECK_OK(getsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &v, &len));
        char c = v ? '1' : '0';
        photon_write_full(fd, &c, 1, 10 * SEC);
    }
    photon_close(fd);
    return 0;
}

/* 160 frames of 64 KiB each: 10 MiB of stack, more than the default 8 MiB
 * (frames small enough that Valgrind does not take them for stack switches). */
#define FRAME (64u << 10)
#define DEPTH 160

static int __attribute__((noinline)) deep(int depth) {
    volatile char frame[FRAME];
    for (size_t i = 0; i < FRAME; i += 4096) frame[i] = (char)depth;
    frame[FRAME - 1] = 1;
    int below = depth > 1 ? deep(depth - 1) : 0;
    return below + frame[FRAME - 1];
}

static int big_stack_handler(void *userdata, int fd) {
    (void)userdata;
    char buf[4];
    if (photon_read_full(fd, buf, 4, 10 * SEC) == 4) {
        char c = deep(DEPTH) == DEPTH ? 'k' : '?';
        photon_write_full(fd, &c, 1, 10 * SEC);
    }
    photon_close(fd);
    return 0;
}

/* Records its vcpu, holds that vcpu's OS thread for 150 ms (a plain
 * usleep: the other vcpu must accept meanwhile), replies with the vcpu's
 * index (0 the serving caller's, 1 another). */
static photon_vcpu *caller_vcpu;
static atomic_int on_caller, on_other;

static int vcpu_handler(void *userdata, int fd) {
    (void)userdata;
    char buf[4];
    if (photon_read_full(fd, buf, 4, 10 * SEC) == 4) {
        int mine = photon_vcpu_current() == caller_vcpu;
        atomic_fetch_add(mine ? &on_caller : &on_other, 1);
        usleep(150 * 1000);
        char c = mine ? '0' : '1';
        photon_write_full(fd, &c, 1, 10 * SEC);
    }
    photon_close(fd);
    return 0;
}

/* ---- serving in a photon thread */

struct serve_arg {
    photon_server *server;
    uint32_t vcpus;     /* 0: photon_server_serve */
    photon_conn_handler handler;
    int ret, err;
    atomic_int done;
};

static void *serve_main(void *arg) {
    struct serve_arg *sa = arg;
    errno = 0;
    sa->ret = sa->vcpus ? photon_server_serve_on(sa->server, sa->vcpus, sa->handler, NULL)
                        : photon_server_serve(sa->server, sa->handler, NULL);
    sa->err = errno;
    atomic_store(&sa->done, 1);
    return NULL;
}

/* Clients run on plain pthreads while the vcpu serves. */
struct client_job {
    int port;
    int (*run)(int port);
    int result;
};

static void *client_main(void *arg) {
    struct client_job *j = arg;
    j->result = j->run(j->port);
    return NULL;
}

/* Runs `run(port)` on a pthread, waiting for it as a photon thread. */
static int client(int port, int (*run)(int port)) {
    struct client_job j = {.port = port, .run = run, .result = -1};
    pthread_t t;
    CHECK_OK(pthread_create(&t, NULL, client_main, &j));
    void *ret;
    /* Wait without blocking the vcpu: poll the pthread with photon sleeps. */
    while (pthread_tryjoin_np(t, &ret) == EBUSY) photon_thread_usleep(2000);
    return j.result;
}

static int nodelay_client(int port) {
    int fd = dial(port);
    char c = ask(fd);
    close(fd);
    return c;
}

static int big_stack_client(int port) {
    int fd = dial(port);
    char c = ask(fd);
    close(fd);
    return c;
}

/* conn 1, then (while conn 1's vcpu is held) conn 2: two vcpus serve. */
static int two_vcpus_client(int port) {
    int a = dial(port);
    CHECK(write(a, "ping", 4) == 4, "write a");
    usleep(40 * 1000); /* a's handler now holds its vcpu */
    int b = dial(port);
    char cb = ask(b);
    char ca = 0;
    CHECK(read(a, &ca, 1) == 1, "read a: %s", strerror(errno));
    close(a);
    close(b);
    return ca != cb ? 'y' : 'n';
}

static void stop_and_wait(photon_server *s, struct serve_arg *sa) {
    CHECK_OK(photon_server_stop(s));
    for (int i = 0; i < 5000 && !atomic_load(&sa->done); i++) photon_thread_usleep(1000);
    CHECK(atomic_load(&sa->done), "serve did not return after stop");
    CHECK(sa->ret == 0, "serve returned %d (errno %d %s)", sa->ret, sa->err, strerror(sa->err));
}

/* ---- parts */

static void test_new_fd_and_options(void) {
    SAY("photon_server_new_fd: bad fds keep their owner");
    CHECK_NULL_ERRNO(photon_server_new_fd(-1), EBADF);
    int p[2];
    CHECK_OK(pipe(p));
    CHECK_NULL_ERRNO(photon_server_new_fd(p[0]), ENOTSOCK);
    CHECK(fcntl(p[0], F_GETFD) >= 0, "the pipe was closed");
    close(p[0]);
    close(p[1]);
    int udp = socket(AF_INET, SOCK_DGRAM, 0);
    CHECK_NULL_ERRNO(photon_server_new_fd(udp), EINVAL);
    CHECK(fcntl(udp, F_GETFD) >= 0, "the datagram socket was closed");
    close(udp);

    SAY("photon_server_new_fd on a bound socket that is not listening yet");
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CHECK_OK(bind(fd, (struct sockaddr *)&a, sizeof a));
    socklen_t alen = sizeof a;
    CHECK_OK(getsockname(fd, (struct sockaddr *)&a, &alen));
    photon_server *s = photon_server_new_fd(fd);
    CHECK(s != NULL, "photon_server_new_fd: %s", strerror(errno));
    CHECK(photon_server_fd(s) == fd, "photon_server_fd %d, want %d", photon_server_fd(s), fd);
    CHECK(photon_server_port(s) == ntohs(a.sin_port), "port");
    CHECK_ERRNO(photon_server_fd(NULL), EINVAL);

    SAY("options: refused ones fail at once");
    int one = 1;
    CHECK_ERRNO(photon_server_set_sockopt(s, 9999, 1, &one, sizeof one), ENOPROTOOPT);
    CHECK_ERRNO(photon_server_set_sockopt(s, IPPROTO_TCP, TCP_NODELAY, NULL, sizeof one), EINVAL);
    char huge[512] = {0};
    CHECK_ERRNO(photon_server_set_sockopt(s, SOL_SOCKET, SO_KEEPALIVE, huge, sizeof huge), EINVAL);
    CHECK_ERRNO(photon_server_set_sockopt(NULL, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one), EINVAL);
    CHECK_ERRNO(photon_server_set_stack_size(s, (size_t)1 << 41), EINVAL);
    CHECK_ERRNO(photon_server_set_stack_size(NULL, 0), EINVAL);

    struct serve_arg sa = {.server = s, .handler = nodelay_handler};
    photon_thread_create(serve_main, &sa, 0);
    photon_thread_yield();
    int port = photon_server_port(s);
    SAY("TCP_NODELAY: off before photon_server_set_sockopt, on after");
    CHECK(client(port, nodelay_client) == '0', "TCP_NODELAY set without the option");
    CHECK_OK(photon_server_set_sockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one));
    for (int i = 0; i < 3; i++) CHECK(client(port, nodelay_client) == '1', "TCP_NODELAY not applied");
    stop_and_wait(s, &sa);
    photon_server_free(s);
    CHECK(fcntl(fd, F_GETFD) == -1 && errno == EBADF, "photon_server_free left the adopted fd open");

    SAY("photon_server_set_stack_size: a handler using 10 MiB of stack");
    s = photon_server_new_tcp("127.0.0.1", 0, 0);
    CHECK(s != NULL, "new_tcp: %s", strerror(errno));
    CHECK_OK(photon_server_set_stack_size(s, 16u << 20));
    struct serve_arg sb = {.server = s, .handler = big_stack_handler};
    photon_thread_create(serve_main, &sb, 0);
    photon_thread_yield();
    CHECK(client(photon_server_port(s), big_stack_client) == 'k', "big stack handler");
    stop_and_wait(s, &sb);
    photon_server_free(s);
}

static void *off_vcpu_serve_on(void *arg) {
    errno = 0;
    long r = photon_server_serve_on(arg, 2, vcpu_handler, NULL);
    return (void *)(r == -1 && errno == EPERM ? 1L : 0L);
}

static void test_serve_on(void) {
    SAY("photon_server_serve_on(2): bad input");
    photon_server *s = photon_server_new_tcp("127.0.0.1", 0, 0);
    CHECK(s != NULL, "new_tcp: %s", strerror(errno));
    CHECK_ERRNO(photon_server_serve_on(s, 0, vcpu_handler, NULL), EINVAL);
    CHECK_ERRNO(photon_server_serve_on(s, 1025, vcpu_handler, NULL), EINVAL);
    CHECK_ERRNO(photon_server_serve_on(s, 2, NULL, NULL), EINVAL);
    CHECK_ERRNO(photon_server_serve_on(NULL, 2, vcpu_handler, NULL), EINVAL);
    pthread_t t;
    void *ok;
    CHECK_OK(pthread_create(&t, NULL, off_vcpu_serve_on, s));
    CHECK_OK(pthread_join(t, &ok));
    CHECK(ok == (void *)1L, "serve_on off a vcpu: want EPERM");

    SAY("photon_server_serve_on(2): two vcpus accept and handle connections");
    caller_vcpu = photon_vcpu_current();
    struct serve_arg sa = {.server = s, .vcpus = 2, .handler = vcpu_handler};
    photon_thread_create(serve_main, &sa, 0);
    photon_thread_usleep(20 * 1000);
    CHECK_ERRNO(photon_server_serve(s, vcpu_handler, NULL), EBUSY);
    CHECK_ERRNO(photon_server_serve_on(s, 2, vcpu_handler, NULL), EBUSY);
    int port = photon_server_port(s);
    for (int round = 0; round < 3; round++)
        CHECK(client(port, two_vcpus_client) == 'y', "round %d: both connections on one vcpu", round);
    SAY("  handled on the caller's vcpu: %d, on the other: %d", atomic_load(&on_caller), atomic_load(&on_other));
    CHECK(atomic_load(&on_caller) >= 1 && atomic_load(&on_other) >= 1, "not served from two vcpus");
    stop_and_wait(s, &sa);
    photon_server_free(s);
}

/* ---- SIGTERM in a child process */

static void previous_handler(int sig) { (void)sig; }

static int child_serving(int ready_fd) {
    CHECK_OK(photon_init(PHOTON_EVENT_DEFAULT, 0));
    struct sigaction mine = {.sa_handler = previous_handler};
    sigemptyset(&mine.sa_mask);
    CHECK_OK(sigaction(SIGTERM, &mine, NULL));
    photon_server *s = photon_server_new_tcp("127.0.0.1", 0, 0);
    CHECK(s != NULL, "new_tcp: %s", strerror(errno));
    CHECK_ERRNO(photon_server_stop_on_signal(s, SIGKILL), EINVAL);
    CHECK_ERRNO(photon_server_stop_on_signal(s, 0), EINVAL);
    CHECK_ERRNO(photon_server_stop_on_signal(NULL, SIGTERM), EINVAL);
    CHECK_OK(photon_server_stop_on_signal(s, SIGTERM));
    struct sigaction now;
    CHECK_OK(sigaction(SIGTERM, NULL, &now));
    CHECK(now.sa_handler != previous_handler, "no handler installed for SIGTERM");
    int port = photon_server_port(s);
    CHECK(write(ready_fd, &port, sizeof port) == sizeof port, "ready");
    close(ready_fd);
    caller_vcpu = photon_vcpu_current();
    int r = photon_server_serve_on(s, 2, vcpu_handler, NULL);
    CHECK(r == 0, "serve_on after SIGTERM: %d (%s)", r, strerror(errno));
    photon_server_free(s);
    photon_thread_usleep(10 * 1000); /* the watcher ends */
    CHECK_OK(sigaction(SIGTERM, NULL, &now));
    CHECK(now.sa_handler == previous_handler, "SIGTERM's previous handler not restored");
    CHECK_OK(photon_fini());
    return 0;
}

static void test_sigterm(void) {
    SAY("photon_server_stop_on_signal(SIGTERM): a child serving on 2 vcpus exits cleanly");
    int ready[2];
    CHECK_OK(pipe(ready));
    pid_t pid = fork();
    CHECK(pid >= 0, "fork: %s", strerror(errno));
    if (pid == 0) {
        close(ready[0]);
        _exit(child_serving(ready[1]));
    }
    close(ready[1]);
    int port = 0;
    CHECK(read(ready[0], &port, sizeof port) == sizeof port, "child not ready");
    close(ready[0]);
    int fd = dial(port);
    ask(fd);
    close(fd);
    CHECK_OK(kill(pid, SIGTERM));
    int status = 0;
    for (int i = 0; i < 1000; i++) {
        pid_t w = waitpid(pid, &status, WNOHANG);
        if (w == pid) break;
        CHECK(w == 0, "waitpid: %s", strerror(errno));
        usleep(10 * 1000);
        CHECK(i < 999, "the child still runs 10 s after SIGTERM");
    }
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child ended with status %#x", status);
}

static void test_stop_restores(void) {
    SAY("a server stopped otherwise ends its signal watcher and restores SIGUSR1");
    photon_server *s = photon_server_new_tcp("127.0.0.1", 0, 0);
    CHECK_OK(photon_server_stop_on_signal(s, SIGUSR1));
    struct sigaction now;
    CHECK_OK(sigaction(SIGUSR1, NULL, &now));
    CHECK(now.sa_handler != SIG_DFL, "no handler for SIGUSR1");
    struct serve_arg sa = {.server = s, .handler = nodelay_handler};
    photon_thread_create(serve_main, &sa, 0);
    photon_thread_yield();
    SAY("a forked child that gets SIGUSR1 dies of it and leaves the parent's server serving");
    pid_t pid = fork();
    CHECK(pid >= 0, "fork: %s", strerror(errno));
    if (pid == 0) {
        raise(SIGUSR1);
        _exit(0);
    }
    int status = 0;
    while (waitpid(pid, &status, WNOHANG) == 0) photon_thread_usleep(1000);
    CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGUSR1, "child status %#x, want killed by SIGUSR1", status);
    photon_thread_usleep(20 * 1000);
    CHECK(!atomic_load(&sa.done), "the child's signal stopped the parent's server");
    stop_and_wait(s, &sa);
    photon_server_free(s);
    photon_thread_usleep(10 * 1000);
    CHECK_OK(sigaction(SIGUSR1, NULL, &now));
    CHECK(now.sa_handler == SIG_DFL, "SIGUSR1 not restored to SIG_DFL");
}

int main(void) {
    test_start("net_server_api");
    test_sigterm(); /* forks first, before this process is a vcpu */
    CHECK_OK(photon_init(PHOTON_EVENT_DEFAULT, 0));
    test_new_fd_and_options();
    test_serve_on();
    test_stop_restores();
    CHECK_OK(photon_fini());
    SAY("ok");
    return 0;
}
