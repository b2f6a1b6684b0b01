// photon/net/socket.h: coroutine sockets, as PhotonLibOS spells them:
// addresses (IPAddr, EndPoint), streams (ISocketStream), clients
// (ISocketClient) and servers with their accept loop (ISocketServer), over
// libphoton's fd calls (photon_socket, photon_connect, photon_accept,
// photon_recv/send, photon_read_full/write_full, photon_close).
//
//     auto server = photon::net::new_tcp_socket_server();
//     server->set_handler([](photon::net::ISocketStream* s) {
//         char buf[4096];
//         for (ssize_t n; (n = s->recv(buf, sizeof buf)) > 0;)
//             if (s->write(buf, n) != n) break;
//         return 0;
//     });
//     server->bind_v4any(8080); server->listen(); server->start_loop(true);
//
// Every object and call here is for photon threads (on a vcpu); a blocking
// call blocks only its photon thread. Each socket has a default timeout in
// microseconds (timeout(), PHOTON_FOREVER unless set), applied to every
// call on it; streams from a client or server inherit the creator's.
#ifndef PHOTON_CPP_NET_SOCKET_H
#define PHOTON_CPP_NET_SOCKET_H

#include <photon.h>
#include <photon/common/callback.h>
#include <photon/common/object.h>
#include <photon/common/stream.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <type_traits>
#if __cplusplus >= 201703L
#include <string_view>
#endif

class LogBuffer;

namespace photon {
namespace net {

/// An IP address, v4 or v6; a v4 address is kept v4-mapped
/// (::ffff:a.b.c.d), so one type serves both.
struct IPAddr {
    in6_addr addr;

    /// 0.0.0.0 (which counts as undefined()).
    IPAddr() noexcept { map_v4(htonl(INADDR_ANY)); }
    explicit IPAddr(in6_addr internet_addr) noexcept : addr(internet_addr) {}
    /// A v6 address from four words in network byte order.
    IPAddr(uint32_t nl1, uint32_t nl2, uint32_t nl3, uint32_t nl4) noexcept {
        const uint32_t w[4] = {nl1, nl2, nl3, nl4};
        std::memcpy(&addr, w, sizeof w);
    }
    explicit IPAddr(in_addr internet_addr) noexcept { map_v4(internet_addr.s_addr); }
    /// A v4 address in network byte order.
    explicit IPAddr(uint32_t nl) noexcept { map_v4(nl); }
    /// Parses "1.2.3.4" or "::1"; anything else gives 0.0.0.0.
    explicit IPAddr(const char* s) noexcept {
        map_v4(htonl(INADDR_ANY));
        if (s == nullptr) return;
        in_addr v4;
        if (inet_pton(AF_INET6, s, &addr) > 0) return;
        if (inet_pton(AF_INET, s, &v4) > 0)
            map_v4(v4.s_addr);
        else
            map_v4(htonl(INADDR_ANY));
    }

    bool is_ipv4() const noexcept {
        static const unsigned char prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        return std::memcmp(addr.s6_addr, prefix, sizeof prefix) == 0;
    }
    bool is_ipv6() const noexcept { return !is_ipv4(); }
    /// True for 0.0.0.0, the default.
    bool undefined() const noexcept { return *this == V4Any() && is_ipv4(); }
    /// The v4 address in network byte order (for a v4 address).
    uint32_t to_nl() const noexcept {
        uint32_t nl;
        std::memcpy(&nl, addr.s6_addr + 12, sizeof nl);
        return nl;
    }
    bool is_loopback() const noexcept { return is_ipv4() ? same(V4Loopback()) : same(V6Loopback()); }
    bool is_localhost() const noexcept { return is_loopback(); }
    bool is_broadcast() const noexcept { return is_ipv4() && same(V4Broadcast()); }
    /// 169.254.0.0/16, or fe80::/10.
    bool is_link_local() const noexcept {
        if (is_ipv4()) return addr.s6_addr[12] == 169 && addr.s6_addr[13] == 254;
        return addr.s6_addr[0] == 0xfe && (addr.s6_addr[1] & 0xc0) == 0x80;
    }
    /// Equal addresses, or both loopback (as PhotonLibOS compares).
    bool operator==(const IPAddr& rhs) const noexcept { return same(rhs) || (is_loopback() && rhs.is_loopback()); }
    bool operator!=(const IPAddr& rhs) const noexcept { return !(*this == rhs); }

    /// "1.2.3.4" or "::1".
    std::string to_string() const {
        char buf[INET6_ADDRSTRLEN] = {0};
        if (is_ipv4()) {
            in_addr v4;
            v4.s_addr = to_nl();
            inet_ntop(AF_INET, &v4, buf, sizeof buf);
        } else {
            inet_ntop(AF_INET6, &addr, buf, sizeof buf);
        }
        return buf;
    }

    static IPAddr V6None() noexcept { return IPAddr(0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu); }
    static IPAddr V6Any() noexcept { return IPAddr(in6addr_any); }
    static IPAddr V6Loopback() noexcept { return IPAddr(in6addr_loopback); }
    static IPAddr V4Broadcast() noexcept { return IPAddr(htonl(INADDR_BROADCAST)); }
    static IPAddr V4Any() noexcept { return IPAddr(htonl(INADDR_ANY)); }
    static IPAddr V4Loopback() noexcept { return IPAddr(htonl(INADDR_LOOPBACK)); }
    static IPAddr localhost() noexcept { return V4Loopback(); }

private:
    bool same(const IPAddr& rhs) const noexcept { return std::memcmp(&addr, &rhs.addr, sizeof addr) == 0; }
    void map_v4(uint32_t nl) noexcept {
        std::memset(&addr, 0, sizeof addr);
        addr.s6_addr[10] = 0xff;
        addr.s6_addr[11] = 0xff;
        std::memcpy(addr.s6_addr + 12, &nl, sizeof nl);
    }
};

/// An IP address and a port.
struct EndPoint {
    IPAddr addr;
    uint16_t port = 0;

    EndPoint() = default;
    EndPoint(IPAddr ip, uint16_t port_) noexcept : addr(ip), port(port_) {}
    EndPoint(const char* ip, uint16_t port_) noexcept : addr(ip), port(port_) {}
    /// Parses "1.2.3.4:80" or "[::1]:80"; anything else gives 0.0.0.0:0.
    explicit EndPoint(const char* ep) {
        if (ep == nullptr) return;
        std::string s(ep);
        std::string host;
        std::string::size_type colon;
        if (!s.empty() && s[0] == '[') {
            const auto close = s.find(']');
            if (close == std::string::npos || close + 1 >= s.size() || s[close + 1] != ':') return;
            host = s.substr(1, close - 1);
            colon = close + 1;
        } else {
            colon = s.rfind(':');
            if (colon == std::string::npos) return;
            host = s.substr(0, colon);
        }
        char* end = nullptr;
        const unsigned long p = std::strtoul(s.c_str() + colon + 1, &end, 10);
        if (end == s.c_str() + colon + 1 || *end != '\0' || p > 65535) return;
        IPAddr ip(host.c_str());
        if (ip.undefined() && host != "0.0.0.0") return;
        addr = ip;
        port = static_cast<uint16_t>(p);
    }
    /// Parses "host:port", "[v6]:port", or a bare address (which takes
    /// `default_port`); an unparsable string gives 0.0.0.0:0. Host names
    /// are not resolved (see photon/net/utils.h's gethostbyname).
    static EndPoint parse(const std::string& ep, uint16_t default_port = 0) {
        EndPoint full(ep.c_str());
        if (!full.undefined()) return full;
        const std::string host = ep.size() > 2 && ep.front() == '[' && ep.back() == ']' ? ep.substr(1, ep.size() - 2) : ep;
        IPAddr ip(host.c_str());
        if (ip.undefined() && host != "0.0.0.0") return EndPoint();
        return EndPoint(ip, default_port);
    }
#if __cplusplus >= 201703L
    static EndPoint parse(std::string_view ep, uint16_t default_port = 0) {
        return parse(std::string(ep), default_port);
    }
    static EndPoint parse(const char* ep, uint16_t default_port = 0) {
        return parse(std::string(ep ? ep : ""), default_port);
    }
#endif
    bool is_ipv4() const noexcept { return addr.is_ipv4(); }
    /// True for 0.0.0.0:0 (what a failed parse gives), as PhotonLibOS's.
    bool undefined() const noexcept { return addr.undefined() && port == 0; }
    bool operator==(const EndPoint& rhs) const noexcept { return addr == rhs.addr && port == rhs.port; }
    bool operator!=(const EndPoint& rhs) const noexcept { return !(*this == rhs); }
    /// "1.2.3.4:80" or "[::1]:80".
    std::string to_string() const {
        return (is_ipv4() ? addr.to_string() : "[" + addr.to_string() + "]") + ":" + std::to_string(port);
    }
};

/// IPAddr and EndPoint in log lines (photon/common/alog.h's LogBuffer,
/// found by argument-dependent lookup; a template, so that this header
/// needs no logging header).
template <class LB, class = typename std::enable_if<std::is_same<LB, ::LogBuffer>::value>::type>
inline LB& operator<<(LB& log, const IPAddr& a) {
    return log << a.to_string().c_str();
}
template <class LB, class = typename std::enable_if<std::is_same<LB, ::LogBuffer>::value>::type>
inline LB& operator<<(LB& log, const EndPoint& ep) {
    return log << ep.to_string().c_str();
}

/// What sockets, clients and servers have in common.
class ISocketBase {
public:
    virtual ~ISocketBase() = default;
    /// The socket's fd (-1 if none).
    virtual int get_underlay_fd() = 0;
    virtual int setsockopt(int level, int option_name, const void* option_value, socklen_t option_len) = 0;
    virtual int getsockopt(int level, int option_name, void* option_value, socklen_t* option_len) = 0;
    /// setsockopt with a value of type P: `s->setsockopt<int>(SOL_SOCKET, SO_KEEPALIVE, 1)`.
    template <class P, class T>
    int setsockopt(int level, int option_name, const T& value) {
        P v = value;
        return setsockopt(level, option_name, &v, sizeof(v));
    }
    template <class P, class T>
    int getsockopt(int level, int option_name, T* value) {
        P v;
        socklen_t len = sizeof(v);
        const int ret = getsockopt(level, option_name, &v, &len);
        if (ret >= 0) *value = v;
        return ret;
    }
    /// The default timeout of every call, in microseconds (PHOTON_FOREVER: none).
    virtual uint64_t timeout() const = 0;
    virtual void timeout(uint64_t tm) = 0;
};

/// Local and peer names.
class ISocketName {
public:
    virtual ~ISocketName() = default;
    virtual int getsockname(EndPoint& addr) = 0;
    virtual int getpeername(EndPoint& addr) = 0;
    /// For Unix sockets: the path into `path` (NUL-terminated, at most `count` bytes).
    virtual int getsockname(char* path, size_t count) = 0;
    virtual int getpeername(char* path, size_t count) = 0;
    EndPoint getsockname() {
        EndPoint ep;
        getsockname(ep);
        return ep;
    }
    EndPoint getpeername() {
        EndPoint ep;
        getpeername(ep);
        return ep;
    }
};

/// A connected stream socket. read()/write() (from IStream) loop until the
/// whole count went through (read: or EOF); recv()/send() wait at most once
/// and may transfer less.
class ISocketStream : public IStream, public ISocketBase, public ISocketName {
public:
    /// shutdown(2) on the socket's descriptor: 0, or -1 with errno (EBADF
    /// with none).
    int shutdown(ShutdownHow how) override { return photon_shutdown(get_underlay_fd(), static_cast<int>(how)); }
    /// Receives what has arrived, waiting once if nothing has: the count
    /// (maybe less than `count`; 0 at EOF), or -1 with errno.
    virtual ssize_t recv(void* buf, size_t count, int flags = 0) = 0;
    virtual ssize_t recv(const struct iovec* iov, int iovcnt, int flags = 0) = 0;
    /// Sends what fits, waiting once if nothing does: the count (maybe less
    /// than `count`), or -1 with errno. MSG_NOSIGNAL is implied.
    virtual ssize_t send(const void* buf, size_t count, int flags = 0) = 0;
    virtual ssize_t send(const struct iovec* iov, int iovcnt, int flags = 0) = 0;

    /// Receives until at least `least` bytes (at most `count`) arrived: the
    /// count, fewer at EOF, -1 with errno on error before `least`.
    ssize_t recv_at_least(void* buf, size_t count, size_t least, int flags = 0) {
        size_t got = 0;
        while (got < least) {
            const ssize_t n = recv(static_cast<char*>(buf) + got, count - got, flags);
            if (n < 0) return -1;
            if (n == 0) break;
            got += static_cast<size_t>(n);
        }
        return static_cast<ssize_t>(got);
    }
    /// Reads and drops `count` bytes; false on error or EOF first.
    bool skip_read(size_t count) {
        char buf[4096];
        while (count > 0) {
            const size_t chunk = count < sizeof buf ? count : sizeof buf;
            if (read(buf, chunk) != static_cast<ssize_t>(chunk)) return false;
            count -= chunk;
        }
        return true;
    }
};

/// Makes connected streams. The caller owns (deletes) each stream.
class ISocketClient : public ISocketBase, public Object {
public:
    /// Connects to `remote` (binding `local` first if given): the stream,
    /// or nullptr with errno (ECONNREFUSED, ETIMEDOUT, ...).
    virtual ISocketStream* connect(const EndPoint& remote, const EndPoint* local = nullptr) = 0;
    /// Connects to the Unix socket at `path` (`count` bytes of it; 0: all).
    virtual ISocketStream* connect(const char* path, size_t count = 0) = 0;
};

/// A listening socket and its accept loop.
class ISocketServer : public ISocketBase, public ISocketName, public Object {
public:
    virtual int bind(const EndPoint& ep) = 0;
    /// Binds a Unix server to `path` (`count` bytes of it; 0: all).
    virtual int bind(const char* path, size_t count) = 0;
    int bind(uint16_t port = 0) { return bind_v4any(port); }
    int bind(const char* path) { return bind(path, 0); }
    int bind_v4any(uint16_t port = 0) { return bind(EndPoint(IPAddr::V4Any(), port)); }
    int bind_v6any(uint16_t port = 0) { return bind(EndPoint(IPAddr::V6Any(), port)); }
    int bind_v4localhost(uint16_t port = 0) { return bind(EndPoint(IPAddr::V4Loopback(), port)); }
    int bind_v6localhost(uint16_t port = 0) { return bind(EndPoint(IPAddr::V6Loopback(), port)); }
    // PhotonLibOS's other spellings of the same.
    int bind_any4(uint16_t port = 0) { return bind_v4any(port); }
    int bind_any6(uint16_t port = 0) { return bind_v6any(port); }
    int bind_localhost4(uint16_t port = 0) { return bind_v4localhost(port); }
    int bind_localhost6(uint16_t port = 0) { return bind_v6localhost(port); }

    virtual int listen(int backlog = 1024) = 0;
    /// Accepts one connection (the caller owns the stream), or nullptr with errno.
    virtual ISocketStream* accept(EndPoint* remote_endpoint = nullptr) = 0;

    /// Runs once per accepted connection, in a photon thread of its own;
    /// the server deletes the stream when the handler returns.
    using Handler = Callback<ISocketStream*>;
    virtual ISocketServer* set_handler(Handler handler) = 0;
    /// Runs the accept loop: in the caller until terminate() (`block`), or
    /// in a new photon thread of this vcpu (which starts when the caller
    /// yields or blocks). 0, or -1 with errno (EALREADY if it runs already).
    virtual int start_loop(bool block = false) = 0;
    /// Stops the accept loop, waits for it to leave, and closes the
    /// listening socket. Connections being handled carry on: ending them is
    /// the caller's business.
    virtual void terminate() = 0;
};

}  // namespace net
}  // namespace photon

namespace std {

/// Hashes of addresses, so they can key unordered containers (as in PhotonLibOS).
template <>
struct hash<photon::net::IPAddr> {
    size_t operator()(const photon::net::IPAddr& ip) const noexcept {
        uint64_t h = 1469598103934665603ull;  // FNV-1a over the 16 bytes
        for (unsigned char b : ip.addr.s6_addr) h = (h ^ b) * 1099511628211ull;
        return static_cast<size_t>(h);
    }
};
template <>
struct hash<photon::net::EndPoint> {
    size_t operator()(const photon::net::EndPoint& ep) const noexcept {
        return hash<photon::net::IPAddr>()(ep.addr) ^ (static_cast<size_t>(ep.port) * 0x9e3779b97f4a7c15ull);
    }
};

}  // namespace std

// The implementation, and the factories new_tcp_socket_client() and the
// like, which return its objects.
#include <photon/net/detail/kernel_socket.h>
// Socket pools (ISocketPool, new_tcp_socket_pool) over any socket client.
#include <photon/net/detail/socket_pool.h>

#endif  // PHOTON_CPP_NET_SOCKET_H
