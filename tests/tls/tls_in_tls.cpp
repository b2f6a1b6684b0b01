// TLS inside TLS through the wrapper's tls-stream.h: the inner streams run
// over the outer TLS streams' recv/send (photon_ssl_bio_new_io), not over
// the socket's fd. The server's handler wraps its (outer, decrypted) stream
// in a server-role TLS stream and echoes on that; each client does the same
// with a client-role stream. 8 connections x 256 KiB, every byte checked.
// Run by tests/tls.rs: tls_in_tls CERT.pem KEY.pem.
#include <photon/net/security-context/tls-stream.h>
#include <photon/net/socket.h>
#include <photon/photon.h>
#include <photon/thread/thread.h>
#include <photon/thread/thread11.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

using namespace photon;

static net::TLSContext* g_ctx;
static int g_ok = 0, g_failed = 0;

static std::string slurp(const char* path) {
    std::ifstream in(path);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

static int inner_echo(void*, net::ISocketStream* outer) {
    net::ISocketStream* inner = net::new_tls_stream(g_ctx, outer, net::SecurityRole::Server, false);
    char buf[8192];
    ssize_t n;
    while ((n = inner->recv(buf, sizeof buf)) > 0)
        if (inner->write(buf, n) != n) break;
    delete inner;
    return 0;
}

static void client_conn(net::ISocketClient* client, net::EndPoint ep, int id) {
    net::ISocketStream* outer = client->connect(ep);
    bool ok = false;
    if (outer != nullptr) {
        net::ISocketStream* inner = net::new_tls_stream(g_ctx, outer, net::SecurityRole::Client, true);
        const size_t bytes = 256 * 1024;
        std::vector<char> out(bytes), in(bytes);
        for (size_t i = 0; i < bytes; i++) out[i] = static_cast<char>((i * 13 + static_cast<size_t>(id)) & 0xff);
        ok = true;
        for (size_t off = 0; ok && off < bytes; off += 8192)
            ok = inner->write(&out[off], 8192) == 8192 && inner->read(&in[off], 8192) == 8192;
        ok = ok && memcmp(out.data(), in.data(), bytes) == 0;
        delete inner;  // owns outer
    }
    if (ok)
        g_ok++;
    else
        g_failed++;
}

int main(int argc, char** argv) {
    if (argc != 3) return 2;
    const std::string cert = slurp(argv[1]), key = slurp(argv[2]);
    if (photon::init(INIT_EVENT_DEFAULT, INIT_IO_NONE) != 0) return 3;
    g_ctx = net::new_tls_context(cert.c_str(), key.c_str(), nullptr, net::TLSVersion::SSL23);
    if (g_ctx == nullptr) return 4;
    auto server = net::new_tls_server(g_ctx, net::new_tcp_socket_server(), true);
    auto client = net::new_tls_client(g_ctx, net::new_tcp_socket_client(), true);
    if (server->bind_v4localhost() != 0 || server->listen() != 0) return 5;
    auto ep = server->getsockname();
    server->set_handler({nullptr, &inner_echo});
    server->start_loop(false);
    thread_yield();
    std::vector<join_handle*> joins;
    for (int i = 0; i < 8; i++) joins.push_back(thread_enable_join(thread_create11(&client_conn, client, ep, i)));
    for (auto j : joins) thread_join(j);
    printf("tls in tls: %d connections verified, %d failed\n", g_ok, g_failed);
    server->terminate();
    delete server;
    delete client;
    delete g_ctx;
    photon::fini();
    return g_failed == 0 && g_ok == 8 ? 0 : 1;
}
