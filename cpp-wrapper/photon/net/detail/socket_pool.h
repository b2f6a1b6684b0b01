// photon/net/detail/socket_pool.h (included by photon/net/socket.h):
// PhotonLibOS's socket pools. A pool is an ISocketClient whose streams, when
// deleted, go back to the pool instead of closing, to be handed out again by
// the next connect() of the same key (by default the endpoint). A stream is
// not pooled again once a read came back at end of stream or failed, a write
// failed, or it was shut down or closed; an idle stream is dropped when its
// peer closed it or sent something (checked when it would be handed out and
// by the pool's collector thread), when `expiration` microseconds passed, or
// when the heartbeater, called with each idle stream every
// `heartbeat_interval` microseconds, returns -1. With enable_tcp_keepalive
// each new connection gets SO_KEEPALIVE and the three TCP keepalive options.
//
// The collector is a photon thread started by the pool's constructor; a pool
// is used, and deleted, on that vcpu, and outlives its streams. C++17 (the
// keys are std::string_view, as PhotonLibOS's).
#ifndef PHOTON_CPP_NET_DETAIL_SOCKET_POOL_H
#define PHOTON_CPP_NET_DETAIL_SOCKET_POOL_H

#if __cplusplus >= 201703L

#include <photon.h>
#include <photon/common/callback.h>
#include <photon/net/socket.h>
#include <photon/net/utils.h>
#include <photon/thread/thread.h>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>

#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <string_view>

namespace photon {
namespace net {

/// A socket client that keeps idle connections per key.
class ISocketPool : public ISocketClient {
public:
    using ISocketClient::connect;
    /// Connects to a name:port (resolved when a new connection is needed),
    /// keyed by the name.
    virtual ISocketStream* connect(std::string_view domain_name, uint16_t port, const EndPoint* local = nullptr) = 0;
    /// Connections are equal iff their keys are.
    virtual ISocketStream* connect(std::string_view key, const EndPoint& remote, const EndPoint* local = nullptr) = 0;
    virtual ISocketStream* connect(std::string_view key, std::string_view domain_name, uint16_t port,
                                   const EndPoint* local = nullptr) = 0;
    /// `connector` makes a new connection when none of `key` is idle.
    virtual ISocketStream* connect(std::string_view key, std::function<ISocketStream*()> connector) = 0;
};

struct SocketPoolArgs {
    /// Makes new connections (may be null if every connect() brings a connector).
    ISocketClient* sockclient = nullptr;
    /// The pool deletes sockclient.
    bool client_ownership = false;

    bool enable_tcp_keepalive = false;
    uint16_t tcp_keepalive_time = 2;     // TCP_KEEPIDLE, seconds
    uint16_t tcp_keepalive_intvl = 2;    // TCP_KEEPINTVL, seconds
    uint16_t tcp_keepalive_probes = 15;  // TCP_KEEPCNT

    /// Called with each idle stream every heartbeat_interval us; -1 drops it.
    Callback<ISocketStream*> heartbeater = {};
    uint64_t heartbeat_interval = 10000000;

    /// Idle streams are dropped after this many us.
    uint64_t expiration = static_cast<uint64_t>(-1);
};

namespace detail {

// photon/net/utils.h's gethostbyname, found when instantiated (through the
// vector's IPAddr): utils.h includes socket.h, which includes this header, so
// utils.h may be only partly read here.
template <class Addrs>
inline int resolve(const char* name, Addrs& addrs) {
    return gethostbyname(name, addrs);
}

class TCPSocketPool;

/// What connect() hands out: forwards to the pooled stream, noting when it
/// must not be pooled again; deleting it gives the stream back.
class PooledStream final : public ISocketStream {
public:
    PooledStream(ISocketStream* s, TCPSocketPool* pool, std::string key)
        : m_s(s), m_pool(pool), m_key(std::move(key)) {}
    ~PooledStream() override;
    PooledStream(const PooledStream&) = delete;
    PooledStream& operator=(const PooledStream&) = delete;

    int close() override {
        m_drop = true;
        return m_s->close();
    }
    int shutdown(ShutdownHow how) override {
        m_drop = true;
        return m_s->shutdown(how);
    }
    ssize_t read(void* buf, size_t count) override { return in(count, m_s->read(buf, count)); }
    ssize_t readv(const struct iovec* iov, int iovcnt) override { return in(sum(iov, iovcnt), m_s->readv(iov, iovcnt)); }
    ssize_t recv(void* buf, size_t count, int flags = 0) override { return in(count, m_s->recv(buf, count, flags)); }
    ssize_t recv(const struct iovec* iov, int iovcnt, int flags = 0) override {
        return in(sum(iov, iovcnt), m_s->recv(iov, iovcnt, flags));
    }
    ssize_t write(const void* buf, size_t count) override { return out(m_s->write(buf, count)); }
    ssize_t writev(const struct iovec* iov, int iovcnt) override { return out(m_s->writev(iov, iovcnt)); }
    ssize_t send(const void* buf, size_t count, int flags = 0) override { return out(m_s->send(buf, count, flags)); }
    ssize_t send(const struct iovec* iov, int iovcnt, int flags = 0) override {
        return out(m_s->send(iov, iovcnt, flags));
    }

    int get_underlay_fd() override { return m_s->get_underlay_fd(); }
    using ISocketBase::getsockopt;
    using ISocketBase::setsockopt;
    int setsockopt(int level, int name, const void* value, socklen_t len) override {
        return m_s->setsockopt(level, name, value, len);
    }
    int getsockopt(int level, int name, void* value, socklen_t* len) override {
        return m_s->getsockopt(level, name, value, len);
    }
    uint64_t timeout() const override { return m_s->timeout(); }
    void timeout(uint64_t tm) override { m_s->timeout(tm); }
    using ISocketName::getpeername;
    using ISocketName::getsockname;
    int getsockname(EndPoint& ep) override { return m_s->getsockname(ep); }
    int getpeername(EndPoint& ep) override { return m_s->getpeername(ep); }
    int getsockname(char* path, size_t count) override { return m_s->getsockname(path, count); }
    int getpeername(char* path, size_t count) override { return m_s->getpeername(path, count); }

private:
    static size_t sum(const struct iovec* iov, int iovcnt) {
        size_t n = 0;
        for (int i = 0; i < iovcnt; ++i) n += iov[i].iov_len;
        return n;
    }
    // A read of something that gives nothing (end of stream) or fails.
    ssize_t in(size_t count, ssize_t ret) {
        if (count > 0 && ret <= 0) m_drop = true;
        return ret;
    }
    ssize_t out(ssize_t ret) {
        if (ret < 0) m_drop = true;
        return ret;
    }

    ISocketStream* m_s;
    TCPSocketPool* m_pool;
    std::string m_key;
    bool m_drop = false;
};

class TCPSocketPool final : public ISocketPool {
public:
    explicit TCPSocketPool(const SocketPoolArgs& args) : m_args(args) {
        thread* th = thread_create(&TCPSocketPool::collector_entry, this);
        m_collector = th ? thread_enable_join(th) : nullptr;
    }
    ~TCPSocketPool() override {
        m_stopping = true;
        if (m_collector) {
            if (m_collector_thread) thread_interrupt(m_collector_thread);
            thread_join(m_collector);
        }
        for (auto& kv : m_slots) kv.second.idle.clear();
        if (m_args.client_ownership) delete m_args.sockclient;
    }
    TCPSocketPool(const TCPSocketPool&) = delete;
    TCPSocketPool& operator=(const TCPSocketPool&) = delete;

    int get_underlay_fd() override { return -1; }
    using ISocketBase::getsockopt;
    using ISocketBase::setsockopt;
    int setsockopt(int level, int name, const void* value, socklen_t len) override {
        return client() ? m_args.sockclient->setsockopt(level, name, value, len) : -1;
    }
    int getsockopt(int level, int name, void* value, socklen_t* len) override {
        return client() ? m_args.sockclient->getsockopt(level, name, value, len) : -1;
    }
    uint64_t timeout() const override { return m_args.sockclient ? m_args.sockclient->timeout() : PHOTON_FOREVER; }
    void timeout(uint64_t tm) override {
        if (client()) m_args.sockclient->timeout(tm);
    }

    ISocketStream* connect(const char*, size_t = 0) override {
        errno = ENOSYS;  // pools are for TCP-like sockets
        return nullptr;
    }
    ISocketStream* connect(const EndPoint& remote, const EndPoint* local = nullptr) override {
        const std::string key = remote.to_string();
        return connect(std::string_view(key), remote, local);
    }
    ISocketStream* connect(std::string_view key, const EndPoint& remote, const EndPoint* local = nullptr) override {
        return connect(key, [&]() -> ISocketStream* { return client() ? m_args.sockclient->connect(remote, local) : nullptr; });
    }
    ISocketStream* connect(std::string_view domain_name, uint16_t port, const EndPoint* local = nullptr) override {
        return connect(domain_name, domain_name, port, local);
    }
    ISocketStream* connect(std::string_view key, std::string_view domain_name, uint16_t port,
                           const EndPoint* local = nullptr) override {
        return connect(key, [&]() -> ISocketStream* {
            if (!client()) return nullptr;
            std::vector<IPAddr> addrs;
            if (resolve(std::string(domain_name).c_str(), addrs) < 0 || addrs.empty()) {
                if (errno == 0) errno = ENOENT;
                return nullptr;
            }
            return m_args.sockclient->connect(EndPoint(addrs[static_cast<size_t>(std::rand()) % addrs.size()], port),
                                              local);
        });
    }
    ISocketStream* connect(std::string_view key, std::function<ISocketStream*()> connector) override {
        Slot& slot = m_slots[std::string(key)];
        while (!slot.idle.empty()) {
            std::unique_ptr<ISocketStream> s = std::move(slot.idle.front().stream);
            slot.idle.pop_front();
            if (alive(s.get())) return new PooledStream(s.release(), this, std::string(key));
            --slot.refcnt;  // the peer closed it (or sent what nobody asked for)
        }
        ISocketStream* s = connector ? connector() : nullptr;
        if (s == nullptr) return nullptr;
        ++slot.refcnt;
        if (m_args.enable_tcp_keepalive) keepalive(s);
        return new PooledStream(s, this, std::string(key));
    }

    /// A stream handed out comes back (PooledStream's destructor).
    void release(const std::string& key, ISocketStream* s, bool drop) {
        const int saved = errno;
        Slot& slot = m_slots[key];
        if (drop || !alive(s)) {
            --slot.refcnt;
            delete s;
        } else {
            Idle e;
            e.stream.reset(s);
            e.expire_at = deadline(m_args.expiration);
            e.heartbeat_at = deadline(m_args.heartbeat_interval);
            slot.idle.push_back(std::move(e));
            // The collector recomputes its wake-up (only interrupted in its sleep,
            // never in a heartbeat's I/O).
            if (m_collector_sleeping) thread_interrupt(m_collector_thread, EAGAIN);
        }
        errno = saved;
    }

private:
    struct Idle {
        std::unique_ptr<ISocketStream> stream;
        uint64_t expire_at = 0;
        uint64_t heartbeat_at = 0;
    };
    struct Slot {
        std::list<Idle> idle;
        uint32_t refcnt = 0;  // streams of this key, idle or handed out
    };

    bool client() {
        if (m_args.sockclient) return true;
        errno = ENOSYS;  // a socket client must be given when no connector is
        return false;
    }
    static uint64_t deadline(uint64_t us) {
        const uint64_t t = static_cast<uint64_t>(photon_now_us());
        return us > UINT64_MAX - t ? UINT64_MAX : t + us;
    }
    // An idle connection is reusable while nothing can be read from it (a
    // readable one is at end of stream, or has data nobody asked for). A
    // poll(2) of the kernel descriptor that never yields, so that the
    // collector's walk of the idle lists is not interleaved with connect().
    static bool alive(ISocketStream* s) {
        const int fd = s->get_underlay_fd();
        if (fd < 0) return true;
        struct pollfd p;
        p.fd = fd;
        p.events = POLLIN;
        p.revents = 0;
        if (::poll(&p, 1, 0) != 1) return true;  // nothing to read (or no way to tell)
        return (p.revents & POLLNVAL) != 0 && (p.revents & (POLLIN | POLLHUP | POLLERR)) == 0;
    }
    void keepalive(ISocketStream* s) {
        s->setsockopt<int>(SOL_SOCKET, SO_KEEPALIVE, 1);
        s->setsockopt<int>(IPPROTO_TCP, TCP_KEEPIDLE, m_args.tcp_keepalive_time);
        s->setsockopt<int>(IPPROTO_TCP, TCP_KEEPINTVL, m_args.tcp_keepalive_intvl);
        s->setsockopt<int>(IPPROTO_TCP, TCP_KEEPCNT, m_args.tcp_keepalive_probes);
    }

    static void* collector_entry(void* arg) {
        static_cast<TCPSocketPool*>(arg)->collect();
        return nullptr;
    }
    // Drops expired and dead idle streams, runs the heartbeats; sleeps until
    // the next due time (at most a second, to notice peers that closed).
    void collect() {
        m_collector_thread = CURRENT;
        while (!m_stopping) {
            const uint64_t now = static_cast<uint64_t>(photon_now_us());
            uint64_t wake = now + 1000000;
            for (auto& kv : m_slots) {
                Slot& slot = kv.second;
                std::list<Idle> due;
                for (auto it = slot.idle.begin(); it != slot.idle.end();) {
                    auto next = std::next(it);
                    if (it->expire_at <= now || !alive(it->stream.get())) {
                        slot.idle.erase(it);
                        --slot.refcnt;
                    } else if (m_args.heartbeater && it->heartbeat_at <= now) {
                        due.splice(due.end(), slot.idle, it);
                    } else {
                        if (it->expire_at < wake) wake = it->expire_at;
                        if (m_args.heartbeater && it->heartbeat_at < wake) wake = it->heartbeat_at;
                    }
                    it = next;
                }
                // Heartbeats may block: their streams are out of the idle list
                // meanwhile, and m_slots (a std::map) keeps its nodes as keys are added.
                for (auto it = due.begin(); it != due.end();) {
                    auto next = std::next(it);
                    if (m_args.heartbeater(it->stream.get()) < 0) {
                        due.erase(it);
                        --slot.refcnt;
                    } else {
                        it->heartbeat_at = deadline(m_args.heartbeat_interval);
                        if (it->heartbeat_at < wake) wake = it->heartbeat_at;
                    }
                    it = next;
                }
                slot.idle.splice(slot.idle.end(), due);
            }
            if (m_stopping) break;
            const uint64_t t = static_cast<uint64_t>(photon_now_us());
            m_collector_sleeping = true;
            thread_usleep(wake > t ? wake - t : 0);
            m_collector_sleeping = false;
        }
        m_collector_thread = nullptr;
    }

    SocketPoolArgs m_args;
    std::map<std::string, Slot> m_slots;
    join_handle* m_collector = nullptr;
    thread* m_collector_thread = nullptr;
    bool m_collector_sleeping = false;
    bool m_stopping = false;
};

inline PooledStream::~PooledStream() { m_pool->release(m_key, m_s, m_drop); }

}  // namespace detail

/// A pool over args.sockclient (see this header's top). Delete it after its streams.
inline ISocketPool* new_tcp_socket_pool(const SocketPoolArgs& args) { return new detail::TCPSocketPool(args); }

/// The same with only a client, an expiration (us) and the client's ownership.
inline ISocketPool* new_tcp_socket_pool(ISocketClient* sockclient, uint64_t expiration = static_cast<uint64_t>(-1),
                                        bool client_ownership = false) {
    SocketPoolArgs args;
    args.sockclient = sockclient;
    args.client_ownership = client_ownership;
    args.expiration = expiration;
    return new_tcp_socket_pool(args);
}

}  // namespace net
}  // namespace photon

#endif  // C++17
#endif  // PHOTON_CPP_NET_DETAIL_SOCKET_POOL_H
