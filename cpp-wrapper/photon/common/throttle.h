// photon/common/throttle.h: photon::throttle, a rate limit for photon
// threads (a token bucket refilled in time slices), as PhotonLibOS's.
//
//     photon::throttle bw(100 << 20);       // 100 MiB per second
//     bw.consume(n);                        // waits until n units may go
//     if (bw.try_consume(n) == 0) ...       // or takes them only if there
//     bw.restore(n);                        // gives back units not used
//
// `limit` units per `time_window` (a second) are handed out in `slice`
// steps (100), Photon's way: the units sit in a counter (full at first);
// every call looks at the time passed since the last refill and, once a
// slice or more has passed, adds a slice's share per slice passed (a
// window's worth at most, never above `limit`; the rest of a slice is not
// carried over). consume() takes a priority: High goes for the units at
// once; Medium first waits, a slice at a time, for at least 30% of the
// limit to be there and Low for 60%, each unless it has already waited more
// than 10% (Medium) or 20% (Low) of a window's slices, so high-priority use
// cannot starve them. Taking units is a semaphore's wait as Photon's
// semaphore does it: a caller takes them if they are there (even past
// queued waiters), else queues; units coming back wake the queued waiters
// in order while the head's request fits; a wait lasts at most a slice,
// then the refill is looked at again. update() changes the limit from the
// next refill on (units already there stay). One throttle serves the photon
// threads of one vcpu (it is not locked, as Photon's is not).
#ifndef PHOTON_CPP_COMMON_THROTTLE_H
#define PHOTON_CPP_COMMON_THROTTLE_H

#include <photon/common/timeout.h>
#include <photon/thread/thread.h>

#include <cerrno>
#include <cstdint>
#include <deque>

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
        m_count = m_limit;
        m_last_refill = photon_now_us();
    }

    /// Changes the limit (units per window) from the next refill on.
    void update(uint64_t limit) {
        m_per_slice = sat_add(limit, m_slice_num - 1) / m_slice_num;
        m_limit = m_per_slice * m_slice_num;
    }

    /// Waits until `amount` units may go, and takes them. Returns 0, or -1
    /// with errno if the waiting thread was interrupted (the interrupter's
    /// errno; `EPERM` off a vcpu).
    int consume(uint64_t amount, Priority prio = Priority::High) {
        const unsigned p = prio < Priority::NumPriorities ? static_cast<unsigned>(prio) : 0;
        uint64_t& starving = m_starving[p];
        for (;;) {
            refill();
            if (starving * 100 > m_slice_num * starving_percent(p)) {
                starving = 0;  // waited long enough for a fuller bucket
            } else if (m_count < share(fulfil_percent(p))) {
                // Lower priorities wait for the bucket to be fuller.
                if (photon_thread_usleep(m_slice_us) != 0) return -1;
                ++starving;
                continue;
            }
            if (take(amount, m_slice_us) == 0) return 0;
            if (errno != ETIMEDOUT) return -1;
            // A slice passed: refill and look again (a lower priority looks
            // at the bucket's fill again too).
        }
    }

    /// Takes `amount` units if they are there now: 0, else -1 with
    /// `ETIMEDOUT` (nothing taken).
    int try_consume(uint64_t amount) {
        refill();
        return take(amount, 0);
    }

    /// Gives back `amount` units (never above the limit).
    void restore(uint64_t amount) {
        const uint64_t room = sat_sub(m_limit, m_count);
        m_count += amount < room ? amount : room;
        wake();
    }

private:
    static uint64_t fulfil_percent(unsigned p) { return p == 2 ? 60 : p == 1 ? 30 : 0; }
    static uint64_t starving_percent(unsigned p) { return p == 2 ? 20 : p == 1 ? 10 : 0; }
    /// `percent`% of the limit, rounded up, without overflow.
    uint64_t share(uint64_t percent) const {
        return m_limit / 100 * percent + (m_limit % 100 * percent + 99) / 100;
    }

    /// A photon thread queued for units; woken through its own semaphore
    /// (an interrupt could land after the wait timed out and cut the
    /// thread's next sleep short).
    struct waiter {
        explicit waiter(uint64_t n) : need(n) {}
        uint64_t need;
        bool woken = false;
        photon::semaphore sem{0};
    };

    /// Takes `amount` units, waiting up to `timeout_us` in the queue: 0, or
    /// -1 with errno (ETIMEDOUT, the interrupter's, EPERM off a vcpu).
    int take(uint64_t amount, uint64_t timeout_us) {
        const Timeout deadline(timeout_us);
        for (;;) {
            if (m_count >= amount) {
                m_count -= amount;
                return 0;
            }
            if (deadline.expired()) {
                errno = ETIMEDOUT;
                return -1;
            }
            waiter w(amount);
            m_waiters.push_back(&w);
            const int r = w.sem.wait_interruptible(1, deadline);
            const int e = errno;
            if (w.woken) continue;  // units came back for it: take them
            for (auto it = m_waiters.begin(); it != m_waiters.end(); ++it) {
                if (*it == &w) {
                    m_waiters.erase(it);
                    break;
                }
            }
            wake();  // what it leaves may serve the next ones
            errno = r == 0 ? ETIMEDOUT : e;
            return -1;
        }
    }

    /// Wakes the queued waiters in order while the head's request fits in
    /// the units there.
    void wake() {
        uint64_t left = m_count;
        while (!m_waiters.empty() && m_waiters.front()->need <= left) {
            waiter* w = m_waiters.front();
            m_waiters.pop_front();
            left -= w->need;
            w->woken = true;
            w->sem.signal(1);
        }
    }

    /// Adds a slice's share per slice passed since the last refill (a
    /// window's worth at most, never above the limit), once a slice or more
    /// has passed; the refill time is then now.
    void refill() {
        const uint64_t t = photon_now_us();
        uint64_t elapsed = t - m_last_refill;
        if (elapsed < m_slice_us) return;
        if (elapsed > m_window_us) elapsed = m_window_us;
        restore(m_per_slice * (elapsed / m_slice_us));
        m_last_refill = t;
    }

    uint64_t m_limit = 0;
    uint64_t m_per_slice = 0;
    uint64_t m_slice_num;
    uint64_t m_slice_us = 1;
    uint64_t m_window_us = 1;
    uint64_t m_last_refill = 0;
    uint64_t m_starving[static_cast<int>(Priority::NumPriorities)] = {};
    uint64_t m_count = 0;             // units there
    std::deque<waiter*> m_waiters;    // threads queued for units, in arrival order
};

}  // namespace photon

#endif  // PHOTON_CPP_COMMON_THROTTLE_H
