/*
 * soak_client: the load of the soak test (tests/soak.rs).
 *
 *   soak_client PORT CONNS WARMUP_SECS RUN_SECS [CHURN_PER_MILLE [SEED]]
 *
 * One vcpu, one photon thread per connection (64 KiB stacks), CONNS
 * connections to 127.0.0.1:PORT kept open. Each connection sends messages
 * of random size (1 B to 32 KiB, mostly small) and random content, one at
 * a time, and checks every byte of the echo against what it sent (the
 * content is regenerated from the message's seed, so nothing is stored).
 * CHURN_PER_MILLE (default 20) of the messages are cut short instead, half
 * each way:
 *  - disconnect: send a random prefix, read back (and check) its echo,
 *    close: the server sees EOF in the middle of a message;
 *  - reset: send a random prefix, maybe read part of its echo back
 *    (checked), set SO_LINGER {1, 0} and close: the server sees a reset
 *    (in its recv, or in its write of the echo);
 * and the connection is made again.
 *
 * Phases, each announced on stdout (the harness samples the server then):
 *   "connected conns=N held=H secs=S"  all CONNS connections have been
 *                                opened (traffic runs from each one's
 *                                connect on; H are open right now);
 *   then it waits for a line on stdin ("go", or EOF): the harness sends
 *   it once the server has accepted every connection;
 *   "warm ..."                   WARMUP_SECS of traffic after that;
 *   "run-done ..."               RUN_SECS after that; then every thread
 *                                finishes its message and closes;
 *   "final conns=N held_min=H held_end=E messages=M bytes_verified=B
 *    disconnects=D resets=R reconnects=C connect_errors=X errors=Y"
 * Exit status 0 only if no byte was wrong, no echo was missing or late,
 * and nothing but the intended disconnects and resets happened.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "photon.h"

#define SEC 1000000ULL
#define IO_TIMEOUT_US (60 * SEC) /* an echo later than this is an error */
#define CONNECT_TIMEOUT_US (20 * SEC)
#define CHUNK 4096
#define MAX_MSG 32768
#define STACK (64 * 1024)
#define CONNECTS_IN_FLIGHT 1024

static struct sockaddr_in server_addr;
static unsigned conns;
static unsigned churn_per_mille = 20;
static uint64_t seed = 0x50a4c0de;

static atomic_int stop;
static atomic_long held;         /* connections open now */
static atomic_long first_connected; /* threads whose first connect succeeded */
static atomic_ulong connects, connect_us_total, connect_us_max, slot_wait_us_total;
/* latencies: a message's round trip; a new connection's first round trip
 * counted from the start of its connect (includes the server's accept) */
static atomic_ulong rtt_us_total, rtt_us_max, first_us_total, first_us_max, firsts;
static atomic_ulong messages, bytes_sent, bytes_verified, disconnects, resets_done,
    reconnects, connect_errors, errors;
static photon_sem *connect_slots;
static photon_sem *threads_done;

static uint64_t next(uint64_t *s) { /* xorshift64* */
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545F4914F6CDD1DULL;
}

static void add_max(atomic_ulong *max, unsigned long v) {
    unsigned long m = atomic_load(max);
    while (v > m && !atomic_compare_exchange_weak(max, &m, v)) {
    }
}

/* The content of a message: a stream of bytes from its seed. */
struct stream {
    uint64_t state;
    uint64_t word;
    unsigned left; /* bytes left in word */
};

static void stream_start(struct stream *st, uint64_t msg_seed) {
    st->state = msg_seed | 1;
    st->left = 0;
}

static void stream_fill(struct stream *st, unsigned char *out, size_t n) {
    for (size_t i = 0; i < n; i++) {
        if (st->left == 0) {
            st->word = next(&st->state);
            st->left = 8;
        }
        out[i] = (unsigned char)st->word;
        st->word >>= 8;
        st->left--;
    }
}

static void fail_conn(unsigned id, const char *what, int err) {
    atomic_fetch_add(&errors, 1);
    fprintf(stderr, "soak_client: ERROR: connection %u: %s: %s (errno %d)\n", id, what,
            err ? strerror(err) : "-", err);
}

static int connect_one(unsigned id) {
    for (int attempt = 0; !atomic_load(&stop); attempt++) {
        uint64_t t0 = photon_now_us();
        photon_sem_wait(connect_slots, 1, PHOTON_FOREVER);
        uint64_t t1 = photon_now_us();
        int fd = photon_socket(AF_INET, SOCK_STREAM, 0);
        int err = errno;
        if (fd >= 0) {
            int one = 1;
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
            if (photon_connect(fd, (struct sockaddr *)&server_addr, sizeof server_addr,
                               CONNECT_TIMEOUT_US) == 0) {
                photon_sem_signal(connect_slots, 1);
                atomic_fetch_add(&held, 1);
                uint64_t took = photon_now_us() - t1;
                atomic_fetch_add(&connects, 1);
                atomic_fetch_add(&connect_us_total, took);
                atomic_fetch_add(&slot_wait_us_total, t1 - t0);
                add_max(&connect_us_max, took);
                return fd;
            }
            err = errno;
            photon_close(fd);
        }
        photon_sem_signal(connect_slots, 1);
        atomic_fetch_add(&connect_errors, 1);
        if (attempt < 3 || attempt % 100 == 0) {
            fprintf(stderr, "soak_client: connection %u: connect attempt %d: %s\n", id, attempt,
                    strerror(err));
        }
        if (attempt >= 1000) {
            fail_conn(id, "connect keeps failing", err);
            return -1;
        }
        photon_thread_usleep(10000 + (uint64_t)attempt * 1000);
    }
    return -1;
}

static void close_conn(int fd, int reset) {
    if (reset) {
        struct linger lg = {1, 0};
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    }
    photon_close(fd);
    atomic_fetch_sub(&held, 1);
}

/* Sends n bytes of the message stream; 0, or -1 (errno). */
static int send_part(int fd, struct stream *st, size_t n) {
    unsigned char buf[CHUNK];
    while (n > 0) {
        size_t k = n < sizeof buf ? n : sizeof buf;
        stream_fill(st, buf, k);
        if (photon_write_full(fd, buf, k, IO_TIMEOUT_US) != (ssize_t)k) return -1;
        atomic_fetch_add(&bytes_sent, k);
        n -= k;
    }
    return 0;
}

/* Reads n echoed bytes and checks them against the message stream; 0, or
 * -1 with errno (EPROTO for wrong bytes, ENODATA for an early EOF). */
static int check_part(unsigned id, int fd, struct stream *st, size_t n, uint64_t *offset) {
    unsigned char got[CHUNK], want[CHUNK];
    while (n > 0) {
        size_t k = n < sizeof got ? n : sizeof got;
        errno = 0;
        ssize_t r = photon_read_full(fd, got, k, IO_TIMEOUT_US);
        if (r != (ssize_t)k) {
            if (r >= 0 && errno == 0) errno = ENODATA;
            return -1;
        }
        stream_fill(st, want, k);
        for (size_t i = 0; i < k; i++) {
            if (got[i] != want[i]) {
                fprintf(stderr,
                        "soak_client: ERROR: connection %u: echoed byte %llu of the message is "
                        "0x%02x, sent 0x%02x\n",
                        id, (unsigned long long)(*offset + i), got[i], want[i]);
                errno = EPROTO;
                return -1;
            }
        }
        atomic_fetch_add(&bytes_verified, k);
        *offset += k;
        n -= k;
    }
    return 0;
}

static size_t random_size(uint64_t *rng) {
    uint64_t r = next(rng);
    unsigned pick = (unsigned)(r % 100);
    r >>= 8;
    if (pick < 70) return 1 + r % 256;
    if (pick < 95) return 257 + r % (4096 - 256);
    return 4097 + r % (MAX_MSG - 4096);
}

static void *conn_main(void *arg) {
    unsigned id = (unsigned)(uintptr_t)arg;
    uint64_t rng = seed ^ ((uint64_t)id * 0x9E3779B97F4A7C15ULL);
    next(&rng);
    uint64_t connect_started = photon_now_us();
    int fd = connect_one(id);
    int first = 1;
    if (fd >= 0) atomic_fetch_add(&first_connected, 1);
    while (fd >= 0 && !atomic_load(&stop)) {
        size_t len = random_size(&rng);
        uint64_t msg_seed = next(&rng);
        unsigned roll = (unsigned)(next(&rng) % 1000);
        struct stream out, back;
        stream_start(&out, msg_seed);
        stream_start(&back, msg_seed);
        uint64_t offset = 0;
        if (roll >= churn_per_mille || len < 2) {
            /* a whole message, echoed and checked */
            uint64_t t0 = photon_now_us();
            if (send_part(fd, &out, len) != 0) {
                fail_conn(id, "send", errno);
                break;
            }
            if (check_part(id, fd, &back, len, &offset) != 0) {
                fail_conn(id, "echo", errno);
                break;
            }
            uint64_t now = photon_now_us();
            atomic_fetch_add(&rtt_us_total, now - t0);
            add_max(&rtt_us_max, now - t0);
            if (first) {
                first = 0;
                atomic_fetch_add(&firsts, 1);
                atomic_fetch_add(&first_us_total, now - connect_started);
                add_max(&first_us_max, now - connect_started);
            }
            atomic_fetch_add(&messages, 1);
            continue;
        }
        /* cut short: a prefix only */
        size_t prefix = 1 + (size_t)(next(&rng) % (len - 1));
        int reset = roll % 2;
        if (send_part(fd, &out, prefix) != 0) {
            fail_conn(id, "send (prefix)", errno);
            break;
        }
        /* a disconnect reads the whole echo of the prefix first (closing
         * with unread data would make it a reset); a reset sometimes some */
        size_t readback = reset ? (size_t)(next(&rng) % (prefix + 1)) / 2 : prefix;
        if (readback > 0 && check_part(id, fd, &back, readback, &offset) != 0) {
            fail_conn(id, "echo (prefix)", errno);
            break;
        }
        close_conn(fd, reset);
        atomic_fetch_add(reset ? &resets_done : &disconnects, 1);
        connect_started = photon_now_us();
        first = 1;
        fd = connect_one(id);
        if (fd >= 0) atomic_fetch_add(&reconnects, 1);
    }
    if (fd >= 0) close_conn(fd, 0);
    photon_sem_signal(threads_done, 1);
    return NULL;
}

static void report(const char *tag, double secs) {
    printf("%s secs=%.1f held=%ld messages=%lu bytes_verified=%lu disconnects=%lu resets=%lu "
           "reconnects=%lu connect_errors=%lu errors=%lu\n",
           tag, secs, atomic_load(&held), atomic_load(&messages), atomic_load(&bytes_verified),
           atomic_load(&disconnects), atomic_load(&resets_done), atomic_load(&reconnects),
           atomic_load(&connect_errors), atomic_load(&errors));
    fflush(stdout);
}

int main(int argc, char **argv) {
    if (argc < 5) {
        fprintf(stderr, "usage: soak_client PORT CONNS WARMUP_SECS RUN_SECS [CHURN_PER_MILLE "
                        "[SEED]]\n");
        return 2;
    }
    unsigned port = (unsigned)strtoul(argv[1], NULL, 10);
    conns = (unsigned)strtoul(argv[2], NULL, 10);
    double warmup = strtod(argv[3], NULL), run = strtod(argv[4], NULL);
    if (argc > 5) churn_per_mille = (unsigned)strtoul(argv[5], NULL, 10);
    if (argc > 6) seed = strtoull(argv[6], NULL, 0);
    if (port == 0 || port > 65535 || conns == 0 || churn_per_mille > 1000) {
        fprintf(stderr, "soak_client: bad arguments\n");
        return 2;
    }
    struct rlimit nofile;
    if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < nofile.rlim_max) {
        nofile.rlim_cur = nofile.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &nofile) != 0) perror("soak_client: setrlimit");
    }
    memset(&server_addr, 0, sizeof server_addr);
    server_addr.sin_family = AF_INET;
    server_addr.sin_port = htons((uint16_t)port);
    server_addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);

    if (photon_init(PHOTON_EVENT_DEFAULT, 0) != 0) {
        perror("soak_client: photon_init");
        return 2;
    }
    connect_slots = photon_sem_new(CONNECTS_IN_FLIGHT);
    threads_done = photon_sem_new(0);
    uint64_t t0 = photon_now_us();
    for (unsigned i = 0; i < conns; i++) {
        if (photon_thread_create(conn_main, (void *)(uintptr_t)i, STACK) == NULL) {
            perror("soak_client: photon_thread_create");
            return 2;
        }
        if (i % 256 == 255) photon_thread_yield();
    }
    /* every connection open (each one's traffic starts at once) */
    while (atomic_load(&first_connected) < (long)conns && atomic_load(&errors) == 0) {
        if (photon_now_us() - t0 > 300 * SEC) {
            fprintf(stderr, "soak_client: ERROR: only %ld of %u connections after 300 s\n",
                    atomic_load(&first_connected), conns);
            atomic_fetch_add(&errors, 1);
            break;
        }
        photon_thread_usleep(20000);
    }
    printf("connected conns=%ld held=%ld secs=%.1f\n", atomic_load(&first_connected),
           atomic_load(&held), (double)(photon_now_us() - t0) / 1e6);
    fflush(stdout);

    /* the harness answers "go" once the server has accepted them all (the
     * kernel completes a connect before the server's accept); EOF: go now */
    char go[8];
    if (photon_read(0, go, sizeof go, 300 * SEC) < 0) {
        fprintf(stderr, "soak_client: ERROR: no \"go\" on stdin: %s\n", strerror(errno));
        atomic_fetch_add(&errors, 1);
    }

    uint64_t t_warm = photon_now_us();
    photon_thread_usleep((uint64_t)(warmup * 1e6));
    report("warm", (double)(photon_now_us() - t_warm) / 1e6);

    uint64_t t_run = photon_now_us();
    uint64_t m0 = atomic_load(&messages);
    long held_min = atomic_load(&held);
    while (photon_now_us() - t_run < (uint64_t)(run * 1e6)) {
        photon_thread_usleep(100000);
        long h = atomic_load(&held);
        if (h < held_min) held_min = h;
    }
    long held_end = atomic_load(&held);
    double run_secs = (double)(photon_now_us() - t_run) / 1e6;
    report("run-done", run_secs);
    printf("rate messages_per_sec=%.0f\n", (double)(atomic_load(&messages) - m0) / run_secs);

    atomic_store(&stop, 1);
    if (photon_sem_wait(threads_done, conns, 120 * SEC) != 0) {
        fprintf(stderr, "soak_client: ERROR: connections did not finish: %s\n", strerror(errno));
        atomic_fetch_add(&errors, 1);
    }
    unsigned long nc = atomic_load(&connects);
    printf("final conns=%u held_min=%ld held_end=%ld messages=%lu bytes_sent=%lu "
           "bytes_verified=%lu disconnects=%lu resets=%lu reconnects=%lu connect_errors=%lu "
           "errors=%lu connect_avg_us=%lu connect_max_us=%lu slot_wait_avg_us=%lu rtt_avg_us=%lu "
           "rtt_max_us=%lu first_echo_avg_us=%lu first_echo_max_us=%lu\n",
           conns, held_min, held_end, atomic_load(&messages), atomic_load(&bytes_sent),
           atomic_load(&bytes_verified), atomic_load(&disconnects), atomic_load(&resets_done),
           atomic_load(&reconnects), atomic_load(&connect_errors), atomic_load(&errors),
           nc ? atomic_load(&connect_us_total) / nc : 0, atomic_load(&connect_us_max),
           nc ? atomic_load(&slot_wait_us_total) / nc : 0,
           atomic_load(&messages) ? atomic_load(&rtt_us_total) / atomic_load(&messages) : 0,
           atomic_load(&rtt_us_max),
           atomic_load(&firsts) ? atomic_load(&first_us_total) / atomic_load(&firsts) : 0,
           atomic_load(&first_us_max));
    fflush(stdout);
    photon_sem_free(connect_slots);
    photon_sem_free(threads_done);
    if (photon_fini() != 0) perror("soak_client: photon_fini");
    return atomic_load(&errors) == 0 ? 0 : 1;
}
