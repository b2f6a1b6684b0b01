/*
 * libphoton_st: datagrams and messages (st_recvfrom, st_sendto,
 * st_recvmsg, st_sendmsg), each one libphoton call (see io.c).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <sys/socket.h>

#include "internal.h"

static ssize_t recv_from(st_netfd_t fd, void *buf, size_t n, struct sockaddr *from, socklen_t *fl, st_utime_t t)
{
    TRANSFER(recvfrom(fd->osfd, buf, n, MSG_DONTWAIT, from, fl), photon_recvfrom(fd->osfd, buf, n, 0, from, fl, t), t);
}

static ssize_t send_to(st_netfd_t fd, const void *buf, size_t n, const struct sockaddr *to, socklen_t tl, st_utime_t t)
{
    TRANSFER(sendto(fd->osfd, buf, n, MSG_DONTWAIT | MSG_NOSIGNAL, to, tl), photon_sendto(fd->osfd, buf, n, 0, to, tl, t), t);
}

static ssize_t recv_msg(st_netfd_t fd, struct msghdr *msg, int flags, st_utime_t t)
{
    TRANSFER(recvmsg(fd->osfd, msg, flags | MSG_DONTWAIT), photon_recvmsg(fd->osfd, msg, flags, t), t);
}

static ssize_t send_msg(st_netfd_t fd, const struct msghdr *msg, int flags, st_utime_t t)
{
    TRANSFER(sendmsg(fd->osfd, msg, flags | MSG_DONTWAIT | MSG_NOSIGNAL), photon_sendmsg(fd->osfd, msg, flags, t), t);
}

int st_recvfrom(st_netfd_t fd, void *buf, int len, struct sockaddr *from, int *fromlen, st_utime_t timeout)
{
    if (fd == NULL) {
        errno = EBADF;
        return -1;
    }
    if (len < 0) {
        errno = EINVAL;
        return -1;
    }
    socklen_t sl = fromlen ? (socklen_t)*fromlen : 0;
    ssize_t n = recv_from(fd, buf, (size_t)len, fromlen ? from : NULL, fromlen ? &sl : NULL, timeout);
    if (n >= 0 && fromlen)
        *fromlen = (int)sl;
    return (int)n;
}

int st_sendto(st_netfd_t fd, const void *msg, int len, const struct sockaddr *to, int tolen, st_utime_t timeout)
{
    if (fd == NULL) {
        errno = EBADF;
        return -1;
    }
    if (len < 0 || tolen < 0) {
        errno = EINVAL;
        return -1;
    }
    return (int)send_to(fd, msg, (size_t)len, to, (socklen_t)tolen, timeout);
}

int st_recvmsg(st_netfd_t fd, struct msghdr *msg, int flags, st_utime_t timeout)
{
    if (fd == NULL) {
        errno = EBADF;
        return -1;
    }
    return (int)recv_msg(fd, msg, flags, timeout);
}

int st_sendmsg(st_netfd_t fd, const struct msghdr *msg, int flags, st_utime_t timeout)
{
    if (fd == NULL) {
        errno = EBADF;
        return -1;
    }
    return (int)send_msg(fd, msg, flags, timeout);
}
