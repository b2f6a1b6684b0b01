// photon/common/expirecontainer.h: PhotonLibOS's containers whose entries
// expire: ExpireContainer (key -> payload, dropped a lifespan after insert
// or refresh), ExpireList (a set of keys kept alive by keep_alive) and
// ObjectCache (key -> object, shared by reference count, constructed once
// per key, kept a lifespan after its last user).
//
//     ObjectCache<std::string, Conn*> conns(10 * 1000 * 1000);  // 10 s
//     auto c = conns.borrow(host, [&] { return connect(host); });
//     if (c) c->send(...);            // the cached object, or nullptr if
//                                     // the constructor returned nullptr
//
// Lifespans and periods are microseconds. Each container has a photon
// thread on the vcpu that constructed it (when it is made on one) that calls
// expire() every `timer_cycle` (ExpireContainer, ObjectCache: lifespan / 16,
// at least 1 ms); expire() also runs after every ObjectCache acquire and
// release and every ExpireList keep_alive. Use the containers from photon
// threads, of any vcpu (a photon mutex guards each). The classes are
// global, as in PhotonLibOS.
#ifndef PHOTON_CPP_COMMON_EXPIRECONTAINER_H
#define PHOTON_CPP_COMMON_EXPIRECONTAINER_H

#include <photon.h>
#include <photon/thread/thread.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <iterator>
#include <list>
#include <memory>
#include <thread>
#include <tuple>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

namespace photon {
namespace detail {

/// Calls `fn` every `period` microseconds from a photon thread of the vcpu
/// that constructs it (no thread, and so no calls, off a vcpu). `fn` returns
/// the next period in microseconds, or 0 for `period` again. The destructor
/// waits for a call under way, then stops the thread (from any thread).
class periodic_caller {
public:
    periodic_caller(uint64_t period, std::function<uint64_t()> fn)
        : m_ctl(std::make_shared<control>()) {
        m_ctl->period = period == 0 ? 1 : period;
        m_ctl->fn = std::move(fn);
        auto* hold = new std::shared_ptr<control>(m_ctl);
        m_thread = photon_thread_create(&periodic_caller::loop, hold, 0);
        if (m_thread == nullptr) delete hold;
    }
    periodic_caller(const periodic_caller&) = delete;
    periodic_caller& operator=(const periodic_caller&) = delete;
    ~periodic_caller() {
        if (m_thread == nullptr) return;
        int idle = IDLE;
        while (!m_ctl->state.compare_exchange_weak(idle, STOPPED, std::memory_order_acq_rel)) {
            idle = IDLE;  // a call is under way: let it finish
            if (photon_in_thread() == 1)
                photon_thread_yield();
            else
                std::this_thread::yield();
        }
        photon_thread_interrupt(m_thread, ECANCELED);  // fails harmlessly if it ended
    }

private:
    enum { IDLE, CALLING, STOPPED };
    struct control {
        std::atomic<int> state{IDLE};
        uint64_t period = 1;
        std::function<uint64_t()> fn;
    };
    static void* loop(void* arg) {
        std::shared_ptr<control> ctl = std::move(*static_cast<std::shared_ptr<control>*>(arg));
        delete static_cast<std::shared_ptr<control>*>(arg);
        uint64_t next = ctl->period;
        for (;;) {
            photon_thread_usleep(next);  // interrupted: the state says why
            int idle = IDLE;
            if (!ctl->state.compare_exchange_strong(idle, CALLING, std::memory_order_acq_rel)) return nullptr;
            next = ctl->fn();
            if (next == 0) next = ctl->period;
            ctl->state.store(IDLE, std::memory_order_release);
        }
    }
    std::shared_ptr<control> m_ctl;
    photon_thread* m_thread = nullptr;
};

/// Takes a photon mutex for a scope, retrying while merely interrupted.
class map_lock {
public:
    explicit map_lock(photon::mutex& m) : m_mutex(m) {
        while (m_mutex.lock() != 0 && detail::retryable(errno)) {
        }
    }
    ~map_lock() { m_mutex.unlock(); }
    map_lock(const map_lock&) = delete;
    map_lock& operator=(const map_lock&) = delete;

private:
    photon::mutex& m_mutex;
};

inline uint64_t expiry_period(uint64_t timer_cycle) { return timer_cycle < 1000 ? 1000 : timer_cycle; }

}  // namespace detail
}  // namespace photon

/// Key -> payload (`Ts...`), each entry dropped `lifespan` microseconds after
/// its insert or last refresh, or sooner when there are more than
/// `num_limit` entries (the oldest go first).
template <typename KeyType, typename... Ts>
class ExpireContainer {
    /// The type of payload `i` (void past the end, so the signature of
    /// get_payload<0> can be formed).
    template <size_t i, bool in_range = (i < sizeof...(Ts))>
    struct payload_at {
        using type = void;
    };
    template <size_t i>
    struct payload_at<i, true> {
        using type = typename std::tuple_element<i, std::tuple<Ts...>>::type&;
    };

public:
    /// One entry: `key()`, `get_payload<0>()` (the key), `get_payload<i>()`
    /// (the i-th payload value, from 1).
    class Item {
    public:
        template <typename... Gs>
        explicit Item(const KeyType& key, Gs&&... gs) : m_key(key), payload(std::forward<Gs>(gs)...) {}
        const KeyType& key() const { return m_key; }
        template <size_t idx>
        typename std::enable_if<(idx > 0), typename payload_at<idx - 1>::type>::type get_payload() {
            return std::get<idx - 1>(payload);
        }
        template <size_t idx>
        typename std::enable_if<(idx == 0), const KeyType&>::type get_payload() const {
            return m_key;
        }

    private:
        friend class ExpireContainer;
        KeyType m_key;

    public:
        std::tuple<Ts...> payload;

    private:
        uint64_t m_deadline = 0;
        typename std::list<Item*>::iterator m_pos;
    };

private:
    using Map = std::unordered_map<KeyType, std::unique_ptr<Item>>;

public:
    using ItemKey = KeyType;
    using InterfaceKey = KeyType;

    /// Walks the entries; `*it` is the `Item*`.
    class iterator {
    public:
        using iterator_category = std::forward_iterator_tag;
        using value_type = Item*;
        using difference_type = std::ptrdiff_t;
        using pointer = Item* const*;
        using reference = Item*;
        iterator() = default;
        explicit iterator(typename Map::iterator it) : m_it(it) {}
        Item* operator*() const { return m_it->second.get(); }
        iterator& operator++() {
            ++m_it;
            return *this;
        }
        iterator operator++(int) {
            iterator old = *this;
            ++m_it;
            return old;
        }
        bool operator==(const iterator& rhs) const { return m_it == rhs.m_it; }
        bool operator!=(const iterator& rhs) const { return m_it != rhs.m_it; }

    private:
        typename Map::iterator m_it;
    };

    explicit ExpireContainer(uint64_t lifespan) : ExpireContainer(lifespan, lifespan / 16) {}
    ExpireContainer(uint64_t lifespan, uint64_t timer_cycle, uint64_t num_limit = -1ULL)
        : m_lifespan(lifespan),
          m_num_limit(num_limit),
          m_timer(photon::detail::expiry_period(timer_cycle), [this] { return expire(); }) {}
    ExpireContainer(const ExpireContainer&) = delete;
    ExpireContainer& operator=(const ExpireContainer&) = delete;
    virtual ~ExpireContainer() = default;

    /// Adds `key` with the payload made from `xs...`; end() if the key is
    /// there already (that entry is left as it is).
    template <typename... Gs>
    iterator insert(const InterfaceKey& key, Gs&&... xs) {
        std::unique_ptr<Item> item(new Item(key, std::forward<Gs>(xs)...));
        photon::detail::map_lock lock(m_lock);
        auto pr = m_map.emplace(key, std::move(item));
        if (!pr.second) return iterator(m_map.end());
        enqueue(pr.first->second.get());
        return iterator(pr.first);
    }

    /// The entry of `key`, or end().
    iterator find(const InterfaceKey& key) {
        photon::detail::map_lock lock(m_lock);
        return iterator(m_map.find(key));
    }
    iterator begin() { return iterator(m_map.begin()); }
    iterator end() { return iterator(m_map.end()); }

    /// Restarts `item`'s lifespan, then drops what has expired.
    void refresh(Item* item) {
        {
            photon::detail::map_lock lock(m_lock);
            enqueue(item);
        }
        expire();
    }

    /// Drops the entries whose lifespan has passed (and the oldest beyond
    /// num_limit). Returns 0.
    uint64_t expire() {
        std::vector<std::unique_ptr<Item>> gone;
        {
            photon::detail::map_lock lock(m_lock);
            const uint64_t now = photon_now_us();
            while (!m_order.empty()) {
                Item* x = m_order.front();
                if (x->m_deadline >= now && m_map.size() <= m_num_limit) break;
                m_order.pop_front();
                auto it = m_map.find(x->m_key);
                gone.push_back(std::move(it->second));
                m_map.erase(it);
            }
        }
        return 0;  // `gone` frees the entries outside the lock
    }

    /// Drops every entry.
    void clear() {
        Map gone;
        photon::detail::map_lock lock(m_lock);
        m_order.clear();
        gone.swap(m_map);
    }

    size_t size() { return m_map.size(); }
    size_t lifespan() { return m_lifespan; }
    size_t expiration() { return m_lifespan; }

protected:
    /// `key`'s lifespan restarts now; with `insert_if_not_exists` a missing
    /// key is added (default-made payload). False if it is not there.
    bool keep_alive_key(const InterfaceKey& key, bool insert_if_not_exists) {
        {
            photon::detail::map_lock lock(m_lock);
            auto it = m_map.find(key);
            if (it == m_map.end()) {
                if (!insert_if_not_exists) return false;
                it = m_map.emplace(key, std::unique_ptr<Item>(new Item(key))).first;
            }
            enqueue(it->second.get());
        }
        expire();
        return true;
    }

private:
    void enqueue(Item* item) {
        if (item->m_deadline != 0) m_order.erase(item->m_pos);
        item->m_deadline = photon::sat_add(photon_now_us(), m_lifespan);
        if (item->m_deadline == 0) item->m_deadline = 1;
        item->m_pos = m_order.insert(m_order.end(), item);
    }

    uint64_t m_lifespan;
    uint64_t m_num_limit;
    photon::mutex m_lock;
    Map m_map;
    std::list<Item*> m_order;  // oldest deadline first (one lifespan for all)
    photon::detail::periodic_caller m_timer;
};

/// A set of keys, each dropped `lifespan` microseconds after it was last
/// kept alive.
template <typename T>
class ExpireList : public ExpireContainer<T> {
public:
    using Base = ExpireContainer<T>;
    using Base::Base;
    /// Restarts `x`'s lifespan (adding it if `insert_if_not_exists`); false
    /// if it is not there.
    bool keep_alive(const T& x, bool insert_if_not_exists) { return Base::keep_alive_key(x, insert_if_not_exists); }
};

/// Key -> object of type `*ValPtr` (ValPtr is a pointer type; the cache
/// deletes the objects it holds). acquire() finds or makes the key's entry
/// and takes a reference; the first user constructs the object with the
/// given constructor (others wait for it); release() drops the reference.
/// An entry nobody holds is kept `lifespan` microseconds, then dropped with
/// its object. A constructor returning nullptr is a failure: acquire returns
/// nullptr, and with a `failure_cooldown` no constructor runs for that key
/// until the cooldown has passed since the failure.
template <typename KeyType, typename ValPtr>
class ObjectCache {
    static_assert(std::is_pointer<ValPtr>::value, "ObjectCache<Key, T*>: the value is a pointer type");

public:
    using ValEntity = typename std::remove_pointer<ValPtr>::type;
    using InterfaceKey = KeyType;

    /// One entry (what ref_acquire returns).
    class Item {
    public:
        explicit Item(const KeyType& key) : m_key(key) {}
        ~Item() { delete m_obj; }
        Item(const Item&) = delete;
        Item& operator=(const Item&) = delete;
        const KeyType& key() const { return m_key; }
        ValPtr get_ptr() const { return m_obj; }
        ValEntity& get_ref() const { return *m_obj; }

    private:
        friend class ObjectCache;
        KeyType m_key;
        ValPtr m_obj = nullptr;
        photon::mutex m_ctor_lock;
        uint32_t m_refcnt = 0;
        photon::semaphore* m_recycle = nullptr;  // set while being recycled
        uint64_t m_failure = 0;                  // when the constructor last failed
        uint64_t m_deadline = 0;                 // 0: not in the idle list
        typename std::list<Item*>::iterator m_pos;
    };
    using ItemPtr = Item*;

    /// A reference to a cached object for a scope (released by the
    /// destructor). `recycle(true)` makes the release drop the entry once
    /// every user has let go (see release()); with `moveout(true)` too, the
    /// object is not deleted then (the holder has taken it over).
    class Borrow {
    public:
        Borrow(ObjectCache* oc, Item* ref, bool recycle) : m_oc(oc), m_ref(ref), m_recycle(recycle) {}
        Borrow(const Borrow&) = delete;
        Borrow& operator=(const Borrow&) = delete;
        Borrow(Borrow&& rhs) noexcept { take(rhs); }
        Borrow& operator=(Borrow&& rhs) {
            if (this != &rhs) {
                drop();
                take(rhs);
            }
            return *this;
        }
        ~Borrow() { drop(); }

        explicit operator bool() const { return m_ref != nullptr; }
        bool recycle() const { return m_recycle; }
        bool recycle(bool x) { return m_recycle = x; }
        bool moved() const { return m_moveout; }
        bool moveout(bool x) { return m_moveout = x; }
        ValPtr operator->() const { return m_ref->get_ptr(); }
        ValEntity& operator*() const { return m_ref->get_ref(); }

    private:
        void drop() {
            if (m_ref != nullptr) m_oc->ref_release(m_ref, m_recycle, !m_moveout);
            m_ref = nullptr;
        }
        void take(Borrow& rhs) {
            m_oc = rhs.m_oc;
            m_ref = rhs.m_ref;
            m_recycle = rhs.m_recycle;
            m_moveout = rhs.m_moveout;
            rhs.m_ref = nullptr;
        }
        ObjectCache* m_oc = nullptr;
        Item* m_ref = nullptr;
        bool m_recycle = false;
        bool m_moveout = false;
    };

    explicit ObjectCache(uint64_t lifespan) : ObjectCache(lifespan, lifespan / 16) {}
    ObjectCache(uint64_t lifespan, uint64_t timer_cycle, uint64_t num_limit = -1ULL)
        : m_lifespan(lifespan),
          m_num_limit(num_limit),
          m_timer(photon::detail::expiry_period(timer_cycle), [this] { return expire(); }) {}
    ObjectCache(const ObjectCache&) = delete;
    ObjectCache& operator=(const ObjectCache&) = delete;
    virtual ~ObjectCache() { clear(); }

    /// Takes a reference to `key`'s entry, constructing its object with
    /// `ctor()` (a ValPtr, nullptr on failure) if it has none. While the key
    /// is being recycled, waits until that is done. Returns the entry, or
    /// nullptr (the constructor failed, or is cooling down after a failure).
    template <typename Constructor>
    Item* ref_acquire(const InterfaceKey& key, const Constructor& ctor, uint64_t failure_cooldown = 0) {
        Item* item = nullptr;
        {
            photon::detail::map_lock lock(m_lock);
            for (;;) {
                auto it = m_map.find(key);
                if (it == m_map.end()) it = m_map.emplace(key, std::unique_ptr<Item>(new Item(key))).first;
                item = it->second.get();
                if (item->m_recycle == nullptr) break;
                m_recycled.wait(m_lock);  // the entry goes away: look again then
            }
            unqueue(item);
            ++item->m_refcnt;
        }
        {
            photon::detail::map_lock lock(item->m_ctor_lock);
            if (item->m_obj == nullptr && photon::sat_add(item->m_failure, failure_cooldown) <= photon_now_us()) {
                item->m_obj = ctor();
                if (item->m_obj == nullptr) item->m_failure = photon_now_us();
            }
        }
        if (item->m_obj == nullptr) {
            ref_release(item, false, true);
            return nullptr;
        }
        expire();
        return item;
    }

    /// ref_acquire's object (or nullptr).
    template <typename Constructor>
    ValPtr acquire(const InterfaceKey& key, const Constructor& ctor, uint64_t failure_cooldown = 0) {
        Item* item = ref_acquire(key, ctor, failure_cooldown);
        return item != nullptr ? item->get_ptr() : nullptr;
    }

    /// Drops a reference. With `recycle`, the entry is taken out once the
    /// other users have released it too (this call waits for them; acquires
    /// of the key wait meanwhile): its object is deleted, or with
    /// `destroy == false` returned. Returns nullptr otherwise. A second
    /// recycle of an entry already being recycled is a plain release.
    ValPtr ref_release(Item* item, bool recycle = false, bool destroy = true) {
        photon::semaphore done(0);
        ValPtr ret = nullptr;
        {
            photon::detail::map_lock lock(m_lock);
            if (item->m_recycle != nullptr) recycle = false;
            if (recycle) item->m_recycle = &done;
            if (--item->m_refcnt == 0) {
                if (item->m_recycle != nullptr) {
                    item->m_recycle->signal(1);
                } else {
                    enqueue(item);  // the failure time stays: the cooldown holds for the next user too
                }
            }
        }
        if (recycle) {
            while (done.wait(1) != 0) {
            }
            std::unique_ptr<Item> gone;
            {
                photon::detail::map_lock lock(m_lock);
                auto it = m_map.find(item->m_key);
                gone = std::move(it->second);
                m_map.erase(it);
                m_recycled.notify_all();
            }
            if (!destroy) std::swap(ret, gone->m_obj);
        }
        expire();
        return ret;
    }

    /// ref_release of `key`'s entry (nullptr if there is none).
    ValPtr release(const InterfaceKey& key, bool recycle = false, bool destroy = true) {
        Item* item;
        {
            photon::detail::map_lock lock(m_lock);
            auto it = m_map.find(key);
            if (it == m_map.end()) return nullptr;
            item = it->second.get();
        }
        return ref_release(item, recycle, destroy);
    }

    /// ref_acquire for a scope.
    template <typename Constructor>
    Borrow borrow(const InterfaceKey& key, const Constructor& ctor, uint64_t failure_cooldown = 0) {
        return Borrow(this, ref_acquire(key, ctor, failure_cooldown), false);
    }
    /// borrow() with `new ValEntity()` as the constructor.
    Borrow borrow(const InterfaceKey& key) {
        return borrow(key, [] { return new ValEntity(); });
    }

    /// Drops the idle entries whose lifespan has passed (and the oldest idle
    /// ones while there are more than num_limit entries). Returns 0.
    uint64_t expire() {
        std::vector<std::unique_ptr<Item>> gone;
        {
            photon::detail::map_lock lock(m_lock);
            const uint64_t now = photon_now_us();
            while (!m_idle.empty()) {
                Item* x = m_idle.front();
                if (x->m_deadline >= now && m_map.size() <= m_num_limit) break;
                unqueue(x);
                auto it = m_map.find(x->m_key);
                gone.push_back(std::move(it->second));
                m_map.erase(it);
            }
        }
        return 0;  // `gone` deletes the objects outside the lock
    }

    /// Drops every entry nobody holds.
    void clear() {
        std::vector<std::unique_ptr<Item>> gone;
        photon::detail::map_lock lock(m_lock);
        while (!m_idle.empty()) {
            Item* x = m_idle.front();
            unqueue(x);
            auto it = m_map.find(x->m_key);
            gone.push_back(std::move(it->second));
            m_map.erase(it);
        }
    }

    size_t size() { return m_map.size(); }
    size_t lifespan() { return m_lifespan; }
    size_t expiration() { return m_lifespan; }

private:
    void enqueue(Item* item) {
        unqueue(item);
        item->m_deadline = photon::sat_add(photon_now_us(), m_lifespan);
        if (item->m_deadline == 0) item->m_deadline = 1;
        item->m_pos = m_idle.insert(m_idle.end(), item);
    }
    void unqueue(Item* item) {
        if (item->m_deadline == 0) return;
        m_idle.erase(item->m_pos);
        item->m_deadline = 0;
    }

    uint64_t m_lifespan;
    uint64_t m_num_limit;
    photon::mutex m_lock;
    photon::condition_variable m_recycled;
    std::unordered_map<KeyType, std::unique_ptr<Item>> m_map;
    std::list<Item*> m_idle;  // entries nobody holds, oldest first
    photon::detail::periodic_caller m_timer;
};

#endif  // PHOTON_CPP_COMMON_EXPIRECONTAINER_H
