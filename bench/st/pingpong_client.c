/*
 * A fixed amount of ping-pong for instruction counts: CONNS connections
 * to 127.0.0.1:PORT, each sending SIZE bytes and reading them back N
 * times (one OS thread, plain epoll), so two servers run under callgrind
 * serve exactly the same requests. bench/st/callgrind.sh drives it.
 *
 *   pingpong_client PORT CONNS N [SIZE]
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: pingpong_client PORT CONNS N [SIZE]\n");
        return 2;
    }
    int port = atoi(argv[1]), conns = atoi(argv[2]), n = atoi(argv[3]);
    int size = argc > 4 ? atoi(argv[4]) : 512;
    if (conns <= 0 || n <= 0 || size <= 0 || size > 65536) {
        fprintf(stderr, "pingpong_client: bad arguments\n");
        return 2;
    }
    static char buf[65536];
    memset(buf, 'x', sizeof buf);
    int ep = epoll_create1(0);
    int *fd = calloc((size_t)conns, sizeof *fd), *left = calloc((size_t)conns, sizeof *left);
    int *got = calloc((size_t)conns, sizeof *got);
    if (ep < 0 || !fd || !left || !got) {
        perror("pingpong_client");
        return 1;
    }
    for (int i = 0; i < conns; i++) {
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((unsigned short)port),
                                .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        int one = 1;
        fd[i] = socket(AF_INET, SOCK_STREAM, 0);
        if (fd[i] < 0 || connect(fd[i], (struct sockaddr *)&a, sizeof a) != 0) {
            perror("connect");
            return 1;
        }
        setsockopt(fd[i], IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        struct epoll_event e = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, fd[i], &e) != 0 || write(fd[i], buf, (size_t)size) != size) {
            perror("pingpong_client");
            return 1;
        }
        left[i] = n;
    }
    struct epoll_event ev[256];
    for (int active = conns; active > 0;) {
        int k = epoll_wait(ep, ev, 256, 10000);
        if (k <= 0) {
            fprintf(stderr, "pingpong_client: no answer for 10 s\n");
            return 1;
        }
        for (int j = 0; j < k; j++) {
            int i = (int)ev[j].data.u32;
            ssize_t r = read(fd[i], buf, sizeof buf);
            if (r <= 0) {
                perror("read");
                return 1;
            }
            got[i] += (int)r;
            if (got[i] < size)
                continue;
            got[i] -= size;
            if (--left[i] == 0) {
                active--;
                close(fd[i]);
            } else if (write(fd[i], buf, (size_t)size) != size) {
                perror("write");
                return 1;
            }
        }
    }
    return 0;
}
