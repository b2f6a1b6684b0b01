// photon/common/singleflight.h: photon::SingleFlight, Go's singleflight:
// among callers of Do() at the same time (photon threads on any vcpus, or
// OS threads), one runs the function and the others wait for it and get
// the same result (or the same exception).
//
//     static photon::SingleFlight sf;
//     int v = sf.Do([&] { return expensive_lookup(); });
#ifndef PHOTON_CPP_COMMON_SINGLEFLIGHT_H
#define PHOTON_CPP_COMMON_SINGLEFLIGHT_H

#include <photon.h>

#include <atomic>
#include <chrono>
#include <exception>
#include <mutex>
#include <new>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

namespace photon {

class SingleFlight {
public:
    SingleFlight() = default;
    SingleFlight(const SingleFlight&) = delete;
    SingleFlight& operator=(const SingleFlight&) = delete;

    /// Runs `func` unless a call is in flight, in which case waits for that
    /// call and returns its result. `use_sem` (PhotonLibOS's choice of how
    /// waiters sleep) is accepted: waiters always sleep on a photon
    /// semaphore when they are photon threads, else poll every 100 us.
    template <typename Func, typename R = decltype(std::declval<Func&>()())>
    R Do(Func&& func, bool use_sem = false) {
        (void)use_sem;
        return run<R>(func, std::is_void<R>());
    }

private:
    struct waiter {
        void* out;  // where the leader constructs the result (an R)
        photon_sem* sem;
        std::exception_ptr exc;
        std::atomic<bool> done{false};
    };

    template <typename R, typename Func>
    R run(Func& func, std::false_type) {
        typename std::aligned_storage<sizeof(R), alignof(R)>::type slot;
        waiter w;
        w.out = &slot;
        if (!join(w)) {
            R r;
            try {
                r = func();
            } catch (...) {
                finish<R>(nullptr, std::current_exception());
                throw;
            }
            finish<R>(&r, nullptr);
            return r;
        }
        wait(w);
        if (w.exc) std::rethrow_exception(w.exc);
        R* p = static_cast<R*>(static_cast<void*>(&slot));
        R r(std::move(*p));
        p->~R();
        return r;
    }
    template <typename R, typename Func>
    void run(Func& func, std::true_type) {
        waiter w;
        w.out = nullptr;
        if (!join(w)) {
            try {
                func();
            } catch (...) {
                finish<char>(nullptr, std::current_exception());
                throw;
            }
            finish<char>(nullptr, nullptr);
            return;
        }
        wait(w);
        if (w.exc) std::rethrow_exception(w.exc);
    }

    /// True if a call is in flight (then `w` is queued for its result);
    /// false if the caller leads.
    bool join(waiter& w) {
        std::lock_guard<std::mutex> g(m_lock);
        if (!m_running) {
            m_running = true;
            return false;
        }
        w.sem = photon_thread_self() != nullptr ? photon_sem_new(0) : nullptr;
        m_waiters.push_back(&w);
        return true;
    }

    template <typename R>
    void finish(const R* result, std::exception_ptr exc) {
        std::vector<waiter*> ws;
        {
            std::lock_guard<std::mutex> g(m_lock);
            ws.swap(m_waiters);
            m_running = false;
        }
        for (waiter* w : ws) {
            if (exc)
                w->exc = exc;
            else if (result != nullptr && w->out != nullptr)
                construct(w, *result);
            // Signal first, then mark done: the waiter frees its semaphore
            // once it sees done, so the leader must not touch it after.
            if (w->sem != nullptr) photon_sem_signal(w->sem, 1);
            w->done.store(true, std::memory_order_release);
        }
    }
    template <typename R>
    static void construct(waiter* w, const R& r) {
        try {
            new (w->out) R(r);
        } catch (...) {
            w->exc = std::current_exception();
        }
    }

    static void wait(waiter& w) {
        if (w.sem != nullptr) {
            // Exactly one signal comes; an interrupt just retries the wait.
            while (photon_sem_wait(w.sem, 1, PHOTON_FOREVER) != 0) {
            }
            while (!w.done.load(std::memory_order_acquire)) photon_thread_yield();
            photon_sem_free(w.sem);
        } else {
            while (!w.done.load(std::memory_order_acquire)) std::this_thread::sleep_for(std::chrono::microseconds(100));
        }
    }

    std::mutex m_lock;
    bool m_running = false;
    std::vector<waiter*> m_waiters;
};

}  // namespace photon

#endif  // PHOTON_CPP_COMMON_SINGLEFLIGHT_H
