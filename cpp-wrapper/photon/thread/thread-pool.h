// photon/thread/thread-pool.h: PhotonLibOS's ThreadPoolBase / ThreadPool,
// whose threads can be joined through a TPControl.
//
// libphoton already reuses its threads' stacks, so a pool here starts a
// fresh photon thread per call (no thread is kept parked); `capacity` is
// accepted and not enforced, and a pool's threads run on the creator's
// vcpu. thread_create_ex(.., joinable = true) returns a control to join()
// exactly once; otherwise the control is freed when the thread ends.
#ifndef PHOTON_CPP_THREAD_THREAD_POOL_H
#define PHOTON_CPP_THREAD_THREAD_POOL_H

#include <photon.h>
#include <photon/thread/thread.h>

#include <cerrno>
#include <exception>
#include <cstdint>
#include <new>

namespace photon {

class ThreadPoolBase;

/// One thread started by a pool: `th` is the thread.
struct TPControl {
    thread* th;
    ThreadPoolBase* pool;
    thread_entry start;
    void* arg;
    bool joinable;
};

class ThreadPoolBase {
public:
    /// Starts `start(arg)` in a new photon thread (nullptr with errno on
    /// failure).
    thread* thread_create(thread_entry start, void* arg) {
        TPControl* c = thread_create_ex(start, arg, false);
        return c != nullptr ? c->th : nullptr;
    }

    /// Starts `start(arg)`; join the returned control with join() if
    /// `joinable`. nullptr with errno on failure.
    TPControl* thread_create_ex(thread_entry start, void* arg, bool joinable = false) {
        TPControl* c = new (std::nothrow) TPControl{nullptr, this, start, arg, joinable};
        if (c == nullptr) {
            errno = ENOMEM;
            return nullptr;
        }
        photon_thread* th = photon_thread_create(&run, c, detail::c_stack_size(m_stack_size));
        if (th == nullptr || (joinable && photon_thread_enable_join(th) != 0)) {
            const int e = errno;
            if (th == nullptr) delete c;  // (a started thread frees its control)
            errno = e;
            return nullptr;
        }
        c->th = detail::cpp_thread(th);
        return c;
    }

    /// Waits for a joinable thread of this pool to end, and frees `c`; if
    /// the thread's entry threw, rethrows that exception here.
    void join(TPControl* c) {
        if (c == nullptr || !c->joinable) return;
        photon_thread* th = detail::c_thread(c->th);
        while (photon_thread_join(th, nullptr) != 0 && errno != EINVAL && errno != ESRCH) {
        }
        delete c;
        std::exception_ptr e = detail::join_registry::get().remove(th);
        if (e) std::rethrow_exception(e);
    }

    static ThreadPoolBase* new_thread_pool(uint32_t capacity, uint64_t stack_size = DEFAULT_STACK_SIZE) {
        return new ThreadPoolBase(capacity, stack_size);
    }
    static void delete_thread_pool(ThreadPoolBase* p) { delete p; }

    /// No-ops: there are no parked threads to scale.
    void enable_autoscale() {}
    void disable_autoscale() {}

protected:
    ThreadPoolBase(uint32_t capacity, uint64_t stack_size) : m_capacity(capacity), m_stack_size(stack_size) {}
    ~ThreadPoolBase() = default;

    static void* run(void* p) noexcept {
        TPControl* c = static_cast<TPControl*>(p);
        const thread_entry start = c->start;
        void* const arg = c->arg;
        const bool joinable = c->joinable;
        if (!joinable) delete c;
        try {
            return start(arg);
        } catch (...) {
            return detail::escaped_from_thread(std::current_exception(), "started by a photon::ThreadPool");
        }
    }

    uint32_t m_capacity;
    uint64_t m_stack_size;
};

inline ThreadPoolBase* new_thread_pool(uint32_t capacity, uint64_t stack_size = DEFAULT_STACK_SIZE) {
    return ThreadPoolBase::new_thread_pool(capacity, stack_size);
}
inline void delete_thread_pool(ThreadPoolBase* p) { ThreadPoolBase::delete_thread_pool(p); }

/// PhotonLibOS's switch to bypass pools: every pool here is a bypass.
inline void set_bypass_threadpool(bool flag = true) { (void)flag; }

/// A pool with a fixed capacity, as a member or local object.
template <uint32_t CAPACITY>
class ThreadPool : public ThreadPoolBase {
public:
    explicit ThreadPool(uint64_t stack_size = DEFAULT_STACK_SIZE) : ThreadPoolBase(CAPACITY, stack_size) {}
    ~ThreadPool() = default;
};

}  // namespace photon

#endif  // PHOTON_CPP_THREAD_THREAD_POOL_H
