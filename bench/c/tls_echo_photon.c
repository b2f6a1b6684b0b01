/* TLS echo server: libphoton (one vcpu; PHOTON_ENGINE picks the engine) +
 * the system's OpenSSL through include/photon_ssl.h. The libphoton row of
 * the tls_echo benchmark (bench/src/bin/tls_echo.rs).
 *
 *   tls_echo_photon PORT CERT.pem KEY.pem [ktls]
 *
 * Listens on 127.0.0.1:PORT (0 = any), prints "listening on PORT" and serves
 * until killed: a photon thread per connection, handshake, then read up to
 * 16 KiB and write it back, until close_notify or EOF. With "ktls", asks
 * OpenSSL for kernel TLS (used where the kernel has the TLS ULP). */
#include <photon_ssl.h>

#include <arpa/inet.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_common.h"

static SSL_CTX *g_ctx;
static int g_ktls;

static void *serve(void *arg) {
    const int fd = (int)(long)arg;
    SSL *ssl = SSL_new(g_ctx);
    if (ssl == NULL || photon_ssl_set_fd(ssl, fd, PHOTON_FOREVER) != 0) BENCH_DIE("SSL_new");
    if (g_ktls) photon_ssl_enable_ktls(ssl);
    if (photon_ssl_accept(ssl) == 0) {
        static __thread char buf[16384];
        ssize_t n;
        while ((n = photon_ssl_read(ssl, buf, sizeof buf)) > 0)
            if (photon_ssl_write(ssl, buf, (size_t)n) != n) break;
        if (n == 0) photon_ssl_shutdown(ssl);
    }
    ERR_clear_error();
    SSL_free(ssl);
    photon_close(fd);
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: tls_echo_photon PORT CERT KEY [ktls]\n");
        return 2;
    }
    g_ktls = argc > 4 && strcmp(argv[4], "ktls") == 0;
    if (photon_init(PHOTON_EVENT_DEFAULT, 0) != 0) BENCH_DIE("photon_init");
    g_ctx = SSL_CTX_new(TLS_server_method());
    if (g_ctx == NULL || SSL_CTX_use_certificate_chain_file(g_ctx, argv[2]) != 1 ||
        SSL_CTX_use_PrivateKey_file(g_ctx, argv[3], SSL_FILETYPE_PEM) != 1)
        BENCH_DIE("certificate or key");
    const int lfd = photon_socket(AF_INET, SOCK_STREAM, 0);
    const int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons((uint16_t)atoi(argv[1]));
    socklen_t len = sizeof a;
    if (bind(lfd, (struct sockaddr *)&a, sizeof a) != 0 || listen(lfd, 1024) != 0 ||
        getsockname(lfd, (struct sockaddr *)&a, &len) != 0)
        BENCH_DIE("listen");
    printf("listening on %d\n", ntohs(a.sin_port));
    fflush(stdout);
    for (;;) {
        const int fd = photon_accept(lfd, NULL, NULL, PHOTON_FOREVER);
        if (fd < 0) BENCH_DIE("accept");
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        photon_thread *t = photon_thread_create(serve, (void *)(long)fd, 128 * 1024);
        if (t == NULL) BENCH_DIE("photon_thread_create");
    }
}
