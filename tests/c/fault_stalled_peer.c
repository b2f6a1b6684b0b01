/*
 * Fault: peers that stop reading. An echo-style server (photon_server, one
 * vcpu) has STALLED connections whose clients ask for a flood and then
 * never read (small receive buffers, so the server's sends fill up fast),
 * and ECHO_CONNS ordinary connections served at the same time. Checked:
 *  - each flooding photon thread's photon_write, once the socket is full,
 *    returns -1 with ETIMEDOUT after its WRITE_TIMEOUT_US (not earlier, not
 *    much later); photon_write_full on the full socket too, after its own
 *    timeout (-1, or a short count if the kernel took a few more bytes);
 *    the handler then closes the connection;
 *  - meanwhile the vcpu keeps running its other photon threads: a ticker
 *    thread on the same vcpu makes progress with no gap over 100 ms once
 *    the vcpu's waits for a CPU are taken out (a clean-clone CI run had
 *    one raw 118 ms gap, and a 116 ms echo round trip with it, while other
 *    tests loaded both CPUs; a write that blocked the vcpu would stop it
 *    for good: its peer never reads);
 *  - and the other connections keep being served: a plain pthread's echo
 *    round trips go on during the whole stall, none slow;
 *  - the stalled connections all close (fd count back to where it was) and
 *    the server still accepts and serves a new connection afterwards.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "check.h"

#define MS 1000ULL
#define SEC 1000000ULL
#define STALLED 16
#define ECHO_CONNS 8
#define WRITE_TIMEOUT_US (500 * MS)
#define WRITE_FULL_TIMEOUT_US (300 * MS)
#define SLACK_US (250 * MS)
#define CHUNK (64 * 1024)

static struct sockaddr_in server_addr;

/* ------------------------------------------------------------------ */
/* server side (photon threads on the main vcpu)                       */

struct flood_result {
    int done;
    size_t written;          /* bytes that went out before the stall */
    long last_ret;           /* the photon_write that waited */
    int last_err;
    uint64_t last_took;      /* how long it waited */
    long full_ret;           /* photon_write_full on the full socket, cut short */
    int full_err;
    uint64_t full_took;
};

static struct flood_result floods[STALLED];
static atomic_int flood_slot;
static photon_sem *floods_done;
static atomic_int handlers_open;
static atomic_int echo_errors;
static unsigned char chunk[CHUNK];

static void flood(int fd) {
    int slot = atomic_fetch_add(&flood_slot, 1);
    CHECK(slot < STALLED, "too many flood connections");
    struct flood_result *r = &floods[slot];
    for (;;) {
        uint64_t t0 = photon_now_us();
        errno = 0;
        ssize_t w = photon_write(fd, chunk, sizeof chunk, WRITE_TIMEOUT_US);
        int e = errno;
        uint64_t took = elapsed_us(t0);
        if (w > 0) {
            r->written += (size_t)w;
            CHECK(r->written < (256u << 20), "the peer that never reads took %zu bytes",
                  r->written);
            continue;
        }
        r->last_ret = w;
        r->last_err = e;
        r->last_took = took;
        break;
    }
    /* The kernel may still take a little more now and then (its accounting
     * shrinks as queued buffers are merged, without a writability wake-up):
     * photon_write_full until one call is cut short by its timeout. */
    for (;;) {
        uint64_t t0 = photon_now_us();
        errno = 0;
        r->full_ret = photon_write_full(fd, chunk, sizeof chunk, WRITE_FULL_TIMEOUT_US);
        r->full_err = errno;
        r->full_took = elapsed_us(t0);
        if (r->full_ret != (ssize_t)sizeof chunk) break;
        r->written += sizeof chunk;
        CHECK(r->written < (256u << 20), "the peer that never reads took %zu bytes", r->written);
    }
    r->done = 1;
    CHECK_OK(photon_sem_signal(floods_done, 1));
}

static int handler(void *userdata, int fd) {
    (void)userdata;
    atomic_fetch_add(&handlers_open, 1);
    char cmd = 0;
    if (photon_read(fd, &cmd, 1, 5 * SEC) == 1) {
        if (cmd == 'F') {
            flood(fd);
        } else {
            char buf[4096];
            for (;;) {
                ssize_t n = photon_read(fd, buf, sizeof buf, 10 * SEC);
                if (n == 0) break;
                if (n < 0 || photon_write_full(fd, buf, (size_t)n, 5 * SEC) != n) {
                    atomic_fetch_add(&echo_errors, 1);
                    break;
                }
            }
        }
    }
    photon_close(fd);
    atomic_fetch_sub(&handlers_open, 1);
    return 0;
}

struct serve_arg {
    photon_server *server;
    int ret;
};

static void *serve_main(void *arg) {
    struct serve_arg *sa = arg;
    sa->ret = photon_server_serve(sa->server, handler, NULL);
    return NULL;
}

static atomic_int ticker_stop;
static uint64_t ticker_max_gap, ticks;

/* Ticks every 1 ms; a gap's time the vcpu waited for a CPU (the machine
 * busy with other work) is taken out of it (thread_run_delay_us). */
static void *ticker(void *arg) {
    (void)arg;
    uint64_t last = photon_now_us(), last_delay = thread_run_delay_us();
    while (!atomic_load(&ticker_stop)) {
        CHECK_OK(photon_thread_usleep(MS));
        uint64_t now = photon_now_us(), delay = thread_run_delay_us();
        uint64_t raw = now - last, os = delay - last_delay;
        uint64_t gap = raw > os ? raw - os : 0;
        if (gap > ticker_max_gap) ticker_max_gap = gap;
        last = now;
        last_delay = delay;
        ticks++;
    }
    return NULL;
}

/* ------------------------------------------------------------------ */
/* client side (plain pthreads, blocking sockets)                      */

static int client_connect(int rcvbuf) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    CHECK(fd >= 0, "socket: %s", strerror(errno));
    if (rcvbuf > 0) CHECK_OK(setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf));
    struct timeval tv = {5, 0};
    CHECK_OK(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv));
    CHECK_OK(setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv));
    int one = 1;
    CHECK_OK(setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one));
    CHECK_OK(connect(fd, (struct sockaddr *)&server_addr, sizeof server_addr));
    return fd;
}

static atomic_int echo_stop;
static atomic_int echo_started, echo_finished;
static _Atomic uint64_t echo_rounds, echo_max_rtt_us;

/* Round trips on ECHO_CONNS connections, one after another, until stopped. */
static void *echo_client(void *arg) {
    (void)arg;
    int fds[ECHO_CONNS];
    for (int i = 0; i < ECHO_CONNS; i++) {
        fds[i] = client_connect(0);
        CHECK(send(fds[i], "E", 1, MSG_NOSIGNAL) == 1, "send: %s", strerror(errno));
    }
    atomic_store(&echo_started, 1);
    unsigned seq = 0;
    while (!atomic_load(&echo_stop)) {
        for (int i = 0; i < ECHO_CONNS; i++) {
            char out[100], in[100];
            for (size_t j = 0; j < sizeof out; j++) out[j] = (char)(seq * 31 + j);
            seq++;
            uint64_t t0 = photon_now_us();
            CHECK(send(fds[i], out, sizeof out, MSG_NOSIGNAL) == (ssize_t)sizeof out,
                  "echo send: %s", strerror(errno));
            size_t got = 0;
            while (got < sizeof in) {
                ssize_t n = recv(fds[i], in + got, sizeof in - got, 0);
                CHECK(n > 0, "echo recv: %zd (%s): the connection was not served", n,
                      n < 0 ? strerror(errno) : "EOF");
                got += (size_t)n;
            }
            CHECK(memcmp(in, out, sizeof out) == 0, "echo: wrong bytes");
            uint64_t rtt = elapsed_us(t0);
            if (rtt > echo_max_rtt_us) echo_max_rtt_us = rtt;
            echo_rounds++;
        }
    }
    for (int i = 0; i < ECHO_CONNS; i++) close(fds[i]);
    atomic_store(&echo_finished, 1);
    return NULL;
}

static int stalled_fds[STALLED];

static void *stall_clients(void *arg) {
    (void)arg;
    for (int i = 0; i < STALLED; i++) {
        stalled_fds[i] = client_connect(4096);
        CHECK(send(stalled_fds[i], "F", 1, MSG_NOSIGNAL) == 1, "send: %s", strerror(errno));
        /* and never read */
    }
    return NULL;
}

static int count_fds(void) {
    DIR *d = opendir("/proc/self/fd");
    CHECK(d != NULL, "opendir /proc/self/fd: %s", strerror(errno));
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] != '.') n++;
    }
    closedir(d);
    return n - 1; /* the directory's own fd */
}

int main(void) {
    test_start("fault_stalled_peer");
    test_init();
    for (size_t i = 0; i < sizeof chunk; i++) chunk[i] = (unsigned char)(i * 7);
    floods_done = photon_sem_new(0);
    CHECK(floods_done != NULL, "photon_sem_new");

    photon_server *server = photon_server_new_tcp("127.0.0.1", 0, 0);
    CHECK(server != NULL, "photon_server_new_tcp: %s", strerror(errno));
    memset(&server_addr, 0, sizeof server_addr);
    server_addr.sin_family = AF_INET;
    server_addr.sin_port = htons((uint16_t)photon_server_port(server));
    server_addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int fds_before = count_fds();

    struct serve_arg sa = {.server = server, .ret = 99};
    photon_thread *serve_th = spawn_joinable(serve_main, &sa, 0);
    photon_thread *tk = spawn_joinable(ticker, NULL, 0);

    SAY("%d echo connections start round trips (a plain pthread)", ECHO_CONNS);
    pthread_t echo_pt, stall_pt;
    CHECK(pthread_create(&echo_pt, NULL, echo_client, NULL) == 0, "pthread_create");
    while (!atomic_load(&echo_started)) CHECK_OK(photon_thread_usleep(MS));
    CHECK_OK(photon_thread_usleep(100 * MS));

    SAY("%d clients ask for a flood and never read; each flooding photon_write has a %llu ms "
        "timeout",
        STALLED, (unsigned long long)(WRITE_TIMEOUT_US / 1000));
    uint64_t rounds0 = echo_rounds, ticks0 = ticks;
    uint64_t steal0 = machine_steal_us();
    uint64_t t0 = photon_now_us();
    ticker_max_gap = 0;
    echo_max_rtt_us = 0;
    CHECK(pthread_create(&stall_pt, NULL, stall_clients, NULL) == 0, "pthread_create");
    CHECK_OK(photon_sem_wait(floods_done, STALLED, 30 * SEC));
    uint64_t stall_time = elapsed_us(t0);
    uint64_t steal = machine_steal_us() - steal0;
    uint64_t rounds = echo_rounds - rounds0, nticks = ticks - ticks0;
    CHECK(pthread_join(stall_pt, NULL) == 0, "pthread_join"); /* it is done by now */

    for (int i = 0; i < STALLED; i++) {
        struct flood_result *r = &floods[i];
        CHECK(r->done, "flood %d did not finish", i);
        CHECK(r->last_ret == -1 && r->last_err == ETIMEDOUT,
              "flood %d: the write to the full socket gave %ld with errno %d (%s), want "
              "-1/ETIMEDOUT",
              i, r->last_ret, r->last_err, strerror(r->last_err));
        CHECK(r->last_took >= WRITE_TIMEOUT_US && r->last_took < WRITE_TIMEOUT_US + SLACK_US,
              "flood %d: the write timed out after %" PRIu64 " us, timeout %llu", i,
              r->last_took, (unsigned long long)WRITE_TIMEOUT_US);
        CHECK(r->full_ret < (long)CHUNK && r->full_err == ETIMEDOUT,
              "flood %d: write_full on the full socket gave %ld with errno %d (%s), want a "
              "short count or -1, errno ETIMEDOUT",
              i, r->full_ret, r->full_err, strerror(r->full_err));
        CHECK(r->full_took >= WRITE_FULL_TIMEOUT_US &&
                  r->full_took < WRITE_FULL_TIMEOUT_US + SLACK_US,
              "flood %d: write_full timed out after %" PRIu64 " us", i, r->full_took);
    }
    SAY("  all %d flooding threads got -1/ETIMEDOUT from photon_write after %" PRIu64
        " ms (%zu bytes had gone out), and from photon_write_full after %" PRIu64
        " ms (it returned %ld)",
        STALLED, floods[0].last_took / 1000, floods[0].written, floods[0].full_took / 1000,
        floods[0].full_ret);
    SAY("  during those %" PRIu64 " ms: the ticker ticked %" PRIu64 " times (longest gap %" PRIu64
        " ms); %" PRIu64 " echo round trips (slowest %" PRIu64 " ms); the hypervisor stole %" PRIu64
        " ms of the machine's CPUs",
        stall_time / 1000, nticks, ticker_max_gap / 1000, rounds, echo_max_rtt_us / 1000,
        steal / 1000);
    /* A gap the hypervisor's steal in the window can account for is the
     * host's, not photon's (the whole VM stood still). */
    CHECK(ticker_max_gap < 100 * MS + steal,
          "the vcpu stalled: the ticker's longest gap was %" PRIu64 " us (steal in the window %" PRIu64
          " us)",
          ticker_max_gap, steal);
    CHECK(nticks * 1000 >= stall_time / 4, "the ticker ticked only %" PRIu64 " times in %" PRIu64
                                           " ms",
          nticks, stall_time / 1000);
    CHECK(rounds >= 100, "only %" PRIu64 " echo round trips while the writes were stalled",
          rounds);
    CHECK(echo_max_rtt_us < 200 * MS, "an echo round trip took %" PRIu64 " us during the stall",
          echo_max_rtt_us);

    SAY("the stalled clients close; a new connection is served");
    for (int i = 0; i < STALLED; i++) close(stalled_fds[i]);
    atomic_store(&echo_stop, 1);
    /* the vcpu serves the echo client's last round trip meanwhile: wait as
     * a photon thread, not in pthread_join */
    for (int i = 0; i < 1000 && !atomic_load(&echo_finished); i++) {
        CHECK_OK(photon_thread_usleep(5 * MS));
    }
    CHECK(atomic_load(&echo_finished), "the echo client did not finish");
    CHECK(pthread_join(echo_pt, NULL) == 0, "pthread_join");
    for (int i = 0; i < 500 && atomic_load(&handlers_open) > 0; i++) {
        CHECK_OK(photon_thread_usleep(10 * MS));
    }
    CHECK(atomic_load(&handlers_open) == 0, "%d handlers still open",
          atomic_load(&handlers_open));
    int fds_after = count_fds();
    CHECK(fds_after == fds_before, "fds: %d before the connections, %d after", fds_before,
          fds_after);
    SAY("  fds back to %d", fds_after);
    CHECK(atomic_load(&echo_errors) == 0, "%d echo handlers failed", atomic_load(&echo_errors));

    int c = photon_socket(AF_INET, SOCK_STREAM, 0);
    CHECK(c >= 0, "photon_socket: %s", strerror(errno));
    CHECK_OK(photon_connect(c, (struct sockaddr *)&server_addr, sizeof server_addr, SEC));
    CHECK(photon_write(c, "Ehello", 6, SEC) == 6, "write: %s", strerror(errno));
    char buf[8];
    CHECK(photon_read_full(c, buf, 5, SEC) == 5 && memcmp(buf, "hello", 5) == 0,
          "the new connection got no echo: %s", strerror(errno));
    CHECK_OK(photon_close(c));

    atomic_store(&ticker_stop, 1);
    join_ok(tk);
    CHECK_OK(photon_server_stop(server));
    join_ok(serve_th);
    CHECK(sa.ret == 0, "serve returned %d", sa.ret);
    photon_server_free(server);
    CHECK_OK(photon_sem_free(floods_done));
    test_fini();
    SAY("fault_stalled_peer: OK");
    return 0;
}
