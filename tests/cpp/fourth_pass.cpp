// The fourth pass: <sys/socket.h> with -I cpp-wrapper (PhotonLibOS's
// photon::net::setsockopt / getsockopt / getsockname / getpeername on raw
// descriptors).
#include <photon/photon.h>
#include <photon/thread/thread.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>

#include "check.h"

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
    photon::fini();
    std::printf("fourth_pass: all checks passed\n");
    return 0;
}
