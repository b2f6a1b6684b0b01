// The fifth pass: common/expirecontainer.h (ExpireContainer's payloads,
// refresh, expiry by the timer thread and by count, clear; ExpireList's
// keep_alive; ObjectCache's one construction per key across vcpus,
// reference counts, idle lifespan, failure cooldown, recycling that waits
// for the other users and blocks acquirers meanwhile, destroy=false,
// Borrow) and common/objectcachev2.h (ObjectCacheV2's borrow, one
// construction across vcpus, cooldown, update, recycle, reclaiming).
#include <photon/common/expirecontainer.h>
#include <photon/common/objectcachev2.h>
#include <photon/photon.h>
#include <photon/thread/thread11.h>
#include <photon/thread/thread.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "check.h"

namespace {

std::atomic<int> g_live{0};
std::atomic<int> g_made{0};

struct Obj {
    explicit Obj(int v = 7) : value(v) {
        ++g_live;
        ++g_made;
    }
    ~Obj() { --g_live; }
    Obj(const Obj&) = delete;
    Obj& operator=(const Obj&) = delete;
    int value;
};

const uint64_t MS = 1000;

void expire_container() {
    SAY("ExpireContainer: insert, payloads, find, duplicates");
    ExpireContainer<std::string, int, std::string> c(400 * MS, 5 * MS);
    auto it = c.insert("a", 1, std::string("x"));
    CHECK(it != c.end(), "insert of a new key");
    CHECK((*it)->get_payload<0>() == "a" && (*it)->get_payload<1>() == 1 && (*it)->get_payload<2>() == "x",
          "payloads");
    (*it)->get_payload<1>() = 5;
    CHECK(c.insert("a", 2, std::string("y")) == c.end(), "a second insert of a key is refused");
    CHECK(c.insert("b", 3, std::string("z")) != c.end(), "another key");
    CHECK(c.size() == 2, "size %zu", c.size());
    CHECK(c.find("a") != c.end() && (*c.find("a"))->get_payload<1>() == 5, "find sees the changed payload");
    CHECK(c.find("zz") == c.end(), "a missing key");
    int n = 0;
    for (auto i = c.begin(); i != c.end(); ++i) n += (*i)->get_payload<1>();
    CHECK(n == 8, "walk: sum %d", n);
    CHECK(c.lifespan() == 400 * MS, "lifespan");

    // (Lifespans of a few hundred ms: the checks allow 150 ms of sleep
    // overshoot, which a loaded machine gives.)
    SAY("ExpireContainer: refresh keeps an entry, the timer drops the others");
    photon::thread_usleep(250 * MS);
    c.refresh(*c.find("a"));
    photon::thread_usleep(250 * MS);  // b: 500 ms old (gone); a: 250 ms since refresh
    CHECK(c.find("b") == c.end(), "b expired (size %zu)", c.size());
    CHECK(c.find("a") != c.end(), "a was refreshed");
    photon::thread_usleep(500 * MS);  // nobody calls expire() but the timer
    CHECK(c.size() == 0, "a expired by the timer (size %zu)", c.size());

    SAY("ExpireContainer: num_limit drops the oldest; clear");
    ExpireContainer<int, int> lim(10 * 1000 * MS, 1000 * MS, 3);
    for (int i = 0; i < 5; ++i) {
        CHECK(lim.insert(i, i * 10) != lim.end(), "insert %d", i);
        photon::thread_usleep(1000);
    }
    lim.expire();
    CHECK(lim.size() == 3, "size %zu after expire with limit 3", lim.size());
    CHECK(lim.find(0) == lim.end() && lim.find(1) == lim.end() && lim.find(4) != lim.end(), "the oldest went");
    lim.clear();
    CHECK(lim.size() == 0 && lim.find(4) == lim.end(), "clear");

    SAY("ExpireList: keep_alive");
    ExpireList<int> l(300 * MS, 5 * MS);
    CHECK(!l.keep_alive(1, false), "absent, not inserted");
    CHECK(l.size() == 0, "nothing added");
    CHECK(l.keep_alive(1, true), "inserted");
    CHECK(l.keep_alive(1, false), "present");
    for (int i = 0; i < 8; ++i) {  // kept alive past a lifespan
        photon::thread_usleep(50 * MS);
        CHECK(l.keep_alive(1, false), "still there after %d ms", (i + 1) * 50);
    }
    photon::thread_usleep(600 * MS);
    CHECK(l.size() == 0 && !l.keep_alive(1, false), "expired");
}

void object_cache() {
    SAY("ObjectCache: one construction, reference counts, the idle lifespan");
    {
        ObjectCache<int, Obj*> oc(200 * MS, 5 * MS);
        int ctors = 0;
        auto mk = [&] {
            ++ctors;
            return new Obj(42);
        };
        Obj* a = oc.acquire(1, mk);
        Obj* b = oc.acquire(1, mk);
        CHECK(a != nullptr && a == b && a->value == 42 && ctors == 1, "same object, one ctor (%d)", ctors);
        CHECK(oc.release(1) == nullptr, "plain release returns nullptr");
        photon::thread_usleep(300 * MS);
        CHECK(oc.size() == 1 && g_live == 1, "held by one user: kept (size %zu)", oc.size());
        oc.release(1);
        CHECK(oc.size() == 1, "idle, within its lifespan");
        photon::thread_usleep(400 * MS);
        CHECK(oc.size() == 0 && g_live == 0, "idle past its lifespan: gone and deleted (live %d)", g_live.load());
        CHECK(oc.release(9) == nullptr, "release of an unknown key");
    }

    SAY("ObjectCache: concurrent acquirers on two vcpus share one construction");
    {
        ObjectCache<std::string, Obj*> oc(1000 * MS);
        std::atomic<int> ctors{0};
        std::atomic<Obj*> seen[16];
        auto user = [&](int i) {
            Obj* o = oc.acquire("k", [&] {
                ++ctors;
                photon::thread_usleep(20 * MS);
                return new Obj(i);
            });
            seen[i] = o;
            photon::thread_usleep(5 * MS);
            oc.release("k");
        };
        std::thread other([&] {
            photon::vcpu_init();
            std::vector<photon::join_handle*> jhs;
            for (int i = 8; i < 16; ++i)
                jhs.push_back(photon::thread_enable_join(photon::thread_create11([&, i] { user(i); })));
            for (auto* j : jhs) photon::thread_join(j);
            photon::vcpu_fini();
        });
        std::vector<photon::join_handle*> jhs;
        for (int i = 0; i < 8; ++i)
            jhs.push_back(photon::thread_enable_join(photon::thread_create11([&, i] { user(i); })));
        for (auto* j : jhs) photon::thread_join(j);
        other.join();
        CHECK(ctors == 1, "%d constructions", ctors.load());
        for (int i = 1; i < 16; ++i) CHECK(seen[i] == seen[0] && seen[0] != nullptr, "user %d saw another object", i);
    }
    CHECK(g_live == 0, "the cache's destructor deletes idle objects (live %d)", g_live.load());

    SAY("ObjectCache: a failing constructor and its cooldown");
    {
        ObjectCache<int, Obj*> oc(1000 * MS);
        int ctors = 0;
        bool fail = true;
        auto mk = [&]() -> Obj* {
            ++ctors;
            return fail ? nullptr : new Obj(1);
        };
        CHECK(oc.acquire(1, mk, 200 * MS) == nullptr && ctors == 1, "failure gives nullptr");
        fail = false;
        CHECK(oc.acquire(1, mk, 200 * MS) == nullptr && ctors == 1, "cooling down: no constructor call");
        photon::thread_usleep(250 * MS);
        Obj* o = oc.acquire(1, mk, 200 * MS);
        CHECK(o != nullptr && ctors == 2, "after the cooldown the constructor runs (%d)", ctors);
        oc.release(1);
        CHECK(oc.acquire(2, mk) != nullptr && ctors == 3, "no cooldown for another key");
        oc.release(2);
    }

    SAY("ObjectCache: recycle waits for the other users; acquirers wait for it");
    {
        ObjectCache<int, Obj*> oc(1000 * MS);
        Obj* first = oc.acquire(1, [] { return new Obj(1); });
        CHECK(oc.acquire(1, [] { return new Obj(2); }) == first, "second user");
        std::atomic<int> step{0};
        Obj* newer = nullptr;
        auto recycler = photon::thread_enable_join(photon::thread_create11([&] {
            oc.release(1, true);  // waits for the other user
            step = 2;
        }));
        photon::thread_usleep(100 * MS);
        auto acquirer = photon::thread_enable_join(photon::thread_create11([&] {
            newer = oc.acquire(1, [] { return new Obj(3); });  // waits for the recycle
            CHECK(step == 2, "acquired before the recycle finished");
            oc.release(1);
        }));
        photon::thread_usleep(100 * MS);
        CHECK(step == 0 && newer == nullptr, "recycle and acquire wait");
        step = 1;
        oc.release(1);
        photon::thread_join(recycler);
        photon::thread_join(acquirer);
        CHECK(newer != nullptr && newer->value == 3, "a new object after the recycle");
        CHECK(g_live == 1, "the recycled object was deleted (live %d)", g_live.load());

        SAY("ObjectCache: recycle with destroy=false hands the object over");
        Obj* o = oc.acquire(1, [] { return new Obj(4); });
        Obj* taken = oc.release(1, true, false);
        CHECK(taken == o && taken->value == 3, "the object comes back");
        CHECK(oc.size() == 0 && g_live == 1, "entry gone, object alive");
        delete taken;
    }

    SAY("ObjectCache: Borrow");
    {
        ObjectCache<int, Obj*> oc(1000 * MS);
        {
            auto b = oc.borrow(5);
            CHECK(b && b->value == 7 && (*b).value == 7, "default constructor");
            auto c = std::move(b);
            CHECK(!b && c, "moved");
            auto d = oc.borrow(5, [] { return new Obj(8); });
            CHECK(d->value == 7, "cached, no construction");
        }
        CHECK(oc.size() == 1 && g_live == 1, "idle after the borrows");
        {
            auto b = oc.borrow(5);
            b.recycle(true);
        }
        CHECK(oc.size() == 0 && g_live == 0, "recycled by its Borrow");
        auto f = oc.borrow(6, []() -> Obj* { return nullptr; });
        CHECK(!f, "failed construction: empty Borrow");
    }
}

void object_cache_v2() {
    SAY("ObjectCacheV2: borrow, one construction across vcpus");
    {
        ObjectCacheV2<int, Obj*> oc(1000 * MS);
        std::atomic<int> ctors{0};
        std::atomic<Obj*> seen[16];
        auto user = [&](int i) {
            auto b = oc.borrow(1, [&] {
                ++ctors;
                photon::thread_usleep(20 * MS);
                return new Obj(i);
            });
            seen[i] = &*b;
            photon::thread_usleep(5 * MS);
        };
        std::thread other([&] {
            photon::vcpu_init();
            std::vector<photon::join_handle*> jhs;
            for (int i = 8; i < 16; ++i)
                jhs.push_back(photon::thread_enable_join(photon::thread_create11([&, i] { user(i); })));
            for (auto* j : jhs) photon::thread_join(j);
            photon::vcpu_fini();
        });
        std::vector<photon::join_handle*> jhs;
        for (int i = 0; i < 8; ++i)
            jhs.push_back(photon::thread_enable_join(photon::thread_create11([&, i] { user(i); })));
        for (auto* j : jhs) photon::thread_join(j);
        other.join();
        CHECK(ctors == 1, "%d constructions", ctors.load());
        for (int i = 1; i < 16; ++i) CHECK(seen[i] == seen[0] && seen[0] != nullptr, "user %d saw another object", i);
        auto d = oc.borrow(2);
        CHECK(d && d->value == 7, "default constructor");
    }
    CHECK(g_live == 0, "the destructor frees the objects (live %d)", g_live.load());

    SAY("ObjectCacheV2: failure, cooldown, update, recycle");
    {
        ObjectCacheV2<int, Obj*> oc(1000 * MS);
        int ctors = 0;
        bool fail = true;
        auto mk = [&]() -> Obj* {
            ++ctors;
            return fail ? nullptr : new Obj(1);
        };
        CHECK(!oc.borrow(1, mk, 200 * MS) && ctors == 1, "failure: empty");
        fail = false;
        CHECK(!oc.borrow(1, mk, 200 * MS) && ctors == 1, "cooling down: no constructor call");
        photon::thread_usleep(250 * MS);
        {
            auto b = oc.borrow(1, mk, 200 * MS);
            CHECK(b && ctors == 2, "after the cooldown (%d)", ctors);
            auto u = oc.update(1, [] { return new Obj(9); });
            CHECK(u->value == 9 && b->value == 1, "update replaces; the old holder keeps the old object");
            auto c = oc.borrow(1, mk);
            CHECK(c->value == 9 && ctors == 2, "later borrowers get the update");
        }
        CHECK(g_live == 1, "the replaced object was freed with its last holder (live %d)", g_live.load());
        {
            auto b = oc.borrow(1, mk);
            b.recycle(true);
        }
        CHECK(g_live == 0, "recycled (live %d)", g_live.load());
        auto b = oc.borrow(1, mk);
        CHECK(b && b->value == 1 && ctors == 3, "constructed again after the recycle");
    }

    SAY("ObjectCacheV2: idle keys reclaimed after their lifespan");
    {
        ObjectCacheV2<int, Obj*> oc(200 * MS);
        {
            auto a = oc.borrow(1, [] { return new Obj(1); });
            auto b = oc.borrow(2, [] { return new Obj(2); });
        }
        CHECK(oc.size() == 2, "kept while within the lifespan");
        auto held = oc.borrow(3, [] { return new Obj(3); });
        photon::thread_usleep(250 * MS);
        uint64_t next = oc.expire();
        CHECK(oc.size() == 1 && g_live == 1 && next == 0, "idle ones gone, the borrowed one kept (size %zu)",
              oc.size());
        {
            auto c = oc.borrow(4, [] { return new Obj(4); });
        }
        photon::thread_usleep(1600 * MS);  // the reclaimer looks at least once a second
        CHECK(oc.size() == 1 && g_live == 1, "reclaimed by the reclaimer (size %zu)", oc.size());
    }
}

void lifetimes() {
    SAY("containers made and destroyed in a row stop their timers");
    for (int i = 0; i < 200; ++i) {
        ExpireList<int> l(1 * MS, 1 * MS);
        ObjectCache<int, Obj*> oc(0);
        ObjectCacheV2<int, Obj*> v2(0);
        l.keep_alive(i, true);
        oc.borrow(i);
        v2.borrow(i);
        if (i % 50 == 0) photon::thread_usleep(2 * MS);
    }
    CHECK(g_live == 0, "live %d", g_live.load());
}

}  // namespace

int main() {
    CHECK_OK(photon::init());
    expire_container();
    object_cache();
    object_cache_v2();
    lifetimes();
    photon::fini();
    std::printf("fifth_pass: all checks passed (%d objects made)\n", g_made.load());
    return 0;
}
