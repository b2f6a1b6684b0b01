/*
 * Accepting bursts: 40 clients connect while nobody accepts (io_uring's
 * multishot accept takes some ahead, up to its cap, the rest wait in the
 * backlog): each is accepted exactly once, with its own data. An accept
 * that timed out leaves the listener usable. Closing a listener with
 * connections nobody accepted ends them: their clients see EOF or a reset,
 * not silence.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "check.h"

#define SEC 1000000ULL
#define BURST 40

static int listener(struct sockaddr_in *sin) {
    int lfd = photon_socket(AF_INET, SOCK_STREAM, 0);
    CHECK(lfd >= 0, "photon_socket: %s", strerror(errno));
    memset(sin, 0, sizeof *sin);
    sin->sin_family = AF_INET;
    sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CHECK_OK(bind(lfd, (struct sockaddr *)sin, sizeof *sin));
    CHECK_OK(listen(lfd, 128));
    socklen_t len = sizeof *sin;
    CHECK_OK(getsockname(lfd, (struct sockaddr *)sin, &len));
    return lfd;
}

static int dial(const struct sockaddr_in *sin) {
    int c = photon_socket(AF_INET, SOCK_STREAM, 0);
    CHECK(c >= 0, "photon_socket: %s", strerror(errno));
    CHECK_OK(photon_connect(c, (const struct sockaddr *)sin, sizeof *sin, SEC));
    return c;
}

static void burst(void) {
    SAY("%d clients connect while nobody accepts; each is accepted once", BURST);
    struct sockaddr_in sin;
    int lfd = listener(&sin);
    /* one accepted first: an engine that accepts ahead is armed now */
    int c0 = dial(&sin);
    int a0 = photon_accept(lfd, NULL, NULL, SEC);
    CHECK(a0 >= 0, "first accept: %s", strerror(errno));
    int clients[BURST];
    for (int i = 0; i < BURST; i++) {
        clients[i] = dial(&sin);
        unsigned char id = (unsigned char)i;
        CHECK(photon_write(clients[i], &id, 1, SEC) == 1, "write: %s", strerror(errno));
    }
    CHECK_OK(photon_thread_usleep(50 * 1000)); /* the engine takes what it takes */
    int seen[BURST] = {0};
    for (int i = 0; i < BURST; i++) {
        int a = photon_accept(lfd, NULL, NULL, SEC);
        CHECK(a >= 0, "accept %d of %d: %s", i + 1, BURST, strerror(errno));
        unsigned char id = 0xff;
        CHECK(photon_read(a, &id, 1, SEC) == 1, "read from accepted %d: %s", i, strerror(errno));
        CHECK(id < BURST && !seen[id], "client %u accepted twice or unknown", id);
        seen[id] = 1;
        CHECK(photon_write(a, "k", 1, SEC) == 1, "reply: %s", strerror(errno));
        CHECK_OK(photon_close(a));
    }
    for (int i = 0; i < BURST; i++) {
        char k = 0;
        CHECK(photon_read(clients[i], &k, 1, SEC) == 1 && k == 'k', "client %d got no reply", i);
        CHECK_OK(photon_close(clients[i]));
    }
    SAY("no connection left behind: an accept now times out");
    CHECK_ERRNO(photon_accept(lfd, NULL, NULL, 30 * 1000), ETIMEDOUT);
    CHECK_OK(photon_close(a0));
    CHECK_OK(photon_close(c0));
    CHECK_OK(photon_close(lfd));
}

static void timeout_then_accept(void) {
    SAY("an accept that timed out leaves the listener usable");
    struct sockaddr_in sin;
    int lfd = listener(&sin);
    for (int round = 0; round < 3; round++) {
        CHECK_ERRNO(photon_accept(lfd, NULL, NULL, 20 * 1000), ETIMEDOUT);
        int c = dial(&sin);
        int a = photon_accept(lfd, NULL, NULL, SEC);
        CHECK(a >= 0, "round %d: accept after a timeout: %s", round, strerror(errno));
        CHECK(photon_write(c, "x", 1, SEC) == 1, "write: %s", strerror(errno));
        char x = 0;
        CHECK(photon_read(a, &x, 1, SEC) == 1 && x == 'x', "round %d: data", round);
        CHECK_OK(photon_close(a));
        CHECK_OK(photon_close(c));
    }
    CHECK_OK(photon_close(lfd));
}

static void close_with_unaccepted(void) {
    SAY("closing a listener ends the connections nobody accepted");
    struct sockaddr_in sin;
    int lfd = listener(&sin);
    int c0 = dial(&sin);
    int a0 = photon_accept(lfd, NULL, NULL, SEC);
    CHECK(a0 >= 0, "first accept: %s", strerror(errno));
    int clients[5];
    for (int i = 0; i < 5; i++) clients[i] = dial(&sin);
    CHECK_OK(photon_thread_usleep(50 * 1000));
    CHECK_OK(photon_close(lfd));
    for (int i = 0; i < 5; i++) {
        char b;
        errno = 0;
        ssize_t r = photon_read(clients[i], &b, 1, SEC);
        CHECK(r == 0 || (r == -1 && errno == ECONNRESET),
              "client %d of a closed listener: read gave %zd (%s), want EOF or ECONNRESET", i, r,
              strerror(errno));
        CHECK_OK(photon_close(clients[i]));
    }
    CHECK_OK(photon_close(a0));
    CHECK_OK(photon_close(c0));
}

int main(void) {
    test_start("net_accept_burst");
    test_init();
    burst();
    timeout_then_accept();
    close_with_unaccepted();
    test_fini();
    SAY("net_accept_burst: ok");
    return 0;
}
