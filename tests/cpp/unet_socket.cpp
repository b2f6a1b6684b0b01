// The C++ wrapper's sockets on libphoton's userspace network stack:
// new_tcp_socket_server_on(stack) serving kernel-side clients (plain POSIX
// sockets in an OS thread), and new_tcp_socket_client_on(stack) talking to a
// kernel server; getsockname/getpeername/setsockopt through the same
// ISocketStream. Run by tests/unet.rs inside a network namespace holding the
// TAP device utap0 (kernel side 10.77.0.1/24; the stack gets 10.77.0.2/24).
#include <photon/net/socket.h>
#include <photon/photon.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "check.h"

using namespace photon::net;

static int echo(ISocketStream* s) {
    char buf[8192];
    for (;;) {
        const ssize_t n = s->recv(buf, sizeof buf);
        if (n <= 0) return 0;
        if (s->write(buf, static_cast<size_t>(n)) != n) return -1;
    }
}

static std::string pattern(int i, size_t n) {
    std::string s(n, '\0');
    for (size_t k = 0; k < n; k++) s[k] = static_cast<char>((k * 13 + static_cast<size_t>(i) * 7) & 0xff);
    return s;
}

static int kernel_connect(const char* ip, uint16_t port) {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in sin;
    std::memset(&sin, 0, sizeof sin);
    sin.sin_family = AF_INET;
    sin.sin_port = htons(port);
    inet_pton(AF_INET, ip, &sin.sin_addr);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&sin), sizeof sin) != 0) {
        ::close(fd);
        return -1;
    }
    return fd;
}

static bool kernel_echo_check(int i) {
    const int fd = kernel_connect("10.77.0.2", 7200);
    if (fd < 0) return false;
    const std::string data = pattern(i, 5000);
    bool ok = ::write(fd, data.data(), data.size()) == static_cast<ssize_t>(data.size());
    std::string back(data.size(), '\0');
    size_t got = 0;
    while (ok && got < back.size()) {
        const ssize_t n = ::read(fd, &back[got], back.size() - got);
        if (n <= 0) ok = false;
        else got += static_cast<size_t>(n);
    }
    ::close(fd);
    return ok && back == data;
}

int main() {
    CHECK_OK(photon::init(photon::INIT_EVENT_DEFAULT, 0));
    photon_netstack* stack = photon_netstack_new("tap:utap0", "10.77.0.2/24", nullptr);
    CHECK(stack != nullptr, "photon_netstack_new: %s", strerror(errno));

    SAY("a C++ server on the userspace stack, 20 kernel-side clients, every byte checked");
    std::unique_ptr<ISocketServer> server(new_tcp_socket_server_on(stack));
    CHECK_OK(server->setsockopt<int>(SOL_SOCKET, SO_REUSEADDR, 1));
    CHECK_OK(server->bind(7200));
    CHECK_OK(server->listen(64));
    EndPoint local = server->getsockname();
    CHECK(local.port == 7200, "server port %u", local.port);
    server->set_handler(echo);
    CHECK_OK(server->start_loop());
    std::atomic<int> done{0}, good{0};
    std::thread clients([&] {
        for (int i = 0; i < 20; i++)
            if (kernel_echo_check(i)) good++;
        done = 1;
    });
    while (done.load() == 0) photon_thread_usleep(1000);
    clients.join();
    CHECK(good.load() == 20, "%d of 20 echoed correctly", good.load());

    SAY("a C++ client on the userspace stack to a kernel server");
    const int lfd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in sin;
    std::memset(&sin, 0, sizeof sin);
    sin.sin_family = AF_INET;
    sin.sin_port = htons(7201);
    inet_pton(AF_INET, "10.77.0.1", &sin.sin_addr);
    const int one = 1;
    ::setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    CHECK_OK(::bind(lfd, reinterpret_cast<sockaddr*>(&sin), sizeof sin));
    CHECK_OK(::listen(lfd, 4));
    std::atomic<int> kdone{0};
    std::thread kserver([&] {
        const int c = ::accept(lfd, nullptr, nullptr);
        char buf[4096];
        ssize_t n;
        while ((n = ::read(c, buf, sizeof buf)) > 0)
            if (::write(c, buf, static_cast<size_t>(n)) != n) break;
        ::close(c);
        kdone = 1;
    });
    std::unique_ptr<ISocketClient> client(new_tcp_socket_client_on(stack));
    client->timeout(5000000);
    std::unique_ptr<ISocketStream> s(client->connect(EndPoint("10.77.0.1", 7201)));
    CHECK(s != nullptr, "connect: %s", strerror(errno));
    CHECK(s->get_underlay_fd() >= PHOTON_NETSTACK_FD_BASE, "a userspace descriptor: %d", s->get_underlay_fd());
    CHECK(s->getpeername().port == 7201, "peer port");
    CHECK(s->getsockname().addr == IPAddr("10.77.0.2"), "local address %s", s->getsockname().to_string().c_str());
    int nodelay = 0;
    socklen_t nlen = sizeof nodelay;
    CHECK_OK(s->getsockopt(IPPROTO_TCP, TCP_NODELAY, &nodelay, &nlen));
    CHECK(nodelay == 1, "the client set TCP_NODELAY");
    const std::string data = pattern(99, 100000);
    CHECK(s->write(data.data(), data.size()) == static_cast<ssize_t>(data.size()), "write");
    std::string back(data.size(), '\0');
    CHECK(s->read(&back[0], back.size()) == static_cast<ssize_t>(back.size()), "read: %s", strerror(errno));
    CHECK(back == data, "100000 bytes echoed");
    CHECK_OK(s->close());
    // The FIN goes out from this vcpu's polling loop: wait as a photon thread.
    while (kdone.load() == 0) photon_thread_usleep(1000);
    kserver.join();
    ::close(lfd);

    server->terminate();
    server.reset();
    photon_thread_usleep(50000);  // the handlers' streams close
    CHECK_OK(photon_netstack_free(stack));
    CHECK_OK(photon::fini());
    SAY("passed");
    return 0;
}
