/* Bad arguments to libphoton_st fail with -1 or NULL and errno, never a
 * crash or a hang (ours only: State Threads itself does not check). */
#include <st.h>
#include <stdint.h>
#include <sys/socket.h>

#include "st_check.h"

#define FAILS_NULL(call, e)                                                          \
    do {                                                                             \
        errno = 0;                                                                   \
        CHECK((call) == NULL && errno == (e));                                       \
    } while (0)

static void *noop(void *arg)
{
    return arg;
}

int main(void)
{
    st_mutex_t early = st_mutex_new(); /* needs no runtime */
    CHECK(early != NULL);
    CHECK_FAILS(st_mutex_lock(early), EPERM); /* before st_init */
    CHECK(st_mutex_destroy(early) == 0);
    CHECK(st_init() == 0);
    FAILS_NULL(st_thread_create(NULL, NULL, 1, 0), EINVAL);
    FAILS_NULL(st_thread_create(noop, NULL, 1, -1), EINVAL);
    CHECK_FAILS(st_thread_join(NULL, NULL), EINVAL);
    st_thread_interrupt(NULL);
    CHECK_FAILS(st_mutex_lock(NULL), EINVAL);
    CHECK_FAILS(st_mutex_unlock(NULL), EINVAL);
    CHECK_FAILS(st_mutex_trylock(NULL), EINVAL);
    CHECK_FAILS(st_mutex_destroy(NULL), EINVAL);
    CHECK_FAILS(st_cond_wait(NULL), EINVAL);
    CHECK_FAILS(st_cond_timedwait(NULL, 1), EINVAL);
    CHECK_FAILS(st_cond_signal(NULL), EINVAL);
    CHECK_FAILS(st_cond_broadcast(NULL), EINVAL);
    CHECK_FAILS(st_cond_destroy(NULL), EINVAL);
    CHECK_FAILS(st_key_create(NULL, NULL), EINVAL);
    CHECK_FAILS(st_thread_setspecific(-1, NULL), EINVAL);
    CHECK_FAILS(st_thread_setspecific2(NULL, 0, NULL), EINVAL);
    CHECK(st_thread_getspecific(-1) == NULL);
    CHECK_FAILS(st_set_utime_function(NULL), EINVAL);
    FAILS_NULL(st_netfd_open(-1), EBADF);
    FAILS_NULL(st_netfd_open_socket(987), EBADF);
    FAILS_NULL(st_open(NULL, 0, 0), EFAULT);
    FAILS_NULL(st_open("/nonexistent/dir/x", 0, 0), ENOENT);
    st_netfd_free(NULL);
    CHECK_FAILS(st_netfd_close(NULL), EBADF);
    CHECK_FAILS(st_netfd_fileno(NULL), EBADF);
    CHECK(st_netfd_getspecific(NULL) == NULL);
    st_netfd_setspecific(NULL, NULL, NULL);
    CHECK_FAILS(st_netfd_serialize_accept(NULL), EBADF);
    CHECK_FAILS(st_netfd_poll(NULL, POLLIN, 1), EBADF);
    CHECK_FAILS(st_poll(NULL, 1, 1), EINVAL);
    CHECK_FAILS(st_poll(NULL, -1, 1), EINVAL);
    FAILS_NULL(st_accept(NULL, NULL, NULL, 1), EBADF);
    CHECK_FAILS(st_connect(NULL, NULL, 0, 1), EBADF);
    char buf[4];
    CHECK_FAILS(st_read(NULL, buf, 1, 1), EBADF);
    CHECK_FAILS(st_read_fully(NULL, buf, 1, 1), EBADF);
    CHECK_FAILS(st_read_resid(NULL, buf, NULL, 1), EBADF);
    CHECK_FAILS(st_readv(NULL, NULL, 0, 1), EBADF);
    CHECK_FAILS(st_readv_resid(NULL, NULL, NULL, 1), EBADF);
    CHECK_FAILS(st_write(NULL, buf, 1, 1), EBADF);
    CHECK_FAILS(st_write_resid(NULL, buf, NULL, 1), EBADF);
    CHECK_FAILS(st_writev(NULL, NULL, 0, 1), EBADF);
    CHECK_FAILS(st_writev_resid(NULL, NULL, NULL, 1), EBADF);
    CHECK_FAILS(st_recvfrom(NULL, buf, 1, NULL, NULL, 1), EBADF);
    CHECK_FAILS(st_sendto(NULL, buf, 1, NULL, 0, 1), EBADF);
    CHECK_FAILS(st_recvmsg(NULL, NULL, 0, 1), EBADF);
    CHECK_FAILS(st_sendmsg(NULL, NULL, 0, 1), EBADF);
    /* a real fd with bad arguments */
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    st_netfd_t a = st_netfd_open_socket(sv[0]);
    CHECK(a != NULL);
    CHECK(st_read(a, NULL, 1, 1) == -1);
    CHECK_FAILS(st_read_resid(a, buf, NULL, 1), EINVAL);
    CHECK_FAILS(st_writev(a, NULL, 2, 1), EINVAL);
    int cnt = -1;
    struct iovec *iov = NULL;
    CHECK_FAILS(st_writev_resid(a, &iov, &cnt, 1), EINVAL);
    CHECK_FAILS(st_recvfrom(a, buf, -1, NULL, NULL, 1), EINVAL);
    CHECK_FAILS(st_sendto(a, buf, -1, NULL, 0, 1), EINVAL);
    CHECK(st_netfd_close(a) == 0);
    printf("bad input: ok\n");
    return 0;
}
