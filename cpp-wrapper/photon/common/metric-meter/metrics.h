// photon/common/metric-meter/metrics.h: PhotonLibOS's small metric
// counters (namespace Metric), over photon::now.
//
// Plain counters (ValueCounter, AddCounter, MaxCounter) hold a number.
// The windowed ones (AverageCounter, QPSCounter, IntervalMaxCounter) read
// the clock on put() and val(): what is older than their interval fades out
// in proportion to the time past it, and after two idle intervals they
// start again from zero. SCOPE_LATENCY(counter) puts into a latency counter
// the microseconds from its line to the end of the scope. None of them is
// thread-safe (as Photon's): use one per vcpu, or lock.
#ifndef PHOTON_CPP_COMMON_METRIC_METER_METRICS_H
#define PHOTON_CPP_COMMON_METRIC_METER_METRICS_H

#include <photon/common/timeout.h>
#include <photon/common/utility.h>
#include <photon/thread/thread.h>

#include <cstdint>
#include <type_traits>

namespace Metric {

namespace detail {
inline uint64_t clock_us() noexcept { return photon_now_us(); }
/// `x` less its share `x * over / interval`, never below zero.
inline int64_t fade(int64_t x, uint64_t over, uint64_t interval) noexcept {
    if (x <= 0 || interval == 0) return x;
    const int64_t lost = static_cast<int64_t>(static_cast<uint64_t>(x) * over / interval);
    return lost >= x ? 0 : x - lost;
}
}  // namespace detail

/// The last value set.
class ValueCounter {
public:
    int64_t counter = 0;
    void set(int64_t x) { counter = x; }
    void reset() { counter = 0; }
    int64_t val() { return counter; }
};

/// A running sum.
class AddCounter {
public:
    int64_t counter = 0;
    void inc() { ++counter; }
    void dec() { --counter; }
    void add(int64_t x) { counter += x; }
    void sub(int64_t x) { counter -= x; }
    void reset() { counter = 0; }
    int64_t val() { return counter; }
};

/// The average of the values put over the last interval (60 s by default).
class AverageCounter {
public:
    int64_t sum = 0;
    int64_t cnt = 0;
    uint64_t time = 0;
    uint64_t m_interval = 60ULL * 1000 * 1000;

    void normalize() {
        const uint64_t t = detail::clock_us();
        const uint64_t age = t - time;
        if (age > 2 * m_interval) {
            reset();
        } else if (age > m_interval) {
            sum = detail::fade(sum, age - m_interval, m_interval);
            cnt = detail::fade(cnt, age - m_interval, m_interval);
            time = t - m_interval;
        }
    }
    void put(int64_t v) {
        normalize();
        sum += v;
        ++cnt;
    }
    void reset() {
        sum = 0;
        cnt = 0;
        time = detail::clock_us();
    }
    int64_t interval() { return static_cast<int64_t>(m_interval); }
    int64_t interval(int64_t x) { return static_cast<int64_t>(m_interval = static_cast<uint64_t>(x)); }
    int64_t val() {
        normalize();
        return cnt ? sum / cnt : 0;
    }
};

/// How many were put over the last interval (a second by default).
class QPSCounter {
public:
    static constexpr uint64_t SEC = 1000ULL * 1000;
    int64_t counter = 0;
    uint64_t time = detail::clock_us();
    uint64_t m_interval = SEC;

    void normalize() {
        const uint64_t t = detail::clock_us();
        const uint64_t age = t - time;
        if (age >= 2 * m_interval) {
            reset();
        } else if (age > m_interval) {
            counter = detail::fade(counter, age - m_interval, m_interval);
            time = t - m_interval;
        }
    }
    void put(int64_t v = 1) {
        normalize();
        counter += v;
    }
    void reset() {
        counter = 0;
        time = detail::clock_us();
    }
    uint64_t interval() { return m_interval; }
    uint64_t interval(uint64_t x) { return m_interval = x; }
    int64_t val() {
        normalize();
        return counter;
    }
};

/// The largest value put (since the last reset).
class MaxCounter {
public:
    int64_t maxv = 0;
    void put(int64_t v) {
        if (v > maxv) maxv = v;
    }
    void reset() { maxv = 0; }
    int64_t val() { return maxv; }
};

/// The largest value put in this interval or the one before (5 s by
/// default); zero after two intervals without a put.
class IntervalMaxCounter {
public:
    int64_t maxv = 0, last_max = 0;
    uint64_t time = 0;
    uint64_t m_interval = 5ULL * 1000 * 1000;

    void normalize() {
        const uint64_t t = detail::clock_us();
        if (t - time >= 2 * m_interval) {
            reset();
        } else if (t - time > m_interval) {
            last_max = maxv;
            maxv = 0;
            time = t;
        }
    }
    void put(int64_t v) {
        normalize();
        if (v > maxv) maxv = v;
    }
    void reset() {
        maxv = 0;
        last_max = 0;
        time = detail::clock_us();
    }
    uint64_t interval() { return m_interval; }
    uint64_t interval(uint64_t x) { return m_interval = x; }
    int64_t val() {
        normalize();
        return maxv > last_max ? maxv : last_max;
    }
};

/// Puts into `counter`, when it goes out of scope, the microseconds since
/// it was made.
template <typename LatencyCounter>
class LatencyMetric {
public:
    LatencyCounter& counter;
    uint64_t start;
    explicit LatencyMetric(LatencyCounter& c) : counter(c), start(detail::clock_us()) {}
    LatencyMetric(const LatencyMetric&) = delete;
    LatencyMetric& operator=(const LatencyMetric&) = delete;
    ~LatencyMetric() { counter.put(static_cast<int64_t>(detail::clock_us() - start)); }
};

/// The average latency (AverageCounter) of SCOPE_LATENCY scopes.
class AverageLatencyCounter : public AverageCounter {
public:
    using MetricType = LatencyMetric<AverageLatencyCounter>;
};

/// The largest latency (IntervalMaxCounter) of SCOPE_LATENCY scopes.
class MaxLatencyCounter : public IntervalMaxCounter {
public:
    using MetricType = LatencyMetric<IntervalMaxCounter>;
};

}  // namespace Metric

/// Measures the rest of the enclosing scope into the latency counter `x`.
#define SCOPE_LATENCY(x) \
    std::decay<decltype(x)>::type::MetricType _CONCAT(__scope_latency__, __LINE__)(x)

#endif  // PHOTON_CPP_COMMON_METRIC_METER_METRICS_H
