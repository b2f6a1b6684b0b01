// photon/net/datagram_socket.h: UDP and Unix datagram sockets, as
// PhotonLibOS's UDPSocket / UDS_DatagramSocket (new_udp_socket,
// new_uds_datagram_socket). Each call blocks only the calling photon thread,
// for at most the socket's timeout() (default: none), and returns as the
// POSIX call: a count, or -1 with errno (`ETIMEDOUT`, ...). Deleting a
// socket closes it.
#ifndef PHOTON_CPP_NET_DATAGRAM_SOCKET_H
#define PHOTON_CPP_NET_DATAGRAM_SOCKET_H

#include <photon.h>
#include <photon/net/socket.h>

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <new>

namespace photon {
namespace net {

namespace detail {
/// What both kinds share: the fd, the timeout, options, names.
class datagram_base : public ISocketBase, public ISocketName {
public:
    explicit datagram_base(int fd) : m_fd(fd) {}
    ~datagram_base() override {
        if (m_fd >= 0) photon_close(m_fd);
    }
    datagram_base(const datagram_base&) = delete;
    datagram_base& operator=(const datagram_base&) = delete;

    int get_underlay_fd() override { return m_fd; }
    int setsockopt(int level, int option_name, const void* option_value, socklen_t option_len) override {
        return ::setsockopt(m_fd, level, option_name, option_value, option_len);
    }
    int getsockopt(int level, int option_name, void* option_value, socklen_t* option_len) override {
        return ::getsockopt(m_fd, level, option_name, option_value, option_len);
    }
    using ISocketBase::getsockopt;
    using ISocketBase::setsockopt;
    uint64_t timeout() const override { return m_timeout; }
    void timeout(uint64_t tm) override { m_timeout = tm; }

    int getsockname(EndPoint& addr) override { return name(&::getsockname, addr); }
    int getpeername(EndPoint& addr) override { return name(&::getpeername, addr); }
    int getsockname(char* path, size_t count) override { return name(&::getsockname, path, count); }
    int getpeername(char* path, size_t count) override { return name(&::getpeername, path, count); }
    using ISocketName::getpeername;
    using ISocketName::getsockname;

    /// Sends one datagram to the connected peer.
    ssize_t send(const void* buf, size_t count, int flags = 0) {
        return photon_send(m_fd, buf, count, flags, m_timeout);
    }
    /// Receives one datagram.
    ssize_t recv(void* buf, size_t count, int flags = 0) { return photon_recv(m_fd, buf, count, flags, m_timeout); }

protected:
    using name_fn = int (*)(int, sockaddr*, socklen_t*);
    int name(name_fn fn, EndPoint& addr) {
        ::sockaddr_storage ss;
        socklen_t len = sizeof ss;
        if (fn(m_fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return -1;
        return from_sockaddr(ss, addr);
    }
    int name(name_fn fn, char* path, size_t count) {
        ::sockaddr_storage ss;
        socklen_t len = sizeof ss;
        if (fn(m_fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return -1;
        return un_path(ss, len, path, count);
    }

    int m_fd;
    uint64_t m_timeout = PHOTON_FOREVER;
};
}  // namespace detail

/// A UDP socket.
class UDPSocket : public detail::datagram_base {
public:
    explicit UDPSocket(int fd) : datagram_base(fd) {}
    int connect(const EndPoint& ep) {
        ::sockaddr_storage ss;
        const socklen_t len = detail::to_sockaddr(ep, !ep.is_ipv4(), ss);
        return photon_connect(m_fd, reinterpret_cast<sockaddr*>(&ss), len, m_timeout);
    }
    int bind(const EndPoint& ep) {
        ::sockaddr_storage ss;
        const socklen_t len = detail::to_sockaddr(ep, !ep.is_ipv4(), ss);
        return ::bind(m_fd, reinterpret_cast<sockaddr*>(&ss), len);
    }
    int bind(uint16_t port = 0) { return bind_v4any(port); }
    int bind(uint16_t port, IPAddr a) { return bind(EndPoint(a, port)); }
    int bind_v4any(uint16_t port = 0) { return bind(EndPoint(IPAddr::V4Any(), port)); }
    int bind_v6any(uint16_t port = 0) { return bind(EndPoint(IPAddr::V6Any(), port)); }
    int bind_v4localhost(uint16_t port = 0) { return bind(EndPoint(IPAddr::V4Loopback(), port)); }
    int bind_v6localhost(uint16_t port = 0) { return bind(EndPoint(IPAddr::V6Loopback(), port)); }
    /// Sends one datagram to `ep`.
    ssize_t sendto(const void* buf, size_t count, const EndPoint& ep, int flags = 0) {
        ::sockaddr_storage ss;
        const socklen_t len = detail::to_sockaddr(ep, !ep.is_ipv4() || family() == AF_INET6, ss);
        return photon_sendto(m_fd, buf, count, flags, reinterpret_cast<sockaddr*>(&ss), len, m_timeout);
    }
    /// Receives one datagram, and where it came from into `*from`.
    ssize_t recvfrom(void* buf, size_t count, EndPoint* from, int flags = 0) {
        ::sockaddr_storage ss;
        socklen_t len = sizeof ss;
        const ssize_t n = photon_recvfrom(m_fd, buf, count, flags, reinterpret_cast<sockaddr*>(&ss), &len, m_timeout);
        if (n >= 0 && from != nullptr) detail::from_sockaddr(ss, *from);
        return n;
    }

private:
    int family() {
        ::sockaddr_storage ss;
        socklen_t len = sizeof ss;
        return ::getsockname(m_fd, reinterpret_cast<sockaddr*>(&ss), &len) == 0 ? ss.ss_family : AF_UNSPEC;
    }
};

/// A Unix datagram socket, named by paths.
class UDS_DatagramSocket : public detail::datagram_base {
public:
    explicit UDS_DatagramSocket(int fd) : datagram_base(fd) {}
    int connect(const char* path) {
        sockaddr_un un;
        socklen_t len;
        if (detail::to_sockaddr_un(path, 0, un, len) != 0) return -1;
        return photon_connect(m_fd, reinterpret_cast<sockaddr*>(&un), len, m_timeout);
    }
    int bind(const char* path) {
        sockaddr_un un;
        socklen_t len;
        if (detail::to_sockaddr_un(path, 0, un, len) != 0) return -1;
        return ::bind(m_fd, reinterpret_cast<sockaddr*>(&un), len);
    }
    ssize_t sendto(const void* buf, size_t count, const char* path, int flags = 0) {
        sockaddr_un un;
        socklen_t len;
        if (detail::to_sockaddr_un(path, 0, un, len) != 0) return -1;
        return photon_sendto(m_fd, buf, count, flags, reinterpret_cast<sockaddr*>(&un), len, m_timeout);
    }
    /// Receives one datagram; the sender's path (if it has one) into `from`.
    ssize_t recvfrom(void* buf, size_t count, char* from, size_t len, int flags = 0) {
        ::sockaddr_storage ss;
        socklen_t slen = sizeof ss;
        const ssize_t n = photon_recvfrom(m_fd, buf, count, flags, reinterpret_cast<sockaddr*>(&ss), &slen, m_timeout);
        if (n >= 0 && from != nullptr && len > 0 && detail::un_path(ss, slen, from, len) != 0) from[0] = '\0';
        return n;
    }
};

namespace detail {
template <class S>
inline S* new_datagram(int fd, int domain) {
    if (fd < 0) fd = photon_socket(domain, SOCK_DGRAM, 0);
    if (fd < 0) return nullptr;
    S* s = new (std::nothrow) S(fd);
    if (s == nullptr) {
        photon_close(fd);
        errno = ENOMEM;
    }
    return s;
}
}  // namespace detail

/// A new UDP socket (IPv4; pass an AF_INET6 `fd` for IPv6), or over `fd`;
/// nullptr with errno.
inline UDPSocket* new_udp_socket(int fd = -1) { return detail::new_datagram<UDPSocket>(fd, AF_INET); }
/// A new Unix datagram socket, or over `fd`; nullptr with errno.
inline UDS_DatagramSocket* new_uds_datagram_socket(int fd = -1) {
    return detail::new_datagram<UDS_DatagramSocket>(fd, AF_UNIX);
}

}  // namespace net
}  // namespace photon

#endif  // PHOTON_CPP_NET_DATAGRAM_SOCKET_H
