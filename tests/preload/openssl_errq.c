/* OpenSSL's error queue (kept behind a pthread key) per photon thread under
 * libphoton_preload.so.
 *
 * Pairs of photon threads on one vcpu: A raises an error (ERR_raise) and
 * sleeps (hooked usleep); B runs meanwhile, finds its queue empty, raises a
 * different error (a failing d2i_X509) and sleeps; each then finds exactly
 * its own error at the head of its queue. The vcpu's main thread keeps an
 * empty queue. With PHOTON_PRELOAD_PTHREAD=0 (keys off) this program fails.
 * Exit status 0 when every check passed. */
#include <openssl/asn1.h>
#include <openssl/err.h>
#include <openssl/x509.h>
#include <photon.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define PAIRS 10
#define A_REASON 101

static int failures;

#define CHECK(cond, ...)                                                   \
    do {                                                                   \
        if (!(cond)) {                                                     \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);           \
            fprintf(stderr, __VA_ARGS__);                                  \
            fprintf(stderr, "\n");                                         \
            __atomic_add_fetch(&failures, 1, __ATOMIC_RELAXED);            \
        }                                                                  \
    } while (0)

static volatile int a_raised[PAIRS];

static void *thread_a(void *arg) {
    long i = (long)arg;
    CHECK(ERR_peek_error() == 0, "A%ld: queue not empty at start", i);
    ERR_raise(ERR_LIB_USER, A_REASON);
    a_raised[i] = 1;
    usleep(20000);
    unsigned long e = ERR_peek_error();
    CHECK(ERR_GET_LIB(e) == ERR_LIB_USER && ERR_GET_REASON(e) == A_REASON,
          "A%ld: head of queue is lib %d reason %d, not its own", i, ERR_GET_LIB(e), ERR_GET_REASON(e));
    CHECK(ERR_peek_last_error() == e, "A%ld: another error in its queue", i);
    ERR_clear_error();
    return NULL;
}

static void *thread_b(void *arg) {
    long i = (long)arg;
    while (!a_raised[i])
        usleep(100);
    unsigned long seen = ERR_peek_error();
    CHECK(seen == 0, "B%ld: sees an error it did not raise (lib %d reason %d)", i, ERR_GET_LIB(seen),
          ERR_GET_REASON(seen));
    static const unsigned char junk[] = {0x30, 0x03, 0x02, 0x01};
    const unsigned char *p = junk;
    X509 *x = d2i_X509(NULL, &p, sizeof junk);
    CHECK(x == NULL, "B%ld: junk parsed as a certificate", i);
    X509_free(x);
    unsigned long e = ERR_peek_error();
    CHECK(e != 0 && ERR_GET_LIB(e) == ERR_LIB_ASN1, "B%ld: head of queue is lib %d, not ASN1", i,
          ERR_GET_LIB(e));
    usleep(10000);
    CHECK(ERR_peek_error() == e, "B%ld: its error changed while it slept", i);
    ERR_clear_error();
    return NULL;
}

static photon_thread *spawn(photon_entry f, void *arg) {
    photon_thread *t = photon_thread_create(f, arg, 256 * 1024);
    if (!t || photon_thread_enable_join(t) != 0) {
        perror("photon_thread_create");
        exit(2);
    }
    return t;
}

int main(void) {
    if (photon_init(0, 0) != 0) {
        perror("photon_init");
        return 2;
    }
    ERR_clear_error();
    photon_thread *ts[2 * PAIRS];
    for (long i = 0; i < PAIRS; i++) {
        ts[2 * i] = spawn(thread_a, (void *)i);
        ts[2 * i + 1] = spawn(thread_b, (void *)i);
    }
    for (int i = 0; i < 2 * PAIRS; i++)
        photon_thread_join(ts[i], NULL);
    CHECK(ERR_peek_error() == 0, "main: its queue got another thread's error");
    photon_fini();
    if (failures) {
        fprintf(stderr, "%d checks failed\n", failures);
        return 1;
    }
    printf("openssl_errq: %d pairs of photon threads kept their own error queues\n", PAIRS);
    return 0;
}
