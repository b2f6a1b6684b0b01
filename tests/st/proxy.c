/* The behaviour of State Threads' example proxy, over loopback in one
 * process: a TCP proxy accepts clients and, in one thread per session,
 * connects to the server and relays both ways, waiting on both sockets
 * with st_poll. The server answers each line in upper case; clients check
 * every answer, then close, which ends their session. */
#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <st.h>
#include <stdint.h>
#include <sys/socket.h>

#include "st_check.h"

#define CLIENTS 20
#define ROUNDS 50
#define TIMEOUT (5000 * MS)

static struct sockaddr_in server_addr, proxy_addr;
static int sessions_ended;

static st_netfd_t listen_on(struct sockaddr_in *addr)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    *addr = (struct sockaddr_in){.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof *addr;
    CHECK(bind(fd, (struct sockaddr *)addr, sizeof *addr) == 0 && listen(fd, 64) == 0);
    CHECK(getsockname(fd, (struct sockaddr *)addr, &len) == 0);
    st_netfd_t nfd = st_netfd_open_socket(fd);
    CHECK(nfd != NULL);
    return nfd;
}

static void *upper_session(void *arg)
{
    st_netfd_t c = arg;
    char buf[512];
    ssize_t n;
    while ((n = st_read(c, buf, sizeof buf, TIMEOUT)) > 0) {
        for (ssize_t i = 0; i < n; i++)
            buf[i] = (char)toupper((unsigned char)buf[i]);
        CHECK(st_write(c, buf, (size_t)n, TIMEOUT) == n);
    }
    st_netfd_close(c);
    return NULL;
}

static void *acceptor(void *arg)
{
    st_netfd_t l = arg;
    void *(*session)(void *) = st_netfd_getspecific(l);
    for (;;) {
        st_netfd_t c = st_accept(l, NULL, NULL, ST_UTIME_NO_TIMEOUT);
        if (c == NULL)
            return NULL; /* interrupted: shut down */
        CHECK(st_thread_create(session, c, 0, 0) != NULL);
    }
}

/* Copies what is readable on in to out; 0 at end of file. */
static int pass(st_netfd_t in, st_netfd_t out)
{
    char buf[4096];
    ssize_t n = st_read(in, buf, sizeof buf, ST_UTIME_NO_TIMEOUT);
    if (n <= 0)
        return 0;
    return st_write(out, buf, (size_t)n, ST_UTIME_NO_TIMEOUT) == n;
}

static void *proxy_session(void *arg)
{
    st_netfd_t cli = arg;
    st_netfd_t srv = st_netfd_open_socket(socket(AF_INET, SOCK_STREAM, 0));
    CHECK(srv != NULL);
    CHECK(st_connect(srv, (struct sockaddr *)&server_addr, sizeof server_addr, TIMEOUT) == 0);
    struct pollfd pds[2] = {{st_netfd_fileno(cli), POLLIN, 0}, {st_netfd_fileno(srv), POLLIN, 0}};
    for (;;) {
        pds[0].revents = pds[1].revents = 0;
        CHECK(st_poll(pds, 2, ST_UTIME_NO_TIMEOUT) > 0);
        if ((pds[0].revents & (POLLIN | POLLHUP | POLLERR)) && !pass(cli, srv))
            break;
        if ((pds[1].revents & (POLLIN | POLLHUP | POLLERR)) && !pass(srv, cli))
            break;
    }
    st_netfd_close(srv);
    st_netfd_close(cli);
    sessions_ended++;
    return NULL;
}

static void *client(void *arg)
{
    int id = (int)(uintptr_t)arg;
    st_netfd_t c = st_netfd_open_socket(socket(AF_INET, SOCK_STREAM, 0));
    CHECK(c && st_connect(c, (struct sockaddr *)&proxy_addr, sizeof proxy_addr, TIMEOUT) == 0);
    for (int r = 0; r < ROUNDS; r++) {
        char msg[64], want[64], got[64];
        int n = snprintf(msg, sizeof msg, "client %d round %d\n", id, r);
        for (int i = 0; i <= n; i++)
            want[i] = (char)toupper((unsigned char)msg[i]);
        CHECK(st_write(c, msg, (size_t)n, TIMEOUT) == n);
        CHECK(st_read_fully(c, got, (size_t)n, TIMEOUT) == n);
        CHECK(memcmp(got, want, (size_t)n) == 0);
    }
    st_netfd_close(c);
    return NULL;
}

int main(void)
{
    CHECK(st_set_eventsys(ST_EVENTSYS_ALT) == 0);
    CHECK(st_init() == 0);
    st_netfd_t sl = listen_on(&server_addr), pl = listen_on(&proxy_addr);
    st_netfd_setspecific(sl, (void *)upper_session, NULL);
    st_netfd_setspecific(pl, (void *)proxy_session, NULL);
    st_thread_t server = st_thread_create(acceptor, sl, 1, 0);
    st_thread_t proxy = st_thread_create(acceptor, pl, 1, 0);
    st_thread_t clients[CLIENTS];
    for (int i = 0; i < CLIENTS; i++)
        CHECK((clients[i] = st_thread_create(client, (void *)(uintptr_t)i, 1, 0)) != NULL);
    for (int i = 0; i < CLIENTS; i++)
        CHECK(st_thread_join(clients[i], NULL) == 0);
    for (int i = 0; i < 200 && sessions_ended < CLIENTS; i++)
        st_usleep(5 * MS);
    printf("proxy: %d clients x %d rounds relayed, %d sessions ended\n", CLIENTS, ROUNDS, sessions_ended);
    st_thread_interrupt(server);
    st_thread_interrupt(proxy);
    CHECK(st_thread_join(server, NULL) == 0 && st_thread_join(proxy, NULL) == 0);
    CHECK(st_netfd_close(sl) == 0 && st_netfd_close(pl) == 0);
    return 0;
}
