// photon/common/detail/alog_async.h: new_async_log_output for
// photon/common/alog.h (which includes this at its end). Internal to the
// wrapper: include photon/common/alog.h.
#ifndef PHOTON_CPP_COMMON_DETAIL_ALOG_ASYNC_H
#define PHOTON_CPP_COMMON_DETAIL_ALOG_ASYNC_H

#include <photon/common/alog.h>

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace photon_alog_detail {
/// An output that queues lines in memory and has an OS thread of its own
/// write them to the inner output in batches (every millisecond, or at
/// 64 KiB), so that logging costs the caller a copy.
class async_output final : public ILogOutput {
public:
    explicit async_output(ILogOutput* inner) : m_inner(inner), m_thread([this] { run(); }) {}
    void write(int level, const char* begin, const char* end) override {
        std::lock_guard<std::mutex> g(m_lock);
        m_buf.append(begin, end);
        m_level = level;
        if (m_buf.size() >= 64 * 1024) m_cv.notify_one();
    }
    int get_log_file_fd() override { return m_inner->get_log_file_fd(); }
    uint64_t set_throttle(uint64_t t = -1ULL) override { return m_inner->set_throttle(t); }
    uint64_t get_throttle() override { return m_inner->get_throttle(); }
    /// Writes what is queued, stops the thread, destructs the inner output.
    void destruct() override {
        stop();
        m_inner->destruct();
        registry().remove(this);
        delete this;
    }
    /// Writes what is queued and stops the thread (at exit too).
    void stop() {
        {
            std::lock_guard<std::mutex> g(m_lock);
            if (m_stopping) return;
            m_stopping = true;
            m_cv.notify_one();
        }
        m_thread.join();
    }

    /// The outputs alive, stopped (flushed) at exit.
    struct outputs {
        std::mutex lock;
        std::vector<async_output*> all;
        void add(async_output* o) {
            std::lock_guard<std::mutex> g(lock);
            all.push_back(o);
        }
        void remove(async_output* o) {
            std::lock_guard<std::mutex> g(lock);
            for (size_t i = 0; i < all.size(); ++i)
                if (all[i] == o) {
                    all.erase(all.begin() + static_cast<std::ptrdiff_t>(i));
                    break;
                }
        }
        ~outputs() {
            for (async_output* o : all) o->stop();
        }
    };
    static outputs& registry() {
        static outputs r;
        return r;
    }

private:
    void run() {
        std::string batch;
        std::unique_lock<std::mutex> g(m_lock);
        for (;;) {
            m_cv.wait_for(g, std::chrono::milliseconds(1), [this] { return m_stopping || m_buf.size() >= 64 * 1024; });
            batch.swap(m_buf);
            const int level = m_level;
            const bool last = m_stopping;
            g.unlock();
            if (!batch.empty()) m_inner->write(level, batch.data(), batch.data() + batch.size());
            batch.clear();
            if (last) return;
            g.lock();
        }
    }

    ILogOutput* m_inner;
    std::mutex m_lock;
    std::condition_variable m_cv;
    std::string m_buf;
    int m_level = ALOG_DEBUG;
    bool m_stopping = false;
    std::thread m_thread;
};
}  // namespace photon_alog_detail

/// PhotonLibOS's asynchronous output: lines are queued in memory and
/// written to `output` in batches by an OS thread of the output's own (one,
/// whatever `num_of_queues`). Lines queued at exit are written then.
/// destruct() also destructs `output`.
inline ILogOutput* new_async_log_output(ILogOutput* output, int num_of_queues = 1) {
    (void)num_of_queues;
    if (output == nullptr) return nullptr;
    photon_alog_detail::async_output* a = new photon_alog_detail::async_output(output);
    photon_alog_detail::async_output::registry().add(a);
    return a;
}
#endif  // PHOTON_CPP_COMMON_DETAIL_ALOG_ASYNC_H
