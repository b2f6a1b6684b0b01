/*
 * A Unix stream server: photon_server_new_unix on a temporary path, served
 * in a photon thread; clients connect with photon_socket(AF_UNIX) +
 * photon_connect and echo messages byte-exactly; photon_server_port is 0;
 * a leftover socket file is replaced, a regular file is not; bad paths
 * give EINVAL; a second serve of a serving server gives EBUSY;
 * photon_server_stop from a plain pthread makes serve return 0 (also when
 * stopped before serving); photon_server_free removes the socket file.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "check.h"

#define SEC 1000000ULL
#define CLIENTS 20
#define MESSAGES 50

static atomic_int handlers_done;

static int echo_handler(void *userdata, int fd) {
    (void)userdata;
    char buf[8192];
    for (;;) {
        ssize_t n = photon_read(fd, buf, sizeof buf, 10 * SEC);
        if (n <= 0) {
            break;
        }
        if (photon_write_full(fd, buf, (size_t)n, 10 * SEC) != n) {
            break;
        }
    }
    photon_close(fd);
    atomic_fetch_add(&handlers_done, 1);
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

struct client {
    int index;
    const char *path;
    int ok;
};

static void *client_main(void *arg) {
    struct client *c = arg;
    int fd = photon_socket(AF_UNIX, SOCK_STREAM, 0);
    CHECK(fd >= 0, "photon_socket(AF_UNIX): %s", strerror(errno));
    struct sockaddr_un sun;
    memset(&sun, 0, sizeof sun);
    sun.sun_family = AF_UNIX;
    snprintf(sun.sun_path, sizeof sun.sun_path, "%s", c->path);
    CHECK_OK(photon_connect(fd, (struct sockaddr *)&sun, sizeof sun, 5 * SEC));
    unsigned char out[6000], in[6000];
    for (int m = 0; m < MESSAGES; m++) {
        size_t len = 1 + (size_t)((c->index * 7919 + m * 104729) % (int)sizeof out);
        for (size_t i = 0; i < len; i++) {
            out[i] = (unsigned char)(c->index + m * 3 + i * 11);
        }
        CHECK(photon_write_full(fd, out, len, 5 * SEC) == (ssize_t)len, "client %d write: %s",
              c->index, strerror(errno));
        CHECK(photon_read_full(fd, in, len, 5 * SEC) == (ssize_t)len, "client %d read: %s",
              c->index, strerror(errno));
        CHECK(memcmp(in, out, len) == 0, "client %d message %d: echo differs", c->index, m);
    }
    CHECK_OK(photon_close(fd));
    c->ok = 1;
    return NULL;
}

struct stopper {
    photon_server *server;
    int ret;
};

static void *stopper_main(void *arg) {
    struct stopper *st = arg;
    struct timespec ts = {0, 30000000};
    nanosleep(&ts, NULL);
    st->ret = photon_server_stop(st->server);
    return NULL;
}

static int is_socket_file(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISSOCK(st.st_mode);
}

int main(void) {
    test_start("net_unix");
    test_init();

    char dir[] = "/tmp/photon-net-unix-XXXXXX";
    CHECK(mkdtemp(dir) != NULL, "mkdtemp: %s", strerror(errno));
    char path[100];
    snprintf(path, sizeof path, "%s/echo.sock", dir);

    SAY("bad paths: NULL, empty, too long give EINVAL");
    CHECK_NULL_ERRNO(photon_server_new_unix(NULL, 0), EINVAL);
    CHECK_NULL_ERRNO(photon_server_new_unix("", 0), EINVAL);
    char longpath[300];
    memset(longpath, 'a', sizeof longpath - 1);
    longpath[0] = '/';
    longpath[sizeof longpath - 1] = '\0';
    CHECK_NULL_ERRNO(photon_server_new_unix(longpath, 0), EINVAL);

    SAY("a regular file at the path is not replaced: EADDRINUSE, the file stays");
    FILE *f = fopen(path, "w");
    CHECK(f != NULL, "fopen: %s", strerror(errno));
    fputs("keep me", f);
    fclose(f);
    CHECK_NULL_ERRNO(photon_server_new_unix(path, 0), EADDRINUSE);
    struct stat st;
    CHECK(stat(path, &st) == 0 && S_ISREG(st.st_mode) && st.st_size == 7,
          "the regular file was removed or changed");
    CHECK_OK(unlink(path));

    SAY("a leftover socket file (bound, then closed) is replaced");
    {
        int stale = socket(AF_UNIX, SOCK_STREAM, 0);
        struct sockaddr_un sun;
        memset(&sun, 0, sizeof sun);
        sun.sun_family = AF_UNIX;
        snprintf(sun.sun_path, sizeof sun.sun_path, "%s", path);
        CHECK_OK(bind(stale, (struct sockaddr *)&sun, sizeof sun));
        CHECK_OK(close(stale));
        CHECK(is_socket_file(path), "no leftover socket file");
    }
    errno = 0;
    photon_server *server = photon_server_new_unix(path, 0);
    CHECK(server != NULL, "photon_server_new_unix over a leftover socket: %s",
          strerror(errno));
    CHECK(is_socket_file(path), "no socket file at %s", path);
    CHECK(photon_server_port(server) == 0, "photon_server_port of a Unix server is %d",
          photon_server_port(server));

    struct serve_arg sa = {.server = server, .ret = 99};
    photon_thread *serve_th = spawn_joinable(serve_main, &sa, 0);

    SAY("%d clients x %d messages through %s", CLIENTS, MESSAGES, path);
    struct client clients[CLIENTS];
    photon_thread *ths[CLIENTS];
    for (int i = 0; i < CLIENTS; i++) {
        clients[i].index = i;
        clients[i].path = path;
        clients[i].ok = 0;
        ths[i] = spawn_joinable(client_main, &clients[i], 0);
    }
    for (int i = 0; i < CLIENTS; i++) {
        join_ok(ths[i]);
        CHECK(clients[i].ok, "client %d failed", i);
    }
    for (int i = 0; i < 300 && atomic_load(&handlers_done) < CLIENTS; i++) {
        CHECK_OK(photon_thread_usleep(10000));
    }
    CHECK(atomic_load(&handlers_done) == CLIENTS, "%d handlers done",
          atomic_load(&handlers_done));

    SAY("a second serve of the same server while it serves: EBUSY");
    {
        struct serve_arg sa2 = {.server = server, .ret = 99};
        photon_thread *th2 = spawn_joinable(serve_main, &sa2, 0);
        join_ok(th2);
        CHECK(sa2.ret == -1 && sa2.err == EBUSY, "second serve: %d with errno %d (%s)",
              sa2.ret, sa2.err, strerror(sa2.err));
    }

    SAY("photon_server_stop from a plain pthread while the vcpu sleeps: serve returns 0; "
        "photon_server_free removes the socket file");
    pthread_t pt;
    struct stopper stopper = {.server = server, .ret = 99};
    CHECK(pthread_create(&pt, NULL, stopper_main, &stopper) == 0, "pthread_create");
    uint64_t t0 = photon_now_us();
    join_ok(serve_th);
    uint64_t took = elapsed_us(t0);
    CHECK(pthread_join(pt, NULL) == 0, "pthread_join");
    CHECK(stopper.ret == 0, "photon_server_stop from a pthread: %d", stopper.ret);
    CHECK(took < 30000 + 200000, "serve returned %" PRIu64 " us after the stop (at 30 ms)",
          took);
    CHECK(sa.ret == 0, "serve returned %d with errno %d (%s)", sa.ret, sa.err,
          strerror(sa.err));
    CHECK(is_socket_file(path), "the socket file went away before photon_server_free");
    photon_server_free(server);
    errno = 0;
    CHECK(stat(path, &st) == -1 && errno == ENOENT, "%s still exists after free", path);

    SAY("connecting afterwards fails: ENOENT");
    {
        int fd = photon_socket(AF_UNIX, SOCK_STREAM, 0);
        struct sockaddr_un sun;
        memset(&sun, 0, sizeof sun);
        sun.sun_family = AF_UNIX;
        snprintf(sun.sun_path, sizeof sun.sun_path, "%s", path);
        CHECK_ERRNO(photon_connect(fd, (struct sockaddr *)&sun, sizeof sun, SEC), ENOENT);
        CHECK_OK(photon_close(fd));
    }

    SAY("a server stopped before it serves: serve returns 0 at once");
    server = photon_server_new_unix(path, 4);
    CHECK(server != NULL, "photon_server_new_unix: %s", strerror(errno));
    CHECK_OK(photon_server_stop(server));
    CHECK_OK(photon_server_serve(server, echo_handler, NULL));
    photon_server_free(server);
    CHECK(!is_socket_file(path), "socket file left behind");

    SAY("a server freed without ever serving also removes its file");
    server = photon_server_new_unix(path, 4);
    CHECK(server != NULL, "photon_server_new_unix: %s", strerror(errno));
    CHECK(is_socket_file(path), "no socket file");
    photon_server_free(server);
    CHECK(!is_socket_file(path), "socket file left behind");
    photon_server_free(NULL);

    CHECK_OK(rmdir(dir));
    test_fini();
    SAY("net_unix: OK");
    return 0;
}
