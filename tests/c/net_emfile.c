/*
 * The server loop survives fd exhaustion (photon.h: "Survives fd
 * exhaustion: backs off and resumes"). RLIMIT_NOFILE is lowered so the
 * server can hold only a few connections; the clients' sockets live at fd
 * numbers above the limit (made before it was lowered), so only the
 * server's accepts run out. Clients connect (the kernel completes their
 * handshakes into the backlog) until the server's accept hits EMFILE: the
 * next client gets no echo. Then two clients close; their handlers see EOF
 * and close their fds; the server must resume accepting: the waiting
 * client and a fresh one get their echoes within a few seconds, and
 * photon_server_serve has not returned meanwhile.
 */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "check.h"

#define SEC 1000000ULL
#define HIGH_FD 900   /* client sockets are moved at or above this number */
#define SERVER_FDS 6  /* fds the server may still open under the lowered limit */
#define CLIENTS (SERVER_FDS + 2)

static atomic_int open_conns;   /* handlers holding a connection */
static atomic_int served_conns; /* connections accepted */

static int echo_handler(void *userdata, int fd) {
    (void)userdata;
    atomic_fetch_add(&open_conns, 1);
    atomic_fetch_add(&served_conns, 1);
    char buf[256];
    for (;;) {
        ssize_t n = photon_read(fd, buf, sizeof buf, 30 * SEC);
        if (n <= 0 || photon_write_full(fd, buf, (size_t)n, 5 * SEC) != n) {
            break;
        }
    }
    photon_close(fd);
    atomic_fetch_sub(&open_conns, 1);
    return 0;
}

struct serve_arg {
    photon_server *server;
    int ret;
    int err;
};

static void *serve_main(void *arg) {
    struct serve_arg *sa = arg;
    errno = 0;
    sa->ret = photon_server_serve(sa->server, echo_handler, NULL);
    sa->err = errno;
    return NULL;
}

/* A client socket moved up to fd number >= HIGH_FD. */
static int high_client(void) {
    int fd = photon_socket(AF_INET, SOCK_STREAM, 0);
    CHECK(fd >= 0, "photon_socket: %s", strerror(errno));
    int high = fcntl(fd, F_DUPFD_CLOEXEC, HIGH_FD);
    CHECK(high >= HIGH_FD, "F_DUPFD: %s", strerror(errno));
    CHECK_OK(photon_close(fd));
    return high;
}

static void send_byte(int fd, char c) {
    CHECK(photon_write(fd, &c, 1, SEC) == 1, "client write: %s", strerror(errno));
}

/* Waits up to `timeout` for the echo of `c`: 1 if it came, 0 on timeout. */
static int await_echo(int fd, char c, uint64_t timeout) {
    char got = 0;
    errno = 0;
    ssize_t r = photon_read(fd, &got, 1, timeout);
    if (r == -1 && errno == ETIMEDOUT) {
        return 0;
    }
    CHECK(r == 1 && got == c, "echo: got %zd (%s), byte %d, want %d", r, strerror(errno), got,
          c);
    return 1;
}

static uint64_t process_cpu_us(void) {
    struct rusage ru;
    CHECK_OK(getrusage(RUSAGE_SELF, &ru));
    return (uint64_t)ru.ru_utime.tv_sec * SEC + (uint64_t)ru.ru_utime.tv_usec +
           (uint64_t)ru.ru_stime.tv_sec * SEC + (uint64_t)ru.ru_stime.tv_usec;
}

static int lowest_free_fds(int below) {
    int n = 0;
    for (int fd = 0; fd < below; fd++) {
        if (fcntl(fd, F_GETFD) == -1 && errno == EBADF) {
            n++;
        }
    }
    return n;
}

int main(void) {
    test_start("net_emfile");
    test_init();

    struct rlimit orig;
    CHECK_OK(getrlimit(RLIMIT_NOFILE, &orig));
    CHECK(orig.rlim_cur > HIGH_FD + 64, "RLIMIT_NOFILE is only %llu",
          (unsigned long long)orig.rlim_cur);

    errno = 0;
    photon_server *server = photon_server_new_tcp("127.0.0.1", 0, 0);
    CHECK(server != NULL, "photon_server_new_tcp: %s", strerror(errno));
    struct sockaddr_in sin;
    memset(&sin, 0, sizeof sin);
    sin.sin_family = AF_INET;
    sin.sin_port = htons((uint16_t)photon_server_port(server));
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);

    int clients[CLIENTS + 1];
    for (int i = 0; i < CLIENTS + 1; i++) {
        clients[i] = high_client();
    }
    int fresh = clients[CLIENTS];

    /* the limit leaves exactly SERVER_FDS free numbers below it (fds open
     * at or above it, inherited ones included, stay usable) */
    int limit = 0;
    for (int free_seen = 0; free_seen < SERVER_FDS; limit++) {
        if (fcntl(limit, F_GETFD) == -1 && errno == EBADF) {
            free_seen++;
        }
    }
    CHECK(lowest_free_fds(limit) == SERVER_FDS && limit < HIGH_FD, "limit %d", limit);
    struct rlimit low = orig;
    low.rlim_cur = (rlim_t)limit;
    CHECK_OK(setrlimit(RLIMIT_NOFILE, &low));
    SAY("RLIMIT_NOFILE lowered to %d: the server can open %d more fds", limit, SERVER_FDS);

    struct serve_arg sa = {.server = server, .ret = 99};
    photon_thread *serve_th = spawn_joinable(serve_main, &sa, 0);

    SAY("clients connect one by one until one gets no echo (accept hit EMFILE)");
    int served = 0;
    int starved = -1;
    for (int i = 0; i < CLIENTS; i++) {
        CHECK_OK(photon_connect(clients[i], (struct sockaddr *)&sin, sizeof sin, SEC));
        send_byte(clients[i], (char)('a' + i));
        if (await_echo(clients[i], (char)('a' + i), 300000)) {
            served++;
            continue;
        }
        starved = i;
        break;
    }
    SAY("  %d clients served, client %d waits (connected, no echo in 300 ms)", served, starved);
    CHECK(starved >= 0, "all %d clients were served under a limit of %d fds", CLIENTS, limit);
    CHECK(served >= 1 && served <= SERVER_FDS, "%d clients served with %d free fds", served,
          SERVER_FDS);
    CHECK(atomic_load(&open_conns) == served, "%d handlers hold connections, %d served",
          atomic_load(&open_conns), served);
    CHECK(sa.ret == 99, "serve returned at EMFILE: %d (%s)", sa.ret, strerror(sa.err));

    SAY("still starved 500 ms later (the server backs off, does not give up or spin)");
    uint64_t cpu0 = process_cpu_us();
    CHECK(!await_echo(clients[starved], (char)('a' + starved), 500000),
          "echo before any fd was freed");
    uint64_t cpu = process_cpu_us() - cpu0;
    SAY("  %" PRIu64 " ms of CPU used in those 500 ms", cpu / 1000);
    CHECK(cpu < 250000, "the accept loop spins at EMFILE: %" PRIu64 " us CPU in 500 ms", cpu);
    CHECK(sa.ret == 99, "serve returned: %d (%s)", sa.ret, strerror(sa.err));

    SAY("two served clients close: their handlers close their fds");
    uint64_t t0 = photon_now_us();
    CHECK_OK(photon_close(clients[0]));
    CHECK_OK(photon_close(clients[1]));
    clients[0] = clients[1] = -1;

    SAY("the waiting client gets its echo within 3 s");
    CHECK(await_echo(clients[starved], (char)('a' + starved), 3 * SEC),
          "the server did not resume accepting within 3 s of fds being freed");
    SAY("  resumed %" PRIu64 " ms after the close", elapsed_us(t0) / 1000);

    SAY("a fresh client connects and gets its echo");
    CHECK_OK(photon_connect(fresh, (struct sockaddr *)&sin, sizeof sin, SEC));
    send_byte(fresh, 'Z');
    CHECK(await_echo(fresh, 'Z', 3 * SEC), "the fresh client got no echo within 3 s");
    CHECK(sa.ret == 99, "serve returned: %d (%s)", sa.ret, strerror(sa.err));

    SAY("restore the limit; close everything; photon_server_stop: serve returns 0");
    CHECK_OK(setrlimit(RLIMIT_NOFILE, &orig));
    for (int i = 0; i < CLIENTS + 1; i++) {
        if (clients[i] >= 0) {
            CHECK_OK(photon_close(clients[i]));
        }
    }
    for (int i = 0; i < 300 && atomic_load(&open_conns) > 0; i++) {
        CHECK_OK(photon_thread_usleep(10000));
    }
    CHECK(atomic_load(&open_conns) == 0, "%d handlers still open", atomic_load(&open_conns));
    CHECK_OK(photon_server_stop(server));
    join_ok(serve_th);
    CHECK(sa.ret == 0, "serve returned %d with errno %d (%s)", sa.ret, sa.err,
          strerror(sa.err));
    photon_server_free(server);
    SAY("  %d connections served in all", atomic_load(&served_conns));

    test_fini();
    SAY("net_emfile: OK");
    return 0;
}
