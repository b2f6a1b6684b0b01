// photon/thread/future.h: photon::Future<T> and its Promise, a one-shot
// value handed from one photon thread (or OS thread) to another, over a
// photon semaphore.
//
//     photon::Future<int> fut;
//     auto promise = fut.get_promise();   // to the producer
//     ...  promise.set_value(42);         // producer, once
//     int v = fut.get();                  // consumer waits (a photon thread
//                                         // only blocks itself)
//
// A waiter off a vcpu (no photon thread) polls the value every 100 us.
#ifndef PHOTON_CPP_THREAD_FUTURE_H
#define PHOTON_CPP_THREAD_FUTURE_H

#include <photon.h>
#include <photon/common/timeout.h>
#include <photon/thread/thread.h>

#include <atomic>
#include <cerrno>
#include <thread>
#include <chrono>
#include <utility>

namespace photon {

struct AutoContext;

/// A value set once by a Promise and read by waiters (not copyable or
/// movable: share it by pointer).
template <typename T, typename Context = AutoContext>
class Future {
public:
    Future() = default;
    Future(const Future&) = delete;
    Future& operator=(const Future&) = delete;

    /// The producer's side: set_value() once.
    class Promise {
    public:
        Future* _fut;
        template <typename P>
        void set_value(P&& value) {
            _fut->set_value(std::forward<P>(value));
        }
    };
    Promise get_promise() { return Promise{this}; }

    /// Waits until the value is set, or `timeout` expires. 0, or -1 with
    /// errno (`ETIMEDOUT`, `ECANCELED`/`ESHUTDOWN` when the vcpu ends).
    int wait(Timeout timeout = {}) {
        if (m_ready.load(std::memory_order_acquire)) return 0;
        if (photon_thread_self() == nullptr) {
            while (!m_ready.load(std::memory_order_acquire)) {
                if (timeout.expired()) {
                    errno = ETIMEDOUT;
                    return -1;
                }
                std::this_thread::sleep_for(std::chrono::microseconds(100));
            }
            return 0;
        }
        if (m_sem.wait(1, timeout) != 0) return m_ready.load(std::memory_order_acquire) ? 0 : -1;
        m_sem.signal(1);  // for the next waiter
        return 0;
    }
    int wait_for(Timeout timeout = {}) { return wait(timeout); }

    /// Waits for the value and returns it.
    T& get_value() {
        wait();
        return m_value;
    }
    T& get() { return get_value(); }

    /// Whether the value is set.
    bool ready() const noexcept { return m_ready.load(std::memory_order_acquire); }

private:
    template <typename P>
    void set_value(P&& value) {
        m_value = std::forward<P>(value);
        m_ready.store(true, std::memory_order_release);
        m_sem.signal(1);
    }

    T m_value{};
    std::atomic<bool> m_ready{false};
    semaphore m_sem{0};
};

template <typename T>
using Promise = typename Future<T>::Promise;

}  // namespace photon

#endif  // PHOTON_CPP_THREAD_FUTURE_H
