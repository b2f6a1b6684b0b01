// photon/common/iovector.h: a subset of PhotonLibOS's io-vector helpers:
// IOVector, a growable array of `struct iovec` to hand to readv / writev /
// preadv / pwritev, and iovector_view, a (pointer, count) view of one.
// PhotonLibOS's buffer management (allocation through IOAlloc, slicing,
// extraction, the front reserve) is not offered.
//
//     IOVector iov;
//     iov.push_back(header, 16);
//     iov.push_back(body, n);
//     file->writev(iov.iovec(), iov.iovcnt());   // iov.sum() bytes
#ifndef PHOTON_CPP_COMMON_IOVECTOR_H
#define PHOTON_CPP_COMMON_IOVECTOR_H

#include <sys/uio.h>

#include <cstddef>
#include <vector>

/// A view of `iovcnt` iovecs at `iov`.
struct iovector_view {
    struct iovec* iov = nullptr;
    int iovcnt = 0;
    iovector_view() = default;
    iovector_view(struct iovec* iov_, int iovcnt_) : iov(iov_), iovcnt(iovcnt_) {}
    /// The total length.
    size_t sum() const {
        size_t n = 0;
        for (int i = 0; i < iovcnt; ++i) n += iov[i].iov_len;
        return n;
    }
    bool empty() const { return iovcnt == 0; }
    struct iovec* begin() const { return iov; }
    struct iovec* end() const { return iov + iovcnt; }
    struct iovec& operator[](size_t i) const { return iov[i]; }
};

/// A growable array of iovecs (not owning the buffers they point at).
class IOVector {
public:
    IOVector() = default;
    IOVector(const struct iovec* iov, int iovcnt) : m_iov(iov, iov + (iovcnt > 0 ? iovcnt : 0)) {}

    /// Appends a buffer; returns its length.
    size_t push_back(void* buf, size_t size) { return push_back(iovec_of(buf, size)); }
    size_t push_back(const struct iovec& v) {
        m_iov.push_back(v);
        return v.iov_len;
    }
    /// Prepends a buffer; returns its length.
    size_t push_front(void* buf, size_t size) { return push_front(iovec_of(buf, size)); }
    size_t push_front(const struct iovec& v) {
        m_iov.insert(m_iov.begin(), v);
        return v.iov_len;
    }
    struct iovec pop_front() {
        struct iovec v = m_iov.front();
        m_iov.erase(m_iov.begin());
        return v;
    }
    struct iovec pop_back() {
        struct iovec v = m_iov.back();
        m_iov.pop_back();
        return v;
    }
    void clear() { m_iov.clear(); }

    /// The iovecs, for readv / writev.
    struct iovec* iovec() { return m_iov.data(); }
    const struct iovec* iovec() const { return m_iov.data(); }
    int iovcnt() const { return static_cast<int>(m_iov.size()); }
    bool empty() const { return m_iov.empty(); }
    /// The total length.
    size_t sum() const {
        size_t n = 0;
        for (const struct iovec& v : m_iov) n += v.iov_len;
        return n;
    }
    iovector_view view() { return iovector_view(m_iov.data(), iovcnt()); }

    struct iovec& operator[](size_t i) { return m_iov[i]; }
    const struct iovec& operator[](size_t i) const { return m_iov[i]; }
    struct iovec& front() { return m_iov.front(); }
    struct iovec& back() { return m_iov.back(); }
    struct iovec* begin() { return m_iov.data(); }
    struct iovec* end() { return m_iov.data() + m_iov.size(); }

private:
    static struct iovec iovec_of(void* buf, size_t size) {
        struct iovec v;
        v.iov_base = buf;
        v.iov_len = size;
        return v;
    }
    std::vector<struct iovec> m_iov;
};

#endif  // PHOTON_CPP_COMMON_IOVECTOR_H
