/* A TCP echo server on N vcpus, for `cargo run --release --bin locks`.
 *
 *   locks_echo_vcpus VCPUS [PORT]
 *
 * A work pool of VCPUS vcpus (engine: PHOTON_EVENT_DEFAULT, so PHOTON_ENGINE
 * picks it); on each, a photon thread started with photon_workpool_spawn
 * opens its own listening socket on the same port with
 * photon_server_new_tcp_flags(..., PHOTON_SERVER_REUSEPORT) (the kernel
 * spreads connections over them) and runs photon_server_serve, which starts
 * one photon thread per connection on that vcpu: it reads what has arrived
 * and writes it all back, until EOF. The first server picks the port (PORT,
 * default 0 = any free one); the others bind that port.
 *
 * The main thread is a plain pthread: once every vcpu is serving it prints
 * "PORT <n>" and waits until stdin reaches EOF (the driver closes it), then
 * stops the servers, frees the pool and prints
 *   RESULT conns=<accepted> bytes=<echoed> conns_vcpu0=<n> conns_vcpu1=<n> ...
 * Exit status 0 after a clean stop, 1 on any error (an error of a connection
 * other than the peer closing it counts). */
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdatomic.h>
#include <unistd.h>

#include "bench_common.h"
#include "photon.h"

#define MAX_VCPUS 64
#define BUF (64 * 1024)

struct vcpu_server {
    int index;
    photon_vcpu *vcpu;
    const char *engine;
    photon_server *server;
    atomic_ullong conns;
};

static struct vcpu_server servers[MAX_VCPUS];
static atomic_ullong bytes_echoed, conn_errors;
static atomic_int serving, serve_failed;
static uint16_t the_port;

static int echo(void *userdata, int fd) {
    struct vcpu_server *s = userdata;
    atomic_fetch_add_explicit(&s->conns, 1, memory_order_relaxed);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    char *buf = malloc(BUF);
    if (!buf) {
        photon_close(fd);
        atomic_fetch_add(&conn_errors, 1);
        return -1;
    }
    uint64_t total = 0;
    for (;;) {
        ssize_t n = photon_recv(fd, buf, BUF, 0, PHOTON_FOREVER);
        if (n == 0) break;
        if (n < 0) {
            /* the peer resetting, or our own stop (ECANCELED) are ends, not errors */
            if (errno != ECONNRESET && errno != ECANCELED && errno != EPIPE) {
                atomic_fetch_add(&conn_errors, 1);
            }
            break;
        }
        if (photon_write_full(fd, buf, (size_t)n, PHOTON_FOREVER) != n) {
            if (errno != ECONNRESET && errno != ECANCELED && errno != EPIPE) {
                atomic_fetch_add(&conn_errors, 1);
            }
            break;
        }
        total += (uint64_t)n;
    }
    atomic_fetch_add_explicit(&bytes_echoed, total, memory_order_relaxed);
    free(buf);
    photon_close(fd);
    return 0;
}

static void *serve_here(void *arg) {
    struct vcpu_server *s = arg;
    if (photon_server_serve(s->server, echo, s) != 0) {
        fprintf(stderr, "ERROR: photon_server_serve on vcpu %d: %s\n", s->index, strerror(errno));
        atomic_store(&serve_failed, 1);
    }
    atomic_fetch_sub(&serving, 1);
    return NULL;
}

static void *open_and_serve(void *arg) {
    struct vcpu_server *s = arg;
    s->vcpu = photon_vcpu_current();
    s->engine = photon_engine_name();
    s->server = photon_server_new_tcp_flags("127.0.0.1", the_port, 1024, PHOTON_SERVER_REUSEPORT);
    if (!s->server) {
        fprintf(stderr, "ERROR: photon_server_new_tcp_flags(port %u) on vcpu %d: %s\n", the_port, s->index,
                strerror(errno));
        atomic_store(&serve_failed, 1);
        return NULL;
    }
    if (s->index == 0 && the_port == 0) {
        int p = photon_server_port(s->server);
        if (p <= 0) BENCH_DIE("photon_server_port");
        the_port = (uint16_t)p;
    }
    atomic_fetch_add(&serving, 1);
    return serve_here(s);
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    int vcpus = argc > 1 ? atoi(argv[1]) : 0;
    if (vcpus < 1 || vcpus > MAX_VCPUS || argc > 3) {
        fprintf(stderr, "usage: locks_echo_vcpus VCPUS [PORT]\n");
        return 2;
    }
    the_port = argc > 2 ? (uint16_t)atoi(argv[2]) : 0;
    photon_workpool *pool = photon_workpool_new((uint32_t)vcpus, PHOTON_EVENT_DEFAULT);
    if (!pool) BENCH_DIE("photon_workpool_new(%d)", vcpus);
    for (int i = 0; i < vcpus; i++) {
        servers[i].index = i;
        /* one server per vcpu: photon_workpool_spawn goes round robin over
         * the pool (checked below) */
        if (i == 0) {
            /* the first one picks the port: wait for it before the others bind */
            if (photon_workpool_spawn(pool, open_and_serve, &servers[0]) != 0) BENCH_DIE("spawn");
            for (int t = 0; t < 5000 && atomic_load(&serving) < 1 && !atomic_load(&serve_failed); t++) {
                usleep(1000);
            }
        } else if (photon_workpool_spawn(pool, open_and_serve, &servers[i]) != 0) {
            BENCH_DIE("spawn");
        }
    }
    for (int t = 0; t < 5000 && atomic_load(&serving) < vcpus && !atomic_load(&serve_failed); t++) usleep(1000);
    if (atomic_load(&serve_failed) || atomic_load(&serving) != vcpus) {
        fprintf(stderr, "ERROR: only %d of %d vcpus serving\n", atomic_load(&serving), vcpus);
        return 1;
    }
    for (int i = 0; i < vcpus; i++) {
        if (servers[i].vcpu != photon_workpool_vcpu(pool, (uint32_t)i)) {
            fprintf(stderr, "ERROR: server %d did not land on pool vcpu %d\n", i, i);
            return 1;
        }
    }
    printf("PORT %u\n", the_port);

    char c;
    while (read(0, &c, 1) > 0) {
    }
    for (int i = 0; i < vcpus; i++) photon_server_stop(servers[i].server);
    for (int t = 0; t < 5000 && atomic_load(&serving) > 0; t++) usleep(1000);
    photon_workpool_free(pool); /* ends leftover connection threads (ECANCELED) */
    for (int i = 0; i < vcpus; i++) photon_server_free(servers[i].server);
    if (atomic_load(&serve_failed) || atomic_load(&conn_errors)) {
        fprintf(stderr, "ERROR: %llu connection errors\n", (unsigned long long)atomic_load(&conn_errors));
        return 1;
    }
    unsigned long long conns = 0;
    char per[512] = "";
    size_t off = 0;
    for (int i = 0; i < vcpus; i++) {
        unsigned long long n = atomic_load(&servers[i].conns);
        conns += n;
        if (off < sizeof per) off += (size_t)snprintf(per + off, sizeof per - off, " conns_vcpu%d=%llu", i, n);
    }
    printf("RESULT conns=%llu bytes=%llu engine=%s%s\n", conns, (unsigned long long)atomic_load(&bytes_echoed),
           servers[0].engine, per);
    return 0;
}
