/*
 * An echo server written for State Threads, as ST programs are: one
 * st_thread per connection, st_read then st_write until the peer closes.
 * bench/st/run.sh builds it twice, against libphoton_st (include/st.h,
 * -lst from target/release) and against Debian's State Threads, and
 * drives both with the same client.
 *
 *   st_echo_server PORT [alt]    PORT 0: any free port; alt: ST_EVENTSYS_ALT
 *
 * Prints "ready PORT ENGINE" once listening on 127.0.0.1; runs until killed.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <st.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

static void *serve(void *arg)
{
    st_netfd_t c = arg;
    char buf[16384];
    for (;;) {
        ssize_t n = st_read(c, buf, sizeof buf, ST_UTIME_NO_TIMEOUT);
        if (n <= 0 || st_write(c, buf, (size_t)n, ST_UTIME_NO_TIMEOUT) != n)
            break;
    }
    st_netfd_close(c);
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: st_echo_server PORT [alt]\n");
        return 2;
    }
    if (argc > 2 && strcmp(argv[2], "alt") == 0 && st_set_eventsys(ST_EVENTSYS_ALT) != 0) {
        perror("st_set_eventsys");
        return 1;
    }
    if (st_init() != 0) {
        perror("st_init");
        return 1;
    }
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((unsigned short)atoi(argv[1])),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0 || listen(fd, 1024) != 0) {
        perror("bind/listen");
        return 1;
    }
    socklen_t len = sizeof a;
    getsockname(fd, (struct sockaddr *)&a, &len);
    st_netfd_t l = st_netfd_open_socket(fd);
    printf("ready %d %s\n", ntohs(a.sin_port), st_get_eventsys_name());
    fflush(stdout);
    for (;;) {
        st_netfd_t c = st_accept(l, NULL, NULL, ST_UTIME_NO_TIMEOUT);
        if (c == NULL)
            continue;
        setsockopt(st_netfd_fileno(c), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (st_thread_create(serve, c, 0, 0) == NULL)
            st_netfd_close(c);
    }
}
