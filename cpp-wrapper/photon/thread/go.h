// photon/thread/go.h: Go-style concurrency, as PhotonLibOS's: go() starts
// a photon thread; channel<T> passes values between photon threads on any
// vcpus (buffered with a capacity, or unbuffered: a send waits for a
// receiver to take the value); select() / select_nonblock() wait on
// several channel operations.
//
//     photon::channel<int> ch(8);
//     photon::go([&] { for (int i = 0; i < 3; i++) ch << i; ch.close(); });
//     for (int v : ch) use(v);                     // until closed and drained
//
// A channel is a photon mutex, two condition variables and a deque; use it
// from photon threads (off a vcpu its blocking calls fail). select polls
// its cases, sleeping 100 us between rounds, so a ready case is noticed
// within that long.
#ifndef PHOTON_CPP_THREAD_GO_H
#define PHOTON_CPP_THREAD_GO_H

#include <photon/common/timeout.h>
#include <photon/thread/thread.h>
#include <photon/thread/thread11.h>

#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <tuple>
#include <utility>

namespace photon {

/// Starts `f(args...)` in a new photon thread (arguments as thread_create11
/// takes them); returns the thread (detached).
template <typename F, typename... ARGUMENTS>
inline thread* go(uint64_t stack_size, F&& f, ARGUMENTS&&... args) {
    return thread_create11(stack_size, std::forward<F>(f), std::forward<ARGUMENTS>(args)...);
}
template <typename F, typename... ARGUMENTS>
inline thread* go(F&& f, ARGUMENTS&&... args) {
    return thread_create11(std::forward<F>(f), std::forward<ARGUMENTS>(args)...);
}

template <typename T>
class channel {
public:
    /// A channel holding up to `capacity` values (0: unbuffered).
    explicit channel(size_t capacity = 0) : m(new state(capacity)) {}
    channel(channel&&) noexcept = default;
    channel& operator=(channel&&) noexcept = default;
    channel(const channel&) = delete;
    channel& operator=(const channel&) = delete;

    /// Sends `value`, waiting for room (unbuffered: for a receiver to take
    /// it) until `timeout`. False if the channel is closed, or on timeout.
    bool send(const T& value, Timeout timeout = {}) { return do_send(T(value), timeout, false); }
    bool send(T&& value, Timeout timeout = {}) { return do_send(std::move(value), timeout, false); }
    /// Sends only if that needs no wait (unbuffered: a receiver waits).
    bool try_send(const T& value) { return do_send(T(value), Timeout(0), true); }
    bool try_send(T&& value) { return do_send(std::move(value), Timeout(0), true); }

    /// Receives into `value`, waiting until `timeout`. False once the channel
    /// is closed and drained, or on timeout.
    bool recv(T& value, Timeout timeout = {}) { return do_recv(value, timeout, false); }
    /// Receives: (value, true), or (T(), false) as recv(T&) fails.
    std::pair<T, bool> recv(Timeout timeout = {}) {
        T v{};
        const bool ok = do_recv(v, timeout, false);
        return std::make_pair(std::move(v), ok);
    }
    bool try_recv(T& value) { return do_recv(value, Timeout(0), true); }

    channel& operator<<(const T& value) {
        send(value);
        return *this;
    }
    channel& operator>>(T& value) {
        recv(value);
        return *this;
    }

    /// No more sends; receivers drain what is buffered, then get false.
    void close() {
        SCOPED_LOCK(m->lock);
        m->closed = true;
        m->not_empty.notify_all();
        m->changed.notify_all();
    }
    bool is_closed() const {
        SCOPED_LOCK(m->lock);
        return m->closed;
    }
    /// Values buffered now.
    size_t size() const {
        SCOPED_LOCK(m->lock);
        return m->q.size();
    }
    bool empty() const { return size() == 0; }
    size_t capacity() const { return m->capacity; }
    bool full() const {
        SCOPED_LOCK(m->lock);
        return m->q.size() >= limit();
    }

    /// Receives until the channel is closed and drained (range-for).
    class iterator {
    public:
        iterator(channel* ch) : m_ch(ch) { advance(); }  // NOLINT: implicit
        const T& operator*() const { return m_value; }
        iterator& operator++() {
            advance();
            return *this;
        }
        bool operator!=(const iterator& o) const { return m_ch != o.m_ch; }
        bool operator==(const iterator& o) const { return m_ch == o.m_ch; }

    private:
        void advance() {
            if (m_ch != nullptr && !m_ch->recv(m_value)) m_ch = nullptr;
        }
        channel* m_ch;
        T m_value{};
    };
    iterator begin() { return iterator(this); }
    iterator end() { return iterator(nullptr); }

private:
    struct state {
        explicit state(size_t cap) : capacity(cap) {}
        mutable mutex lock;
        condition_variable not_empty;  // a value arrived, or closed
        condition_variable changed;    // a value was taken, a receiver came, or closed
        std::deque<T> q;
        size_t capacity;
        bool closed = false;
        uint64_t receivers_waiting = 0;
        uint64_t sent = 0, taken = 0;  // sequence numbers (unbuffered hand-off)
    };
    size_t limit() const { return m->capacity == 0 ? 1 : m->capacity; }

    bool do_send(T&& value, Timeout timeout, bool nowait) {
        state& s = *m;
        SCOPED_LOCK(s.lock);
        if (s.closed) return false;
        if (nowait) {
            if (s.q.size() >= limit() || (s.capacity == 0 && s.receivers_waiting <= s.q.size())) return false;
        } else {
            while (!s.closed && s.q.size() >= limit()) {
                if (s.changed.wait(s.lock, timeout) != 0 && timeout.expired()) return false;
            }
            if (s.closed) return false;
        }
        s.q.push_back(std::move(value));
        const uint64_t mine = ++s.sent;
        s.not_empty.notify_one();
        if (s.capacity != 0 || nowait) return true;
        // Unbuffered: wait until a receiver took this value.
        while (s.taken < mine) {
            if (s.changed.wait(s.lock, timeout) != 0 && timeout.expired() && s.taken < mine) {
                // Take it back (it is the newest, still queued).
                if (!s.q.empty()) {
                    s.q.pop_back();
                    --s.sent;
                }
                s.changed.notify_all();
                return false;
            }
            if (s.closed && s.taken < mine) {
                if (!s.q.empty()) {
                    s.q.pop_back();
                    --s.sent;
                }
                return false;
            }
        }
        return true;
    }

    bool do_recv(T& value, Timeout timeout, bool nowait) {
        state& s = *m;
        SCOPED_LOCK(s.lock);
        if (s.q.empty() && !nowait) {
            ++s.receivers_waiting;
            s.changed.notify_all();  // an unbuffered try_send may now proceed
            while (s.q.empty() && !s.closed) {
                if (s.not_empty.wait(s.lock, timeout) != 0 && timeout.expired()) break;
            }
            --s.receivers_waiting;
        }
        if (s.q.empty()) return false;
        value = std::move(s.q.front());
        s.q.pop_front();
        ++s.taken;
        s.changed.notify_all();
        return true;
    }

    std::unique_ptr<state> m;
};

/// A channel of `capacity` (0: unbuffered).
template <typename T>
inline channel<T> make_channel(size_t capacity = 0) {
    return channel<T>(capacity);
}

/// A select case receiving from `ch` and calling `func(value, true)`; ready
/// only when a value can be taken (as PhotonLibOS's: a closed, drained
/// channel is never ready).
template <typename T, typename F>
struct recv_case {
    channel<T>* ch;
    F func;
    bool try_run() {
        T v{};
        if (!ch->try_recv(v)) return false;
        func(std::move(v), true);
        return true;
    }
};
/// A select case sending `value` to `ch`, then calling `func()`.
template <typename T, typename F>
struct send_case {
    channel<T>* ch;
    T value;
    F func;
    bool try_run() {
        if (!ch->try_send(value)) return false;
        func();
        return true;
    }
};
template <typename T, typename F>
inline recv_case<T, typename std::decay<F>::type> recv_case_of(channel<T>& ch, F&& func) {
    return {&ch, std::forward<F>(func)};
}
template <typename T, typename F>
inline send_case<T, typename std::decay<F>::type> send_case_of(channel<T>& ch, const T& value, F&& func) {
    return {&ch, value, std::forward<F>(func)};
}

namespace detail {
inline int select_round(int) { return -1; }
template <typename C, typename... Cs>
inline int select_round(int index, C& c, Cs&... cs) {
    return c.try_run() ? index : select_round(index + 1, cs...);
}
}  // namespace detail

/// Runs the first case that is ready (in the order given); its index, or
/// -1 if none is (Go's `default:`).
template <typename... Cases>
inline int select_nonblock(Cases&&... cases) {
    return detail::select_round(0, cases...);
}
/// Waits until a case is ready, runs it; its index, or -1 when `timeout`
/// expires first.
template <typename... Cases>
inline int select(Timeout timeout, Cases&&... cases) {
    for (;;) {
        const int r = detail::select_round(0, cases...);
        if (r >= 0) return r;
        if (timeout.expired()) return -1;
        thread_usleep(timeout.timeout() < 100 ? timeout.timeout() : 100);
    }
}
/// Waits until a case is ready, runs it; its index.
template <typename C, typename... Cases,
          typename std::enable_if<!std::is_convertible<C, Timeout>::value, int>::type = 0>
inline int select(C&& c, Cases&&... cases) {
    return select(Timeout(), std::forward<C>(c), std::forward<Cases>(cases)...);
}

}  // namespace photon

#endif  // PHOTON_CPP_THREAD_GO_H
