// photon/thread/detail/std_compat_extras.h: the part of photon_std that
// PhotonLibOS's lacks: shared_mutex / shared_timed_mutex,
// condition_variable_any, once_flag / call_once. Part of
// <photon/thread/std-compat.h> (include that header, not this one; each
// includes the other, so either order works).
#ifndef PHOTON_CPP_THREAD_DETAIL_STD_COMPAT_EXTRAS_H
#define PHOTON_CPP_THREAD_DETAIL_STD_COMPAT_EXTRAS_H

#include <photon.h>
#include <photon/thread/std-compat.h>
#include <photon/thread/future.h>
#include <photon/thread/thread.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <future>
#include <memory>
#include <mutex>
#include <new>
#include <utility>

namespace photon_std {

/// std::shared_timed_mutex over a photon rwlock (phase-fair).
class shared_timed_mutex {
public:
    using native_handle_type = photon_rwlock*;
    constexpr shared_timed_mutex() noexcept {}
    shared_timed_mutex(const shared_timed_mutex&) = delete;
    shared_timed_mutex& operator=(const shared_timed_mutex&) = delete;

    void lock() { take(photon::WLOCK, PHOTON_FOREVER, "photon_std::shared_mutex::lock"); }
    bool try_lock() { return try_take(photon::WLOCK); }
    void unlock() { m_lock.unlock(); }
    void lock_shared() { take(photon::RLOCK, PHOTON_FOREVER, "photon_std::shared_mutex::lock_shared"); }
    bool try_lock_shared() { return try_take(photon::RLOCK); }
    void unlock_shared() { m_lock.unlock(); }

    template <class Rep, class Period>
    bool try_lock_for(const std::chrono::duration<Rep, Period>& d) {
        return try_lock_until(std::chrono::steady_clock::now() + d);
    }
    template <class Clock, class Duration>
    bool try_lock_until(const std::chrono::time_point<Clock, Duration>& t) {
        return try_take_until(photon::WLOCK, t);
    }
    template <class Rep, class Period>
    bool try_lock_shared_for(const std::chrono::duration<Rep, Period>& d) {
        return try_lock_shared_until(std::chrono::steady_clock::now() + d);
    }
    template <class Clock, class Duration>
    bool try_lock_shared_until(const std::chrono::time_point<Clock, Duration>& t) {
        return try_take_until(photon::RLOCK, t);
    }
    native_handle_type native_handle() noexcept { return m_lock.native_handle(); }

private:
    void take(int mode, uint64_t us, const char* what) {
        while (m_lock.lock(mode, us) != 0) {
            const int e = errno;
            if (!photon::detail::retryable(e)) detail::throw_errno(e, what);
        }
    }
    // A true try-lock: refused at once (EBUSY), never a zero-timeout wait.
    bool try_take(int mode) {
        if (m_lock.try_lock(mode) == 0) return true;
        const int e = errno;
        if (e == EBUSY) return false;
        detail::throw_errno(e, "photon_std::shared_mutex::try_lock");
    }
    template <class Clock, class Duration>
    bool try_take_until(int mode, const std::chrono::time_point<Clock, Duration>& t) {
        for (;;) {
            if (m_lock.lock(mode, detail::to_us(t - Clock::now())) == 0) return true;
            const int e = errno;
            if (e == ETIMEDOUT) return false;
            if (!photon::detail::retryable(e)) detail::throw_errno(e, "photon_std::shared_mutex::try_lock_until");
        }
    }
    photon::rwlock m_lock;
};

/// std::shared_mutex (C++17's; here for C++14 too).
using shared_mutex = shared_timed_mutex;

/// std::condition_variable_any: waits with any lock (unique_lock of any
/// mutex, shared_lock, a mutex itself).
class condition_variable_any {
public:
    condition_variable_any() : m_state(std::make_shared<state>()) {
        if (m_state->mutex == nullptr || m_state->cond == nullptr) throw std::bad_alloc();
    }
    condition_variable_any(const condition_variable_any&) = delete;
    condition_variable_any& operator=(const condition_variable_any&) = delete;

    void notify_one() noexcept { notify(false); }
    void notify_all() noexcept { notify(true); }

    template <class Lock>
    void wait(Lock& lock) {
        wait_us(lock, PHOTON_FOREVER);
    }
    template <class Lock, class Predicate>
    void wait(Lock& lock, Predicate stop_waiting) {
        while (!stop_waiting()) wait(lock);
    }
    template <class Lock, class Rep, class Period>
    cv_status wait_for(Lock& lock, const std::chrono::duration<Rep, Period>& d) {
        return wait_until(lock, std::chrono::steady_clock::now() + d);
    }
    template <class Lock, class Rep, class Period, class Predicate>
    bool wait_for(Lock& lock, const std::chrono::duration<Rep, Period>& d, Predicate stop_waiting) {
        return wait_until(lock, std::chrono::steady_clock::now() + d, std::move(stop_waiting));
    }
    template <class Lock, class Clock, class Duration>
    cv_status wait_until(Lock& lock, const std::chrono::time_point<Clock, Duration>& t) {
        const uint64_t us = detail::to_us(t - Clock::now());
        if (us == 0) return cv_status::timeout;
        if (wait_us(lock, us)) return cv_status::no_timeout;
        return Clock::now() < t ? cv_status::no_timeout : cv_status::timeout;
    }
    template <class Lock, class Clock, class Duration, class Predicate>
    bool wait_until(Lock& lock, const std::chrono::time_point<Clock, Duration>& t, Predicate stop_waiting) {
        while (!stop_waiting()) {
            if (wait_until(lock, t) == cv_status::timeout) return stop_waiting();
        }
        return true;
    }

private:
    // An inner mutex orders a waiter's "release the caller's lock, start
    // waiting" against notifiers. Shared with the waiters, so that the
    // object may be destroyed once notified, before they have woken.
    struct state {
        photon_mutex* mutex = photon_mutex_new();
        photon_cond* cond = photon_cond_new();
        state() = default;
        state(const state&) = delete;
        state& operator=(const state&) = delete;
        ~state() {
            photon_cond_free(cond);
            photon_mutex_free(mutex);
        }
    };

    void notify(bool all) noexcept {
        // Off a vcpu the inner mutex cannot be taken: notify without it.
        const bool locked = photon_mutex_lock(m_state->mutex, PHOTON_FOREVER) == 0;
        if (all)
            photon_cond_notify_all(m_state->cond);
        else
            photon_cond_notify_one(m_state->cond);
        if (locked) photon_mutex_unlock(m_state->mutex);
    }

    template <class Lock>
    bool wait_us(Lock& lock, uint64_t us) {
        std::shared_ptr<state> s = m_state;
        while (photon_mutex_lock(s->mutex, PHOTON_FOREVER) != 0) {
            const int e = errno;
            if (!photon::detail::retryable(e)) detail::throw_errno(e, "photon_std::condition_variable_any::wait");
        }
        lock.unlock();
        const int r = photon_cond_wait(s->cond, s->mutex, us);
        const int e = errno;
        photon_mutex_unlock(s->mutex);
        lock.lock();
        if (r == 0) return true;
        if (e == ETIMEDOUT) return false;
        if (!photon::detail::retryable(e)) detail::throw_errno(e, "photon_std::condition_variable_any::wait");
        return true;
    }

    std::shared_ptr<state> m_state;
};

/// std::once_flag.
class once_flag {
public:
    constexpr once_flag() noexcept {}
    once_flag(const once_flag&) = delete;
    once_flag& operator=(const once_flag&) = delete;

private:
    template <class F, class... A>
    friend void call_once(once_flag& flag, F&& f, A&&... args);
    std::atomic<bool> m_done{false};
    mutex m_mutex;
};

/// std::call_once: INVOKE(f, args...) once per flag, however many threads
/// (on any vcpus) call it; if it throws, the next caller tries again.
template <class F, class... A>
void call_once(once_flag& flag, F&& f, A&&... args) {
    if (flag.m_done.load(std::memory_order_acquire)) return;
    std::lock_guard<mutex> guard(flag.m_mutex);
    if (flag.m_done.load(std::memory_order_relaxed)) return;
    photon::detail::invoke(std::forward<F>(f), std::forward<A>(args)...);
    flag.m_done.store(true, std::memory_order_release);
}

/// The reading side of a photon_std::promise (PhotonLibOS's
/// photon_std::future): get() waits for the value as a photon thread.
template <typename T>
class future {
public:
    future() = default;
    explicit future(std::shared_ptr<photon::Future<T>> f) : m_fut(std::move(f)) {}
    bool valid() const noexcept { return m_fut != nullptr; }
    /// Waits for the value and returns it (moved out: call once).
    T get() {
        std::shared_ptr<photon::Future<T>> f = std::move(m_fut);
        return std::move(f->get());
    }
    void wait() const { m_fut->wait(); }
    /// Waits at most `timeout` microseconds (PhotonLibOS's signature).
    std::future_status wait(uint64_t timeout) const {
        return m_fut->wait(timeout) == 0 ? std::future_status::ready : std::future_status::timeout;
    }
    template <class Rep, class Period>
    std::future_status wait_for(const std::chrono::duration<Rep, Period>& d) const {
        const auto us = std::chrono::duration_cast<std::chrono::microseconds>(d).count();
        return wait(us <= 0 ? 0 : static_cast<uint64_t>(us));
    }
    template <class Clock, class Duration>
    std::future_status wait_until(const std::chrono::time_point<Clock, Duration>& t) const {
        return wait_for(t - Clock::now());
    }

private:
    std::shared_ptr<photon::Future<T>> m_fut;
};

/// A one-shot value for a photon_std::future (PhotonLibOS's
/// photon_std::promise; set_exception is not offered).
template <typename T>
class promise {
public:
    promise() : m_fut(std::make_shared<photon::Future<T>>()) {}
    future<T> get_future() { return future<T>(m_fut); }
    template <typename P>
    void set_value(P&& value) {
        m_fut->get_promise().set_value(std::forward<P>(value));
    }
    void swap(promise& other) noexcept { m_fut.swap(other.m_fut); }

private:
    std::shared_ptr<photon::Future<T>> m_fut;
};

template <>
class future<void> : public future<bool> {
public:
    future() = default;
    future(future<bool> f) : future<bool>(std::move(f)) {}  // NOLINT: implicit
    void get() { (void)future<bool>::get(); }
};

template <>
class promise<void> : public promise<bool> {
public:
    future<void> get_future() { return future<void>(promise<bool>::get_future()); }
    void set_value() { promise<bool>::set_value(true); }
};

}  // namespace photon_std

#endif  // PHOTON_CPP_THREAD_DETAIL_STD_COMPAT_EXTRAS_H
