// photon/net/basic_socket.h: PhotonLibOS's fd-level socket calls, each
// blocking only the calling photon thread, with a photon::Timeout (a
// uint64_t of microseconds converts), over the C API's photon_socket /
// photon_connect / photon_accept / photon_read ... calls; plus
// photon::net::sockaddr_storage, an address of any family.
//
// Returns as the POSIX calls: a count or 0, or -1 with errno (`ETIMEDOUT`,
// the interrupter's errno, `EPERM` off a vcpu, ...). The `_n` calls loop
// until the whole count is done (or end of stream / an error).
#ifndef PHOTON_CPP_NET_BASIC_SOCKET_H
#define PHOTON_CPP_NET_BASIC_SOCKET_H

#include <photon.h>
#include <photon/common/timeout.h>
#include <photon/net/socket.h>

#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>

#include <cstring>

namespace photon {
namespace net {

/// A socket of libphoton's (non-blocking underneath); -1 with errno.
inline int socket(int domain, int type, int protocol) { return photon_socket(domain, type, protocol); }
inline int connect(int fd, const struct sockaddr* addr, socklen_t addrlen, Timeout timeout = {}) {
    return photon_connect(fd, addr, addrlen, timeout.timeout());
}
inline int accept(int fd, struct sockaddr* addr, socklen_t* addrlen, Timeout timeout = {}) {
    return photon_accept(fd, addr, addrlen, timeout.timeout());
}
// photon::net::setsockopt / getsockopt / getsockname / getpeername on a
// descriptor come from <sys/socket.h>, which is cpp-wrapper/sys/socket.h
// under -I cpp-wrapper (PhotonLibOS's include/ shadows it the same way).
inline ssize_t send(int fd, const void* buf, size_t len, int flags, Timeout timeout = {}) {
    return photon_send(fd, buf, len, flags, timeout.timeout());
}
inline ssize_t recv(int fd, void* buf, size_t count, int flags, Timeout timeout = {}) {
    return photon_recv(fd, buf, count, flags, timeout.timeout());
}
inline ssize_t sendmsg(int fd, const struct msghdr* msg, int flags, Timeout timeout = {}) {
    return photon_sendmsg(fd, msg, flags, timeout.timeout());
}
inline ssize_t recvmsg(int fd, struct msghdr* msg, int flags, Timeout timeout = {}) {
    return photon_recvmsg(fd, msg, flags, timeout.timeout());
}
inline ssize_t read(int fd, void* buf, size_t count, Timeout timeout = {}) {
    return photon_read(fd, buf, count, timeout.timeout());
}
inline ssize_t write(int fd, const void* buf, size_t count, Timeout timeout = {}) {
    return photon_write(fd, buf, count, timeout.timeout());
}
inline ssize_t readv(int fd, const struct iovec* iov, int iovcnt, Timeout timeout = {}) {
    return photon_readv(fd, iov, iovcnt, timeout.timeout());
}
inline ssize_t writev(int fd, const struct iovec* iov, int iovcnt, Timeout timeout = {}) {
    return photon_writev(fd, iov, iovcnt, timeout.timeout());
}
/// Reads exactly `count` bytes (fewer only at end of stream).
inline ssize_t read_n(int fd, void* buf, size_t count, Timeout timeout = {}) {
    return photon_read_full(fd, buf, count, timeout.timeout());
}
/// Writes exactly `count` bytes.
inline ssize_t write_n(int fd, const void* buf, size_t count, Timeout timeout = {}) {
    return photon_write_full(fd, buf, count, timeout.timeout());
}
/// Sends exactly `count` bytes with `flag`.
inline ssize_t send_n(int fd, const void* buf, size_t count, int flag, Timeout timeout = {}) {
    size_t done = 0;
    while (done < count) {
        const ssize_t n = photon_send(fd, static_cast<const char*>(buf) + done, count - done, flag, timeout.timeout());
        if (n < 0) return -1;
        if (n == 0) break;
        done += static_cast<size_t>(n);
    }
    return static_cast<ssize_t>(done);
}

namespace detail {
/// Loops a vectored call until every byte of `iov` is done; consumes `iov`.
template <typename F>
inline ssize_t iov_loop(struct iovec* iov, int iovcnt, F once) {
    ssize_t total = 0;
    while (iovcnt > 0) {
        if (iov->iov_len == 0) {
            ++iov;
            --iovcnt;
            continue;
        }
        const ssize_t n = once(iov, iovcnt);
        if (n < 0) return -1;
        if (n == 0) break;
        total += n;
        size_t left = static_cast<size_t>(n);
        while (iovcnt > 0 && left >= iov->iov_len) {
            left -= iov->iov_len;
            ++iov;
            --iovcnt;
        }
        if (left > 0) {
            iov->iov_base = static_cast<char*>(iov->iov_base) + left;
            iov->iov_len -= left;
        }
    }
    return total;
}
}  // namespace detail

/// Reads until every buffer of `iov` is full (it is consumed).
inline ssize_t readv_n(int fd, struct iovec* iov, int iovcnt, Timeout timeout = {}) {
    return detail::iov_loop(iov, iovcnt, [&](struct iovec* v, int c) { return photon_readv(fd, v, c, timeout.timeout()); });
}
/// Writes every buffer of `iov` (it is consumed).
inline ssize_t writev_n(int fd, struct iovec* iov, int iovcnt, Timeout timeout = {}) {
    return detail::iov_loop(iov, iovcnt, [&](struct iovec* v, int c) { return photon_writev(fd, v, c, timeout.timeout()); });
}

inline int set_fd_nonblocking(int fd) {
    const int flags = ::fcntl(fd, F_GETFL);
    return flags < 0 ? -1 : ::fcntl(fd, F_SETFL, flags | O_NONBLOCK);
}
inline int set_socket_nonblocking(int fd) { return set_fd_nonblocking(fd); }

/// An address of any family (v4, v6, Unix), as PhotonLibOS's.
struct sockaddr_storage {
    ::sockaddr_storage store;

    sockaddr_storage() { std::memset(&store, 0, sizeof store); }
    explicit sockaddr_storage(const EndPoint& ep) {
        std::memset(&store, 0, sizeof store);
        if (ep.is_ipv4()) {
            sockaddr_in* a = reinterpret_cast<sockaddr_in*>(&store);
            a->sin_family = AF_INET;
            a->sin_port = htons(ep.port);
            a->sin_addr.s_addr = ep.addr.to_nl();
        } else {
            sockaddr_in6* a = reinterpret_cast<sockaddr_in6*>(&store);
            a->sin6_family = AF_INET6;
            a->sin6_port = htons(ep.port);
            a->sin6_addr = ep.addr.addr;
        }
    }
    explicit sockaddr_storage(const sockaddr_in& a) {
        std::memset(&store, 0, sizeof store);
        std::memcpy(&store, &a, sizeof a);
    }
    explicit sockaddr_storage(const sockaddr_in6& a) {
        std::memset(&store, 0, sizeof store);
        std::memcpy(&store, &a, sizeof a);
    }
    explicit sockaddr_storage(const sockaddr_un& a) {
        std::memset(&store, 0, sizeof store);
        std::memcpy(&store, &a, sizeof a);
    }
    EndPoint to_endpoint() const {
        if (store.ss_family == AF_INET6) {
            const sockaddr_in6* a = reinterpret_cast<const sockaddr_in6*>(&store);
            return EndPoint(IPAddr(a->sin6_addr), ntohs(a->sin6_port));
        }
        if (store.ss_family == AF_INET) {
            const sockaddr_in* a = reinterpret_cast<const sockaddr_in*>(&store);
            return EndPoint(IPAddr(a->sin_addr), ntohs(a->sin_port));
        }
        return EndPoint();
    }
    sockaddr* get_sockaddr() { return reinterpret_cast<sockaddr*>(&store); }
    const sockaddr* get_sockaddr() const { return reinterpret_cast<const sockaddr*>(&store); }
    socklen_t get_socklen() const {
        switch (store.ss_family) {
            case AF_INET:
                return sizeof(sockaddr_in);
            case AF_INET6:
                return sizeof(sockaddr_in6);
            case AF_UNIX:
                return sizeof(sockaddr_un);
            default:
                return sizeof store;
        }
    }
    socklen_t get_max_socklen() const { return sizeof store; }
};

}  // namespace net
}  // namespace photon

#endif  // PHOTON_CPP_NET_BASIC_SOCKET_H
