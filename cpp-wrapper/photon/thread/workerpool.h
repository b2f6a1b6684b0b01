// photon/thread/workerpool.h: photon::WorkPool, vcpus on OS threads of
// their own that run work handed to them, as PhotonLibOS spells it.
//
//     photon::WorkPool pool(4);                        // 4 vcpus
//     pool.call([&] { crunch(data); });                // runs there, waits
//     pool.async_call(new auto([=] { log(x); }));       // runs there, detached
//     pool.thread_migrate();                           // move the caller there
#ifndef PHOTON_CPP_THREAD_WORKERPOOL_H
#define PHOTON_CPP_THREAD_WORKERPOOL_H

#include <photon.h>
#include <photon/photon.h>
#include <photon/thread/detail/escape.h>
#include <photon/thread/detail/invoke.h>
#include <photon/thread/thread.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <deque>
#include <mutex>
#include <vector>
#include <cerrno>
#include <cstddef>
#include <exception>
#include <memory>
#include <system_error>
#include <thread>
#include <type_traits>
#include <utility>

namespace photon {

namespace detail {

template <class Task>
struct pool_call_job {
    Task* task;
    std::exception_ptr exc;
    photon_sem* done;  // signalled at the end; nullptr when the caller blocks in photon_workpool_call
    std::atomic<bool> finished{false};  // set at the end (for a waiter that is not a photon thread)
};

template <class Task>
void* pool_call_trampoline(void* p) noexcept {
    pool_call_job<Task>* job = static_cast<pool_call_job<Task>*>(p);
    try {
        (*job->task)();
    } catch (...) {
        job->exc = std::current_exception();
    }
    photon_sem* done = job->done;  // `job` may be gone once this is signalled
    if (done != nullptr)
        photon_sem_signal(done, 1);
    else
        job->finished.store(true, std::memory_order_release);
    return nullptr;
}

template <class Task>
void* pool_async_trampoline(void* p) noexcept {
    std::unique_ptr<Task> task(static_cast<Task*>(p));
    try {
        (*task)();
    } catch (...) {
        detached_thread_escape(std::current_exception(), "a photon::WorkPool::async_call task", photon_thread_self());
    }
    return nullptr;
}

}  // namespace detail

/// WorkPool::call's waiting modes, as PhotonLibOS names them: the caller
/// waits as a photon thread (PhotonContext: only it blocks), or blocks its
/// OS thread (StdContext); AutoContext picks by whether the caller is a
/// photon thread.
struct PhotonContext {};
struct StdContext {};
struct AutoContext {};

/// A pool of vcpus, each on an OS thread of its own (photon_workpool).
class WorkPool {
public:
    /// Starts `vcpu_num` vcpus on `ev_engine` (INIT_EVENT_* as for
    /// photon::init; 0 means the default engine). `io_engine` and
    /// `thread_mod` are accepted and ignored: every task runs in a photon
    /// thread of its own; so is `ring_size` (the C pool's queue grows as
    /// needed). Throws std::system_error if the pool cannot start.
    explicit WorkPool(size_t vcpu_num, int ev_engine = 0, int io_engine = 0, int thread_mod = -1,
                      size_t ring_size = 65536)
        : m_vcpus(static_cast<uint32_t>(vcpu_num)) {
        (void)io_engine;
        (void)thread_mod;
        (void)ring_size;
        if (m_vcpus == 0) return;  // served by vcpus that join it (join_current_vcpu_into_workpool)
        m_pool = photon_workpool_new(m_vcpus, detail::c_event_engine(static_cast<uint64_t>(ev_engine)));
        if (m_pool == nullptr) throw std::system_error(errno, std::generic_category(), "photon::WorkPool");
    }
    WorkPool(const WorkPool&) = delete;
    WorkPool& operator=(const WorkPool&) = delete;

    /// Ends the vcpus as photon::fini does (waiting for their photon
    /// threads; those blocked without a timeout get ECANCELED) and joins
    /// their OS threads. Destroy it from outside the pool.
    ~WorkPool() {
        release_joiners();
        if (m_pool != nullptr) photon_workpool_free(m_pool);
    }

    /// Lends the calling vcpu to the pool until the pool is destroyed: the
    /// caller (a photon thread) waits, while its vcpu's other threads run,
    /// and runs the work of a pool made with 0 vcpus (each task in a photon
    /// thread of its own on this vcpu). A pool with vcpus of its own keeps
    /// its work on them (the C API cannot add a vcpu to a pool). Returns 0
    /// when the pool's destructor starts, or -1 with errno (`EPERM` off a
    /// vcpu, the interrupter's errno).
    int join_current_vcpu_into_workpool() {
        if (photon_thread_self() == nullptr) {
            errno = EPERM;
            return -1;
        }
        photon_sem* s = joined_sem();
        if (s == nullptr) return -1;
        m_joiners.fetch_add(1, std::memory_order_acq_rel);
        {
            std::lock_guard<std::mutex> g(m_qlock);
            m_joined_vcpus.push_back(photon_vcpu_current());
        }
        int ret = 0;
        while (!m_stopping.load(std::memory_order_acquire)) {
            if (photon_sem_wait(s, 1, PHOTON_FOREVER) != 0) {
                ret = -1;
                break;
            }
            if (m_stopping.load(std::memory_order_acquire)) break;
            queued q{nullptr, nullptr};
            {
                std::lock_guard<std::mutex> g(m_qlock);
                if (!m_queue.empty()) {
                    q = m_queue.front();
                    m_queue.pop_front();
                }
            }
            if (q.fn != nullptr && photon_thread_create(q.fn, q.arg, 0) == nullptr) q.fn(q.arg);
        }
        const int e = errno;
        {
            std::lock_guard<std::mutex> g(m_qlock);
            for (size_t i = 0; i < m_joined_vcpus.size(); ++i)
                if (m_joined_vcpus[i] == photon_vcpu_current()) {
                    m_joined_vcpus.erase(m_joined_vcpus.begin() + static_cast<std::ptrdiff_t>(i));
                    break;
                }
        }
        m_joiners.fetch_sub(1, std::memory_order_acq_rel);
        errno = e;
        return ret;
    }

    int get_vcpu_num() const noexcept { return static_cast<int>(m_vcpus); }

    /// Runs INVOKE(f, args...) in a new photon thread on one of the pool's
    /// vcpus (round robin) and waits for it to end; an exception it throws
    /// is rethrown here. The arguments are passed by reference (they live
    /// on the caller's stack, which is why the wait cannot be cut short: a
    /// photon thread interrupted meanwhile keeps waiting and gets the
    /// interrupt re-posted after). Callable from any OS thread. Returns 0,
    /// or -1 with errno if the work could not be handed over.
    ///
    /// `pool.call<photon::PhotonContext>(f)`, `<StdContext>` and
    /// `<AutoContext>` are accepted, and all wait as described: as a photon
    /// thread when the caller is one, else blocking the OS thread
    /// (PhotonLibOS's StdContext blocks a photon caller's OS thread).
    template <class Context = PhotonContext, class F, class... A>
    int call(F&& f, A&&... args) {
        auto task = [&]() { detail::invoke(std::forward<F>(f), std::forward<A>(args)...); };
        return do_call(task);
    }

    /// Runs `(*task)()` in a new detached photon thread on one of the pool's
    /// vcpus, then deletes `task` there; returns at once. The pool owns
    /// `task` from now on (it is deleted at once if it cannot be handed
    /// over: -1 with errno). An exception escaping the task terminates the
    /// process. E.g. `pool.async_call(new auto([=] { ... }));`
    template <class Task>
    int async_call(Task* task) {
        if (spawn(&detail::pool_async_trampoline<Task>, task) != 0) {
            const int e = errno;
            delete task;
            errno = e;
            return -1;
        }
        return 0;
    }

    /// Moves `th` (the caller by default, or a runnable thread of the
    /// caller's vcpu) to the pool's vcpu `index`, or to the next one in
    /// turn if `index` is out of range. 0, or -1 with errno.
    int thread_migrate(photon::thread* th = CURRENT, size_t index = static_cast<size_t>(-1)) noexcept {
        photon_vcpu* to = vcpu(index);
        if (to == nullptr) {
            errno = EINVAL;
            return -1;
        }
        return photon_thread_migrate(detail::c_thread(th), to);
    }

    /// The pool's vcpu `index` (or the next one in turn if out of range).
    /// (A pool of 0 vcpus: its joined vcpus; nullptr if none.)
    photon_vcpu* vcpu(size_t index = static_cast<size_t>(-1)) noexcept {
        if (m_pool == nullptr) {
            std::lock_guard<std::mutex> g(m_qlock);
            if (m_joined_vcpus.empty()) return nullptr;
            if (index >= m_joined_vcpus.size())
                index = m_next.fetch_add(1, std::memory_order_relaxed) % m_joined_vcpus.size();
            return m_joined_vcpus[index];
        }
        if (index >= m_vcpus) index = m_next.fetch_add(1, std::memory_order_relaxed) % m_vcpus;
        return photon_workpool_vcpu(m_pool, static_cast<uint32_t>(index));
    }

    photon_workpool* native_handle() const noexcept { return m_pool; }

private:
    photon_sem* joined_sem() {
        photon_sem* s = m_joined.load(std::memory_order_acquire);
        if (s != nullptr) return s;
        photon_sem* fresh = photon_sem_new(0);
        if (fresh == nullptr) return nullptr;
        if (m_joined.compare_exchange_strong(s, fresh, std::memory_order_acq_rel)) return fresh;
        photon_sem_free(fresh);
        return s;
    }

    void release_joiners() {
        m_stopping.store(true, std::memory_order_release);
        photon_sem* s = m_joined.load(std::memory_order_acquire);
        if (s == nullptr) return;
        photon_sem_signal(s, 1u << 30);
        // The waiters leave the semaphore before it can be freed.
        while (m_joiners.load(std::memory_order_acquire) != 0 || photon_sem_free(s) != 0) std::this_thread::yield();
        // Work nobody ran is dropped (its tasks leak, as a pool's end cancels them).
    }

    /// Runs `fn(arg)` in a detached photon thread of the pool (for a pool
    /// of 0 vcpus: queued for its joined vcpus).
    int spawn(photon_entry fn, void* arg) {
        if (m_pool != nullptr) return photon_workpool_spawn(m_pool, fn, arg);
        photon_sem* s = joined_sem();
        if (s == nullptr) {
            errno = ENOMEM;
            return -1;
        }
        {
            std::lock_guard<std::mutex> g(m_qlock);
            m_queue.push_back(queued{fn, arg});
        }
        return photon_sem_signal(s, 1);
    }

    template <class Task>
    int do_call(Task& task) {
        detail::pool_call_job<Task> job{&task, std::exception_ptr(), nullptr};
        if (photon_thread_self() == nullptr) {
            if (m_pool != nullptr) {
                // Not a photon thread: the C call blocks this OS thread, uninterruptibly.
                if (photon_workpool_call(m_pool, &detail::pool_call_trampoline<Task>, &job, nullptr) != 0) return -1;
            } else {
                if (spawn(&detail::pool_call_trampoline<Task>, &job) != 0) return -1;
                while (!job.finished.load(std::memory_order_acquire)) std::this_thread::sleep_for(std::chrono::microseconds(50));
            }
        } else {
            job.done = photon_sem_new(0);
            if (job.done == nullptr) {
                errno = ENOMEM;
                return -1;
            }
            if (spawn(&detail::pool_call_trampoline<Task>, &job) != 0) {
                const int e = errno;
                photon_sem_free(job.done);
                errno = e;
                return -1;
            }
            int interrupted = 0;
            while (photon_sem_wait(job.done, 1, PHOTON_FOREVER) != 0) {
                if (interrupted == 0) interrupted = errno;
            }
            photon_sem_free(job.done);
            if (interrupted != 0) photon_thread_interrupt(photon_thread_self(), interrupted);
        }
        if (job.exc) std::rethrow_exception(job.exc);
        return 0;
    }

    struct queued {
        photon_entry fn;
        void* arg;
    };

    photon_workpool* m_pool = nullptr;
    uint32_t m_vcpus;
    std::atomic<size_t> m_next{0};
    std::atomic<photon_sem*> m_joined{nullptr};
    std::atomic<int> m_joiners{0};
    std::atomic<bool> m_stopping{false};
    std::mutex m_qlock;
    std::deque<queued> m_queue;
    std::vector<photon_vcpu*> m_joined_vcpus;
};

}  // namespace photon

#endif  // PHOTON_CPP_THREAD_WORKERPOOL_H
