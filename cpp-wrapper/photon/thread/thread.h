// photon/thread/thread.h: photon threads (stackful coroutines) and their
// locks, as PhotonLibOS spells them, over libphoton's C API.
//
// Conventions, PhotonLibOS's: int functions return 0, or -1 with errno set
// (the C API's codes: ETIMEDOUT, the interrupter's errno, EPERM off a vcpu,
// ...). Every blocking call takes a photon::Timeout (microseconds; the
// default never expires; a plain uint64_t converts). The types are handles
// over the C objects: photon::thread* is the C API's photon_thread*
// (reinterpret_cast either way), and each lock owns one C lock, allocated on
// first use, so the constructors are constexpr and a lock may be a global.
//
// Threads started here run through a noexcept trampoline: an exception that
// escapes the entry is rethrown by thread_join() if the thread was made
// joinable with thread_enable_join(), else it terminates the process with a
// message (see photon/thread/detail/escape.h).
#ifndef PHOTON_CPP_THREAD_THREAD_H
#define PHOTON_CPP_THREAD_THREAD_H

#include <photon.h>
#include <photon/common/timeout.h>
#include <photon/thread/detail/escape.h>
#include <photon/thread/stack-allocator.h>

#include <cerrno>
#include <cstdint>
#include <exception>
#include <memory>
#include <new>
#include <type_traits>
#include <utility>

namespace photon {

/// A photon thread. Opaque: a photon::thread* is the C API's photon_thread*.
struct thread;
/// A joinable photon thread, as thread_enable_join() returns it. A thread*
/// cast to join_handle* is one too (PhotonLibOS code does that).
struct join_handle;
/// A vcpu (an OS thread running a photon scheduler). Opaque: the C API's
/// photon_vcpu*.
struct vcpu_base;

namespace detail {
inline photon_thread* c_thread(thread* th) noexcept { return reinterpret_cast<photon_thread*>(th); }
inline photon_thread* c_thread(join_handle* jh) noexcept { return reinterpret_cast<photon_thread*>(jh); }
inline thread* cpp_thread(photon_thread* th) noexcept { return reinterpret_cast<thread*>(th); }
}  // namespace detail

/// The type of photon::CURRENT: converts to the calling photon thread
/// (nullptr off a vcpu) each time `photon::CURRENT` itself is read. A copy
/// is a value: `auto th = photon::CURRENT;` keeps the thread that made the
/// copy (as PhotonLibOS's `thread* CURRENT` variable would).
struct current_thread_t {
    constexpr current_thread_t() noexcept : m_th(nullptr), m_live(true) {}
    current_thread_t(const current_thread_t& o) noexcept : m_th(o), m_live(false) {}
    current_thread_t& operator=(const current_thread_t& o) noexcept {
        m_th = o;
        m_live = false;
        return *this;
    }
    operator thread*() const noexcept { return m_live ? detail::cpp_thread(photon_thread_self()) : m_th; }
    thread* operator->() const noexcept { return *this; }

private:
    thread* m_th;
    bool m_live;
};
/// The calling photon thread (PhotonLibOS's `CURRENT`).
constexpr current_thread_t CURRENT{};

/// The type of photon::now: converts to photon_now_us() (monotonic
/// microseconds) each time `photon::now` itself is read. A copy is a value:
/// `auto t0 = photon::now;` keeps the time the copy was made, so
/// `photon::now - t0` is the time elapsed since.
struct now_clock_t {
    constexpr now_clock_t() noexcept : m_us(0), m_live(true) {}
    now_clock_t(const now_clock_t& o) noexcept : m_us(o), m_live(false) {}
    now_clock_t& operator=(const now_clock_t& o) noexcept {
        m_us = o;
        m_live = false;
        return *this;
    }
    operator uint64_t() const noexcept { return m_live ? photon_now_us() : m_us; }

private:
    uint64_t m_us;
    bool m_live;
};
/// Monotonic time in microseconds (PhotonLibOS's `now`; exact here, not a
/// coarse timestamp).
constexpr now_clock_t now{};

/// A C-style thread entry: its return value is what thread_join() returns.
typedef void* (*thread_entry)(void*);

/// The default stack: 8 MiB of address space, committed as it is touched.
constexpr uint64_t DEFAULT_STACK_SIZE = 8 * 1024 * 1024;

namespace detail {
struct c_start {
    thread_entry entry;
    void* arg;
};
inline void* c_trampoline(void* p) noexcept {
    const c_start start = *static_cast<c_start*>(p);
    delete static_cast<c_start*>(p);
    try {
        return start.entry(start.arg);
    } catch (...) {
        return escaped_from_thread(std::current_exception(), "started by photon::thread_create");
    }
}
/// `stack_size` as the C API takes it (0: its default).
inline size_t c_stack_size(uint64_t stack_size) noexcept {
    return stack_size == DEFAULT_STACK_SIZE ? 0 : static_cast<size_t>(stack_size);
}
}  // namespace detail

/// Creates a photon thread on the calling vcpu running `start(arg)` on a
/// stack of `stack_size` bytes; it first runs when the caller yields or
/// blocks. It starts detached: see thread_enable_join(). Returns nullptr
/// with errno (`EPERM` off a vcpu, `ENOMEM`, `EINVAL`) on failure.
/// (PhotonLibOS's `reserved_space` argument is not supported.)
inline thread* thread_create(thread_entry start, void* arg, uint64_t stack_size = DEFAULT_STACK_SIZE) {
    if (start == nullptr) {
        errno = EINVAL;
        return nullptr;
    }
    detail::c_start* s = new (std::nothrow) detail::c_start{start, arg};
    if (s == nullptr) {
        errno = ENOMEM;
        return nullptr;
    }
    photon_thread* th = photon_thread_create(&detail::c_trampoline, s, detail::c_stack_size(stack_size));
    if (th == nullptr) {
        const int e = errno;
        delete s;
        errno = e;
    }
    return detail::cpp_thread(th);
}

/// Makes `th` joinable (`flag` true) or detached again (`flag` false).
/// Make it joinable before it can end (before yielding, or migrating it),
/// then join it exactly once with thread_join(). Returns the join handle
/// (nullptr with errno on failure, and when `flag` is false). An exception
/// escaping a joinable thread goes to its joiner, whether it was made
/// joinable here or with the C API's photon_thread_enable_join.
inline join_handle* thread_enable_join(thread* th, bool flag = true) {
    photon_thread* c = detail::c_thread(th);
    if (!flag) {
        if (photon_thread_detach(c) != 0) return nullptr;
        std::exception_ptr e = detail::join_registry::get().remove(c);
        if (e) detail::detached_thread_escape(e, "detached by photon::thread_enable_join(th, false) after it threw", c);
        return nullptr;
    }
    if (photon_thread_enable_join(c) != 0) return nullptr;
    return reinterpret_cast<join_handle*>(th);
}

/// Whether `th` is joinable (made so and neither joined nor detached
/// since); false for a stale handle too. Callable from any OS thread.
inline bool thread_joinable(thread* th) noexcept { return photon_thread_joinable(detail::c_thread(th)) == 1; }

/// Waits for the joinable thread `jh` to end and returns its entry's return
/// value; if its entry threw, rethrows that exception here. On failure
/// returns nullptr with errno (`EINVAL` not joinable or joined already,
/// `ESRCH` stale, `EPERM` off a vcpu, the interrupter's errno if this
/// thread was interrupted: `jh` then stays joinable).
inline void* thread_join(join_handle* jh) {
    photon_thread* c = detail::c_thread(jh);
    void* retval = nullptr;
    if (photon_thread_join(c, &retval) != 0) return nullptr;
    std::exception_ptr e = detail::join_registry::get().remove(c);
    if (retval == detail::exception_sentinel() && e) std::rethrow_exception(e);
    return retval;
}

/// Lets every other runnable photon thread of this vcpu run once.
__attribute__((always_inline)) inline void thread_yield() noexcept { photon_thread_yield(); }

/// Sleeps `useconds` microseconds (-1UL: until interrupted) while other
/// threads run. Returns 0 after sleeping fully, or -1 with the
/// interrupter's errno (`EPERM` off a vcpu).
inline int thread_usleep(uint64_t useconds) noexcept { return photon_thread_usleep(useconds); }

/// Sleeps until `timeout` expires (see thread_usleep(uint64_t)).
inline int thread_usleep(Timeout timeout) noexcept { return photon_thread_usleep(timeout.timeout()); }

/// Sleeps `seconds` seconds (see thread_usleep).
inline int thread_sleep(uint64_t seconds) noexcept {
    return seconds >= PHOTON_FOREVER / 1000000 ? photon_thread_usleep(PHOTON_FOREVER)
                                               : photon_thread_usleep(seconds * 1000000);
}

/// Sleeps until interrupted.
inline void thread_suspend() noexcept { photon_thread_usleep(PHOTON_FOREVER); }

/// Interrupts `th`: its current or next blocking call fails with
/// `error_number` (> 0) as errno. Callable from any OS thread. Returns 0, or
/// -1 with `ESRCH` (ended) or `EINVAL`.
inline int thread_interrupt(thread* th, int error_number = EINTR) noexcept {
    return photon_thread_interrupt(detail::c_thread(th), error_number);
}

/// The vcpu the calling thread runs on. Only `th` == CURRENT is supported
/// (the C API cannot tell another thread's vcpu): otherwise nullptr with
/// errno `ENOSYS`.
inline vcpu_base* get_vcpu(thread* th = CURRENT) noexcept {
    if (th != static_cast<thread*>(CURRENT)) {
        errno = ENOSYS;
        return nullptr;
    }
    return reinterpret_cast<vcpu_base*>(photon_vcpu_current());
}

/// Moves `th` (the caller, or a runnable thread of the caller's vcpu) to
/// `vcpu`. Returns 0, or -1 with errno (`EBUSY` if `th` is blocked).
inline int thread_migrate(thread* th, vcpu_base* vcpu) noexcept {
    return photon_thread_migrate(detail::c_thread(th), reinterpret_cast<photon_vcpu*>(vcpu));
}


/// Makes the calling OS thread a vcpu (PhotonLibOS's scheduler-only init;
/// here it also starts the event engine PHOTON_ENGINE names, io_uring when
/// usable else epoll, so a later fd_events_init() has nothing to do).
/// `flags` is ignored. Returns 0, or -1 with errno (`EALREADY` if it is one).
inline int vcpu_init(uint64_t flags = 0) noexcept {
    (void)flags;
    return photon_init(PHOTON_EVENT_DEFAULT, 0);
}

/// Ends the calling vcpu (photon_fini: waits for its threads; those blocked
/// without a timeout are cancelled with ECANCELED).
inline int vcpu_fini() noexcept { return photon_fini(); }

/// A function thread_usleep_defer() runs once the caller sleeps.
typedef void (*defer_func)(void*);

namespace detail {
struct usleep_defer_start {
    defer_func fn;
    void* arg;
};
inline void* usleep_defer_trampoline(void* p) noexcept {
    const usleep_defer_start s = *static_cast<usleep_defer_start*>(p);
    delete static_cast<usleep_defer_start*>(p);
    s.fn(s.arg);
    return nullptr;
}
}  // namespace detail

/// Sleeps like thread_usleep(), and once the caller is asleep runs
/// `defer(defer_arg)` in another photon thread of this vcpu (so the defer
/// may wake the sleeper, e.g. unlock what it waits on, without missing the
/// wake-up). The defer must not block. Returns as thread_usleep does, or -1
/// with errno (`ENOMEM`, `EPERM` off a vcpu) without sleeping, having run
/// nothing.
inline int thread_usleep_defer(Timeout timeout, defer_func defer, void* defer_arg = nullptr) noexcept {
    if (defer == nullptr) return photon_thread_usleep(timeout.timeout());
    detail::usleep_defer_start* s = new (std::nothrow) detail::usleep_defer_start{defer, defer_arg};
    if (s == nullptr) {
        errno = ENOMEM;
        return -1;
    }
    // A new thread first runs when its creator blocks: after the sleep began.
    if (photon_thread_create(&detail::usleep_defer_trampoline, s, 64 * 1024) == nullptr) {
        const int e = errno;
        delete s;
        errno = e;
        return -1;
    }
    return photon_thread_usleep(timeout.timeout());
}

/// Yields, letting `th` run soon. The C API cannot pick which thread runs
/// next, so every runnable thread of this vcpu runs once (as
/// thread_yield()); returns 0 (-1 with `EINVAL` for a null `th`).
inline int thread_yield_to(thread* th) noexcept {
    if (th == nullptr) {
        errno = EINVAL;
        return -1;
    }
    photon_thread_yield();
    return 0;
}

namespace detail {
template <typename F>
void call_defer_callable(void* f) {
    (*static_cast<F*>(f))();
}
}  // namespace detail

/// thread_usleep_defer() with a callable (a lambda) as the defer, as
/// PhotonLibOS's TempDelegate form: the callable is referenced, not copied,
/// so it must outlive the sleep (a temporary in the call does).
template <typename F, typename std::enable_if<!std::is_convertible<F, defer_func>::value, int>::type = 0,
          typename = decltype(std::declval<F&>()())>
inline int thread_usleep_defer(Timeout timeout, F&& defer) noexcept {
    using callable = typename std::remove_reference<F>::type;
    return thread_usleep_defer(timeout, &detail::call_defer_callable<callable>,
                               const_cast<void*>(static_cast<const void*>(&defer)));
}

/// Starts `n` joinable photon threads running `start(arg)` and joins them
/// all. Returns how many were started (fewer than `n` if a creation failed,
/// errno then says why).
inline uint64_t threads_create_join(uint64_t n, thread_entry start, void* arg,
                                    uint64_t stack_size = DEFAULT_STACK_SIZE) {
    if (n == 0) return 0;
    std::unique_ptr<join_handle*[]> handles(new join_handle*[n]);
    uint64_t created = 0;
    for (; created < n; ++created) {
        thread* th = thread_create(start, arg, stack_size);
        if (th == nullptr) break;
        handles[created] = thread_enable_join(th);
        if (handles[created] == nullptr) break;
    }
    const int e = errno;
    for (uint64_t i = 0; i < created; ++i) thread_join(handles[i]);
    errno = e;
    return created;
}

}  // namespace photon

#include <photon/thread/detail/locks.h>

#endif  // PHOTON_CPP_THREAD_THREAD_H
