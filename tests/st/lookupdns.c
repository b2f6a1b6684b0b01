/* The behaviour of State Threads' example DNS lookup client, without the
 * network: one thread per host name sends a DNS query (RFC 1035 wire
 * format) over UDP with st_sendto and waits for the answer with
 * st_recvfrom and a timeout, retrying as the example's resolver does. The
 * name server is a local fake on loopback that answers A queries from a
 * table, NXDOMAIN otherwise, and drops the first query of one name (so
 * that lookup needs its retry). */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <st.h>
#include <stdint.h>
#include <sys/socket.h>

#include "st_check.h"

static const struct {
    const char *name;
    const char *addr;
} zone[] = {{"alpha.test", "10.0.0.1"}, {"beta.test", "10.0.0.2"}, {"slow.test", "10.0.0.3"}};
static const char *queries[] = {"alpha.test", "beta.test", "missing.test", "slow.test"};
#define NQUERIES 4

static struct sockaddr_in ns_addr;
static int dropped;

/* Writes name as DNS labels at p; returns the bytes written. */
static int put_name(unsigned char *p, const char *name)
{
    int n = 0;
    while (*name) {
        const char *dot = strchr(name, '.');
        int len = dot ? (int)(dot - name) : (int)strlen(name);
        p[n++] = (unsigned char)len;
        memcpy(p + n, name, (size_t)len);
        n += len;
        name += len + (dot != NULL);
    }
    p[n++] = 0;
    return n;
}

/* Reads DNS labels at p into out; returns the bytes read. */
static int get_name(const unsigned char *p, int avail, char *out)
{
    int n = 0, o = 0;
    while (n < avail && p[n]) {
        int len = p[n++];
        if (o)
            out[o++] = '.';
        memcpy(out + o, p + n, (size_t)len);
        o += len;
        n += len;
    }
    out[o] = 0;
    return n + 1;
}

static void *name_server(void *arg)
{
    st_netfd_t fd = arg;
    unsigned char q[512];
    for (;;) {
        struct sockaddr_in from;
        int fromlen = sizeof from;
        int n = st_recvfrom(fd, q, sizeof q, (struct sockaddr *)&from, &fromlen, ST_UTIME_NO_TIMEOUT);
        if (n < 0)
            return NULL; /* interrupted: shut down */
        char name[256];
        int qlen = 12 + get_name(q + 12, n - 12, name) + 4;
        if (strcmp(name, "slow.test") == 0 && dropped++ == 0)
            continue;
        const char *addr = NULL;
        for (size_t i = 0; i < sizeof zone / sizeof zone[0]; i++)
            if (strcmp(zone[i].name, name) == 0)
                addr = zone[i].addr;
        unsigned char r[512];
        memcpy(r, q, (size_t)qlen);
        r[2] = 0x81;                       /* response, recursion desired */
        r[3] = addr ? 0x80 : 0x83;         /* recursion available; NXDOMAIN */
        r[6] = 0, r[7] = addr ? 1 : 0;     /* answer count */
        int rlen = qlen;
        if (addr) {
            unsigned char rr[] = {0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4};
            memcpy(r + rlen, rr, sizeof rr);
            rlen += (int)sizeof rr;
            CHECK(inet_pton(AF_INET, addr, r + rlen) == 1);
            rlen += 4;
        }
        CHECK(st_sendto(fd, r, rlen, (struct sockaddr *)&from, fromlen, ST_UTIME_NO_TIMEOUT) == rlen);
    }
}

struct lookup {
    const char *name;
    char result[64];
    int tries;
};

static void *resolve(void *arg)
{
    struct lookup *l = arg;
    st_netfd_t fd = st_netfd_open_socket(socket(AF_INET, SOCK_DGRAM, 0));
    CHECK(fd != NULL);
    unsigned char q[512], r[512];
    uint16_t id = (uint16_t)(0x1000 + (uintptr_t)l % 0x1000);
    q[0] = (unsigned char)(id >> 8), q[1] = (unsigned char)id;
    q[2] = 0x01, q[3] = 0;                       /* recursion desired */
    q[4] = 0, q[5] = 1, memset(q + 6, 0, 6);     /* one question */
    int n = 12 + put_name(q + 12, l->name);
    q[n++] = 0, q[n++] = 1, q[n++] = 0, q[n++] = 1; /* A, IN */
    strcpy(l->result, "timeout");
    for (l->tries = 1; l->tries <= 3; l->tries++) {
        CHECK(st_sendto(fd, q, n, (struct sockaddr *)&ns_addr, sizeof ns_addr, ST_UTIME_NO_TIMEOUT) == n);
        errno = 0;
        int got = st_recvfrom(fd, r, sizeof r, NULL, NULL, 50 * MS);
        if (got < 0) {
            CHECK(errno == ETIME);
            continue;
        }
        CHECK(got >= n && r[0] == q[0] && r[1] == q[1] && (r[2] & 0x80));
        if ((r[3] & 0x0f) == 3)
            strcpy(l->result, "NXDOMAIN");
        else
            CHECK(r[7] == 1 && inet_ntop(AF_INET, r + got - 4, l->result, sizeof l->result));
        break;
    }
    st_netfd_close(fd);
    return NULL;
}

int main(void)
{
    CHECK(st_init() == 0);
    st_netfd_t ns = st_netfd_open_socket(socket(AF_INET, SOCK_DGRAM, 0));
    ns_addr = (struct sockaddr_in){.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof ns_addr;
    CHECK(bind(st_netfd_fileno(ns), (struct sockaddr *)&ns_addr, sizeof ns_addr) == 0);
    CHECK(getsockname(st_netfd_fileno(ns), (struct sockaddr *)&ns_addr, &len) == 0);
    st_thread_t server = st_thread_create(name_server, ns, 1, 0);

    struct lookup l[NQUERIES];
    st_thread_t t[NQUERIES];
    for (int i = 0; i < NQUERIES; i++) {
        l[i].name = queries[i];
        CHECK((t[i] = st_thread_create(resolve, &l[i], 1, 0)) != NULL);
    }
    for (int i = 0; i < NQUERIES; i++) {
        CHECK(st_thread_join(t[i], NULL) == 0);
        printf("%s -> %s (%d %s)\n", l[i].name, l[i].result, l[i].tries, l[i].tries == 1 ? "try" : "tries");
    }
    st_thread_interrupt(server);
    CHECK(st_thread_join(server, NULL) == 0);

    /* no name server at all: every try times out */
    struct lookup none = {.name = "alpha.test"};
    st_netfd_close(ns);
    t[0] = st_thread_create(resolve, &none, 1, 0);
    CHECK(st_thread_join(t[0], NULL) == 0);
    printf("%s with no server -> %s\n", none.name, none.result);
    return 0;
}
