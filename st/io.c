/*
 * libphoton_st, second half: st_netfd_t and the I/O functions, each one or
 * a loop of libphoton fd calls (photon_read, photon_write, ...), which wait
 * as a photon thread on the vcpu's engine (io_uring or epoll). State
 * Threads' timeouts are inactivity timeouts: each call of a loop gets the
 * whole timeout again.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "internal.h"

struct _st_netfd {
    int osfd;
    void *data;
    void (*destructor)(void *);
};

static st_netfd_t wrap(int osfd, int set_nonblock)
{
    if (osfd < 0) {
        errno = EBADF;
        return NULL;
    }
    if (set_nonblock) {
        int fl = fcntl(osfd, F_GETFL);
        if (fl < 0 || (!(fl & O_NONBLOCK) && fcntl(osfd, F_SETFL, fl | O_NONBLOCK) < 0))
            return NULL;
    }
    struct _st_netfd *fd = calloc(1, sizeof *fd);
    if (fd == NULL) {
        errno = ENOMEM;
        return NULL;
    }
    fd->osfd = osfd;
    return fd;
}

st_netfd_t st_netfd_open(int osfd)
{
    return wrap(osfd, 1);
}

st_netfd_t st_netfd_open_socket(int osfd)
{
    return wrap(osfd, 1);
}

static void drop_data(st_netfd_t fd)
{
    if (fd->data && fd->destructor)
        fd->destructor(fd->data);
    fd->data = NULL;
}

void st_netfd_free(st_netfd_t fd)
{
    if (fd == NULL)
        return;
    int saved = errno;
    drop_data(fd);
    /* The fd stays open but is no longer ours: libphoton forgets it. */
    photon_fd_forget(fd->osfd);
    free(fd);
    errno = saved;
}

int st_netfd_close(st_netfd_t fd)
{
    if (fd == NULL) {
        errno = EBADF;
        return -1;
    }
    drop_data(fd);
    int r = photon_close(fd->osfd);
    int e = errno;
    free(fd);
    errno = e;
    return r;
}

int st_netfd_fileno(st_netfd_t fd)
{
    if (fd == NULL) {
        errno = EBADF;
        return -1;
    }
    return fd->osfd;
}

void st_netfd_setspecific(st_netfd_t fd, void *value, void (*destructor)(void *))
{
    if (fd == NULL)
        return;
    if (value != fd->data)
        drop_data(fd);
    fd->data = value;
    fd->destructor = destructor;
}

void *st_netfd_getspecific(st_netfd_t fd)
{
    return fd ? fd->data : NULL;
}

int st_netfd_serialize_accept(st_netfd_t fd)
{
    if (fd == NULL) {
        errno = EBADF;
        return -1;
    }
    return 0;
}

st_netfd_t st_open(const char *path, int oflags, mode_t mode)
{
    if (path == NULL) {
        errno = EFAULT;
        return NULL;
    }
    int osfd = open(path, oflags | O_NONBLOCK | O_CLOEXEC, mode);
    if (osfd < 0)
        return NULL;
    st_netfd_t fd = wrap(osfd, 0);
    if (fd == NULL) {
        int e = errno;
        close(osfd);
        errno = e;
    }
    return fd;
}

/* --- Polling ------------------------------------------------------------------ */

static uint32_t to_epoll(short events)
{
    uint32_t ev = 0;
    if (events & POLLIN)
        ev |= EPOLLIN;
    if (events & POLLOUT)
        ev |= EPOLLOUT;
    if (events & POLLPRI)
        ev |= EPOLLPRI;
    if (events & POLLRDHUP)
        ev |= EPOLLRDHUP;
    return ev;
}

/* Waits until one of pds may be ready: one fd through photon_wait_fd, more
 * through an epoll instance that the vcpu's engine waits on. The vcpu keeps
 * one instance for this, emptied after each wait (a second thread polling
 * meanwhile makes its own); one whose emptying fails is dropped (an fd
 * closed during the wait may stay registered through a dup of it, and
 * would wake every later wait). */
static int wait_any(struct st_vp *vp, struct pollfd *pds, int npds, uint64_t timeout)
{
    if (npds == 1 && !(pds[0].events & ~(POLLIN | POLLOUT))) {
        uint32_t ev = ((pds[0].events & POLLIN) ? PHOTON_READABLE : 0) |
                      ((pds[0].events & POLLOUT) ? PHOTON_WRITABLE : 0);
        if (ev == 0)
            return photon_thread_usleep(timeout);
        return photon_wait_fd(pds[0].fd, ev, timeout) < 0 ? -1 : 0;
    }
    int cached = !vp->poll_ep_busy;
    if (cached && vp->poll_ep < 0)
        vp->poll_ep = epoll_create1(EPOLL_CLOEXEC);
    int ep = cached ? vp->poll_ep : epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0)
        return -1;
    if (cached)
        vp->poll_ep_busy = 1;
    int added = 0, r = 0;
    for (; added < npds; added++) {
        struct pollfd *p = &pds[added];
        if (p->fd < 0)
            continue;
        struct epoll_event e = {.events = to_epoll(p->events), .data.u32 = 0};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, p->fd, &e) == 0)
            continue;
        if (errno == EEXIST) {
            /* the same fd twice: wait for the union */
            for (int j = 0; j < added; j++)
                if (pds[j].fd == p->fd)
                    e.events |= to_epoll(pds[j].events);
            if (epoll_ctl(ep, EPOLL_CTL_MOD, p->fd, &e) == 0)
                continue;
        }
        r = -1;
        break;
    }
    if (r == 0)
        r = photon_wait_fd(ep, PHOTON_READABLE, timeout) < 0 ? -1 : 0;
    int err = errno;
    if (!cached) {
        photon_close(ep);
    } else {
        int clean = 1;
        for (int i = 0; i < added; i++) {
            int dup = 0;
            for (int j = 0; j < i; j++)
                dup |= pds[j].fd == pds[i].fd;
            if (pds[i].fd >= 0 && !dup && epoll_ctl(ep, EPOLL_CTL_DEL, pds[i].fd, NULL) != 0)
                clean = 0;
        }
        if (!clean) {
            photon_close(ep);
            vp->poll_ep = -1;
        }
        vp->poll_ep_busy = 0;
    }
    errno = err;
    return r;
}

int st_poll(struct pollfd *pds, int npds, st_utime_t timeout)
{
    if (npds < 0 || (npds > 0 && pds == NULL)) {
        errno = EINVAL;
        return -1;
    }
    struct _st_thread *me = st__self();
    if (me == NULL) {
        errno = EPERM;
        return -1;
    }
    uint64_t deadline = UINT64_MAX;
    if (timeout != ST_UTIME_NO_TIMEOUT) {
        uint64_t now = photon_now_us();
        deadline = timeout > UINT64_MAX - 1 - now ? UINT64_MAX - 1 : now + timeout;
    }
    ST_BLOCK_BEGIN();
    int n;
    for (;;) {
        n = poll(pds, (nfds_t)npds, 0);
        if (n != 0)
            break;
        uint64_t left = PHOTON_FOREVER;
        if (deadline != UINT64_MAX) {
            uint64_t now = photon_now_us();
            if (now >= deadline)
                break;
            left = deadline - now;
        }
        if (wait_any(me->vp, pds, npds, left) != 0) {
            if (errno == ETIMEDOUT) {
                n = 0;
                break;
            }
            int e = errno;
            ST_BLOCK_END();
            errno = e;
            st__fix_errno(timeout);
            return -1;
        }
        if (npds == 0)
            break;
    }
    int e = errno;
    ST_BLOCK_END();
    errno = e;
    return n;
}

int st_netfd_poll(st_netfd_t fd, int how, st_utime_t timeout)
{
    if (fd == NULL) {
        errno = EBADF;
        return -1;
    }
    struct pollfd pd = {.fd = fd->osfd, .events = (short)how, .revents = 0};
    int n = st_poll(&pd, 1, timeout);
    if (n < 0)
        return -1;
    if (n == 0) {
        errno = ETIME;
        return -1;
    }
    if (pd.revents & POLLNVAL) {
        errno = EBADF;
        return -1;
    }
    return 0;
}

/* --- Connections ------------------------------------------------------------------ */

st_netfd_t st_accept(st_netfd_t fd, struct sockaddr *addr, int *addrlen, st_utime_t timeout)
{
    if (fd == NULL) {
        errno = EBADF;
        return NULL;
    }
    socklen_t len = addrlen ? (socklen_t)*addrlen : 0;
    ST_BLOCK_BEGIN();
    int osfd = photon_accept(fd->osfd, addrlen ? addr : NULL, addrlen ? &len : NULL, timeout);
    int e = errno;
    ST_BLOCK_END();
    if (osfd < 0) {
        errno = e;
        st__fix_errno(timeout);
        return NULL;
    }
    if (addrlen)
        *addrlen = (int)len;
    st_netfd_t nfd = wrap(osfd, 0);
    if (nfd == NULL) {
        e = errno;
        photon_close(osfd);
        errno = e;
    }
    return nfd;
}

int st_connect(st_netfd_t fd, const struct sockaddr *addr, int addrlen, st_utime_t timeout)
{
    if (fd == NULL) {
        errno = EBADF;
        return -1;
    }
    ST_BLOCK_BEGIN();
    int r = photon_connect(fd->osfd, addr, (socklen_t)addrlen, timeout);
    int e = errno;
    ST_BLOCK_END();
    if (r != 0) {
        errno = e;
        st__fix_errno(timeout);
        return -1;
    }
    return 0;
}

/* --- Reads and writes ------------------------------------------------------------- */

/* A call's result: n >= 0 passes; -1 gets ST's errno. The switch-in hook
 * keeps errno. */
static inline ssize_t done(ssize_t n, st_utime_t timeout)
{
    ST_BLOCK_END();
    if (n < 0)
        st__fix_errno(timeout);
    return n;
}

ssize_t st_read(st_netfd_t fd, void *buf, size_t nbyte, st_utime_t timeout)
{
    if (fd == NULL) {
        errno = EBADF;
        return -1;
    }
    ST_BLOCK_BEGIN();
    return done(photon_read(fd->osfd, buf, nbyte, timeout), timeout);
}

ssize_t st_readv(st_netfd_t fd, const struct iovec *iov, int iov_size, st_utime_t timeout)
{
    if (fd == NULL) {
        errno = EBADF;
        return -1;
    }
    ST_BLOCK_BEGIN();
    return done(photon_readv(fd->osfd, iov, iov_size, timeout), timeout);
}

int st_read_resid(st_netfd_t fd, void *buf, size_t *resid, st_utime_t timeout)
{
    if (fd == NULL || resid == NULL) {
        errno = fd ? EINVAL : EBADF;
        return -1;
    }
    char *p = buf;
    while (*resid > 0) {
        ST_BLOCK_BEGIN();
        ssize_t n = done(photon_read(fd->osfd, p, *resid, timeout), timeout);
        if (n < 0)
            return -1;
        if (n == 0)
            break;
        p += n;
        *resid -= (size_t)n;
    }
    return 0;
}

ssize_t st_read_fully(st_netfd_t fd, void *buf, size_t nbyte, st_utime_t timeout)
{
    size_t resid = nbyte;
    if (st_read_resid(fd, buf, &resid, timeout) != 0)
        return -1;
    return (ssize_t)(nbyte - resid);
}

int st_write_resid(st_netfd_t fd, const void *buf, size_t *resid, st_utime_t timeout)
{
    if (fd == NULL || resid == NULL) {
        errno = fd ? EINVAL : EBADF;
        return -1;
    }
    const char *p = buf;
    while (*resid > 0) {
        ST_BLOCK_BEGIN();
        ssize_t n = done(photon_write(fd->osfd, p, *resid, timeout), timeout);
        if (n < 0)
            return -1;
        p += n;
        *resid -= (size_t)n;
    }
    return 0;
}

ssize_t st_write(st_netfd_t fd, const void *buf, size_t nbyte, st_utime_t timeout)
{
    size_t resid = nbyte;
    if (st_write_resid(fd, buf, &resid, timeout) != 0)
        return -1;
    return (ssize_t)nbyte;
}

/* Moves *iov / *iov_size past n bytes, as ST's _resid functions report:
 * buffers passed end empty, pointing at their end. */
static void advance(struct iovec **iov, int *iov_size, size_t n)
{
    while (*iov_size > 0) {
        struct iovec *v = *iov;
        if (n < v->iov_len) {
            v->iov_base = (char *)v->iov_base + n;
            v->iov_len -= n;
            return;
        }
        n -= v->iov_len;
        v->iov_base = (char *)v->iov_base + v->iov_len;
        v->iov_len = 0;
        (*iov)++;
        (*iov_size)--;
    }
}

static int iov_resid(st_netfd_t fd, struct iovec **iov, int *iov_size, st_utime_t timeout, int writing)
{
    if (fd == NULL || iov == NULL || iov_size == NULL || *iov_size < 0) {
        errno = fd ? EINVAL : EBADF;
        return -1;
    }
    /* skip leading empty buffers */
    advance(iov, iov_size, 0);
    while (*iov_size > 0) {
        int cnt = *iov_size < IOV_MAX ? *iov_size : IOV_MAX;
        ST_BLOCK_BEGIN();
        ssize_t n = writing ? photon_writev(fd->osfd, *iov, cnt, timeout)
                            : photon_readv(fd->osfd, *iov, cnt, timeout);
        n = done(n, timeout);
        if (n < 0)
            return -1;
        if (n == 0 && !writing)
            break;
        advance(iov, iov_size, (size_t)n);
    }
    return 0;
}

int st_readv_resid(st_netfd_t fd, struct iovec **iov, int *iov_size, st_utime_t timeout)
{
    return iov_resid(fd, iov, iov_size, timeout, 0);
}

int st_writev_resid(st_netfd_t fd, struct iovec **iov, int *iov_size, st_utime_t timeout)
{
    return iov_resid(fd, iov, iov_size, timeout, 1);
}

ssize_t st_writev(st_netfd_t fd, const struct iovec *iov, int iov_size, st_utime_t timeout)
{
    if (fd == NULL) {
        errno = EBADF;
        return -1;
    }
    if (iov_size < 0 || (iov_size > 0 && iov == NULL)) {
        errno = EINVAL;
        return -1;
    }
    size_t total = 0;
    for (int i = 0; i < iov_size; i++)
        total += iov[i].iov_len;
    /* The common case: one call writes everything, the caller's array untouched. */
    ST_BLOCK_BEGIN();
    ssize_t n = done(photon_writev(fd->osfd, iov, iov_size < IOV_MAX ? iov_size : IOV_MAX, timeout), timeout);
    if (n < 0)
        return -1;
    if ((size_t)n == total)
        return n;
    struct iovec small[16];
    struct iovec *copy = iov_size <= 16 ? small : malloc(sizeof *copy * (size_t)iov_size);
    if (copy == NULL) {
        errno = ENOMEM;
        return -1;
    }
    memcpy(copy, iov, sizeof *copy * (size_t)iov_size);
    struct iovec *cur = copy;
    int left = iov_size;
    advance(&cur, &left, (size_t)n);
    int r = iov_resid(fd, &cur, &left, timeout, 1);
    int e = errno;
    if (copy != small)
        free(copy);
    errno = e;
    return r == 0 ? (ssize_t)total : -1;
}

/* --- Datagrams and messages ---------------------------------------------------------- */

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
    ST_BLOCK_BEGIN();
    ssize_t n = done(photon_recvfrom(fd->osfd, buf, (size_t)len, 0, fromlen ? from : NULL, fromlen ? &sl : NULL, timeout),
                     timeout);
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
    ST_BLOCK_BEGIN();
    return (int)done(photon_sendto(fd->osfd, msg, (size_t)len, 0, to, (socklen_t)tolen, timeout), timeout);
}

int st_recvmsg(st_netfd_t fd, struct msghdr *msg, int flags, st_utime_t timeout)
{
    if (fd == NULL) {
        errno = EBADF;
        return -1;
    }
    ST_BLOCK_BEGIN();
    return (int)done(photon_recvmsg(fd->osfd, msg, flags, timeout), timeout);
}

int st_sendmsg(st_netfd_t fd, const struct msghdr *msg, int flags, st_utime_t timeout)
{
    if (fd == NULL) {
        errno = EBADF;
        return -1;
    }
    ST_BLOCK_BEGIN();
    return (int)done(photon_sendmsg(fd->osfd, msg, flags, timeout), timeout);
}
