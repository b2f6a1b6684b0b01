// The fourth pass: <sys/socket.h> with -I cpp-wrapper (PhotonLibOS's
// photon::net::setsockopt / getsockopt / getsockname / getpeername on raw
// descriptors); common/delegates.h (a facade's calls reach the object's
// members, overloads by signature, virtual overrides, SelfRef chaining,
// cast and unary operators, DUtils rebinding to member and plain functions,
// get_func, bind_obj); Delegate from common/callback.h (member functions,
// virtual ones resolved at binding, base-class members); alog-functionptr.h;
// ISocketStream::shutdown; with C++17, socket pools (reuse per key, the
// drops, dead idle connections, expiration, heartbeats, keepalive, user
// connectors, concurrent users).
#include <photon/common/alog-functionptr.h>
#include <photon/common/alog.h>
#include <photon/common/callback.h>
#include <photon/common/delegates.h>
#include <photon/net/socket.h>
#include <photon/photon.h>
#include <photon/thread/thread11.h>
#include <photon/thread/thread.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <netinet/tcp.h>

#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "check.h"

namespace {

struct Counter {
    int calls[6] = {0, 0, 0, 0, 0, 0};
    int base = 100;
    int get() { return ++calls[0], base; }
    void get(char c) { ++calls[1], base += c; }
    int add(int x) { return ++calls[2], base += x; }
    long add(long x) { return ++calls[3], base -= static_cast<int>(x); }
    Counter& operator<<(int x) {
        ++calls[4];
        base = base * 10 + x;
        return *this;
    }
    bool operator!() { return base == 0; }
    explicit operator bool() { return ++calls[5], base != 0; }
    int other() { return -7; }
    int twice(int x) const { return 2 * x + base; }
};

// A second object of another type, for SelfRef calls that hand back another object.
struct Shape {
    virtual ~Shape() = default;
    virtual int area() = 0;
    virtual int scale(int k) = 0;
};
struct Square : Shape {
    int side = 3;
    int area() override { return side * side; }
    int scale(int k) override { return side *= k; }
};
struct Padding {
    virtual ~Padding() = default;
    char pad[24] = {};
};
// Shape is not the primary base (Padding, dynamic too, is): a Shape* to a
// Circle is not its address, and Circle's overrides are reached through thunks.
struct Circle : Padding, Shape {
    int r = 2;
    int area() override { return 3 * r * r; }
    int scale(int k) override { return r *= k; }
};

int free_get(void* obj) { return static_cast<Counter*>(obj)->base + 1000; }
int free_getc(void* obj, char c) { return static_cast<Counter*>(obj)->base + c; }
int free_add(void* obj, int x) { return static_cast<Counter*>(obj)->base * x; }

}  // namespace

DEFINE_DELEGATE_FUNCTION(DGet, get);
DEFINE_DELEGATE_FUNCTION(DAdd, add);
DEFINE_DELEGATE_FUNCTION(DArea, area);
DEFINE_DELEGATE_FUNCTION(DScale, scale);
DEFINE_DELEGATE_CAST_OP(DBool, bool);

static void delegates() {
    using namespace photon;
    using namespace photon::DFeature;
    using D = Delegates<Feature<DGet, int(), void(char)>, Feature<DAdd, int(int), long(long)>,
                        Feature<LSH, SelfRef(int)>, Feature<LNOT, bool()>, Feature<DBool, bool()>>;

    SAY("delegates: calls reach the object's members, overloads by signature");
    Counter c;
    D d(c);
    CHECK(d.get() == 100 && c.calls[0] == 1, "get() %d", c.calls[0]);
    d.get('\x05');
    CHECK(c.base == 105 && c.calls[1] == 1, "get(char): base %d", c.base);
    CHECK(d.add(5) == 110 && c.calls[2] == 1, "add(int)");
    CHECK(d.add(10L) == 100 && c.calls[3] == 1, "add(long) picks the long overload: %d", c.calls[3]);
    CHECK(!(!d) && static_cast<bool>(d) && c.calls[5] == 1, "unary ! and operator bool");

    SAY("delegates: SelfRef calls chain and hand back a facade of the result");
    D e = d << 1 << 2;
    CHECK(c.base == 10012 && c.calls[4] == 2, "operator<< twice: base %d", c.base);
    CHECK(e.get() == 10012 && c.calls[0] == 2, "the returned facade calls the same object");

    SAY("delegates: a copy calls the same object; an empty facade does nothing");
    D copy = d;
    CHECK(copy.get() == 10012 && c.calls[0] == 3, "copy");
    D none;
    CHECK(none.get() == 0 && none.add(1) == 0 && c.calls[0] == 3 && c.calls[2] == 1, "empty facade");
    none.get('a');
    CHECK(!static_cast<bool>(none), "empty cast gives bool()");

    SAY("delegates: DUtils::bind_func to another member and to a plain function");
    CHECK((DUtils::bind_func<DGet, int()>(d, &c, &Counter::other)), "bind other");
    CHECK(d.get() == -7 && c.calls[0] == 3, "get() now calls other()");
    CHECK((DUtils::bind_func<DAdd, int(int)>(d, nullptr, &free_add)), "bind free_add");
    CHECK(d.add(2) == 20024 && c.calls[2] == 1, "add(int) now calls free_add with the object: %d", d.add(2));
    CHECK(d.add(1L) == 10011 && c.calls[3] == 2, "add(long) untouched");
    CHECK(DUtils::bind_func<DGet>(d, &c, &Counter::get), "the first overload by default");
    CHECK(d.get() == 10011 && c.calls[0] == 4, "get() back on get()");
    Counter other;
    CHECK(!(DUtils::bind_func<DGet, int()>(d, &other, &Counter::get)), "another object is refused");
    CHECK(d.get() == 10011 && c.calls[0] == 5 && other.calls[0] == 0, "still the first object");
    const bool bound = DUtils::bind_func<DGet, int(char)>(d, nullptr, &free_getc);
    CHECK(!bound, "no int(char) overload: refused");

    SAY("delegates: a facade built empty, bound call by call");
    D f;
    CHECK((DUtils::bind_func<DGet, int()>(f, nullptr, &free_get)), "bind free_get");
    CHECK(DUtils::bind_obj(f, &c) && !DUtils::bind_obj(f, &other), "bind_obj once");
    CHECK(f.get() == 11011, "free_get on the bound object: %d", f.get());
    CHECK(DUtils::bind_func<LSH>(f, &c, &Counter::operator<<), "bind operator<<");
    f << 3;
    CHECK(c.base == 100113 && c.calls[4] == 3, "operator<< through bind_func: %d", c.base);

    SAY("delegates: get_func reads a call back as a Delegate");
    auto g = DUtils::get_func<DGet, int()>(f);
    CHECK(g._obj == &c && g._func == &free_get && g() == 101113, "get_func int()");
    auto l = DUtils::get_func<LSH>(f);
    CHECK(l._obj == &c && l._func != nullptr && l(4) == &c && c.base == 1001134, "get_func SelfRef");
    auto missing = DUtils::get_func<DAdd, int(int)>(f);
    CHECK(missing._obj == &c && missing._func == nullptr && missing(1) == 0, "an unbound call");
    CHECK(DUtils::bind_obj_and_func(f, other) && f.get() == 100 && other.calls[0] == 1, "bind_obj_and_func");

    SAY("delegates: virtual members reach the override, this adjusted for a second base");
    using S = Delegates<Feature<DArea, int()>, Feature<DScale, int(int)>>;
    Square sq;
    Circle ci;
    Shape* shapes[2] = {&sq, &ci};
    S s0(*shapes[0]), s1(*shapes[1]);
    CHECK(s0.area() == 9 && s1.area() == 12, "area %d %d", s0.area(), s1.area());
    CHECK(s0.scale(2) == 6 && s1.scale(3) == 6 && sq.side == 6 && ci.r == 6, "scale");
    S s2;
    CHECK(DUtils::bind_func<DArea>(s2, shapes[1], &Shape::area), "bind a virtual member");
    CHECK(s2.area() == 108, "the override through the decoded vtable slot: %d", s2.area());
}

static void delegate_type() {
    SAY("Delegate: member functions, virtual ones, const ones, base-class ones");
    Counter c;
    Delegate<int, int> add(&c, &Counter::add);
    CHECK(add(5) == 105 && c.calls[2] == 1 && add._obj == &c, "member");
    Delegate<int, int> tw(&c, &Counter::twice);
    CHECK(tw(1) == 107, "const member");
    Circle ci;
    Delegate<int, int> sc(&ci, &Shape::scale);
    CHECK(sc(5) == 10 && ci.r == 10, "virtual member of a second base");
    CHECK(sc._obj == static_cast<Shape*>(&ci) && sc._obj != static_cast<void*>(&ci), "this adjusted");
    Delegate<int> fg(&c, &free_get);
    CHECK(fg() == 1105 && static_cast<bool>(fg), "plain function");
    Delegate<int> empty;
    CHECK(!static_cast<bool>(empty) && empty() == 0, "empty");
    CHECK(fg == Delegate<int>(&c, &free_get) && fg != empty, "== / !=");
    CHECK(fg.fire_once() == 1105 && !static_cast<bool>(fg), "fire_once clears");

    SAY("alog-functionptr.h: a function pointer logs its type and address");
    char buf[256] = {};
    {
        LogBuffer log(buf, sizeof buf, nullptr);
        log << &free_add;
    }
    {
        const std::string text(buf, std::strcspn(buf, "\n"));
        CHECK(text.find("function_pointer<int (*)(void*, int)> at 0x") == 0, "got '%s'", text.c_str());
    }
}

static void socket_calls() {
    SAY("sys/socket.h: photon::net::setsockopt / getsockopt on a raw descriptor");
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    CHECK(fd >= 0, "socket: %s", std::strerror(errno));
    int v = 0;
    socklen_t len = sizeof v;
    CHECK_OK(photon::net::getsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &v, &len));
    CHECK(v == 0, "SO_REUSEADDR starts off, got %d", v);
    v = 1;
    CHECK_OK(photon::net::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &v, sizeof v));
    v = 0;
    len = sizeof v;
    CHECK_OK(photon::net::getsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &v, &len));
    CHECK(v == 1 && len == sizeof v, "SO_REUSEADDR after setsockopt: %d (len %u)", v, (unsigned)len);

    SAY("sys/socket.h: getsockname / getpeername");
    sockaddr_in a;
    std::memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CHECK_OK(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a));
    sockaddr_in got;
    socklen_t glen = sizeof got;
    CHECK_OK(photon::net::getsockname(fd, reinterpret_cast<sockaddr*>(&got), &glen));
    CHECK(got.sin_family == AF_INET && got.sin_port != 0 && got.sin_addr.s_addr == htonl(INADDR_LOOPBACK),
          "getsockname gave family %d port %d", got.sin_family, ntohs(got.sin_port));
    glen = sizeof got;
    CHECK_ERRNO(photon::net::getpeername(fd, reinterpret_cast<sockaddr*>(&got), &glen), ENOTCONN);
    ::close(fd);

    SAY("sys/socket.h: a closed descriptor gives -1 and EBADF");
    v = 1;
    CHECK_ERRNO(photon::net::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &v, sizeof v), EBADF);
    len = sizeof v;
    CHECK_ERRNO(photon::net::getsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &v, &len), EBADF);
}

static bool wait_until(const std::function<bool()>& pred, uint64_t us) {
    for (uint64_t t = 0; t < us && !pred(); t += 10000) photon::thread_usleep(10000);
    return pred();
}

// A loopback echo server counting its connections (accepted, still open).
// Its handlers outlive the server object, so it waits for them to end (the
// clients, declared after it, are gone by then).
struct Echo {
    std::unique_ptr<photon::net::ISocketServer> server{photon::net::new_tcp_socket_server()};
    int accepted = 0;
    int open = 0;
    int close_after = 0;  // >0: closes after this many echoes
    photon::net::EndPoint ep;
    Echo() {
        CHECK_OK(server->bind_v4localhost());
        CHECK_OK(server->listen());
        server->set_handler([this](photon::net::ISocketStream* s) {
            ++accepted;
            ++open;
            char buf[4];
            int n = 0;
            while (s->read(buf, 4) == 4 && s->write(buf, 4) == 4)
                if (close_after > 0 && ++n == close_after) break;
            --open;
            return 0;
        });
        CHECK_OK(server->start_loop());
        ep = server->getsockname();
    }
    ~Echo() { CHECK(wait_until([this] { return open == 0; }, 5000000), "%d connections still open", open); }
    Echo(const Echo&) = delete;
    Echo& operator=(const Echo&) = delete;
};

static void roundtrip(photon::net::ISocketStream* s) {
    CHECK(s != nullptr, "connect: %s", std::strerror(errno));
    char buf[4] = {};
    CHECK(s->write("ping", 4) == 4 && s->read(buf, 4) == 4 && std::memcmp(buf, "ping", 4) == 0, "roundtrip");
}

static void shutdown_call() {
    SAY("ISocketStream::shutdown: the peer reads end of stream");
    Echo echo;
    std::unique_ptr<photon::net::ISocketClient> client(photon::net::new_tcp_socket_client());
    std::unique_ptr<photon::net::ISocketStream> s(client->connect(echo.ep));
    roundtrip(s.get());
    CHECK_OK(s->shutdown(ShutdownHow::Write));
    CHECK(wait_until([&] { return echo.open == 0; }, 3000000), "the server's read saw the FIN");
    CHECK(s->write("x", 1) == -1 && errno == EPIPE, "writing after SHUT_WR: EPIPE, got %s", std::strerror(errno));
}

#if __cplusplus >= 201703L
static void socket_pool() {
    using namespace photon::net;
    SAY("socket pool: one connection per key, reused");
    {
        Echo echo;
        std::unique_ptr<ISocketPool> pool(new_tcp_socket_pool(new_tcp_socket_client(), -1, true));
        for (int i = 0; i < 3; ++i) {
            std::unique_ptr<ISocketStream> s(pool->connect(echo.ep));
            roundtrip(s.get());
        }
        CHECK(echo.accepted == 1, "3 uses, %d connections", echo.accepted);
        for (const char* key : {"A", "B", "A"}) {
            std::unique_ptr<ISocketStream> s(pool->connect(std::string_view(key), echo.ep));
            roundtrip(s.get());
        }
        CHECK(echo.accepted == 3, "keys A and B: %d connections", echo.accepted);
        std::unique_ptr<ISocketStream> held(pool->connect(echo.ep));
        std::unique_ptr<ISocketStream> second(pool->connect(echo.ep));
        roundtrip(held.get());
        roundtrip(second.get());
        CHECK(echo.accepted == 4, "two at once need two connections: %d", echo.accepted);
        std::unique_ptr<ISocketStream> by_name(pool->connect(std::string_view("127.0.0.1"), echo.ep.port));
        roundtrip(by_name.get());

        SAY("socket pool: a stream shut down or closed is not pooled again");
        held.reset();
        second.reset();
        by_name.reset();
        const int before = echo.accepted;
        std::unique_ptr<ISocketStream> s(pool->connect(echo.ep));
        roundtrip(s.get());
        CHECK(echo.accepted == before, "reused");
        CHECK_OK(s->shutdown(ShutdownHow::ReadWrite));
        s.reset();
        s.reset(pool->connect(echo.ep));
        roundtrip(s.get());
        s->close();
        s.reset();
        s.reset(pool->connect(echo.ep));
        roundtrip(s.get());
        CHECK(echo.accepted >= before + 1, "after shutdown / close: new connections (%d)", echo.accepted - before);
        s.reset();

        SAY("socket pool: no client, unix paths");
        std::unique_ptr<ISocketPool> bare(new_tcp_socket_pool(nullptr));
        errno = 0;
        CHECK(bare->connect(echo.ep) == nullptr && errno == ENOSYS, "no client: ENOSYS");
        errno = 0;
        CHECK(pool->connect("/tmp/x", 6) == nullptr && errno == ENOSYS, "a path: ENOSYS");
    }

    SAY("socket pool: an idle connection the peer closed is dropped");
    {
        Echo echo;
        echo.close_after = 1;
        std::unique_ptr<ISocketPool> pool(new_tcp_socket_pool(new_tcp_socket_client(), -1, true));
        for (int i = 0; i < 3; ++i) {
            std::unique_ptr<ISocketStream> s(pool->connect(echo.ep));
            roundtrip(s.get());
            s.reset();
            CHECK(wait_until([&] { return echo.open == 0; }, 3000000), "the server closed (%d open)", echo.open);
            photon::thread_usleep(20000);
        }
        CHECK(echo.accepted == 3, "each use on a fresh connection: %d", echo.accepted);
    }

    SAY("socket pool: user connectors");
    {
        Echo echo;
        std::unique_ptr<ISocketClient> raw(new_tcp_socket_client());
        std::unique_ptr<ISocketPool> pool(new_tcp_socket_pool(raw.get()));
        int calls = 0;
        auto connector = [&]() -> ISocketStream* { return ++calls, raw->connect(echo.ep); };
        for (int i = 0; i < 3; ++i) {
            std::unique_ptr<ISocketStream> s(pool->connect(std::string_view("C"), connector));
            roundtrip(s.get());
        }
        CHECK(calls == 1 && echo.accepted == 1, "connector called once: %d", calls);
        CHECK(pool->connect(std::string_view("D"), [] { return static_cast<ISocketStream*>(nullptr); }) == nullptr,
              "a failing connector: nullptr");
    }

    SAY("socket pool: expiration");
    {
        Echo echo;
        std::unique_ptr<ISocketPool> pool(new_tcp_socket_pool(new_tcp_socket_client(), 200000, true));
        {
            std::unique_ptr<ISocketStream> s(pool->connect(echo.ep));
            roundtrip(s.get());
        }
        photon::thread_usleep(50000);
        CHECK(echo.open == 1, "idle, not expired yet");
        CHECK(wait_until([&] { return echo.open == 0; }, 3000000), "expired and closed");
        std::unique_ptr<ISocketStream> s(pool->connect(echo.ep));
        roundtrip(s.get());
        CHECK(echo.accepted == 2, "a new connection after expiry");
    }

    SAY("socket pool: heartbeats on idle connections; a failed one drops it");
    {
        Echo echo;
        SocketPoolArgs args;
        args.sockclient = new_tcp_socket_client();
        args.client_ownership = true;
        int beats = 0;
        int fail_from = 1 << 30;
        args.heartbeater = [&](ISocketStream* s) -> int {
            ++beats;
            if (beats >= fail_from) return -1;
            char buf[4];
            return s->write("beat", 4) == 4 && s->read(buf, 4) == 4 ? 0 : -1;
        };
        args.heartbeat_interval = 50000;
        std::unique_ptr<ISocketPool> pool(new_tcp_socket_pool(args));
        {
            std::unique_ptr<ISocketStream> s(pool->connect(echo.ep));
            roundtrip(s.get());
            photon::thread_usleep(200000);
            CHECK(beats == 0, "no heartbeat while in use: %d", beats);
        }
        CHECK(wait_until([&] { return beats >= 3; }, 3000000), "heartbeats: %d", beats);
        {
            std::unique_ptr<ISocketStream> s(pool->connect(echo.ep));
            roundtrip(s.get());  // the heartbeats left nothing unread
        }
        // (a connect() while a heartbeat is in flight on the idle one makes a second)
        CHECK(echo.accepted <= 2 && echo.open == echo.accepted, "kept: %d of %d", echo.open, echo.accepted);
        fail_from = beats + 1;
        CHECK(wait_until([&] { return echo.open == 0; }, 3000000), "a failed heartbeat drops it");
    }

    SAY("socket pool: TCP keepalive on new connections");
    {
        Echo echo;
        SocketPoolArgs args;
        args.sockclient = new_tcp_socket_client();
        args.client_ownership = true;
        args.enable_tcp_keepalive = true;
        args.tcp_keepalive_time = 7;
        args.tcp_keepalive_intvl = 3;
        args.tcp_keepalive_probes = 4;
        std::unique_ptr<ISocketPool> pool(new_tcp_socket_pool(args));
        std::unique_ptr<ISocketStream> s(pool->connect(echo.ep));
        int on = 0, idle = 0, intvl = 0, cnt = 0;
        CHECK(s->getsockopt<int>(SOL_SOCKET, SO_KEEPALIVE, &on) == 0 && on == 1, "SO_KEEPALIVE %d", on);
        CHECK(s->getsockopt<int>(IPPROTO_TCP, TCP_KEEPIDLE, &idle) == 0 && idle == 7, "TCP_KEEPIDLE %d", idle);
        CHECK(s->getsockopt<int>(IPPROTO_TCP, TCP_KEEPINTVL, &intvl) == 0 && intvl == 3, "TCP_KEEPINTVL %d", intvl);
        CHECK(s->getsockopt<int>(IPPROTO_TCP, TCP_KEEPCNT, &cnt) == 0 && cnt == 4, "TCP_KEEPCNT %d", cnt);
    }

    SAY("socket pool: concurrent users of one key");
    {
        Echo echo;
        std::unique_ptr<ISocketPool> pool(new_tcp_socket_pool(new_tcp_socket_client(), -1, true));
        std::vector<photon::join_handle*> jhs;
        for (int t = 0; t < 3; ++t)
            jhs.push_back(photon::thread_enable_join(photon::thread_create11([&] {
                for (int i = 0; i < 20; ++i) {
                    std::unique_ptr<ISocketStream> s(pool->connect(echo.ep));
                    roundtrip(s.get());
                    s.reset();
                    photon::thread_yield();
                }
            })));
        for (auto* j : jhs) photon::thread_join(j);
        CHECK(echo.accepted >= 1 && echo.accepted <= 3, "3 users, %d connections", echo.accepted);
    }
}
#endif

int main() {
    CHECK_OK(photon::init());
    socket_calls();
    delegates();
    delegate_type();
    shutdown_call();
#if __cplusplus >= 201703L
    socket_pool();
#endif
    photon::fini();
    std::printf("fourth_pass: all checks passed\n");
    return 0;
}
