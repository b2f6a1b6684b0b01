/* TLS echo client of the tls_echo benchmark: the same client for every
 * server. libphoton on one vcpu (epoll unless PHOTON_ENGINE says otherwise)
 * + the system's OpenSSL through include/photon_ssl.h, TLS 1.3 with
 * TLS_AES_128_GCM_SHA256 only (so every server runs the same cipher).
 *
 *   tls_echo_client PORT CA.pem CONNS SIZE WARMUP_S SECS
 *
 * CONNS photon threads, each a connection that writes SIZE bytes, reads
 * them back and checks them, over and over. After WARMUP_S seconds of all
 * connections running it prints "MEASURE begin", counts for SECS seconds,
 * prints "MEASURE end", then "RESULT mbps=... msgs=... secs=..." (MB/s of
 * payload echoed, 1 MB = 10^6 bytes). Exit 1 on any error or mismatch. */
#include <photon_ssl.h>

#include <arpa/inet.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_common.h"

static SSL_CTX *g_ctx;
static int g_port, g_size, g_connected, g_conns;
static volatile int g_stop, g_counting;
static uint64_t g_msgs;

static void *conn(void *arg) {
    const long id = (long)arg;
    const int fd = photon_socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons((uint16_t)g_port);
    if (photon_connect(fd, (struct sockaddr *)&a, sizeof a, 10000000) != 0) BENCH_DIE("connect %ld", id);
    const int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    SSL *ssl = SSL_new(g_ctx);
    photon_ssl_set_fd(ssl, fd, 10000000);
    SSL_set_tlsext_host_name(ssl, "localhost");
    SSL_set1_host(ssl, "localhost");
    if (photon_ssl_connect(ssl) != 0) {
        ERR_print_errors_fp(stderr);
        BENCH_DIE("handshake %ld", id);
    }
    g_connected++;
    char *out = malloc((size_t)g_size), *in = malloc((size_t)g_size);
    for (int i = 0; i < g_size; i++) out[i] = (char)(id * 31 + i);
    while (!g_stop) {
        out[0]++;
        if (photon_ssl_write(ssl, out, (size_t)g_size) != g_size) BENCH_DIE("write %ld", id);
        int got = 0;
        while (got < g_size) {
            const ssize_t n = photon_ssl_read(ssl, in + got, (size_t)(g_size - got));
            if (n <= 0) BENCH_DIE("read %ld", id);
            got += (int)n;
        }
        if (memcmp(in, out, (size_t)g_size) != 0) {
            errno = EBADMSG;
            BENCH_DIE("connection %ld: the echo differs", id);
        }
        if (g_counting) g_msgs++;
    }
    photon_ssl_shutdown(ssl);
    SSL_free(ssl);
    photon_close(fd);
    free(out);
    free(in);
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 7) {
        fprintf(stderr, "usage: tls_echo_client PORT CA CONNS SIZE WARMUP_S SECS\n");
        return 2;
    }
    g_port = atoi(argv[1]);
    g_conns = atoi(argv[3]);
    g_size = atoi(argv[4]);
    const double warmup = atof(argv[5]), secs = atof(argv[6]);
    if (photon_init(PHOTON_EVENT_DEFAULT, 0) != 0) BENCH_DIE("photon_init");
    g_ctx = SSL_CTX_new(TLS_client_method());
    if (g_ctx == NULL || SSL_CTX_load_verify_locations(g_ctx, argv[2], NULL) != 1) BENCH_DIE("CA");
    SSL_CTX_set_verify(g_ctx, SSL_VERIFY_PEER, NULL);
    SSL_CTX_set_min_proto_version(g_ctx, TLS1_3_VERSION);
    SSL_CTX_set_ciphersuites(g_ctx, "TLS_AES_128_GCM_SHA256");
    photon_thread **t = calloc((size_t)g_conns, sizeof *t);
    for (long i = 0; i < g_conns; i++) {
        t[i] = photon_thread_create(conn, (void *)i, 256 * 1024);
        if (t[i] == NULL || photon_thread_enable_join(t[i]) != 0) BENCH_DIE("photon_thread_create");
    }
    const double t0 = bench_now_s();
    while (g_connected < g_conns) {
        if (bench_now_s() - t0 > 20) BENCH_DIE("only %d of %d connections up after 20 s", g_connected, g_conns);
        photon_thread_usleep(1000);
    }
    photon_thread_usleep((uint64_t)(warmup * 1e6));
    printf("MEASURE begin\n");
    fflush(stdout);
    g_counting = 1;
    const double m0 = bench_now_s();
    photon_thread_usleep((uint64_t)(secs * 1e6));
    g_counting = 0;
    const double took = bench_now_s() - m0;
    const uint64_t msgs = g_msgs;
    printf("MEASURE end\n");
    fflush(stdout);
    g_stop = 1;
    for (int i = 0; i < g_conns; i++) photon_thread_join(t[i], NULL);
    printf("RESULT mbps=%.3f msgs=%llu secs=%.4f\n", (double)msgs * g_size / took / 1e6, (unsigned long long)msgs,
           took);
    SSL_CTX_free(g_ctx);
    photon_fini();
    return 0;
}
