// photon/common/throttle.h: photon::throttle, a rate limit for photon
// threads (a token bucket refilled in time slices), as PhotonLibOS's.
//
//     photon::throttle bw(100 << 20);       // 100 MiB per second
//     bw.consume(n);                        // waits until n units may go
//     if (bw.try_consume(n) == 0) ...       // or takes them only if there
//     bw.restore(n);                        // gives back units not used
//
// `limit` units per `time_window` (a second) are handed out in `slice`
// steps (100): every time_window / slice microseconds, limit / slice units
// come back, up to `limit` (the bucket starts full). consume() takes a
// priority: High goes whenever the units are there; Medium waits for at
// least 30% of the limit to be available and Low for 60%, each unless it
// has already waited more than 10% (Medium) or 20% (Low) of a window's
// slices, so high-priority use cannot starve them. Waiting is a photon
// sleep. One throttle serves the photon threads of one vcpu (it is not
// locked, as Photon's is not).
#ifndef PHOTON_CPP_COMMON_THROTTLE_H
#define PHOTON_CPP_COMMON_THROTTLE_H

#include <photon/common/timeout.h>
#include <photon/thread/thread.h>

#include <cerrno>
#include <cstdint>

namespace photon {

class throttle {
public:
    enum class Priority {
        High,
        Medium,
        Low,
        NumPriorities,
    };

    /// `limit` units per `time_window` microseconds (-1ULL: no limit; 0:
    /// nothing ever goes), refilled in `slice` steps.
    explicit throttle(uint64_t limit, uint64_t time_window = 1000ULL * 1000, uint64_t slice = 100)
        : m_slice_num(slice == 0 ? 1 : slice) {
        update(limit);
        m_slice_us = sat_add(time_window, m_slice_num - 1) / m_slice_num;
        if (m_slice_us == 0) m_slice_us = 1;
        m_window_us = m_slice_us * m_slice_num;
        m_tokens = m_limit;
        m_last_refill = photon_now_us();
    }

    /// Changes the limit (units per window) from now on.
    void update(uint64_t limit) {
        m_per_slice = sat_add(limit, m_slice_num - 1) / m_slice_num;
        m_limit = m_per_slice * m_slice_num;
        if (m_tokens > m_limit) m_tokens = m_limit;
    }

    /// Waits until `amount` units may go, and takes them. Returns 0, or -1
    /// with errno if the waiting thread was interrupted (the interrupter's
    /// errno; `EPERM` off a vcpu).
    int consume(uint64_t amount, Priority prio = Priority::High) {
        const unsigned p = prio < Priority::NumPriorities ? static_cast<unsigned>(prio) : 0;
        uint64_t& starving = m_starving[p];
        for (;;) {
            refill();
            const bool starved_long = starving * 100 > m_slice_num * starving_percent(p);
            if (!starved_long && m_tokens < m_limit / 100 * fulfil_percent(p)) {
                // Lower priorities wait for the bucket to be fuller.
                if (photon_thread_usleep(m_slice_us) != 0) return -1;
                ++starving;
                continue;
            }
            if (m_tokens >= amount) {
                m_tokens -= amount;
                if (starved_long) starving = 0;
                return 0;
            }
            if (photon_thread_usleep(wait_for(amount)) != 0) return -1;
        }
    }

    /// Takes `amount` units if they are there now: 0, else -1 with
    /// `ETIMEDOUT` (nothing taken).
    int try_consume(uint64_t amount) {
        refill();
        if (m_tokens >= amount) {
            m_tokens -= amount;
            return 0;
        }
        errno = ETIMEDOUT;
        return -1;
    }

    /// Gives back `amount` units (never above the limit).
    void restore(uint64_t amount) { m_tokens = m_limit - m_tokens < amount ? m_limit : m_tokens + amount; }

private:
    static uint64_t fulfil_percent(unsigned p) { return p == 2 ? 60 : p == 1 ? 30 : 0; }
    static uint64_t starving_percent(unsigned p) { return p == 2 ? 20 : p == 1 ? 10 : 0; }

    /// Adds the slices passed since the last refill (at most a window's).
    void refill() {
        const uint64_t t = photon_now_us();
        uint64_t elapsed = t - m_last_refill;
        if (elapsed < m_slice_us) return;
        if (elapsed > m_window_us) {
            // Idle for a window or more: full again, the slices start now.
            m_tokens = m_limit;
            m_last_refill = t;
            return;
        }
        const uint64_t slices = elapsed / m_slice_us;
        restore(m_per_slice * slices);
        m_last_refill += slices * m_slice_us;  // the part of a slice left counts on
    }
    /// Microseconds until the next refill may cover `amount`, at least
    /// until the next slice.
    uint64_t wait_for(uint64_t amount) const {
        const uint64_t missing = amount - m_tokens;
        uint64_t slices = m_per_slice == 0 ? 1 : (missing + m_per_slice - 1) / m_per_slice;
        if (slices == 0) slices = 1;
        if (slices > m_slice_num) slices = m_slice_num;
        const uint64_t since = photon_now_us() - m_last_refill;
        const uint64_t until = slices * m_slice_us;
        return until > since ? until - since : 1;
    }

    uint64_t m_limit = 0;
    uint64_t m_per_slice = 0;
    uint64_t m_slice_num;
    uint64_t m_slice_us = 1;
    uint64_t m_window_us = 1;
    uint64_t m_tokens = 0;
    uint64_t m_last_refill = 0;
    uint64_t m_starving[static_cast<int>(Priority::NumPriorities)] = {};
};

}  // namespace photon

#endif  // PHOTON_CPP_COMMON_THROTTLE_H
