// photon/common/timeout.h: photon::Timeout, the deadline every blocking call
// of the wrapper takes, as in PhotonLibOS.
//
// A Timeout is a deadline in microseconds of photon_now_us(): made from a
// duration (`Timeout(1000)` expires 1 ms from now), it can be passed to
// several calls in turn and each gets what is left. Default-constructed, or
// from -1UL (PHOTON_FOREVER), it never expires; from 0 it has expired
// already (a call then fails at once with ETIMEDOUT unless it can complete
// without waiting). Anywhere a Timeout is taken, a plain uint64_t count of
// microseconds converts to one implicitly.
#ifndef PHOTON_CPP_COMMON_TIMEOUT_H
#define PHOTON_CPP_COMMON_TIMEOUT_H

#include <photon.h>

#include <chrono>
#include <cstdint>
#include <limits>

namespace photon {

/// `x + y`, or UINT64_MAX when that overflows.
inline uint64_t sat_add(uint64_t x, uint64_t y) noexcept {
    return x + y < x ? UINT64_MAX : x + y;
}

/// `x - y`, or 0 when y > x.
inline uint64_t sat_sub(uint64_t x, uint64_t y) noexcept { return x > y ? x - y : 0; }

/// A deadline in microseconds (see the top of this file).
class Timeout {
public:
    /// Never expires.
    Timeout() = default;

    /// Expires `us` microseconds from now (-1UL: never; 0: already).
    Timeout(uint64_t us) noexcept { timeout(us); }  // NOLINT: implicit, as in PhotonLibOS

    /// Re-arms to expire `us` microseconds from now; returns the deadline.
    uint64_t timeout(uint64_t us) noexcept {
        if (us == PHOTON_FOREVER)
            m_expiration = PHOTON_FOREVER;
        else if (us == 0)
            m_expiration = 0;
        else
            m_expiration = sat_add(photon_now_us(), us);
        return m_expiration;
    }

    /// Microseconds left (PHOTON_FOREVER if it never expires): what the C
    /// API's `timeout_us` parameters are given.
    __attribute__((always_inline)) uint64_t timeout() const noexcept {
        // never (PHOTON_FOREVER) and already (0) need no clock
        return m_expiration == PHOTON_FOREVER || m_expiration == 0 ? m_expiration : left(m_expiration);
    }
    operator uint64_t() const noexcept { return timeout(); }
    uint64_t timeout_us() const noexcept { return timeout(); }
    uint64_t timeout_ms() const noexcept { return rounded(timeout(), 1000); }
    uint64_t timeout_s() const noexcept { return rounded(timeout(), 1000 * 1000); }

    /// True once the deadline has passed.
    bool expired() const noexcept {
        if (m_expiration == PHOTON_FOREVER) return false;
        return m_expiration == 0 || m_expiration <= photon_now_us();
    }

    /// The deadline itself, in photon_now_us() microseconds.
    uint64_t expiration() const noexcept { return m_expiration; }
    uint64_t expiration(uint64_t deadline) noexcept { return m_expiration = deadline; }

    /// Re-arms to expire `us` microseconds from now.
    Timeout& operator=(uint64_t us) noexcept {
        timeout(us);
        return *this;
    }

    /// Brings the deadline forward to at most `us` microseconds from now.
    Timeout& timeout_at_most(uint64_t us) noexcept {
        Timeout other(us);
        if (other.m_expiration < m_expiration) m_expiration = other.m_expiration;
        return *this;
    }

    /// What is left, as a std::chrono duration (microseconds::max() if never).
    std::chrono::microseconds std_duration() const noexcept {
        using us = std::chrono::microseconds;
        const uint64_t left = timeout();
        const uint64_t max = static_cast<uint64_t>(std::numeric_limits<us::rep>::max());
        return left >= max ? us::max() : us(static_cast<us::rep>(left));
    }

    bool operator<(const Timeout& rhs) const noexcept { return m_expiration < rhs.m_expiration; }
    bool operator==(const Timeout& rhs) const noexcept { return m_expiration == rhs.m_expiration; }
    bool operator!=(const Timeout& rhs) const noexcept { return m_expiration != rhs.m_expiration; }

private:
    // By value, not through `this`: a Timeout then stays in registers.
    __attribute__((noinline)) static uint64_t left(uint64_t expiration) noexcept {
        return sat_sub(expiration, photon_now_us());
    }
    static uint64_t rounded(uint64_t x, uint64_t unit) noexcept {
        return x == PHOTON_FOREVER ? PHOTON_FOREVER : (x + unit / 2) / unit;
    }
    uint64_t m_expiration = PHOTON_FOREVER;
};

}  // namespace photon

#endif  // PHOTON_CPP_COMMON_TIMEOUT_H
