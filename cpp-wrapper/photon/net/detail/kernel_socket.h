// photon/net/detail/kernel_socket.h: the socket classes behind
// <photon/net/socket.h>, and its factories (include that header, not this
// one; each includes the other, so either order works).
#ifndef PHOTON_CPP_NET_DETAIL_KERNEL_SOCKET_H
#define PHOTON_CPP_NET_DETAIL_KERNEL_SOCKET_H

#include <photon.h>
#include <photon/common/timeout.h>
#include <photon/net/socket.h>
#include <photon/thread/detail/escape.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstring>
#include <exception>
#include <memory>
#include <string>
#include <vector>

namespace photon {
namespace net {
namespace detail {

/// `ep` as a sockaddr of family AF_INET (a v4 endpoint, unless `v6`) or AF_INET6.
inline socklen_t to_sockaddr(const EndPoint& ep, bool v6, ::sockaddr_storage& ss) noexcept {
    std::memset(&ss, 0, sizeof ss);
    if (!v6 && ep.is_ipv4()) {
        sockaddr_in* in = reinterpret_cast<sockaddr_in*>(&ss);
        in->sin_family = AF_INET;
        in->sin_port = htons(ep.port);
        in->sin_addr.s_addr = ep.addr.to_nl();
        return sizeof(sockaddr_in);
    }
    sockaddr_in6* in6 = reinterpret_cast<sockaddr_in6*>(&ss);
    in6->sin6_family = AF_INET6;
    in6->sin6_port = htons(ep.port);
    in6->sin6_addr = ep.addr.addr;
    return sizeof(sockaddr_in6);
}

/// The endpoint of an AF_INET/AF_INET6 sockaddr; -1 (EAFNOSUPPORT) for others.
inline int from_sockaddr(const ::sockaddr_storage& ss, EndPoint& ep) noexcept {
    if (ss.ss_family == AF_INET) {
        const sockaddr_in* in = reinterpret_cast<const sockaddr_in*>(&ss);
        ep = EndPoint(IPAddr(in->sin_addr), ntohs(in->sin_port));
        return 0;
    }
    if (ss.ss_family == AF_INET6) {
        const sockaddr_in6* in6 = reinterpret_cast<const sockaddr_in6*>(&ss);
        ep = EndPoint(IPAddr(in6->sin6_addr), ntohs(in6->sin6_port));
        return 0;
    }
    errno = EAFNOSUPPORT;
    return -1;
}

/// A Unix socket address for `count` bytes of `path` (0: all); 0, or -1 with errno.
inline int to_sockaddr_un(const char* path, size_t count, sockaddr_un& un, socklen_t& len) noexcept {
    if (path == nullptr) {
        errno = EINVAL;
        return -1;
    }
    if (count == 0) count = std::strlen(path);
    if (count == 0 || count >= sizeof un.sun_path) {
        errno = count == 0 ? EINVAL : ENAMETOOLONG;
        return -1;
    }
    std::memset(&un, 0, sizeof un);
    un.sun_family = AF_UNIX;
    std::memcpy(un.sun_path, path, count);
    len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + count + 1);
    return 0;
}

/// Copies the path of a Unix sockaddr into `path` (NUL-terminated).
inline int un_path(const ::sockaddr_storage& ss, socklen_t len, char* path, size_t count) noexcept {
    if (ss.ss_family != AF_UNIX || path == nullptr || count == 0) {
        errno = EINVAL;
        return -1;
    }
    const sockaddr_un* un = reinterpret_cast<const sockaddr_un*>(&ss);
    size_t n = len > offsetof(sockaddr_un, sun_path) ? len - offsetof(sockaddr_un, sun_path) : 0;
    n = strnlen(un->sun_path, n);
    if (n >= count) n = count - 1;
    std::memcpy(path, un->sun_path, n);
    path[n] = '\0';
    return 0;
}

/// Socket options set on a client or server before it has a socket,
/// applied to each socket it makes.
class socket_options {
public:
    void set(int level, int name, const void* value, socklen_t len) {
        for (option& o : m_options) {
            if (o.level == level && o.name == name) {
                o.value.assign(static_cast<const char*>(value), static_cast<const char*>(value) + len);
                return;
            }
        }
        m_options.push_back(option{level, name, std::vector<char>(static_cast<const char*>(value),
                                                                  static_cast<const char*>(value) + len)});
    }
    int get(int level, int name, void* value, socklen_t* len) const {
        for (const option& o : m_options) {
            if (o.level == level && o.name == name) {
                socklen_t n = static_cast<socklen_t>(o.value.size());
                if (n > *len) n = *len;
                std::memcpy(value, o.value.data(), n);
                *len = n;
                return 0;
            }
        }
        errno = ENOPROTOOPT;
        return -1;
    }
    int apply(int fd) const {
        for (const option& o : m_options)
            if (::setsockopt(fd, o.level, o.name, o.value.data(), static_cast<socklen_t>(o.value.size())) != 0)
                return -1;
        return 0;
    }

private:
    struct option {
        int level, name;
        std::vector<char> value;
    };
    std::vector<option> m_options;
};

/// Closes `fd` keeping errno.
inline void close_keep_errno(int fd) noexcept {
    const int e = errno;
    photon_close(fd);
    errno = e;
}

/// Sets TCP_NODELAY on a TCP socket (a request/response protocol wants it).
inline void set_nodelay(int fd) noexcept {
    const int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

/// A connected socket fd as an ISocketStream; closes the fd when deleted.
class KernelSocketStream final : public ISocketStream {
public:
    KernelSocketStream(int fd, uint64_t timeout) noexcept : m_fd(fd), m_timeout(timeout) {}
    KernelSocketStream(const KernelSocketStream&) = delete;
    KernelSocketStream& operator=(const KernelSocketStream&) = delete;
    ~KernelSocketStream() override { close(); }

    int close() override {
        if (m_fd < 0) return 0;
        const int fd = m_fd;
        m_fd = -1;
        return photon_close(fd);
    }
    ssize_t read(void* buf, size_t count) override { return photon_read_full(m_fd, buf, count, m_timeout); }
    ssize_t write(const void* buf, size_t count) override { return photon_write_full(m_fd, buf, count, m_timeout); }
    ssize_t readv(const struct iovec* iov, int iovcnt) override { return loop_iov(iov, iovcnt, &photon_readv); }
    ssize_t writev(const struct iovec* iov, int iovcnt) override { return loop_iov(iov, iovcnt, &photon_writev); }

    ssize_t recv(void* buf, size_t count, int flags = 0) override {
        return photon_recv(m_fd, buf, count, flags, m_timeout);
    }
    ssize_t recv(const struct iovec* iov, int iovcnt, int flags = 0) override {
        msghdr msg;
        std::memset(&msg, 0, sizeof msg);
        msg.msg_iov = const_cast<struct iovec*>(iov);
        msg.msg_iovlen = static_cast<size_t>(iovcnt < 0 ? 0 : iovcnt);
        return photon_recvmsg(m_fd, &msg, flags, m_timeout);
    }
    ssize_t send(const void* buf, size_t count, int flags = 0) override {
        return photon_send(m_fd, buf, count, flags, m_timeout);
    }
    ssize_t send(const struct iovec* iov, int iovcnt, int flags = 0) override {
        msghdr msg;
        std::memset(&msg, 0, sizeof msg);
        msg.msg_iov = const_cast<struct iovec*>(iov);
        msg.msg_iovlen = static_cast<size_t>(iovcnt < 0 ? 0 : iovcnt);
        return photon_sendmsg(m_fd, &msg, flags, m_timeout);
    }

    int get_underlay_fd() override { return m_fd; }
    using ISocketBase::getsockopt;
    using ISocketBase::setsockopt;
    int setsockopt(int level, int name, const void* value, socklen_t len) override {
        return ::setsockopt(m_fd, level, name, value, len);
    }
    int getsockopt(int level, int name, void* value, socklen_t* len) override {
        return ::getsockopt(m_fd, level, name, value, len);
    }
    uint64_t timeout() const override { return m_timeout; }
    void timeout(uint64_t tm) override { m_timeout = tm; }

    using ISocketName::getpeername;
    using ISocketName::getsockname;
    int getsockname(EndPoint& ep) override { return name_of(ep, &::getsockname); }
    int getpeername(EndPoint& ep) override { return name_of(ep, &::getpeername); }
    int getsockname(char* path, size_t count) override { return path_of(path, count, &::getsockname); }
    int getpeername(char* path, size_t count) override { return path_of(path, count, &::getpeername); }

private:
    using name_fn = int (*)(int, sockaddr*, socklen_t*);
    int name_of(EndPoint& ep, name_fn fn) {
        ::sockaddr_storage ss;
        socklen_t len = sizeof ss;
        if (fn(m_fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return -1;
        return from_sockaddr(ss, ep);
    }
    int path_of(char* path, size_t count, name_fn fn) {
        ::sockaddr_storage ss;
        socklen_t len = sizeof ss;
        if (fn(m_fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return -1;
        return un_path(ss, len, path, count);
    }

    /// readv/writev until every byte went through (or EOF), one deadline
    /// for the whole call: the count, or -1 if the error came before any byte.
    ssize_t loop_iov(const struct iovec* iov, int iovcnt, ssize_t (*op)(int, const struct iovec*, int, uint64_t)) {
        if (iovcnt < 0 || (iov == nullptr && iovcnt > 0)) {
            errno = EINVAL;
            return -1;
        }
        std::vector<struct iovec> v(iov, iov + iovcnt);
        size_t first = 0;
        size_t done = 0;
        const Timeout deadline(m_timeout);
        while (first < v.size()) {
            if (v[first].iov_len == 0) {
                ++first;
                continue;
            }
            const ssize_t n = op(m_fd, &v[first], static_cast<int>(v.size() - first), deadline.timeout());
            if (n < 0) return done > 0 ? static_cast<ssize_t>(done) : -1;
            if (n == 0) break;
            done += static_cast<size_t>(n);
            size_t left = static_cast<size_t>(n);
            while (left > 0 && first < v.size()) {
                const size_t take = left < v[first].iov_len ? left : v[first].iov_len;
                v[first].iov_base = static_cast<char*>(v[first].iov_base) + take;
                v[first].iov_len -= take;
                left -= take;
                if (v[first].iov_len == 0) ++first;
            }
        }
        return static_cast<ssize_t>(done);
    }

    int m_fd;
    uint64_t m_timeout;
};

/// Makes TCP (v4 or v6) or Unix stream connections.
class KernelSocketClient final : public ISocketClient {
public:
    KernelSocketClient(bool unix_socket, bool v6) noexcept : m_unix(unix_socket), m_v6(v6) {}

    ISocketStream* connect(const EndPoint& remote, const EndPoint* local = nullptr) override {
        if (m_unix) {
            errno = EAFNOSUPPORT;
            return nullptr;
        }
        ::sockaddr_storage ss;
        const socklen_t len = to_sockaddr(remote, m_v6, ss);
        const int fd = photon_socket(ss.ss_family, SOCK_STREAM, 0);
        if (fd < 0) return nullptr;
        if (local != nullptr) {
            ::sockaddr_storage ls;
            const socklen_t llen = to_sockaddr(*local, ss.ss_family == AF_INET6, ls);
            if (::bind(fd, reinterpret_cast<sockaddr*>(&ls), llen) != 0) return fail(fd);
        }
        return finish(fd, reinterpret_cast<sockaddr*>(&ss), len, true);
    }
    ISocketStream* connect(const char* path, size_t count = 0) override {
        sockaddr_un un;
        socklen_t len;
        if (to_sockaddr_un(path, count, un, len) != 0) return nullptr;
        const int fd = photon_socket(AF_UNIX, SOCK_STREAM, 0);
        if (fd < 0) return nullptr;
        return finish(fd, reinterpret_cast<sockaddr*>(&un), len, false);
    }

    int get_underlay_fd() override { return -1; }
    using ISocketBase::getsockopt;
    using ISocketBase::setsockopt;
    /// Recorded, and set on every socket this client makes.
    int setsockopt(int level, int name, const void* value, socklen_t len) override {
        m_options.set(level, name, value, len);
        return 0;
    }
    int getsockopt(int level, int name, void* value, socklen_t* len) override {
        return m_options.get(level, name, value, len);
    }
    uint64_t timeout() const override { return m_timeout; }
    void timeout(uint64_t tm) override { m_timeout = tm; }

private:
    ISocketStream* fail(int fd) {
        close_keep_errno(fd);
        return nullptr;
    }
    ISocketStream* finish(int fd, const sockaddr* sa, socklen_t len, bool tcp) {
        if (m_options.apply(fd) != 0) return fail(fd);
        if (photon_connect(fd, sa, len, m_timeout) != 0) return fail(fd);
        if (tcp) set_nodelay(fd);
        return new KernelSocketStream(fd, m_timeout);
    }

    bool m_unix;
    bool m_v6;
    uint64_t m_timeout = PHOTON_FOREVER;
    socket_options m_options;
};

/// A listening TCP or Unix socket with an accept loop that runs each
/// connection's handler in a photon thread of its own.
class KernelSocketServer final : public ISocketServer {
public:
    KernelSocketServer(bool unix_socket, bool v6, bool autoremove) noexcept
        : m_unix(unix_socket), m_v6(v6), m_autoremove(autoremove) {}
    KernelSocketServer(const KernelSocketServer&) = delete;
    KernelSocketServer& operator=(const KernelSocketServer&) = delete;
    ~KernelSocketServer() override { terminate(); }

    using ISocketServer::bind;
    int bind(const EndPoint& ep) override {
        if (m_unix || m_fd >= 0) {
            errno = m_unix ? EAFNOSUPPORT : EALREADY;
            return -1;
        }
        ::sockaddr_storage ss;
        const socklen_t len = to_sockaddr(ep, m_v6, ss);
        const int fd = photon_socket(ss.ss_family, SOCK_STREAM, 0);
        if (fd < 0) return -1;
        const int one = 1;
        const int zero = 0;
        ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (ss.ss_family == AF_INET6 && ep.is_ipv4()) ::setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);
        if (m_options.apply(fd) != 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&ss), len) != 0) {
            close_keep_errno(fd);
            return -1;
        }
        m_fd = fd;
        return 0;
    }
    int bind(const char* path, size_t count) override {
        if (!m_unix || m_fd >= 0) {
            errno = m_unix ? EALREADY : EAFNOSUPPORT;
            return -1;
        }
        sockaddr_un un;
        socklen_t len;
        if (to_sockaddr_un(path, count, un, len) != 0) return -1;
        struct stat st;
        if (m_autoremove && ::lstat(un.sun_path, &st) == 0 && S_ISSOCK(st.st_mode)) ::unlink(un.sun_path);
        const int fd = photon_socket(AF_UNIX, SOCK_STREAM, 0);
        if (fd < 0) return -1;
        if (m_options.apply(fd) != 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&un), len) != 0) {
            close_keep_errno(fd);
            return -1;
        }
        m_fd = fd;
        m_path = un.sun_path;
        return 0;
    }
    int listen(int backlog = 1024) override {
        if (m_fd < 0) {
            errno = EBADF;
            return -1;
        }
        return ::listen(m_fd, backlog);
    }
    ISocketStream* accept(EndPoint* remote_endpoint = nullptr) override {
        ::sockaddr_storage ss;
        socklen_t len = sizeof ss;
        const int fd = photon_accept(m_fd, reinterpret_cast<sockaddr*>(&ss), &len, m_timeout);
        if (fd < 0) return nullptr;
        if (!m_unix) set_nodelay(fd);
        if (remote_endpoint != nullptr && !m_unix) from_sockaddr(ss, *remote_endpoint);
        return new KernelSocketStream(fd, m_timeout);
    }

    ISocketServer* set_handler(Handler handler) override {
        m_handler = std::make_shared<Handler>(std::move(handler));
        return this;
    }
    int start_loop(bool block = false) override {
        if (m_fd < 0) {
            errno = EBADF;
            return -1;
        }
        if (m_running.exchange(true)) {
            errno = EALREADY;
            return -1;
        }
        if (m_server == nullptr) {
            // libphoton's server loop adopts the socket (listening on it if
            // listen() was not called) and owns it from now on.
            m_server = photon_server_new_fd(m_fd);
            const int one = 1;
            if (m_server == nullptr ||
                (!m_unix && photon_server_set_sockopt(m_server, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) != 0)) {
                const int e = errno;
                photon_server_free(m_server);  // NULL is fine; else it would close m_fd: forget it
                if (m_server != nullptr) m_fd = -1;
                m_server = nullptr;
                m_running.store(false);
                errno = e;
                return -1;
            }
        }
        m_stop.store(false);
        if (block) {
            run_loop();
            return 0;
        }
        photon_thread* th = photon_thread_create(&loop_trampoline, this, 0);
        if (th == nullptr) {
            m_running.store(false);
            return -1;
        }
        photon_thread_enable_join(th);
        m_loop_joinable = th;
        return 0;
    }
    void terminate() override {
        m_stop.store(true);
        photon_thread* self = photon_thread_self();
        photon_thread* loop = m_loop_thread.load();
        if (m_server != nullptr) photon_server_stop(m_server);
        if (m_loop_joinable != nullptr) {
            // The loop was started here, on this vcpu: join it.
            while (photon_thread_join(m_loop_joinable, nullptr) != 0 && errno != EPERM && errno != EINVAL &&
                   errno != ESRCH) {
            }
            m_loop_joinable = nullptr;
        } else if (loop != self) {
            // A blocking start_loop runs elsewhere: wait for it to leave.
            while (m_running.load()) {
                if (photon_thread_usleep(1000) != 0 && errno == EPERM) sched_yield();
            }
        }
        const bool had_socket = m_fd >= 0;
        if (m_server != nullptr) {
            photon_server_free(m_server);  // closes the socket
            m_server = nullptr;
        } else if (m_fd >= 0) {
            photon_close(m_fd);
        }
        m_fd = -1;
        if (had_socket && m_autoremove && !m_path.empty()) ::unlink(m_path.c_str());
    }

    int get_underlay_fd() override { return m_fd; }
    using ISocketBase::getsockopt;
    using ISocketBase::setsockopt;
    /// On the socket once bound; before that, recorded and set at bind().
    int setsockopt(int level, int name, const void* value, socklen_t len) override {
        if (m_fd >= 0) return ::setsockopt(m_fd, level, name, value, len);
        m_options.set(level, name, value, len);
        return 0;
    }
    int getsockopt(int level, int name, void* value, socklen_t* len) override {
        if (m_fd >= 0) return ::getsockopt(m_fd, level, name, value, len);
        return m_options.get(level, name, value, len);
    }
    uint64_t timeout() const override { return m_timeout; }
    void timeout(uint64_t tm) override { m_timeout = tm; }

    using ISocketName::getpeername;
    using ISocketName::getsockname;
    int getsockname(EndPoint& ep) override {
        ::sockaddr_storage ss;
        socklen_t len = sizeof ss;
        if (::getsockname(m_fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return -1;
        return from_sockaddr(ss, ep);
    }
    int getpeername(EndPoint&) override {
        errno = ENOTCONN;
        return -1;
    }
    int getsockname(char* path, size_t count) override {
        ::sockaddr_storage ss;
        socklen_t len = sizeof ss;
        if (::getsockname(m_fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return -1;
        return un_path(ss, len, path, count);
    }
    int getpeername(char*, size_t) override {
        errno = ENOTCONN;
        return -1;
    }

private:
    static void* loop_trampoline(void* self) noexcept {
        static_cast<KernelSocketServer*>(self)->run_loop();
        return nullptr;
    }

    /// libphoton's server loop runs this in a new photon thread per
    /// connection. It copies what it needs from the server first, before
    /// anything can switch: run_loop yields once after the loop ended, so
    /// every connection thread has started (and copied) before terminate()
    /// returns and the server may be deleted.
    static int connection_main(void* self, int fd) noexcept {
        const KernelSocketServer* s = static_cast<const KernelSocketServer*>(self);
        const std::shared_ptr<Handler> handler = s->m_handler;
        KernelSocketStream stream(fd, s->m_timeout);
        try {
            if (handler && *handler) (*handler)(&stream);
        } catch (...) {
            photon::detail::detached_thread_escape(std::current_exception(), "a photon::net::ISocketServer connection handler",
                                                   photon_thread_self());
        }
        return 0;
    }

    void run_loop() noexcept {
        m_loop_thread.store(photon_thread_self());
        if (!m_stop.load()) photon_server_serve(m_server, &connection_main, this);
        photon_thread_yield();  // connections accepted last start (see connection_main)
        m_loop_thread.store(nullptr);
        m_running.store(false);
    }

    bool m_unix;
    bool m_v6;
    bool m_autoremove;
    int m_fd = -1;
    uint64_t m_timeout = PHOTON_FOREVER;
    std::string m_path;
    socket_options m_options;
    std::shared_ptr<Handler> m_handler;
    std::atomic<bool> m_stop{false};
    std::atomic<bool> m_running{false};
    std::atomic<photon_thread*> m_loop_thread{nullptr};
    photon_thread* m_loop_joinable = nullptr;
    photon_server* m_server = nullptr;  // libphoton's loop, from start_loop() on
};

}  // namespace detail

/// A TCP client (IPv4 or IPv6, as each remote endpoint is). Delete it when done.
inline ISocketClient* new_tcp_socket_client() { return new detail::KernelSocketClient(false, false); }
/// A TCP client that always uses an IPv6 socket (v4 endpoints as v4-mapped).
inline ISocketClient* new_tcp_socket_client_ipv6() { return new detail::KernelSocketClient(false, true); }
/// A TCP server (its family as bind() says). Delete it when done.
inline ISocketServer* new_tcp_socket_server() { return new detail::KernelSocketServer(false, false, false); }
/// A TCP server on an IPv6 socket that takes v4 clients too.
inline ISocketServer* new_tcp_socket_server_ipv6() { return new detail::KernelSocketServer(false, true, false); }
/// A Unix stream socket client.
inline ISocketClient* new_uds_client() { return new detail::KernelSocketClient(true, false); }
/// A Unix stream socket server; `autoremove`: unlink the socket file
/// before bind() (a leftover) and when the server is deleted.
inline ISocketServer* new_uds_server(bool autoremove = false) {
    return new detail::KernelSocketServer(true, false, autoremove);
}

}  // namespace net
}  // namespace photon

#endif  // PHOTON_CPP_NET_DETAIL_KERNEL_SOCKET_H
