// photon/thread/detail/escape.h: what happens to an exception that escapes
// the entry of a photon thread started from C++. Internal to the wrapper.
//
// Every thread the wrapper starts runs its entry inside a noexcept
// trampoline whose catch (...) hands the exception here:
// - a joinable thread (photon_thread_joinable says so, whichever way it was
//   made joinable) keeps it for its joiner, whose join() rethrows it;
// - a detached thread terminates the process with a message naming the
//   thread and the exception (as an exception escaping a std::thread does),
//   except a std::system_error(ECANCELED) (see is_cancellation), which is
//   how the photon_std calls report that photon_fini or a work pool's end
//   cancelled a thread blocked in them: that thread just ends.
//
// For threads joined with photon::thread_join (the C-style and thread11
// threads), the trampoline asks photon_thread_joinable and, for a joinable
// thread, keeps the exception in join_registry; thread_join (or a detach
// through photon::thread_enable_join(th, false)) takes it back.
// photon_std::thread keeps its own state and does not use the registry.
#ifndef PHOTON_CPP_THREAD_DETAIL_ESCAPE_H
#define PHOTON_CPP_THREAD_DETAIL_ESCAPE_H

#include <photon.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <system_error>
#include <unordered_map>

namespace photon {
namespace detail {

/// A lock for a few instructions, never held across a switch.
class tiny_spinlock {
public:
    void lock() noexcept {
        while (m_flag.exchange(true, std::memory_order_acquire)) {
            while (m_flag.load(std::memory_order_relaxed)) {
#if defined(__x86_64__) || defined(__i386__)
                __builtin_ia32_pause();
#elif defined(__aarch64__)
                asm volatile("yield" ::: "memory");
#endif
            }
        }
    }
    void unlock() noexcept { m_flag.store(false, std::memory_order_release); }

private:
    std::atomic<bool> m_flag{false};
};

/// What a trampoline returns in place of its entry's value when the entry
/// threw and the exception waits in the registry: an address no entry can
/// return by accident.
inline void* exception_sentinel() noexcept {
    static char sentinel;
    return &sentinel;
}

/// The exceptions that escaped joinable threads, each kept for the thread's
/// joiner, process-wide, in 32 stripes keyed by handle.
class join_registry {
public:
    static join_registry& get() {
        static join_registry* r = new join_registry;  // never destroyed: threads may outlive main
        return *r;
    }
    /// Forgets `th`; returns the exception its entry threw, if any.
    std::exception_ptr remove(photon_thread* th) noexcept {
        stripe& s = of(th);
        std::exception_ptr e;
        s.lock.lock();
        auto it = s.map.find(th);
        if (it != s.map.end()) {
            e = std::move(it->second);
            s.map.erase(it);
        }
        s.lock.unlock();
        return e;
    }
    /// Keeps `e` for the joiner of `th` (the calling thread, in its
    /// trampoline) if `th` is joinable. False if it is not (or the registry
    /// cannot grow): the caller then handles `e` as a detached thread's.
    bool stash(photon_thread* th, const std::exception_ptr& e) noexcept {
        if (photon_thread_joinable(th) != 1) return false;
        stripe& s = of(th);
        s.lock.lock();
        bool kept = false;
        try {
            s.map[th] = e;
            kept = true;
        } catch (...) {
        }
        s.lock.unlock();
        if (!kept) return false;
        // Detached meanwhile (photon::thread_enable_join(th, false) from
        // another vcpu): whoever removes the exception reports it. If that
        // detach took it already, nobody will join: return as kept.
        if (photon_thread_joinable(th) != 1) return !remove(th);
        return true;
    }

private:
    struct stripe {
        tiny_spinlock lock;
        std::unordered_map<photon_thread*, std::exception_ptr> map;
    };
    stripe& of(photon_thread* th) noexcept {
        const uintptr_t h = reinterpret_cast<uintptr_t>(th);
        return m_stripes[(h ^ (h >> 5) ^ (h >> 32)) % kStripes];
    }
    static constexpr size_t kStripes = 32;
    stripe m_stripes[kStripes];
};

/// True for a std::system_error carrying ECANCELED: a photon_std call
/// cancelled by photon_fini or by the end of a work pool.
inline bool is_cancellation(const std::exception_ptr& e) noexcept {
    try {
        std::rethrow_exception(e);
    } catch (const std::system_error& x) {
        return x.code().value() == ECANCELED &&
               (x.code().category() == std::generic_category() || x.code().category() == std::system_category());
    } catch (...) {
        return false;
    }
}

/// Ends the process because `e` escaped the detached thread `th` (`who`
/// says what kind of thread it is), saying so on stderr first. A cancellation just returns.
inline void detached_thread_escape(const std::exception_ptr& e, const char* who, photon_thread* th) noexcept {
    if (is_cancellation(e)) return;
    try {
        std::rethrow_exception(e);
    } catch (const std::exception& x) {
        std::fprintf(stderr,
                     "photon: an exception escaped photon thread %p, which nobody will join (%s): %s; terminating\n",
                     static_cast<void*>(th), who, x.what());
    } catch (...) {
        std::fprintf(stderr,
                     "photon: an exception (not a std::exception) escaped photon thread %p, which nobody will "
                     "join (%s); terminating\n",
                     static_cast<void*>(th), who);
    }
    std::fflush(stderr);
    std::terminate();
}

/// The catch (...) of a registry-tracked trampoline: returns the sentinel
/// after stashing the exception for the joiner, or terminates (see above).
inline void* escaped_from_thread(std::exception_ptr e, const char* who) noexcept {
    photon_thread* self = photon_thread_self();
    if (join_registry::get().stash(self, e)) return exception_sentinel();
    detached_thread_escape(e, who, self);
    return nullptr;
}

}  // namespace detail
}  // namespace photon

#endif  // PHOTON_CPP_THREAD_DETAIL_ESCAPE_H
