// photon/thread/std-compat.h: photon_std, the std:: threading API on photon
// threads, as PhotonLibOS spells it. A program written with std::thread,
// std::mutex, std::condition_variable and std::this_thread becomes a
// coroutine program by renaming std:: to photon_std:: for those names
// (cpp-wrapper/port-to-photon.sed does it, as PhotonLibOS's RocksDB port
// does) and running on a vcpu (photon::init; photon_std::run_as_main does
// that for a ported main).
//
// Semantics are std::'s, on photon threads:
// - photon_std::thread runs on the creating vcpu, or, after
//   work_pool_init(n), on the pool's vcpus in turn (so it runs in
//   parallel). join() rethrows an exception that escaped the thread (where
//   std::thread would terminate); a detached thread's escaping exception
//   terminates the process with a message. Destroying a joinable thread
//   calls std::terminate, as std::thread does.
// - The locks block only the calling photon thread and work across vcpus.
//   Errors are std::system_error, as in std::. An interrupt from
//   photon::thread_interrupt is absorbed as std:: code expects: lock() and
//   join() retry, condition waits return as a spurious wake-up, sleeps end
//   early. Cancellation (ECANCELED, sent by photon::fini and a work pool's
//   end to threads blocked without a timeout) throws
//   std::system_error(ECANCELED) instead, so such a thread unwinds and ends;
//   a detached thread ended that way ends quietly.
// - Off a vcpu (an OS thread that is not one) the locks throw
//   std::system_error(EPERM); this_thread's calls fall back to std::.
// lock_guard, unique_lock, shared_lock, lock, try_lock (and scoped_lock in
// C++17) are std::'s own, which work with these mutexes.
#ifndef PHOTON_CPP_THREAD_STD_COMPAT_H
#define PHOTON_CPP_THREAD_STD_COMPAT_H

#include <photon.h>
#include <photon/photon.h>
#include <photon/thread/detail/escape.h>
#include <photon/thread/detail/invoke.h>
#include <photon/thread/thread-local.h>
#include <photon/thread/thread.h>
#include <photon/thread/thread11.h>
#include <photon/thread/workerpool.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <memory>
#include <mutex>
#include <new>
#include <shared_mutex>
#include <system_error>
#include <thread>
#include <type_traits>
#include <utility>

namespace photon_std {

using std::adopt_lock;
using std::adopt_lock_t;
using std::cv_status;
using std::defer_lock;
using std::defer_lock_t;
using std::lock;
using std::lock_guard;
using std::shared_lock;
using std::try_lock;
using std::try_to_lock;
using std::try_to_lock_t;
using std::unique_lock;
#if __cplusplus >= 201703L
using std::scoped_lock;
#endif

namespace detail {

[[noreturn]] inline void throw_errno(int e, const char* what) {
    throw std::system_error(e, std::generic_category(), what);
}

/// True for the errors that mean "cancelled": the thread should unwind.
inline bool cancelled(int e) noexcept { return e == ECANCELED || e == ESHUTDOWN; }

/// A duration as the C API's timeout_us: rounded up, 0 if not positive,
/// PHOTON_FOREVER beyond about 95 years.
template <class Rep, class Period>
uint64_t to_us(const std::chrono::duration<Rep, Period>& d) noexcept {
    const double us = std::chrono::duration<double, std::micro>(d).count();
    if (!(us > 0.0)) return 0;
    if (us >= 3.0e15) return PHOTON_FOREVER;
    uint64_t n = static_cast<uint64_t>(us);
    if (static_cast<double>(n) < us) ++n;
    return n;
}

/// The work pool of work_pool_init, if any.
inline std::atomic<photon::WorkPool*>& work_pool() noexcept {
    static std::atomic<photon::WorkPool*> pool{nullptr};
    return pool;
}

/// The state a photon_std::thread shares with its photon thread.
class thread_state {
public:
    enum : int { kRunning = 0, kDetached = 1, kFinished = 2 };
    virtual ~thread_state() = default;
    /// Invokes the callable, then destroys it (and its arguments).
    virtual void run() = 0;

    std::atomic<int> phase{kRunning};
    std::exception_ptr exc;
};

template <class F, class... A>
class thread_state_for final : public thread_state {
public:
    template <class... X>
    explicit thread_state_for(X&&... x) : m_call(std::forward<X>(x)...) {}
    ~thread_state_for() override {
        if (m_alive) m_call.~package();
    }
    void run() override {
        struct finish {
            thread_state_for* self;
            ~finish() {
                self->m_call.~package();
                self->m_alive = false;
            }
        } at_exit{this};
        m_call();
    }

private:
    using package = photon::detail::call_package<F, A...>;
    union {
        package m_call;
    };
    bool m_alive = true;
};

inline void* thread_trampoline(void* p) noexcept {
    thread_state* st = static_cast<thread_state*>(p);
    try {
        st->run();
    } catch (...) {
        st->exc = std::current_exception();
    }
    if (st->phase.exchange(thread_state::kFinished, std::memory_order_acq_rel) == thread_state::kDetached) {
        std::exception_ptr e = std::move(st->exc);
        delete st;
        if (e) photon::detail::detached_thread_escape(e, "a detached photon_std::thread", photon_thread_self());
    }
    return nullptr;
}

}  // namespace detail

/// std::thread on a photon thread (see the top of this file).
class thread {
public:
    /// A photon thread, or nullptr for "no thread".
    using id = photon::thread*;
    using native_handle_type = photon::thread*;

    thread() noexcept = default;

    /// Starts INVOKE(f, args...) (decay-copied, as std::thread) on a new
    /// photon thread. Throws std::system_error if it cannot start (EPERM
    /// when the caller is not on a vcpu).
    template <class F, class... A,
              typename std::enable_if<!std::is_same<typename std::decay<F>::type, thread>::value, int>::type = 0>
    explicit thread(F&& f, A&&... args) {
        using state_t = detail::thread_state_for<F, A...>;
        std::unique_ptr<state_t> st(new state_t(std::forward<F>(f), std::forward<A>(args)...));
        detail::thread_state* base = st.get();
        photon_thread* th = photon_thread_create(&detail::thread_trampoline, base, 0);
        if (th == nullptr) detail::throw_errno(errno, "photon_std::thread: cannot start a photon thread");
        photon_thread_enable_join(th);  // cannot fail: th has not run yet
        st.release();
        m_state = base;
        m_th = photon::detail::cpp_thread(th);
        photon::WorkPool* pool = detail::work_pool().load(std::memory_order_acquire);
        if (pool != nullptr) pool->thread_migrate(m_th);  // on failure it just stays here
    }

    thread(const thread&) = delete;
    thread& operator=(const thread&) = delete;
    thread(thread&& other) noexcept : m_th(other.m_th), m_state(other.m_state) {
        other.m_th = nullptr;
        other.m_state = nullptr;
    }
    thread& operator=(thread&& other) noexcept {
        if (joinable()) std::terminate();
        m_th = other.m_th;
        m_state = other.m_state;
        other.m_th = nullptr;
        other.m_state = nullptr;
        return *this;
    }
    /// std::terminate()s if still joinable, as std::thread does.
    ~thread() {
        if (joinable()) std::terminate();
    }

    bool joinable() const noexcept { return m_th != nullptr; }
    id get_id() const noexcept { return m_th; }
    native_handle_type native_handle() const noexcept { return m_th; }

    /// The vcpus photon_std threads run on: the work pool's, or 1.
    static unsigned int hardware_concurrency() noexcept {
        photon::WorkPool* pool = detail::work_pool().load(std::memory_order_acquire);
        return pool != nullptr ? static_cast<unsigned int>(pool->get_vcpu_num()) : 1u;
    }

    /// Waits for the thread to end; rethrows an exception that escaped it.
    void join() {
        if (!joinable()) detail::throw_errno(EINVAL, "photon_std::thread::join: not joinable");
        if (m_th == static_cast<photon::thread*>(photon::CURRENT))
            detail::throw_errno(EDEADLK, "photon_std::thread::join: joining itself");
        while (photon_thread_join(photon::detail::c_thread(m_th), nullptr) != 0) {
            const int e = errno;
            if (detail::cancelled(e)) {
                detach();  // so that unwinding this object does not terminate
                detail::throw_errno(e, "photon_std::thread::join");
            }
            if (!photon::detail::retryable(e)) detail::throw_errno(e, "photon_std::thread::join");
        }
        std::exception_ptr e = std::move(m_state->exc);
        delete m_state;
        m_state = nullptr;
        m_th = nullptr;
        if (e) std::rethrow_exception(e);
    }

    /// Lets the thread run on unjoined.
    void detach() {
        if (!joinable()) detail::throw_errno(EINVAL, "photon_std::thread::detach: not joinable");
        photon_thread* th = photon::detail::c_thread(m_th);
        detail::thread_state* st = m_state;
        m_th = nullptr;
        m_state = nullptr;
        photon_thread_detach(th);
        if (st->phase.exchange(detail::thread_state::kDetached, std::memory_order_acq_rel) ==
            detail::thread_state::kFinished) {
            std::exception_ptr e = std::move(st->exc);
            delete st;
            if (e) photon::detail::detached_thread_escape(e, "a photon_std::thread detached after it ended", th);
        }
    }

    void swap(thread& other) noexcept {
        std::swap(m_th, other.m_th);
        std::swap(m_state, other.m_state);
    }

private:
    photon::thread* m_th = nullptr;
    detail::thread_state* m_state = nullptr;
};

inline void swap(thread& a, thread& b) noexcept { a.swap(b); }

/// std::mutex (also std::timed_mutex) as a photon::mutex.
class mutex : public photon::mutex {
public:
    using native_handle_type = photon_mutex*;
    constexpr mutex() noexcept {}

    __attribute__((always_inline)) void lock() {
        // NULL before the first use, then EINVAL: see photon::mutex.
        if (photon_mutex_lock(allocated_handle(), PHOTON_FOREVER) == 0) return;
        lock_slow();
    }
    bool try_lock() noexcept { return photon::mutex::try_lock() == 0; }
    using photon::mutex::unlock;

    template <class Rep, class Period>
    bool try_lock_for(const std::chrono::duration<Rep, Period>& d) {
        return try_lock_until(std::chrono::steady_clock::now() + d);
    }
    template <class Clock, class Duration>
    bool try_lock_until(const std::chrono::time_point<Clock, Duration>& t) {
        photon_mutex* m = native_handle();
        if (m == nullptr) detail::throw_errno(ENOMEM, "photon_std::mutex");
        for (;;) {
            if (photon_mutex_lock(m, detail::to_us(t - Clock::now())) == 0) return true;
            const int e = errno;
            if (e == ETIMEDOUT) return false;
            if (!photon::detail::retryable(e)) detail::throw_errno(e, "photon_std::mutex::try_lock_until");
        }
    }

private:
    __attribute__((noinline)) void lock_slow() {
        const int first_error = errno;
        photon_mutex* m = native_handle();  // allocated now if need be
        if (m == nullptr) detail::throw_errno(ENOMEM, "photon_std::mutex");
        errno = first_error;
        if (first_error == EINVAL && photon_mutex_lock(m, PHOTON_FOREVER) == 0) return;
        for (;;) {
            const int e = errno;
            if (!photon::detail::retryable(e)) detail::throw_errno(e, "photon_std::mutex::lock");
            if (photon_mutex_lock(m, PHOTON_FOREVER) == 0) return;
        }
    }
};

/// std::timed_mutex: the same mutex (it has the timed calls).
using timed_mutex = mutex;

/// std::recursive_mutex (also std::recursive_timed_mutex).
class recursive_mutex : public photon::recursive_mutex {
public:
    constexpr recursive_mutex() noexcept {}
    void lock() {
        while (photon::recursive_mutex::lock() != 0) {
            const int e = errno;
            if (!photon::detail::retryable(e)) detail::throw_errno(e, "photon_std::recursive_mutex::lock");
        }
    }
    bool try_lock() noexcept { return photon::recursive_mutex::try_lock() == 0; }
    using photon::recursive_mutex::unlock;

    template <class Rep, class Period>
    bool try_lock_for(const std::chrono::duration<Rep, Period>& d) {
        return try_lock_until(std::chrono::steady_clock::now() + d);
    }
    template <class Clock, class Duration>
    bool try_lock_until(const std::chrono::time_point<Clock, Duration>& t) {
        for (;;) {
            if (photon::recursive_mutex::lock(detail::to_us(t - Clock::now())) == 0) return true;
            const int e = errno;
            if (e == ETIMEDOUT) return false;
            if (!photon::detail::retryable(e)) detail::throw_errno(e, "photon_std::recursive_mutex::try_lock_until");
        }
    }
};

using recursive_timed_mutex = recursive_mutex;

/// std::condition_variable, used with unique_lock<photon_std::mutex>.
class condition_variable : public photon::condition_variable {
public:
    using native_handle_type = photon_cond*;
    constexpr condition_variable() noexcept {}

    void notify_one() noexcept { photon::condition_variable::notify_one(); }
    void notify_all() noexcept { photon::condition_variable::notify_all(); }

    void wait(unique_lock<mutex>& lock) { wait_us(lock, PHOTON_FOREVER); }
    template <class Predicate>
    void wait(unique_lock<mutex>& lock, Predicate stop_waiting) {
        while (!stop_waiting()) wait(lock);
    }

    template <class Rep, class Period>
    cv_status wait_for(unique_lock<mutex>& lock, const std::chrono::duration<Rep, Period>& d) {
        return wait_until(lock, std::chrono::steady_clock::now() + d);
    }
    template <class Rep, class Period, class Predicate>
    bool wait_for(unique_lock<mutex>& lock, const std::chrono::duration<Rep, Period>& d, Predicate stop_waiting) {
        return wait_until(lock, std::chrono::steady_clock::now() + d, std::move(stop_waiting));
    }

    template <class Clock, class Duration>
    cv_status wait_until(unique_lock<mutex>& lock, const std::chrono::time_point<Clock, Duration>& t) {
        const uint64_t us = detail::to_us(t - Clock::now());
        if (us == 0) return cv_status::timeout;
        if (wait_us(lock, us)) return cv_status::no_timeout;
        return Clock::now() < t ? cv_status::no_timeout : cv_status::timeout;
    }
    template <class Clock, class Duration, class Predicate>
    bool wait_until(unique_lock<mutex>& lock, const std::chrono::time_point<Clock, Duration>& t,
                    Predicate stop_waiting) {
        while (!stop_waiting()) {
            if (wait_until(lock, t) == cv_status::timeout) return stop_waiting();
        }
        return true;
    }

private:
    /// Waits up to `us`: true if woken (an interrupt counts as a spurious
    /// wake-up), false on timeout; throws on cancellation and misuse.
    bool wait_us(unique_lock<mutex>& lock, uint64_t us) {
        if (!lock.owns_lock()) detail::throw_errno(EPERM, "photon_std::condition_variable::wait: lock not held");
        photon_cond* c = native_handle();
        if (c == nullptr) detail::throw_errno(ENOMEM, "photon_std::condition_variable");
        if (photon_cond_wait(c, lock.mutex()->native_handle(), us) == 0) return true;
        const int e = errno;
        if (e == ETIMEDOUT) return false;
        if (!photon::detail::retryable(e)) detail::throw_errno(e, "photon_std::condition_variable::wait");
        return true;
    }
};

namespace this_thread {

/// Lets the other photon threads of this vcpu run once.
__attribute__((always_inline)) inline void yield() noexcept { photon_thread_yield(); }

/// The calling photon thread (nullptr off a vcpu).
inline thread::id get_id() noexcept { return photon::CURRENT; }

/// Sleeps the calling photon thread (an interrupt ends it early); off a
/// vcpu, std::this_thread::sleep_for.
template <class Rep, class Period>
void sleep_for(const std::chrono::duration<Rep, Period>& d) {
    if (photon_thread_usleep(detail::to_us(d)) != 0 && errno == EPERM) std::this_thread::sleep_for(d);
}

/// Sleeps until `t` (an interrupt ends it early); off a vcpu,
/// std::this_thread::sleep_until.
template <class Clock, class Duration>
void sleep_until(const std::chrono::time_point<Clock, Duration>& t) {
    for (;;) {
        const auto now = Clock::now();
        if (!(now < t)) return;
        if (photon_thread_usleep(detail::to_us(t - now)) != 0) {
            if (errno == EPERM) std::this_thread::sleep_until(t);
            return;
        }
    }
}

/// Moves the calling photon thread to the next vcpu of the work pool.
/// Throws std::system_error: EPERM without a work pool, else the C API's errno.
inline void migrate() {
    photon::WorkPool* pool = detail::work_pool().load(std::memory_order_acquire);
    if (pool == nullptr) detail::throw_errno(EPERM, "photon_std::this_thread::migrate: no work pool");
    if (pool->thread_migrate() != 0) detail::throw_errno(errno, "photon_std::this_thread::migrate");
}

}  // namespace this_thread

/// Starts the work pool that photon_std::thread spreads new threads over:
/// `vcpu_num` (>= 1) vcpus on their own OS threads. Call it after
/// photon::init, from the main photon thread. Returns 0, or -1 with errno
/// (EINVAL, EALREADY, or the pool's).
inline int work_pool_init(int vcpu_num = 1,
                          int event_engine = static_cast<int>(photon::INIT_EVENT_DEFAULT & ~photon::INIT_EVENT_SIGNAL),
                          int io_engine = 0) {
    if (vcpu_num < 1) {
        errno = EINVAL;
        return -1;
    }
    if (detail::work_pool().load(std::memory_order_acquire) != nullptr) {
        errno = EALREADY;
        return -1;
    }
    photon::WorkPool* pool;
    try {
        pool = new photon::WorkPool(static_cast<size_t>(vcpu_num), event_engine, io_engine);
    } catch (const std::system_error& e) {
        errno = e.code().value();
        return -1;
    } catch (const std::bad_alloc&) {
        errno = ENOMEM;
        return -1;
    }
    photon::WorkPool* expected = nullptr;
    if (!detail::work_pool().compare_exchange_strong(expected, pool, std::memory_order_acq_rel)) {
        delete pool;
        errno = EALREADY;
        return -1;
    }
    return 0;
}

/// Ends the work pool: waits for the photon threads on it to end (those
/// blocked without a timeout are cancelled). Join your threads first.
/// Returns 0, or -1 with EINVAL if there is no pool.
inline int work_pool_fini() {
    photon::WorkPool* pool = detail::work_pool().exchange(nullptr, std::memory_order_acq_rel);
    if (pool == nullptr) {
        errno = EINVAL;
        return -1;
    }
    delete pool;
    return 0;
}

namespace detail {
template <class Body>
int run_on_vcpu(Body body) {
    if (photon::init(photon::INIT_EVENT_DEFAULT, photon::INIT_IO_NONE) != 0) {
        std::perror("photon::init");
        return 1;
    }
    const char* pool_env = std::getenv("PHOTON_STD_WORK_POOL");
    const int vcpus = pool_env != nullptr ? std::atoi(pool_env) : 0;
    if (vcpus > 0 && work_pool_init(vcpus) != 0) {
        std::perror("photon_std::work_pool_init");
        photon::fini();
        return 1;
    }
    const int ret = body();
    if (vcpus > 0) work_pool_fini();
    photon::fini();
    return ret;
}
}  // namespace detail

/// What a main ported by port-to-photon.sed runs: makes this OS thread a
/// vcpu (photon::init; the engine as PHOTON_ENGINE says), starts a work
/// pool of $PHOTON_STD_WORK_POOL vcpus if that is set and > 0 (so the
/// program's threads run in parallel), runs the program's own main as the
/// main photon thread, then ends both. A failure to start is reported on
/// stderr and returns 1.
inline int run_as_main(int (*main_fn)(int, char**), int argc, char** argv) {
    return detail::run_on_vcpu([&] { return main_fn(argc, argv); });
}
inline int run_as_main(int (*main_fn)(), int argc, char** argv) {
    (void)argc;
    (void)argv;
    return detail::run_on_vcpu([&] { return main_fn(); });
}

}  // namespace photon_std

// What PhotonLibOS's photon_std lacks: shared_mutex, condition_variable_any,
// call_once.
#include <photon/thread/detail/std_compat_extras.h>

#endif  // PHOTON_CPP_THREAD_STD_COMPAT_H
