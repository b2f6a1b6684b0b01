/* photon_ssl.h: TLS on photon sockets with the program's own OpenSSL (3.x).
 *
 * Header-only over libphoton's C API: libphoton never links OpenSSL, so the
 * OpenSSL this program links is the one used. Link with -lphoton -lssl
 * -lcrypto.
 *
 *     SSL *ssl = SSL_new(ctx);
 *     photon_ssl_set_fd(ssl, fd, 5000000);        // 5 s per call
 *     if (photon_ssl_accept(ssl) != 0) ...         // -1 + errno + error queue
 *     ssize_t n = photon_ssl_read(ssl, buf, sizeof buf);   // 0: close_notify
 *     photon_ssl_write(ssl, buf, n);
 *     photon_ssl_shutdown(ssl);
 *     SSL_free(ssl);                              // the fd stays open
 *     photon_close(fd);
 *
 * The BIO. photon_ssl_bio_new() makes a BIO whose reads are photon_recv()
 * and whose writes are photon_send() on a socket fd, so OpenSSL's reads and
 * writes block only the calling photon thread. Each connection has a
 * timeout (microseconds, PHOTON_FOREVER for none): inside the photon_ssl_*
 * calls it bounds the whole call; a plain SSL_read on the BIO gets it for
 * every wait. A timeout or an interrupt leaves the connection usable (the
 * BIO reports it to OpenSSL as "retry"): call again to go on (for
 * photon_ssl_write, with the same buffer and length).
 *
 * The calls. photon_ssl_accept/connect/read/write/shutdown wait as photon
 * waits: SSL_ERROR_WANT_READ/WRITE never reach the caller. They return -1
 * with errno on failure:
 *   ETIMEDOUT   the connection's timeout passed (the connection stays usable)
 *   EINTR etc.  the photon thread was interrupted (the interrupter's errno)
 *   ECONNRESET  the peer closed or reset the connection without close_notify
 *               (mid-handshake, or where more data was due)
 *   EPROTO      a TLS failure: bad record, alert from the peer, certificate
 *               verification failed (SSL_get_verify_result() tells which)
 *   EINVAL      NULL arguments, or an SSL whose BIO is not photon_ssl's
 *   other       the socket's own error (EPIPE, ECONNREFUSED, ...)
 * and in every case OpenSSL's description stays on the calling photon
 * thread's error queue (ERR_get_error(), ERR_print_errors_fp()).
 *
 * The error queue. OpenSSL keeps one error queue per OS thread (a pthread
 * key); photon threads share an OS thread. These calls keep the queue per
 * photon thread across every wait they make: before a wait the caller's
 * queue is set aside (in a photon key) and after it, put back, so an error
 * another photon thread of the vcpu raises meanwhile neither shows in this
 * thread's queue nor disappears from that thread's. Errors already on the
 * caller's queue when a call starts are kept and stay ahead of the call's
 * own (SSL_get_error() sees an empty queue, as OpenSSL requires). What this
 * header cannot cover are waits outside it (photon_thread_usleep, photon_recv
 * on another fd) taken with errors on the queue: there the queue is the
 * vcpu's. Under libphoton_preload.so the queue is per photon thread
 * everywhere (pthread keys follow the photon thread); without the shim, clear
 * or read the queue before waiting elsewhere, and before a photon thread
 * migrates itself to another vcpu (the queue stays with the OS thread).
 *
 * Kernel TLS. With SSL_OP_ENABLE_KTLS on the SSL (photon_ssl_enable_ktls()),
 * OpenSSL 3 offers the record layer to the BIO after the handshake; this BIO
 * takes it when the kernel does (setsockopt(TCP_ULP, "tls") and then the
 * TLS_TX/TLS_RX keys; kernels without the tls module refuse the first, and
 * the connection carries on in user space, silently). Then application data
 * goes through photon_send/photon_recvmsg with the kernel doing the crypto,
 * and SSL_sendfile() works on the fd. photon_ssl_ktls_active() says which
 * directions are in the kernel.
 *
 * One file on purpose (header-only: it installs beside photon.h and needs
 * nothing else of this project). Requires OpenSSL 3.0 or later, C99 or C++11. Everything here is for photon
 * threads on a vcpu (else -1/EPERM), one photon thread per SSL at a time.
 */
#ifndef PHOTON_SSL_H
#define PHOTON_SSL_H

#include <photon.h>

#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/opensslv.h>
#include <openssl/ssl.h>

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>
#if defined(__linux__)
#include <linux/tls.h>
#endif

#if OPENSSL_VERSION_NUMBER < 0x30000000L
#error "photon_ssl.h needs OpenSSL 3.0 or later"
#endif

#ifdef __cplusplus
extern "C" {
#endif

/** Bits of photon_ssl_ktls_active(). */
#define PHOTON_SSL_KTLS_TX 1
#define PHOTON_SSL_KTLS_RX 2

/* OpenSSL's BIO controls for kTLS that bio.h lists as internal (their
 * values are in its comment); a BIO that answers them takes the record
 * layer. */
#define PHOTON_SSL__CTRL_SET_KTLS 72
#define PHOTON_SSL__CTRL_SET_KTLS_TX_SEND_CTRL_MSG 74
#define PHOTON_SSL__CTRL_CLEAR_KTLS_TX_CTRL_MSG 75
#ifndef SOL_TLS
#define SOL_TLS 282
#endif
#ifndef TCP_ULP
#define TCP_ULP 31
#endif

#if defined(__GNUC__)
#define PHOTON_SSL__SHARED __attribute__((weak))
#define PHOTON_SSL__UNUSED __attribute__((unused))
#else
#error "photon_ssl.h needs GCC or Clang (weak symbols keep one BIO method and one key per process)"
#endif

/** A transport for photon_ssl_bio_new_io(): moves up to `len` bytes
 * (`write` 0: receive into `buf`, waiting once; 1: send from `buf`) within
 * `timeout_us`; returns the count (0: the peer closed, for a receive), or
 * -1 with errno. */
typedef ssize_t (*photon_ssl_io_fn)(void *arg, int write, void *buf, size_t len, uint64_t timeout_us);

/** One connection's state, the BIO's data. */
typedef struct photon_ssl__conn {
    int fd;
    int err;               /* errno of the last failed wait, 0 if none */
    int eof;               /* the peer closed (recv returned 0) */
    int ktls;              /* PHOTON_SSL_KTLS_* bits in the kernel */
    int ulp;               /* 1: TCP_ULP "tls" set, -1: refused, 0: not tried */
    int ctrl_type;         /* record type of the next kTLS write, 0: data */
    int ktls_offers;       /* times OpenSSL offered a direction's keys */
    uint64_t timeout_us;   /* per call (or per wait outside the calls) */
    uint64_t deadline_us;  /* 0: none; else the running call's end */
    /* photon_ssl_bio_new_io: the transport instead of the fd (fd is -1) */
    photon_ssl_io_fn io;
    void *io_arg;
} photon_ssl__conn;

/* Process-wide (weak: one copy however many objects include this header). */
PHOTON_SSL__SHARED BIO_METHOD *photon_ssl__method;
PHOTON_SSL__SHARED int photon_ssl__method_state; /* 0 none, 1 making, 2 made */
PHOTON_SSL__SHARED int photon_ssl__method_type;
PHOTON_SSL__SHARED uint32_t photon_ssl__errq_key;
PHOTON_SSL__SHARED int photon_ssl__errq_state;   /* 0 none, 1 making, 2 made, 3 failed */

/* ---------------------------------------------------------------- error queue */

#if OPENSSL_VERSION_NUMBER < 0x30200000L
/* OpenSSL 3.0 and 3.1 keep a thread's queue in an ERR_STATE whose layout
 * err.h publishes (struct err_state_st); ERR_get_state() returns the calling
 * OS thread's. Moving the struct's contents moves the queue, buffers and
 * all. The same layout, spelled here so that OPENSSL_NO_DEPRECATED builds
 * compile too. */
#define PHOTON_SSL__ERRS 16
#define PHOTON_SSL__ERR_FLAG_CLEAR 0x02
struct photon_ssl__err_state {
    int err_flags[PHOTON_SSL__ERRS];
    int err_marks[PHOTON_SSL__ERRS];
    unsigned long err_buffer[PHOTON_SSL__ERRS];
    char *err_data[PHOTON_SSL__ERRS];
    size_t err_data_size[PHOTON_SSL__ERRS];
    int err_data_flags[PHOTON_SSL__ERRS];
    char *err_file[PHOTON_SSL__ERRS];
    int err_line[PHOTON_SSL__ERRS];
    char *err_func[PHOTON_SSL__ERRS];
    int top, bottom;
};
#if !defined(OPENSSL_NO_DEPRECATED_3_0) || defined(OSSL_FORCE_ERR_STATE)
typedef char photon_ssl__err_state_layout[sizeof(struct photon_ssl__err_state) == sizeof(struct err_state_st) ? 1 : -1];
#else
ERR_STATE *ERR_get_state(void);
#endif

static inline struct photon_ssl__err_state *photon_ssl__os_errq(void) {
#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
#endif
    return (struct photon_ssl__err_state *)(void *)ERR_get_state();
#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif
}

typedef struct photon_ssl__err_state photon_ssl__errq;

static inline int photon_ssl__errq_empty(const photon_ssl__errq *q) { return q->top == q->bottom; }

/* Frees what a set-aside queue owns and empties it. */
static inline void photon_ssl__errq_clear(photon_ssl__errq *q) {
    for (int i = 0; i < PHOTON_SSL__ERRS; i++)
        if (q->err_data_flags[i] & ERR_TXT_MALLOCED) OPENSSL_free(q->err_data[i]);
    memset(q, 0, sizeof *q);
}

/* Moves the OS thread's queue into `into` (empty before) and leaves the OS
 * thread a fresh one. */
static inline void photon_ssl__errq_take(photon_ssl__errq *into) {
    photon_ssl__errq *os = photon_ssl__os_errq();
    memset(into, 0, sizeof *into);
    if (os == NULL || photon_ssl__errq_empty(os)) return;
    *into = *os;
    memset(os, 0, sizeof *os);
}

/* Swaps the OS thread's queue with `q`. */
static inline void photon_ssl__errq_swap(photon_ssl__errq *q) {
    photon_ssl__errq *os = photon_ssl__os_errq();
    if (os == NULL || (photon_ssl__errq_empty(os) && photon_ssl__errq_empty(q))) return;
    photon_ssl__errq t = *os;
    *os = *q;
    *q = t;
}

/* Raises the entries of `q` again, oldest first, on the OS thread's queue
 * (after what it holds), then frees `q`. */
static inline void photon_ssl__errq_replay(photon_ssl__errq *q) {
    for (int i = q->bottom; i != q->top;) {
        i = (i + 1) % PHOTON_SSL__ERRS;
        const unsigned long e = q->err_buffer[i];
        if (e == 0 || (q->err_flags[i] & PHOTON_SSL__ERR_FLAG_CLEAR)) continue;
        ERR_new();
        ERR_set_debug(q->err_file[i], q->err_line[i], q->err_func[i]);
        if (q->err_data[i] != NULL && (q->err_data_flags[i] & ERR_TXT_STRING) && q->err_data[i][0] != '\0')
            ERR_set_error(ERR_GET_LIB(e), ERR_GET_REASON(e), "%s", q->err_data[i]);
        else
            ERR_set_error(ERR_GET_LIB(e), ERR_GET_REASON(e), NULL);
        for (int m = 0; m < q->err_marks[i]; m++) ERR_set_mark();
    }
    photon_ssl__errq_clear(q);
}

#else /* OpenSSL 3.2 and later: the ERR_STATE is opaque; OSSL_ERR_STATE moves queues */

typedef struct {
    ERR_STATE *s;
} photon_ssl__errq;

static inline int photon_ssl__errq_empty(const photon_ssl__errq *q) { return q->s == NULL; }

static inline void photon_ssl__errq_clear(photon_ssl__errq *q) {
    OSSL_ERR_STATE_free(q->s);
    q->s = NULL;
}

static inline void photon_ssl__errq_take(photon_ssl__errq *into) {
    into->s = NULL;
    if (ERR_peek_last_error() == 0) return;
    into->s = OSSL_ERR_STATE_new();
    if (into->s != NULL) OSSL_ERR_STATE_save(into->s);
}

static inline void photon_ssl__errq_swap(photon_ssl__errq *q) {
    photon_ssl__errq mine;
    photon_ssl__errq_take(&mine);
    if (q->s != NULL) OSSL_ERR_STATE_restore(q->s);
    photon_ssl__errq_clear(q);
    *q = mine;
}

static inline void photon_ssl__errq_replay(photon_ssl__errq *q) {
    if (q->s != NULL) OSSL_ERR_STATE_restore(q->s);
    photon_ssl__errq_clear(q);
}
#endif

/* At a photon thread's end: its stash (entries it holds for others) goes
 * back to the vcpu's queue, and what the thread itself left there is freed. */
static void photon_ssl__errq_destroy(void *p) {
    photon_ssl__errq *stash = (photon_ssl__errq *)p;
    photon_ssl__errq own;
    photon_ssl__errq_take(&own);
    photon_ssl__errq_clear(&own);
    photon_ssl__errq_replay(stash);
    free(stash);
}

/* The calling photon thread's stash, made on first use; NULL if no key. */
static inline photon_ssl__errq *photon_ssl__errq_stash(void) {
    int st = __atomic_load_n(&photon_ssl__errq_state, __ATOMIC_ACQUIRE);
    if (st != 2) {
        int expected = 0;
        if (st == 0 && __atomic_compare_exchange_n(&photon_ssl__errq_state, &expected, 1, 0, __ATOMIC_ACQ_REL,
                                                   __ATOMIC_ACQUIRE)) {
            uint32_t key;
            const int ok = photon_key_create(&key, photon_ssl__errq_destroy) == 0;
            if (ok) photon_ssl__errq_key = key;
            __atomic_store_n(&photon_ssl__errq_state, ok ? 2 : 3, __ATOMIC_RELEASE);
        }
        while ((st = __atomic_load_n(&photon_ssl__errq_state, __ATOMIC_ACQUIRE)) == 1) photon_thread_yield();
        if (st != 2) return NULL;
    }
    const int saved = errno;
    photon_ssl__errq *q = (photon_ssl__errq *)photon_getspecific(photon_ssl__errq_key);
    if (q == NULL) {
        q = (photon_ssl__errq *)calloc(1, sizeof *q);
        if (q != NULL && photon_setspecific(photon_ssl__errq_key, q) != 0) {
            free(q);
            q = NULL;
        }
    }
    errno = saved;
    return q;
}

/* --------------------------------------------------------------------- BIO */

static inline uint64_t photon_ssl__wait_budget(const photon_ssl__conn *c) {
    if (c->deadline_us == 0) return c->timeout_us;
    const uint64_t now = photon_now_us();
    return now >= c->deadline_us ? 0 : c->deadline_us - now;
}

/* A failed wait: remembered for the photon_ssl_* call, and a timeout or an
 * interrupt is "retry" to OpenSSL, so the connection survives it. */
static inline int photon_ssl__failed(BIO *b, photon_ssl__conn *c, int err, int reading) {
    c->err = err;
    if (err == EAGAIN || err == ETIMEDOUT || err == EINTR || err == ECANCELED) {
        if (reading)
            BIO_set_retry_read(b);
        else
            BIO_set_retry_write(b);
    }
    errno = err;
    return -1;
}

/* Reads one kTLS record as OpenSSL's record layer wants it: a 5-byte TLS
 * header (type from the control message, version, length) then the
 * plaintext the kernel decrypted. */
static inline ssize_t photon_ssl__ktls_recv(photon_ssl__conn *c, char *out, int outl, uint64_t budget) {
#if defined(__linux__) && defined(TLS_GET_RECORD_TYPE)
    if (outl < 5) {
        errno = EINVAL;
        return -1;
    }
    union {
        struct cmsghdr h;
        char buf[CMSG_SPACE(sizeof(unsigned char))];
    } ctl;
    struct iovec iov;
    struct msghdr msg;
    memset(&msg, 0, sizeof msg);
    iov.iov_base = out + 5;
    iov.iov_len = (size_t)outl - 5;
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = ctl.buf;
    msg.msg_controllen = sizeof ctl.buf;
    const ssize_t n = photon_recvmsg(c->fd, &msg, 0, budget);
    if (n <= 0) return n;
    struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
    if (cm == NULL || cm->cmsg_level != SOL_TLS || cm->cmsg_type != TLS_GET_RECORD_TYPE) {
        errno = EBADMSG;
        return -1;
    }
    out[0] = (char)*(unsigned char *)CMSG_DATA(cm);
    out[1] = 3; /* TLS 1.2 on the wire, also for TLS 1.3 records */
    out[2] = 3;
    out[3] = (char)((n >> 8) & 0xff);
    out[4] = (char)(n & 0xff);
    return n + 5;
#else
    (void)c, (void)out, (void)outl, (void)budget;
    errno = EOPNOTSUPP;
    return -1;
#endif
}

static int photon_ssl__bread(BIO *b, char *out, int outl) {
    photon_ssl__conn *c = (photon_ssl__conn *)BIO_get_data(b);
    BIO_clear_retry_flags(b);
    if (c == NULL || out == NULL || outl <= 0) return 0;
    photon_ssl__errq *stash = photon_ssl__errq_stash();
    if (stash != NULL) photon_ssl__errq_swap(stash);
    const uint64_t budget = photon_ssl__wait_budget(c);
    const ssize_t n = c->io != NULL                   ? c->io(c->io_arg, 0, out, (size_t)outl, budget)
                      : (c->ktls & PHOTON_SSL_KTLS_RX) ? photon_ssl__ktls_recv(c, out, outl, budget)
                                                       : photon_recv(c->fd, out, (size_t)outl, 0, budget);
    const int err = errno;
    if (stash != NULL) photon_ssl__errq_swap(stash);
    if (n < 0) return photon_ssl__failed(b, c, err, 1);
    if (n == 0) c->eof = 1;
    return (int)n;
}

static int photon_ssl__bwrite(BIO *b, const char *in, int inl) {
    photon_ssl__conn *c = (photon_ssl__conn *)BIO_get_data(b);
    BIO_clear_retry_flags(b);
    if (c == NULL || in == NULL || inl <= 0) return 0;
    photon_ssl__errq *stash = photon_ssl__errq_stash();
    if (stash != NULL) photon_ssl__errq_swap(stash);
    const uint64_t budget = photon_ssl__wait_budget(c);
    ssize_t n;
    if (c->io != NULL) {
        n = c->io(c->io_arg, 1, (void *)(uintptr_t)in, (size_t)inl, budget);
    } else
#if defined(__linux__) && defined(TLS_SET_RECORD_TYPE)
    if (c->ctrl_type != 0) {
        /* A kTLS record that is not application data: its type rides in a
         * control message. */
        union {
            struct cmsghdr h;
            char buf[CMSG_SPACE(sizeof(unsigned char))];
        } ctl;
        struct iovec iov;
        struct msghdr msg;
        memset(&msg, 0, sizeof msg);
        memset(&ctl, 0, sizeof ctl);
        iov.iov_base = (void *)in;
        iov.iov_len = (size_t)inl;
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        msg.msg_control = ctl.buf;
        msg.msg_controllen = sizeof ctl.buf;
        struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
        cm->cmsg_level = SOL_TLS;
        cm->cmsg_type = TLS_SET_RECORD_TYPE;
        cm->cmsg_len = CMSG_LEN(sizeof(unsigned char));
        *(unsigned char *)CMSG_DATA(cm) = (unsigned char)c->ctrl_type;
        n = photon_sendmsg(c->fd, &msg, 0, budget);
    } else
#endif
        n = photon_send(c->fd, in, (size_t)inl, 0, budget);
    const int err = errno;
    if (stash != NULL) photon_ssl__errq_swap(stash);
    if (n < 0) return photon_ssl__failed(b, c, err, 0);
    return (int)n;
}

static int photon_ssl__bputs(BIO *b, const char *s) { return photon_ssl__bwrite(b, s, (int)strlen(s)); }

/* Hands one direction's keys to the kernel: TCP_ULP "tls" first (once per
 * socket), then TLS_TX or TLS_RX with the crypto_info OpenSSL prepared (its
 * size follows from the cipher it names). 1 on success. */
static inline long photon_ssl__ktls_start(photon_ssl__conn *c, void *info, int tx) {
#if defined(__linux__) && defined(TLS_TX)
    if (info == NULL || c->ulp < 0 || c->fd < 0) return 0;
    if (c->ulp == 0) {
        c->ulp = setsockopt(c->fd, IPPROTO_TCP, TCP_ULP, "tls", sizeof "tls") == 0 ? 1 : -1;
        if (c->ulp < 0) return 0;
    }
    const struct tls_crypto_info *ci = (const struct tls_crypto_info *)info;
    socklen_t len;
    switch (ci->cipher_type) {
#ifdef TLS_CIPHER_AES_GCM_128
    case TLS_CIPHER_AES_GCM_128: len = sizeof(struct tls12_crypto_info_aes_gcm_128); break;
#endif
#ifdef TLS_CIPHER_AES_GCM_256
    case TLS_CIPHER_AES_GCM_256: len = sizeof(struct tls12_crypto_info_aes_gcm_256); break;
#endif
#ifdef TLS_CIPHER_AES_CCM_128
    case TLS_CIPHER_AES_CCM_128: len = sizeof(struct tls12_crypto_info_aes_ccm_128); break;
#endif
#ifdef TLS_CIPHER_CHACHA20_POLY1305
    case TLS_CIPHER_CHACHA20_POLY1305: len = sizeof(struct tls12_crypto_info_chacha20_poly1305); break;
#endif
    default: return 0;
    }
    if (setsockopt(c->fd, SOL_TLS, tx ? TLS_TX : TLS_RX, info, len) != 0) return 0;
    c->ktls |= tx ? PHOTON_SSL_KTLS_TX : PHOTON_SSL_KTLS_RX;
    return 1;
#else
    (void)c, (void)info, (void)tx;
    return 0;
#endif
}

static long photon_ssl__bctrl(BIO *b, int cmd, long num, void *ptr) {
    photon_ssl__conn *c = (photon_ssl__conn *)BIO_get_data(b);
    if (c == NULL) return 0;
    switch (cmd) {
    case BIO_C_GET_FD:
        if (ptr != NULL) *(int *)ptr = c->fd;
        return c->fd;
    case BIO_CTRL_GET_CLOSE: return BIO_get_shutdown(b);
    case BIO_CTRL_SET_CLOSE: BIO_set_shutdown(b, (int)num); return 1;
    case BIO_CTRL_FLUSH: return 1;
    case BIO_CTRL_EOF: return c->eof;
    case BIO_CTRL_PENDING:
    case BIO_CTRL_WPENDING: return 0;
    case PHOTON_SSL__CTRL_SET_KTLS: c->ktls_offers++; return photon_ssl__ktls_start(c, ptr, num != 0);
    case BIO_CTRL_GET_KTLS_SEND: return (c->ktls & PHOTON_SSL_KTLS_TX) != 0;
    case BIO_CTRL_GET_KTLS_RECV: return (c->ktls & PHOTON_SSL_KTLS_RX) != 0;
    case PHOTON_SSL__CTRL_SET_KTLS_TX_SEND_CTRL_MSG: c->ctrl_type = (int)num; return 1;
    case PHOTON_SSL__CTRL_CLEAR_KTLS_TX_CTRL_MSG: c->ctrl_type = 0; return 1;
    default: return 0;
    }
}

static int photon_ssl__bcreate(BIO *b) {
    BIO_set_data(b, NULL);
    BIO_set_init(b, 0);
    return 1;
}

static int photon_ssl__bdestroy(BIO *b) {
    photon_ssl__conn *c = (photon_ssl__conn *)BIO_get_data(b);
    if (c == NULL) return 1;
    if (BIO_get_shutdown(b) == BIO_CLOSE && c->fd >= 0 && c->io == NULL) photon_close(c->fd);
    free(c);
    BIO_set_data(b, NULL);
    BIO_set_init(b, 0);
    return 1;
}

/** The BIO method (made once per process; never freed). NULL if OpenSSL
 * could not allocate it. */
static inline BIO_METHOD *photon_ssl_bio_method(void) {
    int st = __atomic_load_n(&photon_ssl__method_state, __ATOMIC_ACQUIRE);
    if (st == 2) return photon_ssl__method;
    int expected = 0;
    if (__atomic_compare_exchange_n(&photon_ssl__method_state, &expected, 1, 0, __ATOMIC_ACQ_REL,
                                    __ATOMIC_ACQUIRE)) {
        const int index = BIO_get_new_index();
        BIO_METHOD *m =
            index < 0 ? NULL : BIO_meth_new(index | BIO_TYPE_SOURCE_SINK | BIO_TYPE_DESCRIPTOR, "photon socket");
        if (m != NULL &&
            (!BIO_meth_set_read(m, photon_ssl__bread) || !BIO_meth_set_write(m, photon_ssl__bwrite) ||
             !BIO_meth_set_puts(m, photon_ssl__bputs) || !BIO_meth_set_ctrl(m, photon_ssl__bctrl) ||
             !BIO_meth_set_create(m, photon_ssl__bcreate) || !BIO_meth_set_destroy(m, photon_ssl__bdestroy))) {
            BIO_meth_free(m);
            m = NULL;
        }
        photon_ssl__method = m;
        photon_ssl__method_type = index | BIO_TYPE_SOURCE_SINK | BIO_TYPE_DESCRIPTOR;
        __atomic_store_n(&photon_ssl__method_state, m != NULL ? 2 : 0, __ATOMIC_RELEASE);
        return m;
    }
    while ((st = __atomic_load_n(&photon_ssl__method_state, __ATOMIC_ACQUIRE)) == 1) {
        if (photon_in_thread())
            photon_thread_yield();
    }
    return st == 2 ? photon_ssl__method : NULL;
}

/** A BIO over socket `fd` with `timeout_us` per call (see above). With
 * `close_fd` non-zero, freeing the BIO closes the fd (photon_close). NULL
 * with errno EINVAL (fd < 0) or ENOMEM. */
static inline BIO *photon_ssl_bio_new(int fd, uint64_t timeout_us, int close_fd) {
    if (fd < 0) {
        errno = EINVAL;
        return NULL;
    }
    BIO_METHOD *m = photon_ssl_bio_method();
    photon_ssl__conn *c = (photon_ssl__conn *)calloc(1, sizeof *c);
    BIO *b = (m != NULL && c != NULL) ? BIO_new(m) : NULL;
    if (b == NULL) {
        free(c);
        errno = ENOMEM;
        return NULL;
    }
    c->fd = fd;
    c->timeout_us = timeout_us;
    BIO_set_data(b, c);
    BIO_set_shutdown(b, close_fd ? BIO_CLOSE : BIO_NOCLOSE);
    BIO_set_init(b, 1);
    return b;
}

/** A BIO over a transport of the caller's (`io` with `arg`), for streams
 * that are no socket fd of their own (no kTLS on those). NULL with errno
 * EINVAL (`io` NULL) or ENOMEM. */
static inline BIO *photon_ssl_bio_new_io(photon_ssl_io_fn io, void *arg, uint64_t timeout_us) {
    if (io == NULL) {
        errno = EINVAL;
        return NULL;
    }
    BIO *b = photon_ssl_bio_new(0, timeout_us, 0);
    if (b == NULL) return NULL;
    photon_ssl__conn *c = (photon_ssl__conn *)BIO_get_data(b);
    c->fd = -1;
    c->io = io;
    c->io_arg = arg;
    return b;
}

/** Puts `bio` (from photon_ssl_bio_new or _new_io) under `ssl` for both
 * directions; `ssl` owns it from then on. Turns on read-ahead
 * (SSL_set_read_ahead) and SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER. 0, or -1
 * with EINVAL. */
static inline int photon_ssl_set_bio(SSL *ssl, BIO *bio) {
    if (ssl == NULL || bio == NULL || __atomic_load_n(&photon_ssl__method_state, __ATOMIC_ACQUIRE) != 2 ||
        BIO_method_type(bio) != photon_ssl__method_type) {
        errno = EINVAL;
        return -1;
    }
    SSL_set_bio(ssl, bio, bio);
    SSL_set_mode(ssl, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    /* one receive takes what has arrived (not a record header, then its
     * body): half the receive calls, and records that arrived together are
     * decrypted without a wait in between */
    SSL_set_read_ahead(ssl, 1);
    return 0;
}

/* The photon_ssl connection under `ssl`, or NULL. */
static inline photon_ssl__conn *photon_ssl__conn_of(SSL *ssl) {
    if (ssl == NULL) return NULL;
    BIO *b = SSL_get_rbio(ssl);
    if (b == NULL || __atomic_load_n(&photon_ssl__method_state, __ATOMIC_ACQUIRE) != 2 ||
        BIO_method_type(b) != photon_ssl__method_type)
        return NULL;
    return (photon_ssl__conn *)BIO_get_data(b);
}

/** Puts a photon_ssl BIO over `fd` under `ssl` (both directions; the fd
 * stays open when the SSL is freed). 0, or -1 with EINVAL / ENOMEM. */
static inline int photon_ssl_set_fd(SSL *ssl, int fd, uint64_t timeout_us) {
    if (ssl == NULL) {
        errno = EINVAL;
        return -1;
    }
    BIO *b = photon_ssl_bio_new(fd, timeout_us, 0);
    if (b == NULL) return -1;
    return photon_ssl_set_bio(ssl, b);
}

/** Sets the connection's timeout (microseconds; PHOTON_FOREVER: none).
 * 0, or -1/EINVAL if `ssl` has no photon_ssl BIO. */
static inline int photon_ssl_set_timeout(SSL *ssl, uint64_t timeout_us) {
    photon_ssl__conn *c = photon_ssl__conn_of(ssl);
    if (c == NULL) {
        errno = EINVAL;
        return -1;
    }
    c->timeout_us = timeout_us;
    return 0;
}

/** Asks OpenSSL to hand the record layer to the kernel after the handshake
 * (SSL_OP_ENABLE_KTLS); it happens when the kernel and the cipher allow.
 * Call before the handshake. 0, or -1/EINVAL. */
static inline int photon_ssl_enable_ktls(SSL *ssl) {
    if (ssl == NULL) {
        errno = EINVAL;
        return -1;
    }
    SSL_set_options(ssl, SSL_OP_ENABLE_KTLS);
    return 0;
}

/** PHOTON_SSL_KTLS_TX | PHOTON_SSL_KTLS_RX for the directions the kernel
 * encrypts / decrypts, 0 for none (user-space TLS), -1/EINVAL. */
static inline int photon_ssl_ktls_active(SSL *ssl) {
    photon_ssl__conn *c = photon_ssl__conn_of(ssl);
    if (c == NULL) {
        errno = EINVAL;
        return -1;
    }
    return c->ktls;
}

/* ------------------------------------------------------------------- calls */

/* What one photon_ssl_* call keeps between its start and its end. */
typedef struct {
    photon_ssl__conn *c;
    photon_ssl__errq stale; /* the caller's queue from before the call */
} photon_ssl__call;

static inline int photon_ssl__begin(photon_ssl__call *call, SSL *ssl) {
    call->c = photon_ssl__conn_of(ssl);
    if (call->c == NULL) {
        errno = EINVAL;
        return -1;
    }
    if (!photon_in_thread()) {
        errno = EPERM;
        return -1;
    }
    photon_ssl__errq_take(&call->stale);
    call->c->err = 0;
    const uint64_t now = photon_now_us();
    call->c->deadline_us = call->c->timeout_us >= PHOTON_FOREVER - now ? 0 : now + call->c->timeout_us;
    return 0;
}

/* Ends a call: the caller's earlier errors go back ahead of the call's own;
 * `ret` is returned with errno `err` (if ret < 0). */
static inline ssize_t photon_ssl__end(photon_ssl__call *call, ssize_t ret, int err) {
    call->c->deadline_us = 0;
    if (!photon_ssl__errq_empty(&call->stale)) {
        photon_ssl__errq now;
        photon_ssl__errq_take(&now);
        photon_ssl__errq_replay(&call->stale);
        photon_ssl__errq_replay(&now);
    }
    if (ret < 0) errno = err;
    return ret;
}

/* Runs `op` until it completes; WANT_READ/WRITE without a failed wait are
 * retried (the BIO waited already). Returns op's result (> 0), 0 for a
 * clean close_notify when `eof_ok`, or -1 with *err set. */
static inline int photon_ssl__drive(SSL *ssl, photon_ssl__conn *c, int (*op)(SSL *, void *, int), void *buf,
                                    int len, int eof_ok, int *err) {
    for (;;) {
        c->err = 0;
        const int r = op(ssl, buf, len);
        if (r > 0) return r;
        const int e = SSL_get_error(ssl, r);
        switch (e) {
        case SSL_ERROR_ZERO_RETURN:
            if (eof_ok) return 0;
            *err = ECONNRESET;
            return -1;
        case SSL_ERROR_WANT_READ:
        case SSL_ERROR_WANT_WRITE:
            if (c->err != 0) {
                *err = c->err;
                return -1;
            }
            continue;
        case SSL_ERROR_SYSCALL:
            *err = c->err != 0 ? c->err : ECONNRESET;
            return -1;
        case SSL_ERROR_SSL: {
            const unsigned long last = ERR_peek_last_error();
            if (c->err != 0)
                *err = c->err;
            else if (ERR_GET_LIB(last) == ERR_LIB_SSL && ERR_GET_REASON(last) == SSL_R_UNEXPECTED_EOF_WHILE_READING)
                *err = ECONNRESET;
            else
                *err = EPROTO;
            return -1;
        }
        default:
            *err = EPROTO;
            return -1;
        }
    }
}

static inline int photon_ssl__op_handshake(SSL *ssl, void *buf, int len) {
    (void)buf, (void)len;
    return SSL_do_handshake(ssl);
}
static inline int photon_ssl__op_read(SSL *ssl, void *buf, int len) { return SSL_read(ssl, buf, len); }
static inline int photon_ssl__op_write(SSL *ssl, void *buf, int len) { return SSL_write(ssl, buf, len); }

static inline int photon_ssl__handshake(SSL *ssl, int server) {
    photon_ssl__call call;
    if (photon_ssl__begin(&call, ssl) != 0) return -1;
    if (SSL_in_before(ssl)) { /* not when going on after a timeout */
        if (server)
            SSL_set_accept_state(ssl);
        else
            SSL_set_connect_state(ssl);
    }
    int err = 0;
    const int r = photon_ssl__drive(ssl, call.c, photon_ssl__op_handshake, NULL, 0, 0, &err);
    return (int)photon_ssl__end(&call, r < 0 ? -1 : 0, err);
}

/** Server handshake: 0 once it completed, or -1 with errno (see above). */
static inline int photon_ssl_accept(SSL *ssl) { return photon_ssl__handshake(ssl, 1); }

/** Client handshake (set SNI and verification on `ssl` before): 0, or -1
 * with errno; a certificate that fails verification is EPROTO with
 * SSL_get_verify_result(ssl) != X509_V_OK. */
static inline int photon_ssl_connect(SSL *ssl) { return photon_ssl__handshake(ssl, 0); }

/** Reads what has arrived (waiting once for a record): the count, 0 when
 * the peer sent close_notify, or -1 with errno (ECONNRESET: the connection
 * ended without close_notify). Does the handshake first if it was not done. */
static inline ssize_t photon_ssl_read(SSL *ssl, void *buf, size_t count) {
    photon_ssl__call call;
    if (buf == NULL && count > 0) {
        errno = EINVAL;
        return -1;
    }
    if (photon_ssl__begin(&call, ssl) != 0) return -1;
    int err = 0;
    const int len = count > (size_t)INT32_MAX ? INT32_MAX : (int)count;
    const int r = len == 0 ? 0 : photon_ssl__drive(ssl, call.c, photon_ssl__op_read, buf, len, 1, &err);
    return photon_ssl__end(&call, r, err);
}

/** Writes all `count` bytes: `count`, or -1 with errno. After ETIMEDOUT or
 * an interrupt some may have gone: call again with the same arguments to
 * finish. */
static inline ssize_t photon_ssl_write(SSL *ssl, const void *buf, size_t count) {
    photon_ssl__call call;
    if (buf == NULL && count > 0) {
        errno = EINVAL;
        return -1;
    }
    if (photon_ssl__begin(&call, ssl) != 0) return -1;
    int err = 0;
    size_t done = 0;
    while (done < count) {
        const size_t left = count - done;
        const int len = left > (size_t)INT32_MAX ? INT32_MAX : (int)left;
        const int r =
            photon_ssl__drive(ssl, call.c, photon_ssl__op_write, (char *)(uintptr_t)buf + done, len, 0, &err);
        if (r < 0) return photon_ssl__end(&call, -1, err);
        done += (size_t)r;
    }
    return photon_ssl__end(&call, (ssize_t)count, 0);
}

/** Sends `count` bytes of file `file_fd` from `offset` (the file's offset
 * is not used or moved): with kTLS on the send side through sendfile(2)
 * (SSL_sendfile: the kernel encrypts, no copy to user space), otherwise
 * read with photon_pread and written with photon_ssl_write. Returns the count
 * sent (less only at the file's end), or -1 with errno (EINVAL, the file's
 * or the connection's error). */
static inline ssize_t photon_ssl_sendfile(SSL *ssl, int file_fd, off_t offset, size_t count) {
    photon_ssl__conn *c = photon_ssl__conn_of(ssl);
    if (c == NULL || file_fd < 0 || offset < 0) {
        errno = EINVAL;
        return -1;
    }
    size_t done = 0;
    if ((c->ktls & PHOTON_SSL_KTLS_TX) && c->fd >= 0) {
        photon_ssl__call call;
        if (photon_ssl__begin(&call, ssl) != 0) return -1;
        int err = 0;
        while (done < count) {
            ERR_clear_error();
            const ossl_ssize_t n = SSL_sendfile(ssl, file_fd, offset + (off_t)done, count - done, 0);
            if (n > 0) {
                done += (size_t)n;
                continue;
            }
            if (n == 0) break; /* the file ended */
            if (!BIO_should_retry(SSL_get_wbio(ssl))) {
                err = errno != 0 ? errno : EIO;
                break;
            }
            photon_ssl__errq *stash = photon_ssl__errq_stash();
            if (stash != NULL) photon_ssl__errq_swap(stash);
            const int w = photon_wait_fd(c->fd, PHOTON_WRITABLE, photon_ssl__wait_budget(c));
            err = errno;
            if (stash != NULL) photon_ssl__errq_swap(stash);
            if (w < 0) break;
            err = 0;
        }
        const ssize_t ret = done > 0 || err == 0 ? (ssize_t)done : -1;
        return photon_ssl__end(&call, ret, err);
    }
    char buf[16384];
    while (done < count) {
        const size_t want = count - done < sizeof buf ? count - done : sizeof buf;
        const ssize_t n = photon_pread(file_fd, buf, want, offset + (off_t)done);
        if (n < 0) return done > 0 ? (ssize_t)done : -1;
        if (n == 0) break;
        if (photon_ssl_write(ssl, buf, (size_t)n) != n) return done > 0 ? (ssize_t)done : -1;
        done += (size_t)n;
    }
    return (ssize_t)done;
}

/** Sends close_notify. Returns 1 if the peer's close_notify had arrived
 * too (the TLS session ended both ways), 0 if only ours went (read until
 * photon_ssl_read returns 0 to wait for the peer's), -1 with errno. */
static inline int photon_ssl_shutdown(SSL *ssl) {
    photon_ssl__call call;
    if (photon_ssl__begin(&call, ssl) != 0) return -1;
    int err = 0, ret;
    for (;;) {
        call.c->err = 0;
        const int r = SSL_shutdown(ssl);
        if (r >= 0) {
            ret = r;
            break;
        }
        const int e = SSL_get_error(ssl, r);
        if ((e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) && call.c->err == 0) continue;
        err = call.c->err != 0 ? call.c->err : (e == SSL_ERROR_SYSCALL ? ECONNRESET : EPROTO);
        ret = -1;
        break;
    }
    return (int)photon_ssl__end(&call, ret, err);
}

#ifdef __cplusplus
}
#endif

#endif /* PHOTON_SSL_H */
