/* The structure of State Threads' example server (its reference's
 * "Program Structure"): st_init, a listening socket wrapped with
 * st_netfd_open_socket, then fork(2) into several processes, each running
 * a pool of threads that accept on the shared socket. Here over loopback:
 * the children answer each connection with their pid; the parent, with its
 * own runtime still running, connects as many clients and checks every
 * answer came from one of its children. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <st.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include "st_check.h"

#define PROCS 3
#define THREADS_PER_PROC 4
#define CONNECTIONS 120
#define TIMEOUT (5000 * MS)

static st_netfd_t listener;
static struct sockaddr_in addr;
static pid_t children[PROCS];
static int answered, from_child;

static void *accept_loop(void *arg)
{
    (void)arg;
    for (;;) {
        st_netfd_t c = st_accept(listener, NULL, NULL, ST_UTIME_NO_TIMEOUT);
        if (c == NULL)
            continue;
        char line[32];
        int n = snprintf(line, sizeof line, "%d\n", (int)getpid());
        st_write(c, line, (size_t)n, TIMEOUT);
        st_netfd_close(c);
    }
    return NULL;
}

static void *client(void *arg)
{
    (void)arg;
    for (int i = 0; i < CONNECTIONS / 10; i++) {
        st_netfd_t c = st_netfd_open_socket(socket(AF_INET, SOCK_STREAM, 0));
        CHECK(c && st_connect(c, (struct sockaddr *)&addr, sizeof addr, TIMEOUT) == 0);
        char buf[32] = {0};
        ssize_t n = st_read_fully(c, buf, sizeof buf - 1, TIMEOUT);
        CHECK(n > 1 && buf[n - 1] == '\n');
        pid_t pid = (pid_t)atoi(buf);
        for (int p = 0; p < PROCS; p++)
            if (pid == children[p])
                from_child++;
        answered++;
        st_netfd_close(c);
    }
    return NULL;
}

int main(void)
{
    CHECK(st_init() == 0);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    addr = (struct sockaddr_in){.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof addr;
    CHECK(bind(fd, (struct sockaddr *)&addr, sizeof addr) == 0 && listen(fd, 128) == 0);
    CHECK(getsockname(fd, (struct sockaddr *)&addr, &len) == 0);
    CHECK((listener = st_netfd_open_socket(fd)) != NULL);
    CHECK(st_netfd_serialize_accept(listener) == 0);
    fflush(stdout);

    for (int p = 0; p < PROCS; p++) {
        pid_t pid = fork();
        CHECK(pid >= 0);
        if (pid == 0) {
            /* the child: a pool of threads on the shared listener */
            for (int t = 0; t < THREADS_PER_PROC; t++)
                CHECK(st_thread_create(accept_loop, NULL, 0, 0) != NULL);
            st_thread_exit(NULL);
        }
        children[p] = pid;
    }
    /* the parent's runtime is untouched by the forks */
    st_netfd_free(listener);
    close(fd);
    st_thread_t clients[10];
    for (int i = 0; i < 10; i++)
        CHECK((clients[i] = st_thread_create(client, NULL, 1, 0)) != NULL);
    for (int i = 0; i < 10; i++)
        CHECK(st_thread_join(clients[i], NULL) == 0);
    printf("multi-process server: %d answers, %d from the children\n", answered, from_child);
    for (int p = 0; p < PROCS; p++) {
        int status;
        CHECK(kill(children[p], SIGTERM) == 0);
        CHECK(waitpid(children[p], &status, 0) == children[p]);
        CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGTERM);
    }
    printf("children stopped\n");
    return 0;
}
