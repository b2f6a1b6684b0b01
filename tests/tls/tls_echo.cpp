// A Photon-style TLS echo: a TLS server (new_tls_server over a TCP server,
// handler per connection) and TLS clients (new_tls_client, and
// new_tls_stream over a plain stream), written only with PhotonLibOS's
// names, so the same source builds against PhotonLibOS or libphoton's
// cpp-wrapper. Run by tests/tls.rs: tls_echo CERT.pem KEY.pem; exit 0 when
// every byte came back.
#include <photon/common/alog.h>
#include <photon/net/security-context/tls-stream.h>
#include <photon/net/socket.h>
#include <photon/photon.h>
#include <photon/thread/thread.h>
#include <photon/thread/thread11.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

using namespace photon;

static const int kClients = 32;
static const size_t kBytes = 256 * 1024;
static int g_ok = 0, g_failed = 0;

static std::string slurp(const char* path) {
    std::ifstream in(path);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

static int echo_handler(void*, net::ISocketStream* stream) {
    char buf[16384];
    ssize_t n;
    while ((n = stream->recv(buf, sizeof buf)) > 0)
        if (stream->write(buf, n) != n) break;
    return 0;
}

static bool exchange(net::ISocketStream* s, int id) {
    std::vector<char> out(kBytes), in(kBytes);
    for (size_t i = 0; i < kBytes; i++) out[i] = static_cast<char>((i * 131 + static_cast<size_t>(id) * 7) & 0xff);
    for (size_t off = 0; off < kBytes; off += 4096) {
        if (s->write(&out[off], 4096) != 4096) return false;
        if (s->read(&in[off], 4096) != 4096) return false;
    }
    return memcmp(out.data(), in.data(), kBytes) == 0;
}

static void client_conn(net::ISocketClient* client, net::EndPoint ep, int id) {
    net::ISocketStream* s = client->connect(ep);
    const bool ok = s != nullptr && exchange(s, id);
    delete s;
    if (ok)
        g_ok++;
    else
        g_failed++;
}

int main(int argc, char** argv) {
    if (argc != 3) return 2;
    const std::string cert = slurp(argv[1]), key = slurp(argv[2]);
    if (photon::init(INIT_EVENT_DEFAULT, INIT_IO_NONE) != 0) return 3;
    auto ctx = net::new_tls_context(cert.c_str(), key.c_str(), nullptr);
    if (ctx == nullptr) {
        fprintf(stderr, "new_tls_context failed\n");
        return 4;
    }
    auto server = net::new_tls_server(ctx, net::new_tcp_socket_server(), true);
    auto client = net::new_tls_client(ctx, net::new_tcp_socket_client(), true);
    if (server->bind_v4localhost() != 0 || server->listen() != 0) return 5;
    auto ep = server->getsockname();
    server->set_handler({nullptr, &echo_handler});
    server->start_loop(false);
    thread_yield();

    std::vector<join_handle*> joins;
    for (int i = 0; i < kClients; i++) {
        auto th = thread_create11(&client_conn, client, ep, i);
        joins.push_back(thread_enable_join(th));
    }
    for (auto j : joins) thread_join(j);

    // the same over an explicit TLS stream on a plain TCP stream
    auto plain = net::new_tcp_socket_client();
    auto raw = plain->connect(ep);
    auto tls = raw == nullptr ? nullptr : net::new_tls_stream(ctx, raw, net::SecurityRole::Client, true);
    if (tls != nullptr && exchange(tls, 99))
        g_ok++;
    else
        g_failed++;
    delete tls;
    delete plain;

    printf("tls echo: %d connections verified, %d failed\n", g_ok, g_failed);
    server->terminate();
    delete server;
    delete client;
    delete ctx;
    photon::fini();
    return g_failed == 0 && g_ok == kClients + 1 ? 0 : 1;
}
