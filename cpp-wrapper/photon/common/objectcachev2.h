// photon/common/objectcachev2.h: PhotonLibOS's ObjectCacheV2, an object
// cache whose objects are held by std::shared_ptr: a borrower keeps the
// object it got alive however the cache changes meanwhile.
//
//     ObjectCacheV2<std::string, Conn*> conns(10 * 1000 * 1000);  // 10 s
//     auto c = conns.borrow(host, [&] { return connect(host); });
//     if (c) c->send(...);
//     auto n = conns.update(host, [&] { return connect(host); });  // replace
//
// borrow() constructs the key's object if it has none (one constructor at a
// time per key; the other borrowers wait for it); a constructor returning
// nullptr gives an empty Borrow (false), and with a `cooldown` no constructor
// runs again for that key until the cooldown has passed since the last one.
// A Borrow marked recycle(true) drops the key's object when it is released
// (holders keep their copies). A key nobody has borrowed for `lifespan`
// microseconds is dropped by a reclaimer photon thread on the vcpu that
// constructed the cache (it looks when the oldest idle key is due, at least
// once a second). No acquire/release calls, as in PhotonLibOS. Use it from
// photon threads of any vcpu.
#ifndef PHOTON_CPP_COMMON_OBJECTCACHEV2_H
#define PHOTON_CPP_COMMON_OBJECTCACHEV2_H

#include <photon.h>
#include <photon/common/expirecontainer.h>
#include <photon/thread/thread.h>

#include <atomic>
#include <cstdint>
#include <list>
#include <memory>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

template <typename K, typename VPtr>
class ObjectCacheV2 {
    static_assert(std::is_pointer<VPtr>::value, "ObjectCacheV2<Key, T*>: the value is a pointer type");
    using V = typename std::remove_pointer<VPtr>::type;

    struct Box {
        explicit Box(const K& k) : key(k) {}
        const K key;
        std::shared_ptr<V> ref;          // read and written atomically
        photon::mutex createlock;        // one constructor at a time
        uint64_t lastcreate = 0;         // when a constructor last ran
        uint64_t idle_since = 0;         // 0: borrowed (not in the idle list)
        uint64_t rc = 0;                 // Borrows holding it (under maplock)
        typename std::list<Box*>::iterator pos;

        std::shared_ptr<V> load() const { return std::atomic_load(&ref); }
        std::shared_ptr<V> exchange(std::shared_ptr<V> r) { return std::atomic_exchange(&ref, std::move(r)); }
    };

public:
    /// A borrowed object (the cache's copy of the shared_ptr): false if the
    /// constructor failed or was cooling down. Movable, not copyable.
    class Borrow {
    public:
        Borrow() = default;
        Borrow(ObjectCacheV2* oc, Box* box, std::shared_ptr<V> reader)
            : m_oc(oc), m_box(box), m_reader(std::move(reader)) {}
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

        bool recycle() const { return m_recycle; }
        bool recycle(bool x) { return m_recycle = x; }
        V& operator*() const { return *m_reader; }
        V* operator->() const { return m_reader.get(); }
        explicit operator bool() const { return static_cast<bool>(m_reader); }

    private:
        void drop() {
            if (m_box == nullptr) return;
            if (m_recycle) m_box->exchange(nullptr);
            m_oc->put_box(m_box);
            m_box = nullptr;
            m_reader.reset();
        }
        void take(Borrow& rhs) {
            m_oc = rhs.m_oc;
            m_box = rhs.m_box;
            m_reader = std::move(rhs.m_reader);
            m_recycle = rhs.m_recycle;
            rhs.m_box = nullptr;
        }
        ObjectCacheV2* m_oc = nullptr;
        Box* m_box = nullptr;
        std::shared_ptr<V> m_reader;
        bool m_recycle = false;
    };

    explicit ObjectCacheV2(uint64_t lifespan)
        : m_lifespan(lifespan), m_reclaimer(kDefaultPeriod, [this] { return reclaim(); }) {}
    ObjectCacheV2(const ObjectCacheV2&) = delete;
    ObjectCacheV2& operator=(const ObjectCacheV2&) = delete;
    ~ObjectCacheV2() = default;  // the reclaimer stops first (declared last)

    /// The key's object, made with `ctor()` (a VPtr or a std::shared_ptr<V>;
    /// null is a failure) if it has none and `cooldown` microseconds have
    /// passed since the key's last construction.
    template <typename Ctor>
    Borrow borrow(const K& key, Ctor&& ctor, uint64_t cooldown = 0) {
        Box* box = get_box(key);
        for (;;) {
            std::shared_ptr<V> r = box->load();
            if (r) return Borrow(this, box, std::move(r));
            if (box->createlock.try_lock() == 0) {
                r = box->load();
                if (!r && photon::sat_add(box->lastcreate, cooldown) <= photon_now_us()) {
                    r = shared(ctor());
                    box->exchange(r);
                    box->lastcreate = photon_now_us();
                }
                box->createlock.unlock();
                return Borrow(this, box, std::move(r));
            }
            // Another borrower is constructing: wait for it, then look again.
            if (box->createlock.lock() == 0) box->createlock.unlock();
        }
    }
    /// borrow() with a default-constructed V.
    Borrow borrow(const K& key) {
        return borrow(key, [] { return std::make_shared<V>(); });
    }

    /// Replaces the key's object with `ctor()` at once (holders of the old one
    /// keep it) and borrows the new one.
    template <typename Ctor>
    Borrow update(const K& key, Ctor&& ctor) {
        Box* box = get_box(key);
        std::shared_ptr<V> r = shared(ctor());
        box->exchange(r);
        box->lastcreate = photon_now_us();
        return Borrow(this, box, std::move(r));
    }

    /// Drops the keys idle for a lifespan now (the reclaimer does this).
    /// Returns the microseconds until the next one is due (0: none is idle).
    uint64_t expire() { return reclaim(); }

    /// The number of keys held.
    size_t size() {
        photon::detail::map_lock lock(m_maplock);
        return m_map.size();
    }

private:
    static constexpr uint64_t kDefaultPeriod = 1000ULL * 1000;

    static std::shared_ptr<V> shared(VPtr p) { return std::shared_ptr<V>(p); }
    static std::shared_ptr<V> shared(std::shared_ptr<V> p) { return p; }
    template <typename D>
    static std::shared_ptr<V> shared(std::unique_ptr<V, D> p) {
        return std::shared_ptr<V>(std::move(p));
    }

    Box* get_box(const K& key) {
        photon::detail::map_lock lock(m_maplock);
        auto it = m_map.find(key);
        if (it == m_map.end()) it = m_map.emplace(key, std::unique_ptr<Box>(new Box(key))).first;
        Box* box = it->second.get();
        if (box->idle_since != 0) {
            m_idle.erase(box->pos);
            box->idle_since = 0;
        }
        ++box->rc;
        return box;
    }
    void put_box(Box* box) {
        photon::detail::map_lock lock(m_maplock);
        if (--box->rc != 0) return;
        box->idle_since = photon_now_us();
        if (box->idle_since == 0) box->idle_since = 1;
        box->pos = m_idle.insert(m_idle.end(), box);
    }
    uint64_t reclaim() {
        std::vector<std::unique_ptr<Box>> gone;  // freed outside the lock
        uint64_t next = 0;
        {
            photon::detail::map_lock lock(m_maplock);
            const uint64_t now = photon_now_us();
            while (!m_idle.empty()) {
                Box* x = m_idle.front();
                const uint64_t due = photon::sat_add(x->idle_since, m_lifespan);
                if (due > now) {
                    next = due - now;
                    break;
                }
                m_idle.pop_front();
                auto it = m_map.find(x->key);
                gone.push_back(std::move(it->second));
                m_map.erase(it);
            }
        }
        return next;
    }

    uint64_t m_lifespan;
    photon::mutex m_maplock;
    std::unordered_map<K, std::unique_ptr<Box>> m_map;
    std::list<Box*> m_idle;  // boxes nobody borrows, oldest first
    photon::detail::periodic_caller m_reclaimer;
};

#endif  // PHOTON_CPP_COMMON_OBJECTCACHEV2_H
