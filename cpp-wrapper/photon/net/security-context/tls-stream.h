// photon/net/security-context/tls-stream.h: TLS streams, clients and
// servers as PhotonLibOS spells them, over include/photon_ssl.h and the
// program's own OpenSSL (link with -lssl -lcrypto).
//
//     auto ctx = photon::net::new_tls_context(cert_pem, key_pem, nullptr);
//     auto server = photon::net::new_tls_server(ctx, photon::net::new_tcp_socket_server(), true);
//     server->set_handler({handler, ctx});   // handler sees decrypted streams
//     auto client = photon::net::new_tls_client(ctx, photon::net::new_tcp_socket_client(), true);
//     auto stream = client->connect(ep);     // TLS; handshake at the first I/O
//
// A TLS stream over a kernel socket stream (TCP, Unix) reads and writes
// through photon_ssl's BIO on its fd (the stream's timeout() bounds each
// call, and OpenSSL's error queue stays per photon thread across its
// waits); over any other ISocketStream (TLS in TLS, a stream of your own) it
// goes through that stream's recv/send. As in
// PhotonLibOS: a server-side stream does its handshake when made, a client
// stream at its first I/O (so tls_stream_set_hostname can set SNI first);
// recv/send wait once, read/write loop; the context must outlive its streams.
// Differences: ALPN protocol lists are std::string (PhotonLibOS: estring_view),
// the ALPN selector is a std::function; TLSVersion::TLS12 (the default) means
// TLS 1.2 only, as PhotonLibOS's TLSv1_2_method, and SSL23 any version up to
// TLS 1.3; tls_stream_set_hostname also makes verification check the name.
#ifndef PHOTON_CPP_NET_SECURITY_CONTEXT_TLS_STREAM_H
#define PHOTON_CPP_NET_SECURITY_CONTEXT_TLS_STREAM_H

#include <photon.h>
#include <photon/common/object.h>
#include <photon/net/socket.h>
#include <photon_ssl.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <cerrno>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

namespace photon {
namespace net {

enum class SecurityRole {
    Client = 1,
    Server = 2,
};

enum class VerifyMode : int {
    NONE = 0x00,                  // SSL_VERIFY_NONE
    PEER = 0x01,                  // SSL_VERIFY_PEER
    FAIL_IF_NO_PEER_CERT = 0x02,  // SSL_VERIFY_FAIL_IF_NO_PEER_CERT
    CLIENT_ONCE = 0x04,           // SSL_VERIFY_CLIENT_ONCE
};

enum class TLSVersion {
    SSL23,  // any version OpenSSL allows (up to TLS 1.3)
    TLS11,
    TLS12,
    TLS13,  // libphoton's addition
};

/// Keys, certificates and verification for TLS streams (an SSL_CTX).
/// Each setter returns 0, or -1 with OpenSSL's error on the queue.
class TLSContext : public Object {
public:
    virtual int set_pass_phrase(const char* pass) = 0;
    /// The certificate (PEM text; more certificates after it are its chain).
    virtual int set_cert(const char* cert_str) = 0;
    /// The private key (PEM text), encrypted with `passphrase` if not NULL.
    virtual int set_pkey(const char* key_str, const char* passphrase) = 0;
    virtual int set_verify_mode(VerifyMode mode = VerifyMode::NONE) = 0;
    /// Client side: the protocols offered (ALPN), most preferred first.
    virtual int set_alpn_protos(const std::vector<std::string>& protos) = 0;
    /// Server side: picks one of the client's protocols ("" refuses).
    virtual int set_alpn_select_cb(std::function<std::string(const std::vector<std::string>&)> cb) = 0;
    /// Trusted CA certificates (PEM text); turns peer verification on.
    virtual int set_ca_cert(const char* ca_cert_str) = 0;
    /// Trusted CAs from a file and/or directory; turns peer verification on.
    virtual int set_ca_file(const char* ca_file, const char* ca_path = nullptr) = 0;
    /// libphoton's addition: the OpenSSL context, for what is not wrapped.
    virtual SSL_CTX* native_handle() = 0;
};

namespace detail {

class TLSContextImpl final : public TLSContext {
public:
    explicit TLSContextImpl(TLSVersion ver) : m_ctx(SSL_CTX_new(TLS_method())) {
        if (m_ctx == nullptr) return;
        int v = 0;
        switch (ver) {
        case TLSVersion::TLS11: v = TLS1_1_VERSION; break;
        case TLSVersion::TLS12: v = TLS1_2_VERSION; break;
        case TLSVersion::TLS13: v = TLS1_3_VERSION; break;
        case TLSVersion::SSL23: break;
        }
        if (v != 0) {
            SSL_CTX_set_min_proto_version(m_ctx, v);
            SSL_CTX_set_max_proto_version(m_ctx, v);
        }
        SSL_CTX_set_default_passwd_cb(m_ctx, &TLSContextImpl::pem_password);
        SSL_CTX_set_default_passwd_cb_userdata(m_ctx, this);
        SSL_CTX_set_alpn_select_cb(m_ctx, &TLSContextImpl::alpn_select, this);
    }
    TLSContextImpl(const TLSContextImpl&) = delete;
    TLSContextImpl& operator=(const TLSContextImpl&) = delete;
    ~TLSContextImpl() override { SSL_CTX_free(m_ctx); }

    bool ok() const { return m_ctx != nullptr; }
    SSL_CTX* native_handle() override { return m_ctx; }

    int set_pass_phrase(const char* pass) override {
        m_pass = pass != nullptr ? pass : "";
        return static_cast<int>(m_pass.size());
    }
    int set_cert(const char* cert_str) override {
        if (cert_str == nullptr) return einval();
        BIO* bio = BIO_new_mem_buf(cert_str, -1);
        if (bio == nullptr) return -1;
        X509* cert = PEM_read_bio_X509(bio, nullptr, nullptr, nullptr);
        int ret = cert != nullptr && SSL_CTX_use_certificate(m_ctx, cert) == 1 ? 0 : -1;
        X509_free(cert);
        // the rest of the PEM text: the chain
        X509* extra;
        while (ret == 0 && (extra = PEM_read_bio_X509(bio, nullptr, nullptr, nullptr)) != nullptr)
            if (SSL_CTX_add0_chain_cert(m_ctx, extra) != 1) {
                X509_free(extra);
                ret = -1;
            }
        if (ret == 0) ERR_clear_error();  // the end of the PEM text
        BIO_free(bio);
        return ret;
    }
    int set_pkey(const char* key_str, const char* passphrase) override {
        if (key_str == nullptr) return einval();
        if (passphrase != nullptr) set_pass_phrase(passphrase);
        BIO* bio = BIO_new_mem_buf(key_str, -1);
        if (bio == nullptr) return -1;
        EVP_PKEY* key = PEM_read_bio_PrivateKey(bio, nullptr, &TLSContextImpl::pem_password, this);
        BIO_free(bio);
        if (key == nullptr) return -1;
        const int ok = SSL_CTX_use_PrivateKey(m_ctx, key) == 1 && SSL_CTX_check_private_key(m_ctx) == 1;
        EVP_PKEY_free(key);
        return ok ? 0 : -1;
    }
    int set_verify_mode(VerifyMode mode) override {
        SSL_CTX_set_default_verify_paths(m_ctx);
        SSL_CTX_set_verify(m_ctx, static_cast<int>(mode), nullptr);
        return 0;
    }
    int set_alpn_protos(const std::vector<std::string>& protos) override {
        std::string wire;
        for (const std::string& p : protos) {
            if (p.empty() || p.size() > 255) return einval();
            wire += static_cast<char>(p.size());
            wire += p;
        }
        // SSL_CTX_set_alpn_protos returns 0 on success
        return SSL_CTX_set_alpn_protos(m_ctx, reinterpret_cast<const unsigned char*>(wire.data()),
                                       static_cast<unsigned>(wire.size())) == 0
                   ? 0
                   : -1;
    }
    int set_alpn_select_cb(std::function<std::string(const std::vector<std::string>&)> cb) override {
        m_alpn_select = std::move(cb);
        return 0;
    }
    int set_ca_cert(const char* ca_cert_str) override {
        if (ca_cert_str == nullptr) return einval();
        BIO* bio = BIO_new_mem_buf(ca_cert_str, -1);
        if (bio == nullptr) return -1;
        X509_STORE* store = SSL_CTX_get_cert_store(m_ctx);
        int count = 0;
        X509* cert;
        while ((cert = PEM_read_bio_X509(bio, nullptr, nullptr, nullptr)) != nullptr) {
            const int added = X509_STORE_add_cert(store, cert);
            X509_free(cert);
            if (added != 1) {
                BIO_free(bio);
                return -1;
            }
            count++;
        }
        BIO_free(bio);
        if (count == 0) return -1;
        ERR_clear_error();  // the end of the PEM text
        SSL_CTX_set_verify(m_ctx, SSL_VERIFY_PEER, nullptr);
        return 0;
    }
    int set_ca_file(const char* ca_file, const char* ca_path) override {
        if (ca_file == nullptr && ca_path == nullptr) return einval();
        if (SSL_CTX_load_verify_locations(m_ctx, ca_file, ca_path) != 1) return -1;
        SSL_CTX_set_verify(m_ctx, SSL_VERIFY_PEER, nullptr);
        return 0;
    }

private:
    static int einval() {
        errno = EINVAL;
        return -1;
    }
    static int pem_password(char* buf, int size, int, void* self) {
        const std::string& pass = static_cast<TLSContextImpl*>(self)->m_pass;
        if (size <= 0) return 0;
        const size_t n = pass.size() < static_cast<size_t>(size) ? pass.size() : static_cast<size_t>(size);
        std::memcpy(buf, pass.data(), n);
        return static_cast<int>(n);
    }
    static int alpn_select(SSL*, const unsigned char** out, unsigned char* outlen, const unsigned char* in,
                           unsigned int inlen, void* arg) {
        auto* self = static_cast<TLSContextImpl*>(arg);
        if (!self->m_alpn_select) return SSL_TLSEXT_ERR_NOACK;
        std::vector<std::string> offered;
        for (unsigned i = 0; i < inlen && i + 1 + in[i] <= inlen; i += 1u + in[i])
            offered.emplace_back(reinterpret_cast<const char*>(in + i + 1), in[i]);
        const std::string pick = self->m_alpn_select(offered);
        if (pick.empty()) return SSL_TLSEXT_ERR_ALERT_FATAL;
        // point into `in`, which outlives the callback as OpenSSL requires
        for (unsigned i = 0; i < inlen && i + 1 + in[i] <= inlen; i += 1u + in[i])
            if (in[i] == pick.size() && std::memcmp(in + i + 1, pick.data(), pick.size()) == 0) {
                *out = in + i + 1;
                *outlen = in[i];
                return SSL_TLSEXT_ERR_OK;
            }
        return SSL_TLSEXT_ERR_ALERT_FATAL;
    }

    SSL_CTX* m_ctx;
    std::string m_pass;
    std::function<std::string(const std::vector<std::string>&)> m_alpn_select;
};

/// An ISocketStream over TLS over another one.
class TLSSocketStream final : public ISocketStream {
public:
    TLSSocketStream(TLSContext* ctx, ISocketStream* base, SecurityRole role, bool ownership)
        : m_base(base), m_own(ownership), m_ssl(SSL_new(ctx->native_handle())) {
        if (m_ssl == nullptr) {
            m_err = ENOMEM;
            return;
        }
        // The fd itself only under a plain kernel socket stream: a stream
        // that transforms its bytes (TLS in TLS) may still report the fd.
        const int fd = dynamic_cast<KernelSocketStream*>(base) != nullptr ? base->get_underlay_fd() : -1;
        BIO* bio = fd >= 0 ? photon_ssl_bio_new(fd, base->timeout(), 0)
                           : photon_ssl_bio_new_io(&TLSSocketStream::stream_io, base, base->timeout());
        if (bio == nullptr || photon_ssl_set_bio(m_ssl, bio) != 0) {
            m_err = errno;
            return;
        }
        if (role == SecurityRole::Server) {
            SSL_set_accept_state(m_ssl);
            handshake();
        } else {
            SSL_set_connect_state(m_ssl);
        }
    }
    TLSSocketStream(const TLSSocketStream&) = delete;
    TLSSocketStream& operator=(const TLSSocketStream&) = delete;
    ~TLSSocketStream() override {
        close();
        SSL_free(m_ssl);
        if (m_own) delete m_base;
    }

    SSL* ssl() { return m_ssl; }

    /// Sends close_notify (once, if the session is up), then closes the
    /// underlying stream if this one owns it.
    int close() override {
        if (m_closed) return 0;
        m_closed = true;
        if (m_ssl != nullptr && m_err == 0 && SSL_is_init_finished(m_ssl)) photon_ssl_shutdown(m_ssl);
        return m_own ? m_base->close() : 0;
    }
    ssize_t recv(void* buf, size_t count, int = 0) override {
        if (!ready()) return -1;
        return photon_ssl_read(m_ssl, buf, count);
    }
    ssize_t recv(const struct iovec* iov, int iovcnt, int flags = 0) override {
        for (int i = 0; i < iovcnt; i++)
            if (iov[i].iov_len > 0) return recv(iov[i].iov_base, iov[i].iov_len, flags);
        return 0;
    }
    ssize_t send(const void* buf, size_t count, int = 0) override {
        if (!ready()) return -1;
        return photon_ssl_write(m_ssl, buf, count);
    }
    ssize_t send(const struct iovec* iov, int iovcnt, int flags = 0) override { return writev_(iov, iovcnt, flags); }
    ssize_t read(void* buf, size_t count) override {
        size_t done = 0;
        while (done < count) {
            const ssize_t n = recv(static_cast<char*>(buf) + done, count - done);
            if (n < 0) return done > 0 ? static_cast<ssize_t>(done) : -1;
            if (n == 0) break;
            done += static_cast<size_t>(n);
        }
        return static_cast<ssize_t>(done);
    }
    ssize_t readv(const struct iovec* iov, int iovcnt) override {
        size_t done = 0;
        for (int i = 0; i < iovcnt; i++) {
            const ssize_t n = read(iov[i].iov_base, iov[i].iov_len);
            if (n < 0) return done > 0 ? static_cast<ssize_t>(done) : -1;
            done += static_cast<size_t>(n);
            if (static_cast<size_t>(n) < iov[i].iov_len) break;
        }
        return static_cast<ssize_t>(done);
    }
    ssize_t write(const void* buf, size_t count) override { return send(buf, count); }
    ssize_t writev(const struct iovec* iov, int iovcnt) override { return writev_(iov, iovcnt, 0); }

    int get_underlay_fd() override { return m_base->get_underlay_fd(); }
    using ISocketBase::getsockopt;
    using ISocketBase::setsockopt;
    int setsockopt(int level, int name, const void* value, socklen_t len) override {
        return m_base->setsockopt(level, name, value, len);
    }
    int getsockopt(int level, int name, void* value, socklen_t* len) override {
        return m_base->getsockopt(level, name, value, len);
    }
    uint64_t timeout() const override { return m_base->timeout(); }
    void timeout(uint64_t tm) override {
        m_base->timeout(tm);
        if (m_ssl != nullptr) photon_ssl_set_timeout(m_ssl, tm);
    }
    using ISocketName::getpeername;
    using ISocketName::getsockname;
    int getsockname(EndPoint& ep) override { return m_base->getsockname(ep); }
    int getpeername(EndPoint& ep) override { return m_base->getpeername(ep); }
    int getsockname(char* path, size_t count) override { return m_base->getsockname(path, count); }
    int getpeername(char* path, size_t count) override { return m_base->getpeername(path, count); }

private:
    // The transport of a base stream without an fd: its own recv/send (and
    // its own timeout).
    static ssize_t stream_io(void* arg, int write, void* buf, size_t len, uint64_t) {
        auto* s = static_cast<ISocketStream*>(arg);
        return write ? s->send(buf, len) : s->recv(buf, len);
    }
    void handshake() {
        if (SSL_is_init_finished(m_ssl)) return;
        const int r = SSL_is_server(m_ssl) ? photon_ssl_accept(m_ssl) : photon_ssl_connect(m_ssl);
        // a timeout leaves the handshake resumable; anything else ends it
        if (r != 0 && errno != ETIMEDOUT && errno != EINTR) m_err = errno;
    }
    bool ready() {
        if (m_err == 0 && !SSL_is_init_finished(m_ssl)) handshake();
        if (m_err != 0) {
            errno = m_err;
            return false;
        }
        return true;
    }
    ssize_t writev_(const struct iovec* iov, int iovcnt, int) {
        size_t done = 0;
        for (int i = 0; i < iovcnt; i++) {
            if (iov[i].iov_len == 0) continue;
            const ssize_t n = send(iov[i].iov_base, iov[i].iov_len);
            if (n < 0) return done > 0 ? static_cast<ssize_t>(done) : -1;
            done += static_cast<size_t>(n);
        }
        return static_cast<ssize_t>(done);
    }

    ISocketStream* m_base;
    bool m_own;
    bool m_closed = false;
    int m_err = 0;  // a failed handshake's errno: every call fails with it
    SSL* m_ssl;
};

class TLSSocketClient final : public ISocketClient {
public:
    TLSSocketClient(TLSContext* ctx, ISocketClient* base, bool ownership)
        : m_ctx(ctx), m_base(base), m_own(ownership) {}
    TLSSocketClient(const TLSSocketClient&) = delete;
    TLSSocketClient& operator=(const TLSSocketClient&) = delete;
    ~TLSSocketClient() override {
        if (m_own) delete m_base;
    }
    ISocketStream* connect(const EndPoint& remote, const EndPoint* local = nullptr) override {
        return wrap(m_base->connect(remote, local));
    }
    ISocketStream* connect(const char* path, size_t count = 0) override { return wrap(m_base->connect(path, count)); }
    int get_underlay_fd() override { return m_base->get_underlay_fd(); }
    using ISocketBase::getsockopt;
    using ISocketBase::setsockopt;
    int setsockopt(int level, int name, const void* value, socklen_t len) override {
        return m_base->setsockopt(level, name, value, len);
    }
    int getsockopt(int level, int name, void* value, socklen_t* len) override {
        return m_base->getsockopt(level, name, value, len);
    }
    uint64_t timeout() const override { return m_base->timeout(); }
    void timeout(uint64_t tm) override { m_base->timeout(tm); }

private:
    ISocketStream* wrap(ISocketStream* s) {
        return s == nullptr ? nullptr : new TLSSocketStream(m_ctx, s, SecurityRole::Client, true);
    }
    TLSContext* m_ctx;
    ISocketClient* m_base;
    bool m_own;
};

class TLSSocketServer final : public ISocketServer {
public:
    TLSSocketServer(TLSContext* ctx, ISocketServer* base, bool ownership)
        : m_ctx(ctx), m_base(base), m_own(ownership) {}
    TLSSocketServer(const TLSSocketServer&) = delete;
    TLSSocketServer& operator=(const TLSSocketServer&) = delete;
    ~TLSSocketServer() override {
        if (m_own) delete m_base;
    }
    using ISocketServer::bind;
    int bind(const EndPoint& ep) override { return m_base->bind(ep); }
    int bind(const char* path, size_t count) override { return m_base->bind(path, count); }
    int listen(int backlog = 1024) override { return m_base->listen(backlog); }
    ISocketStream* accept(EndPoint* remote_endpoint = nullptr) override {
        ISocketStream* s = m_base->accept(remote_endpoint);
        return s == nullptr ? nullptr : new TLSSocketStream(m_ctx, s, SecurityRole::Server, true);
    }
    ISocketServer* set_handler(Handler handler) override {
        m_handler = std::move(handler);
        m_base->set_handler(Handler([this](ISocketStream* s) {
            TLSSocketStream tls(m_ctx, s, SecurityRole::Server, false);
            return m_handler(&tls);
        }));
        return this;
    }
    int start_loop(bool block = false) override { return m_base->start_loop(block); }
    void terminate() override { m_base->terminate(); }
    int get_underlay_fd() override { return m_base->get_underlay_fd(); }
    using ISocketBase::getsockopt;
    using ISocketBase::setsockopt;
    int setsockopt(int level, int name, const void* value, socklen_t len) override {
        return m_base->setsockopt(level, name, value, len);
    }
    int getsockopt(int level, int name, void* value, socklen_t* len) override {
        return m_base->getsockopt(level, name, value, len);
    }
    uint64_t timeout() const override { return m_base->timeout(); }
    void timeout(uint64_t tm) override { m_base->timeout(tm); }
    using ISocketName::getpeername;
    using ISocketName::getsockname;
    int getsockname(EndPoint& ep) override { return m_base->getsockname(ep); }
    int getpeername(EndPoint& ep) override { return m_base->getpeername(ep); }
    int getsockname(char* path, size_t count) override { return m_base->getsockname(path, count); }
    int getpeername(char* path, size_t count) override { return m_base->getpeername(path, count); }

private:
    TLSContext* m_ctx;
    ISocketServer* m_base;
    bool m_own;
    Handler m_handler;
};

}  // namespace detail

/// A TLS context with a certificate and key (PEM text; either may be
/// nullptr and set later). nullptr with OpenSSL's error on the queue.
inline TLSContext* new_tls_context(const char* cert_str = nullptr, const char* key_str = nullptr,
                                   const char* passphrase = nullptr, TLSVersion version = TLSVersion::TLS12) {
    auto* ctx = new detail::TLSContextImpl(version);
    if (!ctx->ok() || (cert_str != nullptr && ctx->set_cert(cert_str) != 0) ||
        (key_str != nullptr && ctx->set_pkey(key_str, passphrase) != 0)) {
        delete ctx;
        return nullptr;
    }
    return ctx;
}

/// TLS over `base` in `role`; with `ownership` the new stream deletes
/// `base`. A server stream has done its handshake (a failed one makes every
/// call fail with its errno); a client stream does it at its first I/O.
/// nullptr with EINVAL for a NULL argument.
inline ISocketStream* new_tls_stream(TLSContext* ctx, ISocketStream* base, SecurityRole role, bool ownership = false) {
    if (ctx == nullptr || base == nullptr) {
        errno = EINVAL;
        return nullptr;
    }
    return new detail::TLSSocketStream(ctx, base, role, ownership);
}

/// A client whose connect() returns TLS streams (client role) over `base`'s.
inline ISocketClient* new_tls_client(TLSContext* ctx, ISocketClient* base, bool ownership = false) {
    if (ctx == nullptr || base == nullptr) {
        errno = EINVAL;
        return nullptr;
    }
    return new detail::TLSSocketClient(ctx, base, ownership);
}

/// A server whose accept() and handler see TLS streams (server role).
inline ISocketServer* new_tls_server(TLSContext* ctx, ISocketServer* base, bool ownership = false) {
    if (ctx == nullptr || base == nullptr) {
        errno = EINVAL;
        return nullptr;
    }
    return new detail::TLSSocketServer(ctx, base, ownership);
}

/// SNI for a client stream (before its first I/O); with verification on,
/// the certificate must also name `hostname`.
inline void tls_stream_set_hostname(ISocketStream* stream, const char* hostname) {
    auto* s = dynamic_cast<detail::TLSSocketStream*>(stream);
    if (s == nullptr || s->ssl() == nullptr || hostname == nullptr) return;
    SSL_set_tlsext_host_name(s->ssl(), hostname);
    SSL_set1_host(s->ssl(), hostname);
}

/// The protocol ALPN chose ("" if none).
inline std::string tls_stream_get_alpn_selected(ISocketStream* stream) {
    auto* s = dynamic_cast<detail::TLSSocketStream*>(stream);
    if (s == nullptr || s->ssl() == nullptr) return std::string();
    const unsigned char* p = nullptr;
    unsigned len = 0;
    SSL_get0_alpn_selected(s->ssl(), &p, &len);
    return p == nullptr ? std::string() : std::string(reinterpret_cast<const char*>(p), len);
}

}  // namespace net
}  // namespace photon

#endif  // PHOTON_CPP_NET_SECURITY_CONTEXT_TLS_STREAM_H
