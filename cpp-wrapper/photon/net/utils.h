// photon/net/utils.h: name resolution and small network helpers, as
// PhotonLibOS names them: gethostbyname (getaddrinfo run on libphoton's
// offload pool, so a photon caller parks instead of blocking its vcpu),
// gethostbypeer (the local address that routes to a peer), Base64, and
// parse_address_list.
#ifndef PHOTON_CPP_NET_UTILS_H
#define PHOTON_CPP_NET_UTILS_H

#include <photon.h>
#include <photon/net/socket.h>

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>
#if __cplusplus >= 201703L
#include <string_view>
#endif

namespace photon {
namespace net {

namespace detail {
/// A host name or address as any string type.
struct name_arg {
    std::string s;
    name_arg(const char* p) : s(p ? p : "") {}  // NOLINT: implicit
    name_arg(const std::string& p) : s(p) {}    // NOLINT: implicit
#if __cplusplus >= 201703L
    name_arg(std::string_view p) : s(p) {}  // NOLINT: implicit
#endif
};

struct resolve_job {
    const char* name;
    std::vector<IPAddr>* out;
    int ret;
};

inline void* resolve_entry(void* p) noexcept {
    resolve_job* job = static_cast<resolve_job*>(p);
    addrinfo hints;
    std::memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* res = nullptr;
    job->ret = ::getaddrinfo(job->name, nullptr, &hints, &res);
    if (job->ret != 0) return nullptr;
    for (addrinfo* a = res; a != nullptr; a = a->ai_next) {
        IPAddr ip;
        if (a->ai_family == AF_INET)
            ip = IPAddr(reinterpret_cast<sockaddr_in*>(a->ai_addr)->sin_addr);
        else if (a->ai_family == AF_INET6)
            ip = IPAddr(reinterpret_cast<sockaddr_in6*>(a->ai_addr)->sin6_addr);
        else
            continue;
        bool seen = false;
        for (const IPAddr& x : *job->out) seen = seen || std::memcmp(&x.addr, &ip.addr, sizeof ip.addr) == 0;
        if (!seen) job->out->push_back(ip);
    }
    ::freeaddrinfo(res);
    return nullptr;
}
}  // namespace detail

/// Resolves `name` into `ret` (IPv4 addresses first, as PhotonLibOS
/// returns them). Returns how many, or -1 with errno (`ENOENT` not found).
inline int gethostbyname(detail::name_arg name, std::vector<IPAddr>& ret) {
    ret.clear();
    std::vector<IPAddr> all;
    detail::resolve_job job{name.s.c_str(), &all, 0};
    if (photon_offload(&detail::resolve_entry, &job, nullptr) != 0) detail::resolve_entry(&job);
    if (job.ret != 0 || all.empty()) {
        errno = ENOENT;
        return -1;
    }
    for (const IPAddr& a : all)
        if (a.is_ipv4()) ret.push_back(a);
    for (const IPAddr& a : all)
        if (!a.is_ipv4()) ret.push_back(a);
    return static_cast<int>(ret.size());
}

/// Resolves `name` into at most `bufsize` addresses at `buf`; returns how
/// many the name has (may exceed bufsize), or -1 with errno.
inline int gethostbyname(detail::name_arg name, IPAddr* buf, size_t bufsize = 1) {
    std::vector<IPAddr> all;
    const int n = gethostbyname(std::move(name), all);
    if (n < 0) return -1;
    for (size_t i = 0; i < bufsize && i < all.size(); ++i) buf[i] = all[i];
    return n;
}

/// The first address of `name`, or an undefined() IPAddr.
inline IPAddr gethostbyname(detail::name_arg name) {
    IPAddr a;
    if (gethostbyname(std::move(name), &a, 1) <= 0) return IPAddr();
    return a;
}

/// gethostbyname(); PhotonLibOS's non-blocking variant (this one never
/// blocks a vcpu either).
inline int gethostbyname_nb(detail::name_arg name, std::vector<IPAddr>& ret) {
    return gethostbyname(std::move(name), ret);
}

/// The local address the kernel would send from to reach `remote` (no
/// packet is sent), or an undefined() IPAddr.
inline IPAddr gethostbypeer(IPAddr remote) {
    const bool v4 = remote.is_ipv4();
    const int fd = ::socket(v4 ? AF_INET : AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return IPAddr();
    IPAddr local;
    ::sockaddr_storage ss;
    std::memset(&ss, 0, sizeof ss);
    socklen_t len;
    if (v4) {
        sockaddr_in* a = reinterpret_cast<sockaddr_in*>(&ss);
        a->sin_family = AF_INET;
        a->sin_port = htons(9);
        a->sin_addr.s_addr = remote.to_nl();
        len = sizeof *a;
    } else {
        sockaddr_in6* a = reinterpret_cast<sockaddr_in6*>(&ss);
        a->sin6_family = AF_INET6;
        a->sin6_port = htons(9);
        a->sin6_addr = remote.addr;
        len = sizeof *a;
    }
    if (::connect(fd, reinterpret_cast<sockaddr*>(&ss), len) == 0) {
        len = sizeof ss;
        if (::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) == 0)
            local = v4 ? IPAddr(reinterpret_cast<sockaddr_in*>(&ss)->sin_addr)
                       : IPAddr(reinterpret_cast<sockaddr_in6*>(&ss)->sin6_addr);
    }
    ::close(fd);
    return local;
}

/// gethostbypeer() of `name`'s first address.
inline IPAddr gethostbypeer(detail::name_arg name) {
    IPAddr remote = gethostbyname(std::move(name));
    return remote.undefined() ? IPAddr() : gethostbypeer(remote);
}

/// Base64 (RFC 4648, with padding) of `in`, into `out`.
inline void Base64Encode(detail::name_arg in, std::string& out) {
    static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const std::string& s = in.s;
    out.clear();
    out.reserve((s.size() + 2) / 3 * 4);
    size_t i = 0;
    for (; i + 2 < s.size(); i += 3) {
        const uint32_t v = (uint8_t(s[i]) << 16) | (uint8_t(s[i + 1]) << 8) | uint8_t(s[i + 2]);
        out += tbl[v >> 18];
        out += tbl[(v >> 12) & 63];
        out += tbl[(v >> 6) & 63];
        out += tbl[v & 63];
    }
    if (i < s.size()) {
        uint32_t v = uint8_t(s[i]) << 16;
        if (i + 1 < s.size()) v |= uint8_t(s[i + 1]) << 8;
        out += tbl[v >> 18];
        out += tbl[(v >> 12) & 63];
        out += i + 1 < s.size() ? tbl[(v >> 6) & 63] : '=';
        out += '=';
    }
}

/// Decodes Base64 `in` into `out`; false if `in` is not Base64.
inline bool Base64Decode(detail::name_arg in, std::string& out) {
    const std::string& s = in.s;
    out.clear();
    if (s.size() % 4 != 0) return false;
    auto val = [](char c) -> int {
        if (c >= 'A' && c <= 'Z') return c - 'A';
        if (c >= 'a' && c <= 'z') return c - 'a' + 26;
        if (c >= '0' && c <= '9') return c - '0' + 52;
        if (c == '+') return 62;
        if (c == '/') return 63;
        return -1;
    };
    for (size_t i = 0; i < s.size(); i += 4) {
        int v[4];
        int pad = 0;
        for (int k = 0; k < 4; ++k) {
            const char c = s[i + k];
            if (c == '=' && i + 4 == s.size() && k >= 2) {
                v[k] = 0;
                ++pad;
            } else if (pad != 0 || (v[k] = val(c)) < 0) {
                return false;
            }
        }
        const uint32_t w = (uint32_t(v[0]) << 18) | (uint32_t(v[1]) << 12) | (uint32_t(v[2]) << 6) | uint32_t(v[3]);
        out += char(w >> 16);
        if (pad < 2) out += char((w >> 8) & 0xff);
        if (pad < 1) out += char(w & 0xff);
    }
    return true;
}

/// MSG_ZEROCOPY sockets are not offered here.
inline bool zerocopy_available() { return false; }

/// Parses "host:port,host:port,..." (addresses, not names) into
/// `addresses`; entries without a port take `default_port`. Returns 0, or
/// -1 with `EINVAL` at the first unparsable entry.
inline int parse_address_list(detail::name_arg list, std::vector<EndPoint>* addresses, uint16_t default_port = 0) {
    size_t pos = 0;
    const std::string& s = list.s;
    while (pos <= s.size()) {
        size_t comma = s.find(',', pos);
        if (comma == std::string::npos) comma = s.size();
        std::string item = s.substr(pos, comma - pos);
        while (!item.empty() && item.front() == ' ') item.erase(0, 1);
        while (!item.empty() && item.back() == ' ') item.pop_back();
        if (!item.empty()) {
            EndPoint ep = EndPoint::parse(item, default_port);
            if (ep.undefined() && item.compare(0, 7, "0.0.0.0") != 0) {
                errno = EINVAL;
                return -1;
            }
            addresses->push_back(ep);
        }
        pos = comma + 1;
    }
    return 0;
}

}  // namespace net
}  // namespace photon

#endif  // PHOTON_CPP_NET_UTILS_H
