// photon/thread/detail/locks.h: the locks of <photon/thread/thread.h>
// (include that header, not this one). Coroutine-blocking, correct across
// vcpus, each over one C lock of libphoton allocated on first use.
#ifndef PHOTON_CPP_THREAD_DETAIL_LOCKS_H
#define PHOTON_CPP_THREAD_DETAIL_LOCKS_H

#include <photon.h>
#include <photon/common/timeout.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <type_traits>
#include <utility>

namespace photon {

class mutex;
class condition_variable;

namespace detail {

/// One C lock, allocated on first use (so the owner's constructor is
/// constexpr) and freed with the owner. `Traits` names the C functions.
template <class Traits>
class lazy_c_lock {
public:
    using type = typename Traits::type;
    constexpr lazy_c_lock() noexcept {}
    constexpr explicit lazy_c_lock(uint64_t arg) noexcept : m_arg(arg) {}
    lazy_c_lock(const lazy_c_lock&) = delete;
    lazy_c_lock& operator=(const lazy_c_lock&) = delete;
    // A lock still held or waited on is leaked, not freed (the C _free
    // refuses with EBUSY); destroying it so is undefined in std:: too.
    ~lazy_c_lock() { Traits::destroy(m_ptr.load(std::memory_order_acquire)); }

    /// The C lock, allocated now if need be; nullptr (errno ENOMEM) if that fails.
    type* get() noexcept {
        type* p = m_ptr.load(std::memory_order_acquire);
        return p != nullptr ? p : allocate();
    }
    /// The C lock if allocated, else nullptr.
    __attribute__((always_inline)) type* peek() const noexcept { return m_ptr.load(std::memory_order_acquire); }

private:
    __attribute__((noinline)) type* allocate() noexcept {
        type* fresh = Traits::create(m_arg);
        if (fresh == nullptr) {
            errno = ENOMEM;
            return nullptr;
        }
        type* expected = nullptr;
        if (m_ptr.compare_exchange_strong(expected, fresh, std::memory_order_acq_rel, std::memory_order_acquire))
            return fresh;
        Traits::destroy(fresh);  // another thread won the race
        return expected;
    }
    std::atomic<type*> m_ptr{nullptr};
    uint64_t m_arg = 0;
};

struct mutex_traits {
    using type = photon_mutex;
    static type* create(uint64_t) noexcept { return photon_mutex_new(); }
    static void destroy(type* p) noexcept { photon_mutex_free(p); }
};
struct cond_traits {
    using type = photon_cond;
    static type* create(uint64_t) noexcept { return photon_cond_new(); }
    static void destroy(type* p) noexcept { photon_cond_free(p); }
};
struct sem_traits {
    using type = photon_sem;
    static type* create(uint64_t count) noexcept { return photon_sem_new(count); }
    static void destroy(type* p) noexcept { photon_sem_free(p); }
};
struct rwlock_traits {
    using type = photon_rwlock;
    static type* create(uint64_t) noexcept { return photon_rwlock_new(); }
    static void destroy(type* p) noexcept { photon_rwlock_free(p); }
};

/// True if a blocking call that failed with `e` was merely interrupted (by
/// photon::thread_interrupt with a code of the caller's choosing) and may be
/// retried by the calls that PhotonLibOS makes uninterruptible; false for
/// timeouts, cancellation (ECANCELED from photon_fini or a work pool's end,
/// ESHUTDOWN) and misuse.
inline bool retryable(int e) noexcept {
    switch (e) {
        case ETIMEDOUT:
        case ECANCELED:
        case ESHUTDOWN:
        case EINVAL:
        case EPERM:
        case ENOMEM:
        case EDEADLK:
        case EOVERFLOW:
        case ENOTRECOVERABLE:
            return false;
        default:
            return true;
    }
}

}  // namespace detail

/// A lock that spins (never sleeps): for a few instructions' worth of
/// critical section with no blocking call inside. Returns 0 / -1 as
/// PhotonLibOS's does (so try_lock() returns 0 on success).
class spinlock {
public:
    constexpr spinlock() noexcept {}
    spinlock(const spinlock&) = delete;
    spinlock& operator=(const spinlock&) = delete;
    int lock() noexcept {
        while (m_locked.exchange(true, std::memory_order_acquire)) {
            while (m_locked.load(std::memory_order_relaxed)) {
#if defined(__x86_64__) || defined(__i386__)
                __builtin_ia32_pause();
#elif defined(__aarch64__)
                asm volatile("isb" ::: "memory");
#endif
            }
        }
        return 0;
    }
    int try_lock() noexcept {
        return !m_locked.load(std::memory_order_relaxed) && !m_locked.exchange(true, std::memory_order_acquire)
                   ? 0
                   : -1;
    }
    void unlock() noexcept { m_locked.store(false, std::memory_order_release); }
    /// Whether someone holds it (a snapshot).
    bool locked() const noexcept { return m_locked.load(std::memory_order_acquire); }

private:
    std::atomic<bool> m_locked{false};
};

/// PhotonLibOS's queued spinlock, here the same test-and-test-and-set lock
/// as spinlock (same interface: lock, try_lock, unlock, locked).
class qspinlock : public spinlock {
public:
    constexpr qspinlock() noexcept {}
};

/// PhotonLibOS's ticket spinlock, here the same lock as spinlock.
class ticket_spinlock : public spinlock {
public:
    constexpr ticket_spinlock() noexcept {}
};

/// A coroutine mutex (non-recursive): lock() blocks only the calling photon
/// thread. Works across vcpus; hands the lock to a waiter that has waited
/// long (no starvation). Off a vcpu every call fails with EPERM.
class mutex {
public:
    constexpr mutex() noexcept {}
    /// PhotonLibOS's retry count is accepted and ignored.
    constexpr explicit mutex(uint16_t max_retries) noexcept { (void)max_retries; }
    mutex(const mutex&) = delete;
    mutex& operator=(const mutex&) = delete;

    // The fast paths hand the C calls the C mutex as it is, NULL before
    // its first use: the C API rejects NULL with EINVAL, and only then is it
    // allocated (and the call made again), so a lock costs what the C call
    // costs. (A genuine EINVAL just fails twice.)

    /// Locks, waiting until `timeout`. 0, or -1 with errno: ETIMEDOUT, the
    /// interrupter's errno, EDEADLK (the caller holds it), EPERM.
    __attribute__((always_inline)) int lock(Timeout timeout = {}) noexcept {
        return photon_mutex_lock(m_lock.peek(), timeout.timeout()) == 0 ? 0 : lock_failed(timeout);
    }
    /// Locks if free: 0, else -1 with EBUSY.
    int try_lock() noexcept {
        if (photon_mutex_trylock(m_lock.peek()) == 0) return 0;
        if (errno != EINVAL) return -1;
        photon_mutex* m = m_lock.get();
        return m != nullptr ? photon_mutex_trylock(m) : -1;
    }
    /// Unlocks, waking the longest waiter. Unlocking a mutex the caller
    /// does not hold does nothing (the C call fails with EINVAL).
    __attribute__((always_inline)) void unlock() noexcept { photon_mutex_unlock(m_lock.peek()); }
    /// The C mutex (allocated now if need be; nullptr if that fails).
    photon_mutex* native_handle() noexcept { return m_lock.get(); }

protected:
    /// The C mutex, or nullptr if it has not been allocated yet.
    __attribute__((always_inline)) photon_mutex* allocated_handle() const noexcept { return m_lock.peek(); }

private:
    /// After a failed lock: allocate the C mutex and lock again if it was
    /// not allocated (EINVAL); else the failure stands.
    __attribute__((noinline)) int lock_failed(Timeout timeout) noexcept {
        if (errno != EINVAL) return -1;
        photon_mutex* m = m_lock.get();
        return m != nullptr ? photon_mutex_lock(m, timeout.timeout()) : -1;
    }
    detail::lazy_c_lock<detail::mutex_traits> m_lock;
};

/// PhotonLibOS's FIFO mutex. libphoton's mutex already serves waiters in
/// arrival order (a running thread may take a just-released lock first,
/// but a waiter older than 1 ms is handed it), so this is that mutex.
class seq_mutex : public mutex {
public:
    constexpr seq_mutex() noexcept {}
};

/// A mutex its owner may lock again (unlock as many times).
class recursive_mutex {
public:
    constexpr recursive_mutex() noexcept {}
    constexpr explicit recursive_mutex(uint16_t max_retries) noexcept { (void)max_retries; }
    recursive_mutex(const recursive_mutex&) = delete;
    recursive_mutex& operator=(const recursive_mutex&) = delete;

    int lock(Timeout timeout = {}) noexcept {
        photon_thread* me = photon_thread_self();
        if (me != nullptr && m_owner.load(std::memory_order_relaxed) == me) {
            ++m_depth;
            return 0;
        }
        if (m_mutex.lock(timeout) != 0) return -1;
        m_owner.store(me, std::memory_order_relaxed);
        m_depth = 1;
        return 0;
    }
    int try_lock() noexcept {
        photon_thread* me = photon_thread_self();
        if (me != nullptr && m_owner.load(std::memory_order_relaxed) == me) {
            ++m_depth;
            return 0;
        }
        if (m_mutex.try_lock() != 0) return -1;
        m_owner.store(me, std::memory_order_relaxed);
        m_depth = 1;
        return 0;
    }
    /// Undoes one lock(); does nothing if the caller is not the owner.
    void unlock() noexcept {
        if (m_owner.load(std::memory_order_relaxed) != photon_thread_self()) return;
        if (--m_depth == 0) {
            m_owner.store(nullptr, std::memory_order_relaxed);
            m_mutex.unlock();
        }
    }

private:
    mutex m_mutex;
    std::atomic<photon_thread*> m_owner{nullptr};
    uint32_t m_depth = 0;
};

/// Locks a mutex (any type with lock()/unlock() returning PhotonLibOS-style
/// ints) for a scope. `do_lock` > 0: lock in the constructor; > 1: and keep
/// retrying while the lock is merely interrupted (a timeout-free lock can
/// then fail only by cancellation or misuse, leaving locked() false).
template <class M>
class locker {
public:
    explicit locker(M* mutex, uint64_t do_lock = 2) : m_mutex(mutex), m_locked(false) {
        if (do_lock > 0) lock(do_lock > 1);
    }
    explicit locker(M& mutex, uint64_t do_lock = 2) : locker(&mutex, do_lock) {}
    locker(locker&& rhs) noexcept : m_mutex(rhs.m_mutex), m_locked(rhs.m_locked) {
        rhs.m_mutex = nullptr;
        rhs.m_locked = false;
    }
    locker(const locker&) = delete;
    locker& operator=(const locker&) = delete;
    locker& operator=(locker&&) = delete;
    ~locker() {
        if (m_locked) m_mutex->unlock();
    }

    /// Locks; with `must_lock`, retries while merely interrupted.
    int lock(bool must_lock = true) {
        int ret;
        do {
            ret = m_mutex->lock();
            m_locked = ret == 0;
        } while (!m_locked && must_lock && detail::retryable(errno));
        return ret;
    }
    int try_lock() {
        const int ret = m_mutex->try_lock();
        m_locked = ret == 0;
        return ret;
    }
    void unlock() {
        if (m_locked) {
            m_mutex->unlock();
            m_locked = false;
        }
    }
    bool locked() const noexcept { return m_locked; }
    operator bool() const noexcept { return m_locked; }

    M* m_mutex;  // public, as in PhotonLibOS
    bool m_locked;
};

/// The usual locker.
using scoped_lock = locker<mutex>;

namespace detail {
template <class T>
locker<typename std::remove_pointer<typename std::decay<T>::type>::type> make_locker(T&& m, uint64_t do_lock,
                                                                                     std::true_type) {
    return locker<typename std::remove_pointer<typename std::decay<T>::type>::type>(m, do_lock);
}
template <class T>
locker<typename std::remove_reference<T>::type> make_locker(T&& m, uint64_t do_lock, std::false_type) {
    return locker<typename std::remove_reference<T>::type>(&m, do_lock);
}
}  // namespace detail

/// A locker for `m`, a lock or a pointer to one (what SCOPED_LOCK declares).
template <class T>
auto make_locker(T&& m, uint64_t do_lock = 2)
    -> decltype(detail::make_locker(std::forward<T>(m), do_lock, std::is_pointer<typename std::decay<T>::type>())) {
    return detail::make_locker(std::forward<T>(m), do_lock, std::is_pointer<typename std::decay<T>::type>());
}

/// A condition variable used with photon::mutex (or a scoped_lock on one).
/// wait() fails with -1 and errno ETIMEDOUT or the interrupter's errno; the
/// mutex is held again on return, whatever the result.
class condition_variable {
public:
    constexpr condition_variable() noexcept {}
    condition_variable(const condition_variable&) = delete;
    condition_variable& operator=(const condition_variable&) = delete;

    int wait(mutex* m, Timeout timeout = {}) noexcept {
        photon_cond* c = m_cond.get();
        if (c == nullptr) return -1;
        return photon_cond_wait(c, m != nullptr ? m->native_handle() : nullptr, timeout.timeout());
    }
    int wait(mutex& m, Timeout timeout = {}) noexcept { return wait(&m, timeout); }
    int wait(scoped_lock& lock, Timeout timeout = {}) noexcept { return wait(lock.m_mutex, timeout); }

    /// Waits until `pred()` holds (checked first), `timeout` expires
    /// (-1, ETIMEDOUT) or the thread is interrupted (-1, its errno).
    template <class LOCK, class PRED, class = decltype(std::declval<PRED&>()())>
    int wait(LOCK&& lock, PRED&& pred, Timeout timeout = {}) {
        while (!pred()) {
            if (timeout.expired()) {
                errno = ETIMEDOUT;
                return -1;
            }
            if (wait(lock, timeout) != 0) {
                const int e = errno;
                if (e == ETIMEDOUT && pred()) return 0;
                errno = e;
                return -1;
            }
        }
        return 0;
    }

    /// Waits for a notify without a lock of the caller's (a notify that
    /// comes before the wait is lost).
    int wait_no_lock(Timeout timeout = {}) noexcept {
        photon_mutex* inner = m_inner.get();
        if (inner == nullptr || photon_mutex_lock(inner, PHOTON_FOREVER) != 0) return -1;
        photon_cond* c = m_cond.get();
        const int ret = c != nullptr ? photon_cond_wait(c, inner, timeout.timeout()) : -1;
        const int e = errno;
        photon_mutex_unlock(inner);
        errno = e;
        return ret;
    }
    template <class PRED, class = decltype(std::declval<PRED&>()())>
    int wait_no_lock(PRED&& pred, Timeout timeout = {}) {
        while (!pred()) {
            if (timeout.expired()) {
                errno = ETIMEDOUT;
                return -1;
            }
            if (wait_no_lock(timeout) != 0 && errno != ETIMEDOUT) return -1;
        }
        return 0;
    }

    /// Wakes the longest waiter, if any; callable from any OS thread.
    /// Returns 1 if it woke a thread, 0 if none was waiting (PhotonLibOS
    /// returns the woken thread, or nullptr: test it the same way).
    int notify_one() noexcept {
        photon_cond* c = m_cond.peek();
        return c != nullptr ? photon_cond_wake_one(c) : 0;
    }
    int signal() noexcept { return notify_one(); }
    /// Wakes every waiter; callable from any OS thread.
    int notify_all() noexcept {
        photon_cond* c = m_cond.peek();
        return c != nullptr ? photon_cond_notify_all(c) : 0;
    }
    int broadcast() noexcept { return notify_all(); }

    /// The C condition variable (allocated now if need be).
    photon_cond* native_handle() noexcept { return m_cond.get(); }

private:
    detail::lazy_c_lock<detail::cond_traits> m_cond;
    detail::lazy_c_lock<detail::mutex_traits> m_inner;  // for wait_no_lock only
};

/// A counting semaphore; waiters are served in arrival order.
class semaphore {
public:
    constexpr explicit semaphore(uint64_t count = 0) noexcept : m_sem(count), m_initial(count) {}
    semaphore(const semaphore&) = delete;
    semaphore& operator=(const semaphore&) = delete;

    /// Takes `count`, waiting until `timeout`; retried while merely
    /// interrupted (as PhotonLibOS's), so it fails only with ETIMEDOUT,
    /// ECANCELED/ESHUTDOWN or misuse.
    int wait(uint64_t count, Timeout timeout = {}) noexcept {
        int ret;
        do {
            ret = wait_interruptible(count, timeout);
        } while (ret != 0 && detail::retryable(errno));
        return ret;
    }
    /// Takes `count`, waiting until `timeout`; an interrupt ends the wait.
    int wait_interruptible(uint64_t count, Timeout timeout = {}) noexcept {
        photon_sem* s = m_sem.get();
        return s != nullptr ? photon_sem_wait(s, count, timeout.timeout()) : -1;
    }
    /// Adds `count`, waking waiters whose requests now fit; callable from
    /// any OS thread.
    int signal(uint64_t count) noexcept {
        if (count == 0) return 0;
        photon_sem* s = m_sem.get();
        return s != nullptr ? photon_sem_signal(s, count) : -1;
    }
    /// The count now (a snapshot); callable from any OS thread. A semaphore
    /// never used holds the count it was constructed with.
    uint64_t count() const noexcept {
        photon_sem* s = m_sem.peek();
        uint64_t n = 0;
        if (s == nullptr) return m_initial;
        return photon_sem_count(s, &n) == 0 ? n : 0;
    }
    photon_sem* native_handle() noexcept { return m_sem.get(); }

private:
    detail::lazy_c_lock<detail::sem_traits> m_sem;
    uint64_t m_initial;
};

/// rwlock modes.
constexpr int RLOCK = 0x1000;
constexpr int WLOCK = 0x2000;

/// A reader-writer lock (phase-fair: neither side starves).
class rwlock {
public:
    constexpr rwlock() noexcept {}
    rwlock(const rwlock&) = delete;
    rwlock& operator=(const rwlock&) = delete;

    /// Takes it in `mode` (RLOCK or WLOCK, else EINVAL), waiting until `timeout`.
    int lock(int mode, Timeout timeout = {}) noexcept {
        if (mode != RLOCK && mode != WLOCK) {
            errno = EINVAL;
            return -1;
        }
        photon_rwlock* l = m_lock.get();
        if (l == nullptr) return -1;
        return mode == RLOCK ? photon_rwlock_rdlock(l, timeout.timeout()) : photon_rwlock_wrlock(l, timeout.timeout());
    }
    /// Takes it in `mode` (RLOCK or WLOCK, else EINVAL) if that needs no
    /// wait, else -1 with EBUSY at once (no yield; a reader is refused while
    /// a writer waits).
    int try_lock(int mode) noexcept {
        if (mode != RLOCK && mode != WLOCK) {
            errno = EINVAL;
            return -1;
        }
        photon_rwlock* l = m_lock.get();
        if (l == nullptr) return -1;
        return mode == RLOCK ? photon_rwlock_tryrdlock(l) : photon_rwlock_trywrlock(l);
    }
    /// Releases the caller's write lock, or one read lock.
    int unlock() noexcept {
        photon_rwlock* l = m_lock.peek();
        if (l == nullptr) {
            errno = EINVAL;
            return -1;
        }
        return photon_rwlock_unlock(l);
    }
    photon_rwlock* native_handle() noexcept { return m_lock.get(); }

private:
    detail::lazy_c_lock<detail::rwlock_traits> m_lock;
};

/// Holds an rwlock in one mode for a scope.
class scoped_rwlock {
public:
    scoped_rwlock(rwlock& l, int mode) : m_rwlock(&l), m_locked(l.lock(mode) == 0) {}
    scoped_rwlock(const scoped_rwlock&) = delete;
    scoped_rwlock& operator=(const scoped_rwlock&) = delete;
    ~scoped_rwlock() {
        if (m_locked) m_rwlock->unlock();
    }
    /// Takes it in `mode`; with `must_lock`, retries while merely interrupted.
    int lock(int mode, bool must_lock = true) {
        int ret;
        do {
            ret = m_rwlock->lock(mode);
            m_locked = ret == 0;
        } while (!m_locked && must_lock && detail::retryable(errno));
        return ret;
    }
    bool locked() const noexcept { return m_locked; }
    operator bool() const noexcept { return m_locked; }

private:
    rwlock* m_rwlock;
    bool m_locked;
};

}  // namespace photon

#define PHOTON_CPP_CONCAT_(a, b) a##b
#define PHOTON_CPP_CONCAT(a, b) PHOTON_CPP_CONCAT_(a, b)

#ifndef SCOPED_LOCK
/// Locks `x` (a lock or a pointer to one) until the end of the scope:
/// `SCOPED_LOCK(m);`, or `SCOPED_LOCK(m, do_lock)` (see photon::locker).
#define SCOPED_LOCK(...) auto PHOTON_CPP_CONCAT(photon_scoped_lock_, __COUNTER__) = ::photon::make_locker(__VA_ARGS__)
#endif

#ifndef WITH_LOCK
/// `WITH_LOCK(m) { ... }`: the block runs with `m` locked.
#define WITH_LOCK(m) if (auto photon_with_lock_ = ::photon::make_locker(m))
#endif

#endif  // PHOTON_CPP_THREAD_DETAIL_LOCKS_H
