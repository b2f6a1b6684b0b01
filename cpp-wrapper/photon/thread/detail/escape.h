// photon/thread/detail/escape.h: what happens to an exception that escapes
// the entry of a photon thread started from C++. Internal to the wrapper.
//
// Every thread the wrapper starts runs its entry inside a noexcept
// trampoline whose catch (...) hands the exception here:
// - a thread made joinable through the wrapper (photon::thread_enable_join,
//   photon_std::thread) keeps it for its joiner, whose join() rethrows it;
// - a detached thread terminates the process with a message naming the
//   thread and the exception (as an exception escaping a std::thread does),
//   except a std::system_error(ECANCELED) (see is_cancellation), which is
//   how the photon_std calls report that photon_fini or a work pool's end
//   cancelled a thread blocked in them: that thread just ends.
//
// For threads joined with photon::thread_join (the C-style and thread11
// threads), whether a thread is joinable is known only here: the wrapper's
// thread_enable_join records it in join_registry, the trampoline looks it
// up, and thread_join takes the exception back. The C API cannot say
// whether a thread is joinable (see cpp-wrapper/README.md). photon_std::thread
// keeps its own state and does not use the registry.
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

/// Threads made joinable through the wrapper, each with the exception its
/// entry threw (if any), process-wide, in 32 stripes keyed by handle.
class join_registry {
public:
    static join_registry& get() {
        static join_registry* r = new join_registry;  // never destroyed: threads may outlive main
        return *r;
    }
    /// Records `th` as joinable.
    void add(photon_thread* th) {
        stripe& s = of(th);
        s.lock.lock();
        try {
            s.map.emplace(th, std::exception_ptr());
        } catch (...) {
            s.lock.unlock();
            throw;
        }
        s.lock.unlock();
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
    /// Keeps `e` for `th`'s joiner if `th` is joinable; false if not.
    bool stash(photon_thread* th, std::exception_ptr e) noexcept {
        stripe& s = of(th);
        s.lock.lock();
        auto it = s.map.find(th);
        const bool joinable = it != s.map.end();
        if (joinable) it->second = std::move(e);
        s.lock.unlock();
        return joinable;
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
