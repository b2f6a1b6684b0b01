// photon/net/socket.h: IPAddr and EndPoint; a TCP server with set_handler
// and start_loop (in its own photon thread, and blocking); clients; read /
// write (whole counts), recv / send (wait once), readv / writev,
// recv_at_least, skip_read; timeouts; accept(); socket options; names;
// IPv6; Unix sockets with autoremove; terminate.
#include <photon/net/socket.h>
#include <photon/photon.h>
#include <photon/thread/thread11.h>

#include <netinet/tcp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <memory>
#include <string>
#include <unordered_set>
#include <vector>

#include "check.h"

using namespace photon::net;

// Echoes until EOF.
static int echo(ISocketStream* s) {
    char buf[8192];
    for (;;) {
        const ssize_t n = s->recv(buf, sizeof buf);
        if (n <= 0) return 0;
        if (s->write(buf, static_cast<size_t>(n)) != n) return -1;
    }
}

struct Greeter {
    std::string greeting;
    int handle(ISocketStream* s) { return s->write(greeting.data(), greeting.size()) == (ssize_t)greeting.size() ? 0 : -1; }
};

static void test_addresses() {
    SAY("IPAddr / EndPoint: parsing, v4-mapped storage, equality, strings");
    IPAddr v4("127.0.0.1");
    CHECK(v4.is_ipv4() && v4.is_loopback() && !v4.undefined(), "v4 loopback");
    CHECK(v4 == IPAddr::V4Loopback() && v4.to_nl() == htonl(INADDR_LOOPBACK), "v4 equality");
    CHECK(v4.to_string() == "127.0.0.1", "%s", v4.to_string().c_str());
    IPAddr v6("::1");
    CHECK(v6.is_ipv6() && v6.is_loopback() && v6 == v4, "loopbacks compare equal, as in PhotonLibOS");
    CHECK(v6.to_string() == "::1", "%s", v6.to_string().c_str());
    CHECK(IPAddr().undefined() && IPAddr("garbage").undefined(), "undefined");
    CHECK(IPAddr("10.1.2.3") != IPAddr("10.1.2.4"), "inequality");
    EndPoint ep("10.0.0.1:8080");
    CHECK(ep.port == 8080 && ep.addr == IPAddr("10.0.0.1") && ep.to_string() == "10.0.0.1:8080", "%s",
          ep.to_string().c_str());
    EndPoint ep6("[fe80::1]:443");
    CHECK(ep6.port == 443 && !ep6.is_ipv4() && ep6.to_string() == "[fe80::1]:443", "%s", ep6.to_string().c_str());
    CHECK(EndPoint("nonsense").undefined() && EndPoint("1.2.3.4:99999").undefined(), "bad endpoints");
    CHECK(EndPoint("127.0.0.1", 80) == EndPoint(IPAddr::V4Loopback(), 80), "endpoint equality");
    std::unordered_set<EndPoint> set{EndPoint("1.2.3.4:5"), EndPoint("1.2.3.4:5"), EndPoint("1.2.3.4:6")};
    CHECK(set.size() == 2 && set.count(EndPoint("1.2.3.4", 6)) == 1, "std::hash<EndPoint>");
}

static void test_tcp() {
    SAY("TCP: a server on 127.0.0.1:<any> with its loop in a photon thread; set_handler with a function");
    std::unique_ptr<ISocketServer> server(new_tcp_socket_server());
    CHECK_OK(server->setsockopt<int>(SOL_SOCKET, SO_REUSEADDR, 1));  // recorded before bind
    CHECK_OK(server->bind_v4localhost());
    CHECK_OK(server->listen(64));
    const EndPoint ep = server->getsockname();
    CHECK(ep.port != 0 && ep.addr == IPAddr::V4Loopback(), "bound to %s", ep.to_string().c_str());
    server->set_handler(echo);
    CHECK_OK(server->start_loop());
    CHECK_ERRNO(server->start_loop(), EALREADY);

    std::unique_ptr<ISocketClient> client(new_tcp_socket_client());
    std::unique_ptr<ISocketStream> s(client->connect(ep));
    CHECK(s != nullptr, "connect: errno %d", errno);
    int nodelay = 0;
    CHECK_OK(s->getsockopt<int>(IPPROTO_TCP, TCP_NODELAY, &nodelay));
    CHECK(nodelay == 1, "TCP_NODELAY set");
    CHECK(s->getpeername() == ep, "peer %s", s->getpeername().to_string().c_str());
    CHECK(s->get_underlay_fd() >= 0, "fd");

    SAY("TCP: write/read 1 MiB in whole counts, through the echo handler");
    std::vector<char> out(1 << 20), in(1 << 20);
    for (size_t i = 0; i < out.size(); i++) out[i] = static_cast<char>(i * 7 + 3);
    photon::thread* writer = photon::thread_create11([&] {
        CHECK(s->write(out.data(), out.size()) == (ssize_t)out.size(), "write");
    });
    photon::thread_enable_join(writer);
    CHECK(s->read(in.data(), in.size()) == (ssize_t)in.size(), "read");
    photon::thread_join(reinterpret_cast<photon::join_handle*>(writer));
    CHECK(in == out, "echoed bytes differ");

    SAY("TCP: send / recv wait once; recv_at_least; writev / readv; skip_read");
    CHECK(s->send("hello", 5) == 5, "send");
    char buf[64] = {0};
    CHECK(s->recv_at_least(buf, sizeof buf, 5) == 5 && std::string(buf, 5) == "hello", "recv_at_least");
    char a[3] = {'a', 'b', 'c'}, b[4] = {'d', 'e', 'f', 'g'};
    struct iovec wv[2] = {{a, sizeof a}, {b, sizeof b}};
    CHECK(s->writev(wv, 2) == 7, "writev");
    char x[2], y[5];
    struct iovec rv[2] = {{x, sizeof x}, {y, sizeof y}};
    CHECK(s->readv(rv, 2) == 7 && std::string(x, 2) == "ab" && std::string(y, 5) == "cdefg", "readv");
    CHECK(s->send(wv, 2) == 7, "send(iov)");
    char z[7];
    struct iovec one[1] = {{z, sizeof z}};
    const ssize_t got = s->recv(one, 1);
    CHECK(got > 0 && got <= 7, "recv(iov): %zd", got);
    if (got < 7) CHECK(s->read(z + got, static_cast<size_t>(7 - got)) == 7 - got, "rest of recv(iov)");
    CHECK(s->write("0123456789", 10) == 10, "write");
    CHECK(s->skip_read(6), "skip_read");
    CHECK(s->read(buf, 4) == 4 && std::string(buf, 4) == "6789", "after skip_read");

    SAY("TCP: a stream timeout makes recv fail with ETIMEDOUT");
    s->timeout(20000);
    CHECK(s->timeout() == 20000, "timeout");
    const uint64_t t0 = photon::now;
    CHECK_ERRNO(s->recv(buf, sizeof buf), ETIMEDOUT);
    CHECK(photon::now - t0 >= 20000, "waited");
    s->timeout(PHOTON_FOREVER);

    SAY("TCP: closing the client makes the handler see EOF; the server carries on");
    s.reset();
    std::unique_ptr<ISocketStream> s2(client->connect(EndPoint(IPAddr("127.0.0.1"), ep.port)));
    CHECK(s2 && s2->write("again", 5) == 5 && s2->read(buf, 5) == 5 && std::string(buf, 5) == "again", "again");
    s2.reset();

    SAY("TCP: terminate stops the loop and closes the socket: connecting is refused");
    server->terminate();
    std::unique_ptr<ISocketStream> refused(client->connect(ep));
    CHECK(refused == nullptr && errno == ECONNREFUSED, "errno %d", errno);

    SAY("TCP: a handler from {object, member function}");
    Greeter greeter{"hi there"};
    std::unique_ptr<ISocketServer> g(new_tcp_socket_server());
    CHECK_OK(g->bind_v4localhost());
    CHECK_OK(g->listen());
    g->set_handler({&greeter, &Greeter::handle});
    CHECK_OK(g->start_loop());
    std::unique_ptr<ISocketStream> gs(client->connect(g->getsockname()));
    CHECK(gs && gs->read(buf, 8) == 8 && std::string(buf, 8) == "hi there", "greeting");
    gs.reset();
    g.reset();  // the destructor terminates

    SAY("TCP: a blocking start_loop in its own thread, ended by terminate() from another");
    std::unique_ptr<ISocketServer> blk(new_tcp_socket_server());
    CHECK_OK(blk->bind_v4localhost());
    CHECK_OK(blk->listen());
    blk->set_handler(echo);
    bool loop_returned = false;
    photon::thread* looper = photon::thread_create11([&] {
        CHECK_OK(blk->start_loop(true));
        loop_returned = true;
    });
    photon::thread_enable_join(looper);
    photon::thread_yield();
    std::unique_ptr<ISocketStream> bs(client->connect(blk->getsockname()));
    CHECK(bs && bs->write("x", 1) == 1 && bs->read(buf, 1) == 1, "echo via a blocking loop");
    blk->terminate();
    photon::thread_join(reinterpret_cast<photon::join_handle*>(looper));
    CHECK(loop_returned, "start_loop(true) returned");

    SAY("TCP: accept() by hand, with the remote endpoint and a timeout");
    std::unique_ptr<ISocketServer> acc(new_tcp_socket_server());
    CHECK_OK(acc->bind(EndPoint("127.0.0.1:0")));
    CHECK_OK(acc->listen());
    acc->timeout(10000);
    CHECK(acc->accept() == nullptr && errno == ETIMEDOUT, "accept timeout: errno %d", errno);
    acc->timeout(PHOTON_FOREVER);
    std::unique_ptr<ISocketStream> cs;
    photon::thread* connector = photon::thread_create11([&] { cs.reset(client->connect(acc->getsockname())); });
    photon::thread_enable_join(connector);
    EndPoint remote;
    std::unique_ptr<ISocketStream> ss(acc->accept(&remote));
    photon::thread_join(reinterpret_cast<photon::join_handle*>(connector));
    CHECK(ss && cs, "accepted");
    CHECK(remote == cs->getsockname(), "remote %s vs %s", remote.to_string().c_str(),
          cs->getsockname().to_string().c_str());
    CHECK(cs->write("ping", 4) == 4 && ss->read(buf, 4) == 4 && std::string(buf, 4) == "ping", "ping");
    CHECK_OK(cs->close());
    CHECK(ss->read(buf, 4) == 0, "EOF after close");
    SAY("TCP: binding twice and binding a used port fail");
    CHECK_ERRNO(acc->bind_v4localhost(), EALREADY);
    std::unique_ptr<ISocketServer> dup(new_tcp_socket_server());
    CHECK_ERRNO(dup->bind(acc->getsockname()), EADDRINUSE);
    SAY("TCP: a client timeout bounds connect (nothing listens on a closed port: refused at once)");
    client->timeout(1000000);
    std::unique_ptr<ISocketServer> gone(new_tcp_socket_server());
    CHECK_OK(gone->bind_v4localhost());
    const EndPoint gone_ep = gone->getsockname();
    gone.reset();
    CHECK(client->connect(gone_ep) == nullptr && errno == ECONNREFUSED, "errno %d", errno);
}

static void test_ipv6() {
    SAY("IPv6: a v6 server takes v4 and v6 clients");
    std::unique_ptr<ISocketServer> server(new_tcp_socket_server_ipv6());
    CHECK_OK(server->bind_v6any());
    CHECK_OK(server->listen());
    server->set_handler(echo);
    CHECK_OK(server->start_loop());
    const uint16_t port = server->getsockname().port;
    std::unique_ptr<ISocketClient> client(new_tcp_socket_client());
    char buf[8];
    for (const char* host : {"::1", "127.0.0.1"}) {
        std::unique_ptr<ISocketStream> s(client->connect(EndPoint(IPAddr(host), port)));
        if (!s && std::string(host) == "::1" && (errno == EADDRNOTAVAIL || errno == ENETUNREACH)) {
            SAY("IPv6: no ::1 here, skipped");
            continue;
        }
        CHECK(s != nullptr, "connect to %s: errno %d", host, errno);
        CHECK(s->write("v6", 2) == 2 && s->read(buf, 2) == 2 && std::string(buf, 2) == "v6", "echo via %s", host);
    }
    std::unique_ptr<ISocketClient> client6(new_tcp_socket_client_ipv6());
    std::unique_ptr<ISocketStream> s(client6->connect(EndPoint(IPAddr::V4Loopback(), port)));
    CHECK(s != nullptr, "v6 client to a v4 address: errno %d", errno);
    CHECK(s->write("m", 1) == 1 && s->read(buf, 1) == 1, "v4-mapped echo");
}

static void test_unix() {
    SAY("Unix: a server with autoremove replaces a leftover socket file and removes it when deleted");
    char path[64];
    std::snprintf(path, sizeof path, "/tmp/photon-cpp-test-%d.sock", (int)getpid());
    {
        std::unique_ptr<ISocketServer> leftover(new_uds_server(false));
        CHECK_OK(leftover->bind(path));
    }
    struct stat st;
    CHECK(::stat(path, &st) == 0, "a non-autoremove server leaves its file");
    std::unique_ptr<ISocketServer> server(new_uds_server(true));
    CHECK_OK(server->bind(path));
    CHECK_OK(server->listen());
    char name[108];
    CHECK_OK(server->getsockname(name, sizeof name));
    CHECK(std::string(name) == path, "name %s", name);
    server->set_handler(echo);
    CHECK_OK(server->start_loop());
    std::unique_ptr<ISocketClient> client(new_uds_client());
    std::unique_ptr<ISocketStream> s(client->connect(path));
    CHECK(s != nullptr, "connect: errno %d", errno);
    char buf[8];
    CHECK(s->write("unix", 4) == 4 && s->read(buf, 4) == 4 && std::string(buf, 4) == "unix", "echo");
    CHECK_OK(s->getpeername(name, sizeof name));
    CHECK(std::string(name) == path, "peer %s", name);
    s.reset();
    CHECK(client->connect(EndPoint("127.0.0.1:1")) == nullptr && errno == EAFNOSUPPORT, "uds client, IP endpoint");
    CHECK(client->connect("/nonexistent/photon.sock") == nullptr && errno == ENOENT, "errno %d", errno);
    server.reset();
    CHECK(::stat(path, &st) != 0 && errno == ENOENT, "autoremove removed the file");
}

static int c_style(void* obj, int v) { return *static_cast<int*>(obj) + v; }

static void test_callback() {
    SAY("Callback: from a lambda returning int or void, an object and member function, a C-style pair");
    int seen = 0;
    photon::Callback<int> doubled([](int v) { return 2 * v; });
    photon::Callback<int> void_returning([&](int v) { seen = v; });
    Greeter g{"x"};
    int base = 40;
    photon::Callback<int> c_pair(&base, &c_style);
    CHECK(doubled(21) == 42 && void_returning(7) == 0 && seen == 7 && c_pair(2) == 42, "callbacks");
    photon::Callback<int> empty;
    CHECK(!empty && empty(1) == 0 && doubled, "empty callback");
    photon::Callback<ISocketStream*> member{&g, &Greeter::handle};
    CHECK(static_cast<bool>(member), "member callback");
}

int main() {
    test_addresses();
    test_callback();
    CHECK_OK(photon::init());
    test_tcp();
    test_ipv6();
    test_unix();
    CHECK_OK(photon::fini());
    std::printf("socket: all checks passed\n");
    return 0;
}
