// The fourth pass: <sys/socket.h> with -I cpp-wrapper (PhotonLibOS's
// photon::net::setsockopt / getsockopt / getsockname / getpeername on raw
// descriptors); common/delegates.h (a facade's calls reach the object's
// members, overloads by signature, virtual overrides, SelfRef chaining,
// cast and unary operators, DUtils rebinding to member and plain functions,
// get_func, bind_obj); Delegate from common/callback.h (member functions,
// virtual ones resolved at binding, base-class members); alog-functionptr.h.
#include <photon/common/alog-functionptr.h>
#include <photon/common/alog.h>
#include <photon/common/callback.h>
#include <photon/common/delegates.h>
#include <photon/photon.h>
#include <photon/thread/thread.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <string>

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

int main() {
    CHECK_OK(photon::init());
    socket_calls();
    delegates();
    delegate_type();
    photon::fini();
    std::printf("fourth_pass: all checks passed\n");
    return 0;
}
