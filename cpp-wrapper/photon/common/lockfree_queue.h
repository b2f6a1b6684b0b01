// photon/common/lockfree_queue.h: bounded lock-free ring queues and a
// channel over them, with PhotonLibOS's names and calls.
//
//     LockfreeMPMCRingQueue<Job*, 1024> q;      // capacity 1024 (a power of 2)
//     q.push(job);  q.pop(job);                 // non-blocking: false if full/empty
//     q.send<PhotonPause>(job);  q.recv<PhotonPause>();   // spin with a pause
//     photon::common::RingChannel<LockfreeMPMCRingQueue<int, 64>> ch;  // recv() sleeps
//
// One implementation serves the three queue kinds (multi-producer
// multi-consumer ring with a sequence number per slot; the MPMC ring is
// also correct for one producer and one consumer, and the batch calls are
// loops over single pushes and pops). A capacity of 0 in the template means
// "given to the constructor"; capacities round up to a power of two.
// T must be trivially copyable, as in PhotonLibOS.
#ifndef PHOTON_CPP_COMMON_LOCKFREE_QUEUE_H
#define PHOTON_CPP_COMMON_LOCKFREE_QUEUE_H

#include <photon/common/utility.h>
#include <photon/thread/thread.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <thread>
#include <type_traits>

struct PauseBase {};
/// Spins on the CPU's pause instruction.
struct CPUPause : PauseBase {
    static void pause() {
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#endif
    }
};
/// Yields the OS thread.
struct ThreadPause : PauseBase {
    static void pause() { std::this_thread::yield(); }
};
/// Yields the photon thread.
struct PhotonPause : PauseBase {
    static void pause() { photon::thread_yield(); }
};

/// Yields the photon thread, or the OS thread off a vcpu.
struct AutoPause : PauseBase {
    static void pause() {
        if (photon_thread_self() != nullptr)
            photon::thread_yield();
        else
            std::this_thread::yield();
    }
};

struct CPUCacheLine {
    static constexpr size_t SIZE = 64;
};

namespace photon {
namespace detail {

/// The ring every queue kind uses.
template <typename T>
class lockfree_ring {
public:
    explicit lockfree_ring(size_t capacity)
        : m_capacity(round_up_to_exp2(capacity < 2 ? 2 : capacity)), m_mask(m_capacity - 1),
          m_slots(new slot[m_capacity]) {
        for (size_t i = 0; i < m_capacity; ++i) m_slots[i].seq.store(i, std::memory_order_relaxed);
    }
    lockfree_ring(const lockfree_ring&) = delete;
    lockfree_ring& operator=(const lockfree_ring&) = delete;

    /// Adds `x`; false if the queue is full.
    bool push(const T& x) {
        size_t pos = m_tail.load(std::memory_order_relaxed);
        for (;;) {
            slot& s = m_slots[pos & m_mask];
            const size_t seq = s.seq.load(std::memory_order_acquire);
            const intptr_t d = static_cast<intptr_t>(seq) - static_cast<intptr_t>(pos);
            if (d == 0) {
                if (m_tail.compare_exchange_weak(pos, pos + 1, std::memory_order_relaxed)) {
                    s.data = x;
                    s.seq.store(pos + 1, std::memory_order_release);
                    return true;
                }
            } else if (d < 0) {
                return false;
            } else {
                pos = m_tail.load(std::memory_order_relaxed);
            }
        }
    }
    /// Takes the oldest element into `x`; false if the queue is empty.
    bool pop(T& x) {
        size_t pos = m_head.load(std::memory_order_relaxed);
        for (;;) {
            slot& s = m_slots[pos & m_mask];
            const size_t seq = s.seq.load(std::memory_order_acquire);
            const intptr_t d = static_cast<intptr_t>(seq) - static_cast<intptr_t>(pos + 1);
            if (d == 0) {
                if (m_head.compare_exchange_weak(pos, pos + 1, std::memory_order_relaxed)) {
                    x = s.data;
                    s.seq.store(pos + m_capacity, std::memory_order_release);
                    return true;
                }
            } else if (d < 0) {
                return false;
            } else {
                pos = m_head.load(std::memory_order_relaxed);
            }
        }
    }
    size_t push_batch(const T* x, size_t n) {
        size_t i = 0;
        while (i < n && push(x[i])) ++i;
        return i;
    }
    size_t pop_batch(T* x, size_t n) {
        size_t i = 0;
        while (i < n && pop(x[i])) ++i;
        return i;
    }
    template <typename Pause = ThreadPause>
    void send(const T& x) {
        static_assert(std::is_base_of<PauseBase, Pause>::value, "Pause is one of CPUPause, ThreadPause, PhotonPause");
        while (!push(x)) Pause::pause();
    }
    template <typename Pause = ThreadPause>
    T recv() {
        static_assert(std::is_base_of<PauseBase, Pause>::value, "Pause is one of CPUPause, ThreadPause, PhotonPause");
        T x;
        while (!pop(x)) Pause::pause();
        return x;
    }
    template <typename Pause = ThreadPause>
    void send_batch(const T* x, size_t n) {
        for (size_t i = 0; i < n; ++i) send<Pause>(x[i]);
    }
    template <typename Pause = ThreadPause>
    size_t recv_batch(T* x, size_t n) {
        size_t got = 0;
        while ((got = pop_batch(x, n)) == 0) Pause::pause();
        return got;
    }
    size_t read_available() const {
        const size_t t = m_tail.load(std::memory_order_acquire), h = m_head.load(std::memory_order_acquire);
        return t > h ? t - h : 0;
    }
    size_t write_available() const { return m_capacity - read_available(); }
    bool empty() const { return read_available() == 0; }
    bool full() const { return read_available() >= m_capacity; }
    size_t capacity_() const { return m_capacity; }

private:
    struct slot {
        std::atomic<size_t> seq{0};
        T data;
    };
    const size_t m_capacity;
    const size_t m_mask;
    std::unique_ptr<slot[]> m_slots;
    // Head and tail on cache lines of their own (padding, not alignas, so
    // that `new` needs no over-aligned allocation in C++14).
    char m_pad0[CPUCacheLine::SIZE];
    std::atomic<size_t> m_tail{0};
    char m_pad1[CPUCacheLine::SIZE - sizeof(std::atomic<size_t>)];
    std::atomic<size_t> m_head{0};
    char m_pad2[CPUCacheLine::SIZE - sizeof(std::atomic<size_t>)];
};

}  // namespace detail
}  // namespace photon

/// The base of the queue kinds: capacity `N`, or the constructor's when N is 0.
template <typename T, size_t N>
class LockfreeRingQueueBase : public photon::detail::lockfree_ring<T> {
    static_assert(std::is_trivially_copyable<T>::value, "T must be trivially copyable");

public:
    const size_t capacity;
    LockfreeRingQueueBase() : photon::detail::lockfree_ring<T>(N ? N : 1024), capacity(this->capacity_()) {}
    explicit LockfreeRingQueueBase(size_t c) : photon::detail::lockfree_ring<T>(N ? N : c), capacity(this->capacity_()) {}
};

template <typename T, size_t N, typename MarkType = uint64_t>
class LockfreeMPMCRingQueue : public LockfreeRingQueueBase<T, N> {
public:
    LockfreeMPMCRingQueue() = default;
    explicit LockfreeMPMCRingQueue(size_t c) : LockfreeRingQueueBase<T, N>(c) {}
};

template <typename T, size_t N>
class LockfreeBatchMPMCRingQueue : public LockfreeRingQueueBase<T, N> {
public:
    LockfreeBatchMPMCRingQueue() = default;
    explicit LockfreeBatchMPMCRingQueue(size_t c) : LockfreeRingQueueBase<T, N>(c) {}
};

template <typename T, size_t N>
class LockfreeSPSCRingQueue : public LockfreeRingQueueBase<T, N> {
public:
    LockfreeSPSCRingQueue() = default;
    explicit LockfreeSPSCRingQueue(size_t c) : LockfreeRingQueueBase<T, N>(c) {}
};

/// A queue whose capacity is chosen at run time: create(c) / destroy(q).
template <typename Q>
class FlexQueue : public Q {
public:
    static FlexQueue* create(size_t c) { return new FlexQueue(c); }
    static void destroy(FlexQueue* q) { delete q; }

protected:
    explicit FlexQueue(size_t c) : Q(c) {}
};

template <typename T>
using FlexLockfreeMPMCRingQueue = FlexQueue<LockfreeMPMCRingQueue<T, 0>>;
template <typename T>
using FlexLockfreeBatchMPMCRingQueue = FlexQueue<LockfreeBatchMPMCRingQueue<T, 0>>;
template <typename T>
using FlexLockfreeSPSCRingQueue = FlexQueue<LockfreeSPSCRingQueue<T, 0>>;

namespace photon {
namespace common {

namespace detail {
/// The waiting half of a channel: receivers first retry up to
/// `yield_turn` yields within `yield_usec`, then sleep on a semaphore that
/// senders signal while someone sleeps.
class channel_waiter {
public:
    channel_waiter(uint64_t yield_turn, uint64_t yield_usec) : m_yield_turn(yield_turn), m_yield_usec(yield_usec) {}
    template <typename Pause, typename Q, typename V>
    void send(Q& q, const V& x) {
        while (!q.push(x)) Pause::pause();
        if (m_idle.load(std::memory_order_seq_cst) > 0) m_sem.signal(1);
    }
    template <typename Q, typename V>
    void recv(Q& q, V& x, uint64_t max_yield_turn, uint64_t max_yield_usec) {
        photon::Timeout spin(max_yield_usec);
        uint64_t turns = max_yield_turn;
        while (!q.pop(x)) {
            if (turns > 0 && !spin.expired()) {
                --turns;
                photon::thread_yield();
                continue;
            }
            m_idle.fetch_add(1, std::memory_order_seq_cst);
            if (q.pop(x)) {
                m_idle.fetch_sub(1, std::memory_order_seq_cst);
                return;
            }
            m_sem.wait(1, 100 * 1000);
            m_idle.fetch_sub(1, std::memory_order_seq_cst);
            turns = max_yield_turn;
            spin.timeout(max_yield_usec);
        }
    }
    uint64_t m_yield_turn, m_yield_usec;

private:
    std::atomic<uint64_t> m_idle{0};
    photon::semaphore m_sem{0};
};
}  // namespace detail

/// A queue whose receivers sleep (as photon threads) when it stays empty:
/// recv() first retries up to `max_yield_turn` yields within
/// `max_yield_usec`, then waits on a semaphore the senders signal. send()
/// yields while the queue is full.
template <typename QueueType>
class RingChannel : public QueueType {
public:
    using value_type = decltype(std::declval<QueueType&>().template recv<ThreadPause>());

    RingChannel() : m_wait(1024, 1024) {}
    RingChannel(uint64_t max_yield_turn, uint64_t max_yield_usec) : m_wait(max_yield_turn, max_yield_usec) {}

    /// Adds `x`, pausing (by default: yielding the photon thread, or the OS
    /// thread off a vcpu) while the queue is full; callable from any thread.
    template <typename Pause = AutoPause>
    void send(const value_type& x) {
        m_wait.send<Pause>(static_cast<QueueType&>(*this), x);
    }
    value_type recv(uint64_t max_yield_turn, uint64_t max_yield_usec) {
        value_type x;
        m_wait.recv(static_cast<QueueType&>(*this), x, max_yield_turn, max_yield_usec);
        return x;
    }
    value_type recv() { return recv(m_wait.m_yield_turn, m_wait.m_yield_usec); }

private:
    detail::channel_waiter m_wait;
};

/// RingChannel over a Flex queue (capacity at run time): create(c) /
/// destroy(ch).
template <typename FlexQueueType>
class FlexRingChannel {
public:
    using value_type = decltype(std::declval<FlexQueueType&>().template recv<ThreadPause>());

    static FlexRingChannel* create(size_t capacity, uint64_t max_yield_turn = 1024, uint64_t max_yield_usec = 1024) {
        FlexQueueType* q = FlexQueueType::create(capacity);
        return q != nullptr ? new FlexRingChannel(q, max_yield_turn, max_yield_usec) : nullptr;
    }
    static void destroy(FlexRingChannel* ch) { delete ch; }

    template <typename Pause = AutoPause>
    void send(const value_type& x) {
        m_wait.send<Pause>(*m_q, x);
    }
    value_type recv(uint64_t max_yield_turn, uint64_t max_yield_usec) {
        value_type x;
        m_wait.recv(*m_q, x, max_yield_turn, max_yield_usec);
        return x;
    }
    value_type recv() { return recv(m_wait.m_yield_turn, m_wait.m_yield_usec); }
    bool empty() const { return m_q->empty(); }
    bool full() const { return m_q->full(); }
    size_t read_available() const { return m_q->read_available(); }
    size_t write_available() const { return m_q->write_available(); }

private:
    FlexRingChannel(FlexQueueType* q, uint64_t t, uint64_t u) : m_q(q), m_wait(t, u) {}
    ~FlexRingChannel() { FlexQueueType::destroy(m_q); }
    FlexQueueType* m_q;
    detail::channel_waiter m_wait;
};

}  // namespace common
}  // namespace photon

#endif  // PHOTON_CPP_COMMON_LOCKFREE_QUEUE_H
