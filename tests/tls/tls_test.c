/* TLS over photon sockets through include/photon_ssl.h, driven by tests/tls.rs.
 *
 *   tls_test sclient PORT CA CONNS LINES   CONNS photon threads on one vcpu, each a
 *                                          TLS client of `openssl s_server -rev`:
 *                                          LINES distinct lines, each answer checked
 *   tls_test server CERT KEY COUNT         a TLS server on one vcpu: prints
 *                                          "port N", serves COUNT connections
 *                                          (HTTP GET /ID/SIZE for curl, or a line
 *                                          echo ending at "QUIT" for s_client)
 *   tls_test local CA CERT KEY WCERT WKEY  in one process: handshake and read
 *                                          timeouts, resets mid-handshake, a wrong
 *                                          certificate, close_notify and truncation,
 *                                          the error queue per photon thread
 *   tls_test ktls CA CERT KEY              kernel TLS (exit 77 when the kernel
 *                                          has no TLS ULP)
 * Exit 0 when every check passed. */
#include <photon_ssl.h>

#include <arpa/inet.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../c/check.h"

#define MS 1000ull

static SSL_CTX *server_ctx(const char *cert, const char *key) {
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    CHECK(ctx != NULL, "SSL_CTX_new");
    CHECK(SSL_CTX_use_certificate_chain_file(ctx, cert) == 1, "certificate %s", cert);
    CHECK(SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) == 1, "key %s", key);
    return ctx;
}

static SSL_CTX *client_ctx(const char *ca) {
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    CHECK(ctx != NULL, "SSL_CTX_new");
    CHECK(SSL_CTX_load_verify_locations(ctx, ca, NULL) == 1, "CA %s", ca);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    return ctx;
}

static int listen_any(int *port) {
    int fd = photon_socket(AF_INET, SOCK_STREAM, 0);
    CHECK(fd >= 0, "socket: %s", strerror(errno));
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CHECK(bind(fd, (struct sockaddr *)&a, sizeof a) == 0, "bind: %s", strerror(errno));
    CHECK(listen(fd, 1024) == 0, "listen: %s", strerror(errno));
    socklen_t len = sizeof a;
    getsockname(fd, (struct sockaddr *)&a, &len);
    *port = ntohs(a.sin_port);
    return fd;
}

static int connect_to(int port) {
    int fd = photon_socket(AF_INET, SOCK_STREAM, 0);
    CHECK(fd >= 0, "socket: %s", strerror(errno));
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons((uint16_t)port);
    if (photon_connect(fd, (struct sockaddr *)&a, sizeof a, 10000 * MS) != 0) {
        const int e = errno;
        photon_close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

static SSL *client_ssl(SSL_CTX *ctx, int fd, uint64_t timeout) {
    SSL *ssl = SSL_new(ctx);
    CHECK(ssl != NULL, "SSL_new");
    CHECK_OK(photon_ssl_set_fd(ssl, fd, timeout));
    SSL_set_tlsext_host_name(ssl, "localhost");
    SSL_set1_host(ssl, "localhost");
    return ssl;
}

static photon_thread *spawn(photon_entry f, void *arg) {
    photon_thread *t = photon_thread_create(f, arg, 256 * 1024);
    CHECK(t != NULL && photon_thread_enable_join(t) == 0, "photon_thread_create: %s", strerror(errno));
    return t;
}

/* Reads one '\n'-terminated line (without it) into buf; its length, -1 on
 * error or EOF first. `have`/`len` carry bytes read past the line. */
typedef struct {
    char data[8192];
    size_t len;
} linebuf;

static ssize_t read_line(SSL *ssl, linebuf *lb, char *out, size_t cap) {
    for (;;) {
        char *nl = memchr(lb->data, '\n', lb->len);
        if (nl != NULL) {
            const size_t n = (size_t)(nl - lb->data);
            if (n >= cap) return -1;
            memcpy(out, lb->data, n);
            out[n] = '\0';
            memmove(lb->data, nl + 1, lb->len - n - 1);
            lb->len -= n + 1;
            return (ssize_t)n;
        }
        if (lb->len == sizeof lb->data) return -1;
        const ssize_t r = photon_ssl_read(ssl, lb->data + lb->len, sizeof lb->data - lb->len);
        if (r <= 0) return -1;
        lb->len += (size_t)r;
    }
}

/* ------------------------------------------------------------ sclient */

static SSL_CTX *g_client;
static int g_port, g_lines, g_done;

static void *sclient_conn(void *arg) {
    const long id = (long)arg;
    int fd = connect_to(g_port);
    CHECK(fd >= 0, "conn %ld: connect: %s", id, strerror(errno));
    SSL *ssl = client_ssl(g_client, fd, 60000 * MS);
    if (photon_ssl_connect(ssl) != 0) {
        ERR_print_errors_fp(stderr);
        CHECK(0, "conn %ld: handshake: %s", id, strerror(errno));
    }
    linebuf lb;
    lb.len = 0;
    char line[600], want[600], got[600];
    for (int j = 0; j < g_lines; j++) {
        /* a distinct line: id, number, then a pattern of both */
        int n = snprintf(line, sizeof line, "c%ld-l%d-", id, j);
        const int extra = 50 + (int)((id * 131 + j * 17) % 400);
        for (int k = 0; k < extra; k++) line[n++] = (char)('a' + (id + j + k) % 26);
        line[n] = '\0';
        for (int k = 0; k < n; k++) want[k] = line[n - 1 - k];
        want[n] = '\0';
        line[n] = '\n';
        CHECK(photon_ssl_write(ssl, line, (size_t)n + 1) == n + 1, "conn %ld: write: %s", id, strerror(errno));
        const ssize_t got_n = read_line(ssl, &lb, got, sizeof got);
        CHECK(got_n == n && memcmp(got, want, (size_t)n) == 0, "conn %ld line %d: answer differs (%zd bytes)", id, j,
              got_n);
    }
    photon_ssl_write(ssl, "CLOSE\n", 6);
    SSL_free(ssl);
    photon_close(fd);
    g_done++;
    return NULL;
}

static int sclient_main(char **argv) {
    g_port = atoi(argv[2]);
    g_client = client_ctx(argv[3]);
    const int conns = atoi(argv[4]);
    g_lines = atoi(argv[5]);
    photon_thread **t = calloc((size_t)conns, sizeof *t);
    for (long i = 0; i < conns; i++) t[i] = spawn(sclient_conn, (void *)i);
    for (int i = 0; i < conns; i++) photon_thread_join(t[i], NULL);
    CHECK(g_done == conns, "%d of %d connections completed", g_done, conns);
    printf("sclient: %d connections x %d lines verified\n", conns, g_lines);
    free(t);
    SSL_CTX_free(g_client);
    return 0;
}

/* ------------------------------------------------------------- server */

static SSL_CTX *g_server;
static int g_served, g_failed;

/* The deterministic body of GET /ID/SIZE. */
static char body_byte(long id, long i) { return (char)('A' + (id * 7 + i) % 26); }

static void *serve_conn(void *arg) {
    const int fd = (int)(long)arg;
    SSL *ssl = SSL_new(g_server);
    CHECK_OK(photon_ssl_set_fd(ssl, fd, 30000 * MS));
    int ok = 0;
    if (photon_ssl_accept(ssl) != 0) {
        fprintf(stderr, "server: handshake: %s\n", strerror(errno));
        ERR_print_errors_fp(stderr);
        goto out;
    }
    linebuf lb;
    lb.len = 0;
    char line[2048];
    ssize_t n = read_line(ssl, &lb, line, sizeof line);
    if (n < 0) goto out;
    long id, size;
    if (sscanf(line, "GET /%ld/%ld ", &id, &size) == 2) {
        while ((n = read_line(ssl, &lb, line, sizeof line)) > 0 && !(n == 1 && line[0] == '\r')) {
        }
        char head[256];
        const int h = snprintf(head, sizeof head,
                               "HTTP/1.1 200 OK\r\nContent-Length: %ld\r\nConnection: close\r\n\r\n", size);
        char *body = malloc((size_t)size + 1);
        for (long i = 0; i < size; i++) body[i] = body_byte(id, i);
        ok = photon_ssl_write(ssl, head, (size_t)h) == h && photon_ssl_write(ssl, body, (size_t)size) == size;
        free(body);
    } else {
        /* line echo until QUIT */
        for (;;) {
            if (n == 4 && memcmp(line, "QUIT", 4) == 0) {
                ok = 1;
                break;
            }
            line[n] = '\n';
            if (photon_ssl_write(ssl, line, (size_t)n + 1) != n + 1) break;
            if ((n = read_line(ssl, &lb, line, sizeof line - 1)) < 0) break;
        }
    }
    if (ok) photon_ssl_shutdown(ssl);
out:
    if (ok)
        g_served++;
    else
        g_failed++;
    SSL_free(ssl);
    photon_close(fd);
    return NULL;
}

static int server_main(char **argv) {
    g_server = server_ctx(argv[2], argv[3]);
    const int count = atoi(argv[4]);
    int port;
    const int lfd = listen_any(&port);
    printf("port %d\n", port);
    fflush(stdout);
    photon_thread **t = calloc((size_t)count, sizeof *t);
    for (int i = 0; i < count; i++) {
        const int fd = photon_accept(lfd, NULL, NULL, 120000 * MS);
        CHECK(fd >= 0, "accept %d: %s", i, strerror(errno));
        t[i] = spawn(serve_conn, (void *)(long)fd);
    }
    for (int i = 0; i < count; i++) photon_thread_join(t[i], NULL);
    photon_close(lfd);
    printf("server: %d served, %d failed\n", g_served, g_failed);
    CHECK(g_served == count && g_failed == 0, "%d of %d connections served", g_served, count);
    free(t);
    SSL_CTX_free(g_server);
    return 0;
}

/* -------------------------------------------------------------- local */

static const char *g_ca, *g_cert, *g_key, *g_wcert, *g_wkey;
static int g_lport, g_lfd;

/* A raw TCP peer's behaviours, for the server thread of a sub-test. */
enum peer { PEER_SILENT, PEER_RESET_AFTER_HELLO, PEER_TLS_SEND_LATE, PEER_TLS_CLOSE_NOTIFY, PEER_TLS_TRUNCATE,
            PEER_TLS_WRONG_CERT, PEER_TLS_SENDFILE };
static int g_file_fd;
#define FILE_BYTES (1024 * 1024 + 123)
#define FILE_OFFSET 1000
static enum peer g_peer;

static void reset_close(int fd) {
    struct linger l = {1, 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
    photon_close(fd);
}

static void *peer_thread(void *arg) {
    (void)arg;
    const int fd = photon_accept(g_lfd, NULL, NULL, 10000 * MS);
    CHECK(fd >= 0, "peer accept: %s", strerror(errno));
    char buf[4096];
    switch (g_peer) {
    case PEER_SILENT:
        photon_thread_usleep(600 * MS);
        photon_close(fd);
        return NULL;
    case PEER_RESET_AFTER_HELLO:
        CHECK(photon_recv(fd, buf, sizeof buf, 0, 5000 * MS) > 0, "no ClientHello");
        reset_close(fd);
        return NULL;
    default: break;
    }
    SSL_CTX *ctx = g_peer == PEER_TLS_WRONG_CERT ? server_ctx(g_wcert, g_wkey) : server_ctx(g_cert, g_key);
    SSL *ssl = SSL_new(ctx);
    CHECK_OK(photon_ssl_set_fd(ssl, fd, 5000 * MS));
    if (g_peer == PEER_TLS_WRONG_CERT) {
        /* the client rejects the certificate: an alert, no hang */
        errno = 0;
        CHECK(photon_ssl_accept(ssl) == -1, "the server's handshake with a rejecting client succeeded");
        CHECK(errno == EPROTO || errno == ECONNRESET, "server side of the rejected handshake: %s", strerror(errno));
        ERR_clear_error();
    } else {
        CHECK(photon_ssl_accept(ssl) == 0, "peer handshake: %s", strerror(errno));
        switch (g_peer) {
        case PEER_TLS_SEND_LATE:
            photon_thread_usleep(300 * MS);
            CHECK(photon_ssl_write(ssl, "late", 4) == 4, "peer write");
            photon_ssl_read(ssl, buf, sizeof buf); /* until the client's close_notify */
            break;
        case PEER_TLS_CLOSE_NOTIFY:
            CHECK(photon_ssl_write(ssl, "bye", 3) == 3, "peer write");
            CHECK(photon_ssl_shutdown(ssl) == 0, "first shutdown returns 0 (ours sent)");
            CHECK(photon_ssl_read(ssl, buf, sizeof buf) == 0, "the client's close_notify: %s", strerror(errno));
            CHECK(photon_ssl_shutdown(ssl) == 1, "shutdown after the peer's close_notify returns 1");
            break;
        case PEER_TLS_TRUNCATE:
            CHECK(photon_ssl_write(ssl, "cut", 3) == 3, "peer write");
            break; /* close without close_notify */
        case PEER_TLS_SENDFILE:
            /* past the end: only what the file has */
            CHECK(photon_ssl_sendfile(ssl, g_file_fd, FILE_OFFSET, FILE_BYTES) == FILE_BYTES - FILE_OFFSET,
                  "sendfile: %s", strerror(errno));
            CHECK(photon_ssl_shutdown(ssl) >= 0, "shutdown after sendfile");
            break;
        default: break;
        }
    }
    SSL_free(ssl);
    SSL_CTX_free(ctx);
    photon_close(fd);
    return NULL;
}

static void say(const char *what) {
    printf("ok %s\n", what);
    fflush(stdout);
}

static void test_handshake_timeout(SSL_CTX *cctx) {
    g_peer = PEER_SILENT;
    photon_thread *p = spawn(peer_thread, NULL);
    const int fd = connect_to(g_lport);
    SSL *ssl = client_ssl(cctx, fd, 150 * MS);
    const uint64_t t0 = photon_now_us();
    CHECK_ERRNO(photon_ssl_connect(ssl), ETIMEDOUT);
    const uint64_t took = photon_now_us() - t0;
    CHECK(took >= 140 * MS && took < 2000 * MS, "handshake timeout after %llu us", (unsigned long long)took);
    ERR_clear_error();
    SSL_free(ssl);
    photon_close(fd);
    photon_thread_join(p, NULL);
    say("handshake timeout");
}

static void test_read_timeout(SSL_CTX *cctx) {
    g_peer = PEER_TLS_SEND_LATE;
    photon_thread *p = spawn(peer_thread, NULL);
    const int fd = connect_to(g_lport);
    SSL *ssl = client_ssl(cctx, fd, 100 * MS);
    CHECK(photon_ssl_connect(ssl) == 0, "handshake: %s", strerror(errno));
    char buf[16];
    const uint64_t t0 = photon_now_us();
    CHECK_ERRNO(photon_ssl_read(ssl, buf, sizeof buf), ETIMEDOUT);
    const uint64_t took = photon_now_us() - t0;
    CHECK(took >= 90 * MS && took < 2000 * MS, "read timeout after %llu us", (unsigned long long)took);
    /* the connection survives its timeout */
    CHECK_OK(photon_ssl_set_timeout(ssl, 5000 * MS));
    CHECK(photon_ssl_read(ssl, buf, sizeof buf) == 4 && memcmp(buf, "late", 4) == 0, "read after the timeout: %s",
          strerror(errno));
    photon_ssl_shutdown(ssl);
    SSL_free(ssl);
    photon_close(fd);
    photon_thread_join(p, NULL);
    say("read timeout, then the data");
}

static void test_client_reset(SSL_CTX *cctx) {
    g_peer = PEER_RESET_AFTER_HELLO;
    photon_thread *p = spawn(peer_thread, NULL);
    const int fd = connect_to(g_lport);
    SSL *ssl = client_ssl(cctx, fd, 5000 * MS);
    CHECK_ERRNO(photon_ssl_connect(ssl), ECONNRESET);
    ERR_clear_error();
    SSL_free(ssl);
    photon_close(fd);
    photon_thread_join(p, NULL);
    say("server resets mid-handshake: client gets ECONNRESET");
}

static SSL_CTX *g_sctx;

static void *accept_expect_reset(void *arg) {
    (void)arg;
    const int fd = photon_accept(g_lfd, NULL, NULL, 5000 * MS);
    CHECK(fd >= 0, "accept: %s", strerror(errno));
    SSL *ssl = SSL_new(g_sctx);
    CHECK_OK(photon_ssl_set_fd(ssl, fd, 5000 * MS));
    const uint64_t t0 = photon_now_us();
    CHECK_ERRNO(photon_ssl_accept(ssl), ECONNRESET);
    CHECK(photon_now_us() - t0 < 2000 * MS, "the reset took long to notice");
    ERR_clear_error();
    SSL_free(ssl);
    photon_close(fd);
    return NULL;
}

static void test_server_reset(void) {
    photon_thread *p = spawn(accept_expect_reset, NULL);
    const int fd = connect_to(g_lport);
    /* the start of a ClientHello record, then a reset */
    static const unsigned char partial[] = {0x16, 0x03, 0x01, 0x00, 0xc8, 0x01, 0x00, 0x00, 0xc4, 0x03, 0x03};
    CHECK(photon_send(fd, partial, sizeof partial, 0, 1000 * MS) == (ssize_t)sizeof partial, "send");
    photon_thread_usleep(50 * MS);
    reset_close(fd);
    photon_thread_join(p, NULL);
    say("client resets mid-handshake: server gets ECONNRESET");
}

static void test_wrong_cert(SSL_CTX *cctx) {
    g_peer = PEER_TLS_WRONG_CERT;
    photon_thread *p = spawn(peer_thread, NULL);
    const int fd = connect_to(g_lport);
    SSL *ssl = client_ssl(cctx, fd, 5000 * MS);
    const uint64_t t0 = photon_now_us();
    CHECK_ERRNO(photon_ssl_connect(ssl), EPROTO);
    CHECK(photon_now_us() - t0 < 3000 * MS, "rejecting the certificate took long");
    const long vr = SSL_get_verify_result(ssl);
    CHECK(vr != X509_V_OK, "verify result OK for a certificate of another CA");
    const unsigned long e = ERR_peek_error();
    CHECK(ERR_GET_LIB(e) == ERR_LIB_SSL && ERR_GET_REASON(e) == SSL_R_CERTIFICATE_VERIFY_FAILED,
          "error queue: lib %d reason %d, want certificate verify failed", ERR_GET_LIB(e), ERR_GET_REASON(e));
    printf("  verification: %s\n", X509_verify_cert_error_string(vr));
    ERR_clear_error();
    SSL_free(ssl);
    photon_close(fd);
    photon_thread_join(p, NULL);
    say("wrong certificate: EPROTO, verify error on the queue");
}

static void test_close_notify(SSL_CTX *cctx) {
    g_peer = PEER_TLS_CLOSE_NOTIFY;
    photon_thread *p = spawn(peer_thread, NULL);
    const int fd = connect_to(g_lport);
    SSL *ssl = client_ssl(cctx, fd, 5000 * MS);
    CHECK(photon_ssl_connect(ssl) == 0, "handshake: %s", strerror(errno));
    char buf[16];
    size_t got = 0;
    ssize_t n;
    while ((n = photon_ssl_read(ssl, buf + got, sizeof buf - got)) > 0) got += (size_t)n;
    CHECK(n == 0 && got == 3 && memcmp(buf, "bye", 3) == 0, "data then close_notify: n %zd got %zu (%s)", n, got,
          strerror(errno));
    CHECK(SSL_get_shutdown(ssl) & SSL_RECEIVED_SHUTDOWN, "close_notify not recorded");
    CHECK(photon_ssl_shutdown(ssl) == 1, "our close_notify after the peer's: both ways done");
    SSL_free(ssl);
    photon_close(fd);
    photon_thread_join(p, NULL);
    say("close_notify: read returns 0, shutdown 1");

    g_peer = PEER_TLS_TRUNCATE;
    p = spawn(peer_thread, NULL);
    const int fd2 = connect_to(g_lport);
    ssl = client_ssl(cctx, fd2, 5000 * MS);
    CHECK(photon_ssl_connect(ssl) == 0, "handshake: %s", strerror(errno));
    got = 0;
    while ((n = photon_ssl_read(ssl, buf + got, sizeof buf - got)) > 0) got += (size_t)n;
    CHECK(n == -1 && errno == ECONNRESET && got == 3, "truncation: n %zd got %zu errno %s", n, got, strerror(errno));
    ERR_clear_error();
    SSL_free(ssl);
    photon_close(fd2);
    photon_thread_join(p, NULL);
    say("no close_notify: ECONNRESET after the data");
}

static void test_sendfile(SSL_CTX *cctx) {
    char path[] = "/tmp/photon-tls-sendfile-XXXXXX";
    g_file_fd = mkstemp(path);
    CHECK(g_file_fd >= 0, "mkstemp: %s", strerror(errno));
    unlink(path);
    static unsigned char file[FILE_BYTES], got[FILE_BYTES];
    for (size_t i = 0; i < sizeof file; i++) file[i] = (unsigned char)(i * 7 + i / 251);
    CHECK(write(g_file_fd, file, sizeof file) == (ssize_t)sizeof file, "write the file");
    g_peer = PEER_TLS_SENDFILE;
    photon_thread *p = spawn(peer_thread, NULL);
    const int fd = connect_to(g_lport);
    SSL *ssl = client_ssl(cctx, fd, 5000 * MS);
    /* kTLS asked for: OpenSSL offers the keys to the BIO, which takes them
     * only where the kernel has the TLS ULP; either way the data flows */
    CHECK_OK(photon_ssl_enable_ktls(ssl));
    CHECK(photon_ssl_connect(ssl) == 0, "handshake: %s", strerror(errno));
    size_t n = 0;
    ssize_t r;
    while ((r = photon_ssl_read(ssl, got + n, sizeof got - n)) > 0) n += (size_t)r;
    CHECK(r == 0 && n == FILE_BYTES - FILE_OFFSET && memcmp(got, file + FILE_OFFSET, n) == 0,
          "sendfile: got %zu bytes (want %d), last read %zd", n, FILE_BYTES - FILE_OFFSET, r);
    CHECK(photon_ssl_sendfile(ssl, -1, 0, 1) == -1 && errno == EINVAL, "sendfile of fd -1");
    const photon_ssl__conn *c = photon_ssl__conn_of(ssl);
    CHECK(c->ktls_offers >= 1, "OpenSSL never offered the keys to the BIO");
    printf("  kTLS: offered %d times, active %d (ULP %s)\n", c->ktls_offers, photon_ssl_ktls_active(ssl),
           c->ulp > 0 ? "taken" : "refused");
    CHECK(c->ulp > 0 || photon_ssl_ktls_active(ssl) == 0, "kTLS active without the ULP");
    SSL_free(ssl);
    photon_close(fd);
    photon_thread_join(p, NULL);
    close(g_file_fd);
    say("sendfile: 1 MiB from an offset, to the file's end");
}

/* The error queue per photon thread. Each server's info callback raises
 * an error naming its photon thread once it has sent its Finished, and the
 * handshake then waits for the client's Finished;
 * meanwhile the other servers' callbacks raise theirs. Each server thread
 * must find exactly its own error afterwards. Each client raises an error of
 * its own before its calls and must find it alone after them. */
#define ERRQ_PAIRS 16
#define ERRQ_SERVER_REASON 100
#define ERRQ_CLIENT_REASON 300

typedef struct {
    int id;
    int raised;
} errq_tag;

static void info_raise(const SSL *ssl, int where, int ret) {
    (void)ret;
    errq_tag *tag = (errq_tag *)SSL_get_app_data(ssl);
    if (tag != NULL && (where & SSL_CB_ACCEPT_LOOP) && SSL_get_state(ssl) == TLS_ST_SW_FINISHED && !tag->raised) {
        tag->raised = 1;
        ERR_raise(ERR_LIB_USER, ERRQ_SERVER_REASON + tag->id);
    }
}

static int g_errq_failures;

static void errq_expect(const char *who, int id, int reason) {
    const unsigned long e = ERR_get_error();
    const unsigned long more = ERR_peek_error();
    if (ERR_GET_LIB(e) != ERR_LIB_USER || ERR_GET_REASON(e) != reason || more != 0) {
        fprintf(stderr, "%s %d: queue holds lib %d reason %d (want user reason %d), then %s\n", who, id,
                ERR_GET_LIB(e), ERR_GET_REASON(e), reason, more ? "more" : "nothing");
        g_errq_failures++;
    }
    ERR_clear_error();
}

static void *errq_server(void *arg) {
    errq_tag tag = {(int)(long)arg, 0};
    const int fd = photon_accept(g_lfd, NULL, NULL, 5000 * MS);
    CHECK(fd >= 0, "accept: %s", strerror(errno));
    SSL *ssl = SSL_new(g_sctx);
    CHECK_OK(photon_ssl_set_fd(ssl, fd, 5000 * MS));
    SSL_set_app_data(ssl, &tag);
    CHECK(photon_ssl_accept(ssl) == 0, "errq server handshake: %s", strerror(errno));
    CHECK(tag.raised, "the info callback did not run");
    errq_expect("server", tag.id, ERRQ_SERVER_REASON + tag.id);
    char buf[64];
    CHECK(photon_ssl_read(ssl, buf, sizeof buf) == 2, "errq server read");
    CHECK(photon_ssl_write(ssl, buf, 2) == 2, "errq server write");
    photon_ssl_read(ssl, buf, sizeof buf);
    SSL_free(ssl);
    photon_close(fd);
    return NULL;
}

static SSL_CTX *g_cctx_nohost;

static void *errq_client(void *arg) {
    const int id = (int)(long)arg;
    const int fd = connect_to(g_lport);
    CHECK(fd >= 0, "connect: %s", strerror(errno));
    SSL *ssl = SSL_new(g_cctx_nohost);
    CHECK_OK(photon_ssl_set_fd(ssl, fd, 5000 * MS));
    ERR_raise(ERR_LIB_USER, ERRQ_CLIENT_REASON + id);
    CHECK(photon_ssl_connect(ssl) == 0, "errq client handshake: %s", strerror(errno));
    CHECK(photon_ssl_write(ssl, "hi", 2) == 2, "errq client write");
    char buf[8];
    CHECK(photon_ssl_read(ssl, buf, sizeof buf) == 2, "errq client read");
    errq_expect("client", id, ERRQ_CLIENT_REASON + id);
    photon_ssl_shutdown(ssl);
    SSL_free(ssl);
    photon_close(fd);
    return NULL;
}

static void test_errq(void) {
    SSL_CTX_set_info_callback(g_sctx, info_raise);
    g_cctx_nohost = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_verify(g_cctx_nohost, SSL_VERIFY_NONE, NULL);
    photon_thread *t[2 * ERRQ_PAIRS];
    for (long i = 0; i < ERRQ_PAIRS; i++) {
        t[2 * i] = spawn(errq_server, (void *)i);
        t[2 * i + 1] = spawn(errq_client, (void *)i);
    }
    for (int i = 0; i < 2 * ERRQ_PAIRS; i++) photon_thread_join(t[i], NULL);
    CHECK(g_errq_failures == 0, "%d photon threads saw another's OpenSSL errors", g_errq_failures);
    CHECK(ERR_peek_error() == 0, "the vcpu's main thread sees errors of its photon threads");
    SSL_CTX_set_info_callback(g_sctx, NULL);
    SSL_CTX_free(g_cctx_nohost);
    say("OpenSSL error queue per photon thread (16 servers, 16 clients, one vcpu)");
}

static int local_main(char **argv) {
    g_ca = argv[2], g_cert = argv[3], g_key = argv[4], g_wcert = argv[5], g_wkey = argv[6];
    g_lfd = listen_any(&g_lport);
    SSL_CTX *cctx = client_ctx(g_ca);
    g_sctx = server_ctx(g_cert, g_key);
    test_handshake_timeout(cctx);
    test_read_timeout(cctx);
    test_client_reset(cctx);
    test_server_reset();
    test_wrong_cert(cctx);
    test_close_notify(cctx);
    test_sendfile(cctx);
    test_errq();
    CHECK(photon_ssl_ktls_active(NULL) == -1 && errno == EINVAL, "ktls_active(NULL)");
    CHECK(photon_ssl_set_fd(NULL, 0, 0) == -1 && errno == EINVAL, "set_fd(NULL)");
    CHECK(photon_ssl_bio_new(-1, 0, 0) == NULL && errno == EINVAL, "bio_new(-1)");
    SSL *plain = SSL_new(cctx);
    CHECK(photon_ssl_read(plain, (char[4]){0}, 4) == -1 && errno == EINVAL, "read on an SSL without our BIO");
    SSL_free(plain);
    SSL_CTX_free(cctx);
    SSL_CTX_free(g_sctx);
    photon_close(g_lfd);
    return 0;
}

/* --------------------------------------------------------------- ktls */

static void *ktls_server(void *arg) {
    (void)arg;
    const int fd = photon_accept(g_lfd, NULL, NULL, 5000 * MS);
    CHECK(fd >= 0, "accept: %s", strerror(errno));
    SSL *ssl = SSL_new(g_sctx);
    CHECK_OK(photon_ssl_set_fd(ssl, fd, 5000 * MS));
    CHECK_OK(photon_ssl_enable_ktls(ssl));
    CHECK(photon_ssl_accept(ssl) == 0, "ktls server handshake: %s", strerror(errno));
    printf("server kTLS: %d\n", photon_ssl_ktls_active(ssl));
    char buf[16384];
    ssize_t n;
    while ((n = photon_ssl_read(ssl, buf, sizeof buf)) > 0)
        CHECK(photon_ssl_write(ssl, buf, (size_t)n) == n, "echo");
    photon_ssl_shutdown(ssl);
    SSL_free(ssl);
    photon_close(fd);
    return NULL;
}

static int ktls_main(char **argv) {
    int lp;
    g_lfd = listen_any(&lp);
    /* the probe: a connected TCP socket must take the ULP */
    const int probe = connect_to(lp);
    const int pa = accept(g_lfd, NULL, NULL);
    const int ulp = setsockopt(probe, IPPROTO_TCP, TCP_ULP, "tls", sizeof "tls");
    photon_close(probe);
    close(pa);
    if (ulp != 0) {
        printf("kTLS: the kernel has no TLS ULP (%s); skipped\n", strerror(errno));
        return 77;
    }
    g_lport = lp;
    g_sctx = server_ctx(argv[3], argv[4]);
    SSL_CTX *cctx = client_ctx(argv[2]);
    SSL_CTX_set_max_proto_version(cctx, TLS1_2_VERSION);
    SSL_CTX_set_cipher_list(cctx, "ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES128-GCM-SHA256");
    photon_thread *p = spawn(ktls_server, NULL);
    const int fd = connect_to(g_lport);
    SSL *ssl = client_ssl(cctx, fd, 5000 * MS);
    CHECK_OK(photon_ssl_enable_ktls(ssl));
    CHECK(photon_ssl_connect(ssl) == 0, "ktls handshake: %s", strerror(errno));
    const int active = photon_ssl_ktls_active(ssl);
    printf("client kTLS: %d\n", active);
    CHECK(active == (PHOTON_SSL_KTLS_TX | PHOTON_SSL_KTLS_RX), "kTLS not active on the client (%d)", active);
    static char out[1 << 20], in[1 << 20];
    for (size_t i = 0; i < sizeof out; i++) out[i] = (char)(i * 31 + 7);
    CHECK(photon_ssl_write(ssl, out, sizeof out) == (ssize_t)sizeof out, "write");
    size_t got = 0;
    while (got < sizeof in) {
        const ssize_t n = photon_ssl_read(ssl, in + got, sizeof in - got);
        CHECK(n > 0, "read: %s", strerror(errno));
        got += (size_t)n;
    }
    CHECK(memcmp(in, out, sizeof in) == 0, "kTLS echo differs");
    /* sendfile(2) on the kTLS socket: the kernel encrypts the file's pages */
    char path[] = "/tmp/photon-ktls-sendfile-XXXXXX";
    const int file = mkstemp(path);
    CHECK(file >= 0, "mkstemp");
    unlink(path);
    CHECK(write(file, out, sizeof out) == (ssize_t)sizeof out, "write the file");
    CHECK(photon_ssl_sendfile(ssl, file, 0, sizeof out) == (ssize_t)sizeof out, "kTLS sendfile: %s", strerror(errno));
    close(file);
    got = 0;
    while (got < sizeof in) {
        const ssize_t n = photon_ssl_read(ssl, in + got, sizeof in - got);
        CHECK(n > 0, "read: %s", strerror(errno));
        got += (size_t)n;
    }
    CHECK(memcmp(in, out, sizeof in) == 0, "kTLS sendfile echo differs");
    photon_ssl_shutdown(ssl);
    SSL_free(ssl);
    photon_close(fd);
    photon_thread_join(p, NULL);
    say("kTLS echo of 1 MiB, by write and by sendfile");
    return 0;
}

int main(int argc, char **argv) {
    CHECK(argc >= 2, "usage: see the top of tls_test.c");
    {
        /* off a vcpu: the calls that wait refuse with EPERM */
        SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
        SSL *ssl = SSL_new(ctx);
        CHECK_OK(photon_ssl_set_fd(ssl, 0, 1000));
        CHECK_ERRNO(photon_ssl_connect(ssl), EPERM);
        CHECK_ERRNO(photon_ssl_read(ssl, (char[4]){0}, 4), EPERM);
        CHECK_ERRNO(photon_ssl_write(ssl, "x", 1), EPERM);
        CHECK_ERRNO(photon_ssl_read(ssl, NULL, 4), EINVAL);
        CHECK_ERRNO(photon_ssl_bio_new_io(NULL, NULL, 0) == NULL ? -1 : 0, EINVAL);
        CHECK_ERRNO(photon_ssl_set_bio(ssl, NULL), EINVAL);
        SSL_free(ssl);
        SSL_CTX_free(ctx);
    }
    CHECK(photon_init(PHOTON_EVENT_DEFAULT, 0) == 0, "photon_init: %s", strerror(errno));
    int rc = 2;
    if (strcmp(argv[1], "sclient") == 0 && argc == 6)
        rc = sclient_main(argv);
    else if (strcmp(argv[1], "server") == 0 && argc == 5)
        rc = server_main(argv);
    else if (strcmp(argv[1], "local") == 0 && argc == 7)
        rc = local_main(argv);
    else if (strcmp(argv[1], "ktls") == 0 && argc == 5)
        rc = ktls_main(argv);
    else
        fprintf(stderr, "bad arguments\n");
    photon_fini();
    return rc;
}
