// photon/common/rcuptr.h: RCUPtr<T>, a pointer read without locks and
// replaced by writers, who wait for a grace period before freeing the old
// object (quiescent-state RCU, as PhotonLibOS's).
//
//     RCUPtr<Config> cfg;
//     // a reader, on any vcpu:
//     use(cfg->value);
//     cfg.quiescent();                 // between reads: holds no old object
//     // a writer:
//     Config* old = cfg.update(new Config(...));
//     cfg.synchronize();               // every reader has passed a quiescent()
//     delete old;
//
// A reader is a photon thread; it joins the domain at its first quiescent()
// (a record per photon thread and domain, a thread_local_ptr over a photon
// key) and leaves it when it ends, or while offline(). synchronize() waits
// until each reader of the domain has called quiescent() since the update
// (the caller counts as quiescent), yielding, then sleeping 100 us between
// scans; so a reader must not keep an old object across a quiescent(), and
// must call it now and then, as in Photon.
#ifndef PHOTON_CPP_COMMON_RCUPTR_H
#define PHOTON_CPP_COMMON_RCUPTR_H

#include <photon/thread/thread-local.h>
#include <photon/thread/thread.h>
#include <photon/thread/thread11.h>

#include <atomic>
#include <cstdint>
#include <functional>

struct RCUDomain;

/// A photon thread's record in one RCUDomain: the grace period it last saw
/// (0: offline, not waited for).
struct RCUReader {
    std::atomic<uint64_t> ctr{0};
    RCUDomain* domain;
    RCUReader* prev = nullptr;
    RCUReader* next = nullptr;

    explicit RCUReader(RCUDomain* d);
    ~RCUReader();
    RCUReader(const RCUReader&) = delete;
    RCUReader& operator=(const RCUReader&) = delete;

    uint64_t get_gp() const { return ctr.load(std::memory_order_acquire); }
    /// Holds no object read before this call.
    void quiescent();
    /// Not reading: synchronize() does not wait for this thread.
    void offline() { ctr.store(0, std::memory_order_release); }
    void online() { quiescent(); }
};

/// A set of readers and a grace-period counter.
struct RCUDomain {
    std::atomic<uint64_t> ctr{1};
    photon::mutex tlock;
    RCUReader* head = nullptr;
    /// This photon thread's record (made, and registered, on first use).
    photon::thread_local_ptr<RCUReader, RCUDomain*> reader;

    RCUDomain() : reader(this) {}
    RCUDomain(const RCUDomain&) = delete;
    RCUDomain& operator=(const RCUDomain&) = delete;
    /// Destroy a domain only when no thread reads in it: the records left
    /// are detached and freed when their threads end.
    ~RCUDomain() {
        photon::locker<photon::mutex> l(tlock);
        for (RCUReader* r = head; r != nullptr; r = r->next) r->domain = nullptr;
        head = nullptr;
    }

    uint64_t get_gp() const { return ctr.load(std::memory_order_acquire); }

    void register_reader(RCUReader* x) {
        photon::locker<photon::mutex> l(tlock);
        x->prev = nullptr;
        x->next = head;
        if (head != nullptr) head->prev = x;
        head = x;
    }
    void unregister_reader(RCUReader* x) {
        photon::locker<photon::mutex> l(tlock);
        if (x->prev != nullptr) x->prev->next = x->next;
        else if (head == x) head = x->next;
        if (x->next != nullptr) x->next->prev = x->prev;
        x->prev = x->next = nullptr;
    }
    void online_current() { reader->online(); }
    void offline_current() { reader->offline(); }

    /// Waits until every online reader has seen grace period `gp` or later.
    void wait_for_readers(uint64_t gp) {
        for (unsigned round = 0;; ++round) {
            // Waiting here is a quiescent state of the caller's own.
            mark_current(get_gp());
            {
                photon::locker<photon::mutex> l(tlock);
                bool all = true;
                for (RCUReader* r = head; r != nullptr; r = r->next) {
                    const uint64_t seen = r->get_gp();
                    if (seen != 0 && seen < gp) {
                        all = false;
                        break;
                    }
                }
                if (all) return;
            }
            if (round < 16) photon::thread_yield();
            else photon::thread_usleep(100);
        }
    }
    /// Starts a new grace period and waits until every reader has passed a
    /// quiescent state in it (the caller, if a reader, counts as one).
    void synchronize() {
        wait_for_readers(ctr.fetch_add(1, std::memory_order_acq_rel) + 1);
    }
    /// Calls `func(data)` after a grace period, from a photon thread of its
    /// own on this vcpu; the caller goes on at once.
    template <typename T>
    void call_rcu(T* data, std::function<void(T*)> func) {
        const uint64_t gp = ctr.fetch_add(1, std::memory_order_acq_rel) + 1;
        mark_current(gp);
        photon::thread_create11([this, gp, data, func]() {
            wait_for_readers(gp);
            func(data);
        });
    }

private:
    void mark_current(uint64_t gp) {
        if (photon_thread_self() == nullptr) return;
        RCUReader* me = reader.get();
        if (me->get_gp() != 0) me->ctr.store(gp, std::memory_order_release);
    }
};

inline RCUReader::RCUReader(RCUDomain* d) : domain(d) { d->register_reader(this); }
inline RCUReader::~RCUReader() {
    if (domain != nullptr) domain->unregister_reader(this);
}
inline void RCUReader::quiescent() {
    if (domain != nullptr) ctr.store(domain->get_gp(), std::memory_order_release);
}

/// The domain RCUPtr uses by default (never destroyed: threads may end
/// after static destructors run).
inline RCUDomain* global_rcu_domain() {
    static RCUDomain* domain = new RCUDomain();
    return domain;
}

/// An RCU-protected pointer to a T (see the top of this file).
template <typename T>
struct RCUPtr {
    std::atomic<T*> ptr;

    RCUPtr() : ptr(nullptr) {}
    RCUPtr(const RCUPtr&) = delete;
    RCUPtr& operator=(const RCUPtr&) = delete;

    /// No-ops (readers only mark quiescent states).
    void read_lock(RCUDomain* = nullptr) {}
    void read_unlock(RCUDomain* = nullptr) {}

    /// This photon thread holds nothing it read through the pointer before.
    void quiescent(RCUDomain* domain = nullptr) { (domain ? domain : global_rcu_domain())->reader->quiescent(); }
    /// Publishes `new_ptr`; returns the old object, to free after a grace
    /// period (synchronize() or rcu_call()).
    T* update(T* new_ptr, RCUDomain* = nullptr) { return ptr.exchange(new_ptr, std::memory_order_acq_rel); }
    /// Waits for a grace period.
    void synchronize(RCUDomain* domain = nullptr) { (domain ? domain : global_rcu_domain())->synchronize(); }
    /// Frees `old` (or calls `func(old)`) after a grace period, without
    /// waiting for it.
    void rcu_call(T* old, RCUDomain* domain = nullptr,
                  std::function<void(T*)> func = [](T* x) { delete x; }) {
        (domain ? domain : global_rcu_domain())->call_rcu(old, std::move(func));
    }
    T* dereference() const { return ptr.load(std::memory_order_acquire); }
    T& operator*() const { return *dereference(); }
    T* operator->() const { return dereference(); }
};

#endif  // PHOTON_CPP_COMMON_RCUPTR_H
