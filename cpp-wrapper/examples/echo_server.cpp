// A Photon-style echo server: one photon thread per connection, written
// against PhotonLibOS's API as the wrapper mirrors it.
//
//   echo_server [port] [--connections N]
//
// Listens on 0.0.0.0:port (0 or none: any free port), prints
// "listening on port P", and echoes every connection until the peer closes
// it. With --connections N it stops after N connections have been served.
#include <photon/net/socket.h>
#include <photon/photon.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

static photon::net::ISocketServer* server = nullptr;
static long served = 0;
static long max_connections = -1;

static int handle(photon::net::ISocketStream* stream) {
    char buf[16 * 1024];
    for (;;) {
        const ssize_t n = stream->recv(buf, sizeof buf);  // waits once; 0 at EOF
        if (n <= 0) break;
        if (stream->write(buf, static_cast<size_t>(n)) != n) break;  // writes it all
    }
    if (++served == max_connections) server->terminate();  // the server deletes `stream`
    return 0;
}

int main(int argc, char** argv) {
    uint16_t port = 0;
    for (int i = 1; i < argc; i++) {
        if (std::strcmp(argv[i], "--connections") == 0 && i + 1 < argc)
            max_connections = std::atol(argv[++i]);
        else
            port = static_cast<uint16_t>(std::atoi(argv[i]));
    }
    if (photon::init(photon::INIT_EVENT_DEFAULT, photon::INIT_IO_NONE) != 0) {
        std::perror("photon::init");
        return 1;
    }
    server = photon::net::new_tcp_socket_server();
    if (server->bind_v4any(port) != 0 || server->listen() != 0) {
        std::perror("bind/listen");
        return 1;
    }
    std::printf("listening on port %u\n", server->getsockname().port);
    std::fflush(stdout);
    server->set_handler(handle);
    server->start_loop(true);  // until terminate()
    delete server;
    std::printf("served %ld connections\n", served);
    photon::fini();
    return 0;
}
