// The third pass: common/metric-meter/metrics.h (each counter, the window
// fading, SCOPE_LATENCY); common/rcuptr.h (synchronize waits for every
// online reader's quiescent state and no longer; offline readers and ended
// threads are not waited for; rcu_call; readers on other vcpus never see a
// retired object); common/throttle.h (the bucket, its refill, try_consume,
// restore, priorities and their starvation limit, interrupts);
// ALogStringL; threads_create_join; thread_usleep_defer with a lambda;
// common/conststr.h (TSTRING, split / join, arrays, DEFINE_ENUM_STR).
#include <photon/common/alog.h>
#include <photon/common/conststr.h>
#include <photon/common/metric-meter/metrics.h>
#include <photon/common/rcuptr.h>
#include <photon/common/throttle.h>
#include <photon/photon.h>
#include <photon/thread/thread.h>
#include <photon/thread/thread11.h>

#include <atomic>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "check.h"

static uint64_t since(uint64_t t0) { return static_cast<uint64_t>(photon::now) - t0; }

static void metrics() {
    SAY("metrics: plain counters");
    Metric::ValueCounter v;
    v.set(5);
    CHECK(v.val() == 5, "value %lld", (long long)v.val());
    Metric::AddCounter a;
    a.inc();
    a.add(10);
    a.dec();
    a.sub(3);
    CHECK(a.val() == 7, "add %lld", (long long)a.val());
    a.reset();
    CHECK(a.val() == 0, "add after reset");
    Metric::MaxCounter m;
    m.put(3);
    m.put(9);
    m.put(4);
    CHECK(m.val() == 9, "max %lld", (long long)m.val());

    SAY("metrics: AverageCounter averages over its window and forgets after two");
    Metric::AverageCounter avg;
    avg.interval(100 * 1000);
    avg.reset();
    avg.put(10);
    avg.put(20);
    avg.put(60);
    CHECK(avg.val() == 30, "average %lld", (long long)avg.val());
    photon::thread_usleep(250 * 1000);
    CHECK(avg.val() == 0, "average after two windows %lld", (long long)avg.val());

    SAY("metrics: QPSCounter counts the last window, fading what is older");
    Metric::QPSCounter q;
    q.interval(200 * 1000);
    q.reset();
    for (int i = 0; i < 100; ++i) q.put();
    CHECK(q.val() == 100, "qps %lld", (long long)q.val());
    photon::thread_usleep(300 * 1000);  // half a window past the window
    const int64_t faded = q.val();
    CHECK(faded > 10 && faded < 90, "faded qps %lld", (long long)faded);
    photon::thread_usleep(450 * 1000);
    CHECK(q.val() == 0, "qps after two windows %lld", (long long)q.val());

    SAY("metrics: IntervalMaxCounter keeps the last window's maximum one window more");
    Metric::IntervalMaxCounter im;
    im.interval(100 * 1000);
    im.reset();
    im.put(7);
    im.put(3);
    CHECK(im.val() == 7, "interval max %lld", (long long)im.val());
    photon::thread_usleep(130 * 1000);
    im.put(2);
    CHECK(im.val() == 7, "last window's max %lld", (long long)im.val());
    photon::thread_usleep(250 * 1000);
    CHECK(im.val() == 0, "after two idle windows %lld", (long long)im.val());

    SAY("metrics: SCOPE_LATENCY puts the scope's microseconds");
    Metric::AverageLatencyCounter lat;
    Metric::MaxLatencyCounter maxlat;
    for (int i = 0; i < 2; ++i) {
        SCOPE_LATENCY(lat);
        SCOPE_LATENCY(maxlat);
        photon::thread_usleep(20 * 1000);
    }
    CHECK(lat.val() >= 20 * 1000 && lat.val() < 2 * 1000 * 1000, "latency %lld", (long long)lat.val());
    CHECK(maxlat.val() >= 20 * 1000, "max latency %lld", (long long)maxlat.val());
}

struct Obj {
    std::atomic<int> alive{1};
    int value;
    explicit Obj(int v) : value(v) {}
};

static void rcu_one_vcpu() {
    SAY("rcuptr: synchronize waits for an online reader's next quiescent()");
    RCUPtr<Obj> ptr;
    Obj* first = new Obj(1);
    CHECK(ptr.update(first) == nullptr, "first update returns the null pointer");
    CHECK(ptr->value == 1 && &*ptr == first && ptr.dereference() == first, "dereference");
    bool reader_done = false;
    photon::thread* reader = photon::thread_create11([&] {
        ptr.quiescent();  // online
        const Obj* seen = ptr.dereference();
        photon::thread_usleep(100 * 1000);  // holds `seen` meanwhile
        CHECK(seen->alive.load() == 1, "the reader's object was retired under it");
        ptr.quiescent();
        photon::thread_usleep(100 * 1000);
        reader_done = true;
    });
    photon::join_handle* rj = photon::thread_enable_join(reader);
    photon::thread_yield();  // the reader goes online and holds the object
    Obj* old = ptr.update(new Obj(2));
    CHECK(old == first, "update returns the old object");
    uint64_t t0 = photon::now;
    ptr.synchronize();
    CHECK(since(t0) >= 80 * 1000, "synchronize returned after %llu us, before the reader's quiescent()",
          (unsigned long long)since(t0));
    CHECK(!reader_done, "synchronize waited for the reader's end, not its quiescent()");
    old->alive = 0;
    delete old;

    SAY("rcuptr: an offline reader is not waited for");
    photon::thread* off = photon::thread_create11([&] {
        ptr.quiescent();
        global_rcu_domain()->offline_current();
        photon::thread_usleep(300 * 1000);
        global_rcu_domain()->online_current();
    });
    photon::join_handle* oj = photon::thread_enable_join(off);
    photon::thread_yield();
    t0 = photon::now;
    old = ptr.update(new Obj(3));
    // The first reader stays online without another quiescent() until it
    // ends (about 100 ms from now): that is all this synchronize waits for.
    ptr.synchronize();
    CHECK(since(t0) < 250 * 1000, "synchronize waited %llu us for an offline reader", (unsigned long long)since(t0));
    delete old;
    photon::thread_join(rj);
    photon::thread_join(oj);

    SAY("rcuptr: rcu_call runs after the grace period, without blocking the caller");
    bool called = false;
    photon::thread* slow = photon::thread_create11([&] {
        ptr.quiescent();
        photon::thread_usleep(100 * 1000);
        ptr.quiescent();
    });
    photon::join_handle* sj = photon::thread_enable_join(slow);
    photon::thread_yield();
    t0 = photon::now;
    Obj* retired = ptr.update(new Obj(4));
    ptr.rcu_call(retired, nullptr, [&](Obj* o) {
        called = true;
        delete o;
    });
    CHECK(since(t0) < 50 * 1000 && !called, "rcu_call blocked or ran at once");
    photon::thread_join(sj);
    for (int i = 0; i < 100 && !called; ++i) photon::thread_usleep(1000);
    CHECK(called, "rcu_call's function never ran");

    SAY("rcuptr: a reader thread that ended is not waited for; a domain of one's own");
    RCUDomain domain;
    RCUPtr<Obj> p2;
    p2.update(new Obj(5));
    photon::join_handle* ended = photon::thread_enable_join(photon::thread_create11([&] { p2.quiescent(&domain); }));
    photon::thread_join(ended);
    t0 = photon::now;
    Obj* last = p2.update(nullptr, &domain);
    p2.synchronize(&domain);
    CHECK(since(t0) < 50 * 1000, "synchronize waited for an ended reader");
    delete last;
    delete ptr.update(nullptr);
}

static void rcu_vcpus() {
    SAY("rcuptr: readers on 3 other vcpus never see a retired object");
    RCUPtr<Obj> ptr;
    ptr.update(new Obj(0));
    std::atomic<bool> stop{false};
    std::atomic<long> reads{0}, bad{0};
    std::atomic<int> online{0};
    std::vector<std::thread> vcpus;
    for (int v = 0; v < 3; ++v) {
        vcpus.emplace_back([&] {
            CHECK(photon::vcpu_init() == 0, "vcpu_init");
            photon::semaphore done(0);
            for (int t = 0; t < 4; ++t) {
                photon::thread_create11([&] {
                    ptr.quiescent();
                    online++;
                    while (!stop.load()) {
                        const Obj* o = ptr.dereference();
                        for (int k = 0; k < 3; ++k) {
                            if (o->alive.load() != 1) bad++;
                            photon::thread_yield();  // still inside the read: no quiescent()
                        }
                        reads++;
                        ptr.quiescent();
                    }
                    done.signal(1);
                });
            }
            done.wait(4);
            photon::vcpu_fini();
        });
    }
    // Retired objects are marked dead, then kept (not freed) so a wrong read
    // shows as a dead object rather than a crash.
    std::vector<Obj*> graveyard;
    while (online.load() < 12) photon::thread_usleep(1000);
    for (int i = 1; i <= 200; ++i) {
        Obj* old = ptr.update(new Obj(i));
        ptr.synchronize();
        old->alive = 0;
        graveyard.push_back(old);
        photon::thread_yield();
    }
    stop = true;
    for (auto& t : vcpus) t.join();
    CHECK(bad.load() == 0, "%ld reads of a retired object", bad.load());
    CHECK(reads.load() >= 200, "reads %ld", reads.load());
    for (Obj* o : graveyard) delete o;
    delete ptr.update(nullptr);
}

static void throttle() {
    SAY("throttle: a full bucket, then refills of a slice's share");
    photon::throttle t(1000, 1000 * 1000, 10);  // 1000 per second, 100 per 100 ms slice
    uint64_t t0 = photon::now;
    CHECK_OK(t.consume(1000));
    CHECK(since(t0) < 50 * 1000, "a full bucket waited %llu us", (unsigned long long)since(t0));
    CHECK_ERRNO(t.try_consume(1), ETIMEDOUT);
    t0 = photon::now;
    CHECK_OK(t.consume(300));  // three slices
    CHECK(since(t0) >= 250 * 1000 && since(t0) < 900 * 1000, "300 units took %llu us", (unsigned long long)since(t0));

    SAY("throttle: restore gives units back, never above the limit");
    photon::throttle r(1000, 10 * 1000 * 1000, 10);  // slices of 1 s: no refill meanwhile
    CHECK_OK(r.consume(1000));
    r.restore(200);
    CHECK_OK(r.try_consume(200));
    CHECK_ERRNO(r.try_consume(100), ETIMEDOUT);
    r.restore(100000);
    CHECK_OK(r.try_consume(1000));
    CHECK_ERRNO(r.try_consume(1), ETIMEDOUT);

    SAY("throttle: High goes at once, Low waits for a fuller bucket, up to its starvation limit");
    photon::throttle p(1000, 1000 * 1000, 10);
    CHECK_OK(p.consume(900));  // 10% left
    t0 = photon::now;
    CHECK_OK(p.consume(50, photon::throttle::Priority::High));
    CHECK(since(t0) < 50 * 1000, "High waited %llu us", (unsigned long long)since(t0));
    photon::throttle p2(1000, 1000 * 1000, 10);
    CHECK_OK(p2.consume(900));
    t0 = photon::now;
    CHECK_OK(p2.consume(50, photon::throttle::Priority::Low));
    // Low wants 60% (6 slices of refill) but starves at most 20% of 10
    // slices: it goes after about 3 slices.
    CHECK(since(t0) >= 250 * 1000 && since(t0) < 900 * 1000, "Low waited %llu us", (unsigned long long)since(t0));
    photon::throttle p3(1000, 1000 * 1000, 10);
    CHECK_OK(p3.consume(900));
    t0 = photon::now;
    CHECK_OK(p3.consume(50, photon::throttle::Priority::Medium));
    CHECK(since(t0) >= 150 * 1000 && since(t0) < 700 * 1000, "Medium waited %llu us", (unsigned long long)since(t0));

    SAY("throttle: a caller takes units that are there past a queued larger request (as Photon's semaphore)");
    photon::throttle b(1000, 1000 * 1000, 10);
    CHECK_OK(b.consume(1000));
    std::atomic<bool> big_done{false};
    t0 = photon::now;
    auto big = photon::thread_enable_join(photon::thread_create11([&] {
        CHECK_OK(b.consume(500));  // queued: five slices
        big_done = true;
    }));
    photon::thread_usleep(150 * 1000);  // a slice's 100 units came in for the queued 500
    CHECK_OK(b.try_consume(100));
    CHECK(!big_done, "the 500 went before 5 slices");
    photon::thread_join(big);
    CHECK(since(t0) >= 550 * 1000, "500 units after 100 were taken past it: %llu us", (unsigned long long)since(t0));

    SAY("throttle: units given back wake a queued request at once");
    photon::throttle w(10, 10 * 1000 * 1000, 10);  // slices of 1 s
    CHECK_OK(w.consume(10));
    uint64_t woke = 0;
    auto waiter = photon::thread_enable_join(photon::thread_create11([&] {
        CHECK_OK(w.consume(3));
        woke = photon::now;
    }));
    photon::thread_usleep(100 * 1000);
    t0 = photon::now;
    w.restore(3);
    photon::thread_join(waiter);
    CHECK(woke - t0 < 500 * 1000, "the waiter went %llu us after the restore (a slice is 1 s)",
          (unsigned long long)(woke - t0));

    SAY("throttle: waits that end leave the waiters' later sleeps whole");
    {
        photon::throttle c(10000, 100 * 1000, 100);  // slices of 1 ms, 100 units each
        std::atomic<int> short_sleeps{0};
        auto user = [&](uint64_t need) {
            for (int i = 0; i < 150; ++i) {
                const uint64_t s0 = photon::now;
                photon::thread_usleep(2000);
                if (since(s0) < 2000) ++short_sleeps;
                c.consume(need);
            }
        };
        auto u1 = photon::thread_enable_join(photon::thread_create11([&] { user(150); }));
        auto u2 = photon::thread_enable_join(photon::thread_create11([&] { user(250); }));
        photon::thread_join(u1);
        photon::thread_join(u2);
        CHECK(short_sleeps == 0, "%d sleeps of 2 ms ended early", short_sleeps.load());
    }

    SAY("throttle: update changes the limit; no limit; an interrupted wait");
    photon::throttle u(100, 1000 * 1000, 10);
    u.update(10);  // from the next refill on: the 100 units there stay
    CHECK_OK(u.try_consume(100));
    CHECK_ERRNO(u.try_consume(1), ETIMEDOUT);
    photon::thread_usleep(250 * 1000);  // two slices of 1
    CHECK_OK(u.try_consume(2));
    CHECK_ERRNO(u.try_consume(1), ETIMEDOUT);
    photon::throttle unlimited(-1ULL);
    CHECK_OK(unlimited.consume(1ULL << 40));
    photon::throttle zero(0);
    CHECK_ERRNO(zero.try_consume(1), ETIMEDOUT);
    photon::thread* me = photon::CURRENT;
    photon::thread_create11([me] {
        photon::thread_usleep(20 * 1000);
        photon::thread_interrupt(me, EINTR);
    });
    CHECK_ERRNO(zero.consume(1), EINTR);
}

static std::atomic<int> runs{0};
static void* count_run(void* arg) {
    runs++;
    photon::thread_usleep(1000);
    return arg;
}

static void thread_bits() {
    SAY("ALogStringL: a literal's length");
    ALogStringL s("hello");
    CHECK(s.size == 5 && s[0] == 'h', "ALogStringL size %zu", s.size);
    LOG_DEBUG("an ALogStringL: `", s);

    SAY("threads_create_join: starts n joinable threads and joins them");
    CHECK(photon::threads_create_join(40, &count_run, nullptr) == 40, "created");
    CHECK(runs.load() == 40, "runs %d", runs.load());
    CHECK(photon::threads_create_join(0, &count_run, nullptr) == 0, "zero");
    errno = 0;
    CHECK(photon::threads_create_join(3, nullptr, nullptr) == 0 && errno == EINVAL, "null entry");

    SAY("thread_usleep_defer with a lambda: runs once the caller sleeps, may wake it");
    photon::thread* me = photon::CURRENT;
    int deferred = 0;
    const uint64_t t0 = photon::now;
    CHECK_ERRNO(photon::thread_usleep_defer(10 * 1000 * 1000,
                                            [&] {
                                                ++deferred;
                                                photon::thread_interrupt(me, EINTR);
                                            }),
                EINTR);
    CHECK(deferred == 1 && since(t0) < 5 * 1000 * 1000, "deferred %d", deferred);
    const auto named = [&] { ++deferred; };
    CHECK_OK(photon::thread_usleep_defer(5000, named));
    CHECK(deferred == 2, "a named lambda ran: %d", deferred);
}

DEFINE_ENUM_STR(Fruit, fruit_names, Apple, Banana, Cherry_pie, Date);

static const char* hello_at_namespace_scope() { return TSTRING("Hello").chars; }

static void conststr() {
    SAY("conststr: TSTRING is a type per string, one static array each");
    auto a = TSTRING("Hello");
    auto b = TSTRING("Hello");
    auto c = TSTRING("Hellp");
    static_assert(std::is_same<decltype(a), decltype(b)>::value, "same string, same type");
    static_assert(!std::is_same<decltype(a), decltype(c)>::value, "other string, other type");
    static_assert(decltype(a)::len == 5 && sizeof(decltype(a)::chars) == 6, "length");
    CHECK(&a.chars == &b.chars && a.chars == hello_at_namespace_scope(), "one array per string");
    CHECK(std::strcmp(a.chars, "Hello") == 0 && a.size() == 5 && a.view() == "Hello", "chars %s", a.chars);
    CHECK(std::strcmp(a.append<'!'>().chars, "Hello!") == 0, "append");
    CHECK(std::strcmp(a.prepend<'>'>().chars, ">Hello") == 0, "prepend");
    CHECK(std::strcmp(a.concat(TSTRING(", you")).chars, "Hello, you") == 0, "concat");
    auto empty = TSTRING("");
    CHECK(empty.len == 0 && empty.chars[0] == '\0', "empty");

    SAY("conststr: split drops the ignored char, join puts the separator back");
    auto parts = TSTRING(" x, yy ,zzz,").split<',', ' '>();
    CHECK(parts.size == 4, "pieces %zu", parts.size);
    CHECK(parts.views[0] == "x" && parts.views[1] == "yy" && parts.views[2] == "zzz" && parts.views[3].empty(),
          "pieces");
    CHECK(std::strcmp(parts.join<'+'>().chars, "x+yy+zzz+") == 0, "join %s", parts.join<'+'>().chars);
    auto kept = TSTRING("a b;c").split<';'>();
    CHECK(kept.size == 2 && kept.views[0] == "a b" && kept.views[1] == "c", "split without an ignored char");
    auto arr = ConstString::make_tstring_array(TSTRING("one"), TSTRING("two"), TSTRING("three"));
    CHECK(arr.size == 3 && arr.views[2] == "three", "make_tstring_array");
    CHECK(std::strcmp(arr.join<'/'>().chars, "one/two/three") == 0, "join of an array");

    SAY("conststr: compact arrays are NUL-separated with offsets");
    auto comp = ConstString::make_compact_str_array<uint8_t>(TSTRING("ab"), TSTRING(""), TSTRING("cde"));
    CHECK(comp.size() == 3, "size %zu", comp.size());
    CHECK(comp[0] == "ab" && comp[1].empty() && comp[2] == "cde" && comp[3].empty(), "items");
    CHECK(std::strcmp(comp[2].data(), "cde") == 0, "NUL-terminated");
    CHECK(comp.arr().offset.arr[0] == 0 && comp.arr().offset.arr[1] == 3 && comp.arr().offset.arr[2] == 4,
          "offsets");
    CHECK(std::memcmp(comp.whole().chars, "ab\0\0cde", 8) == 0, "whole");

    SAY("conststr: DEFINE_ENUM_STR names the values, at namespace and block scope");
    CHECK(fruit_names[Fruit::Apple] == "Apple" && fruit_names[Fruit::Cherry_pie] == "Cherry_pie" &&
              fruit_names[Fruit::Date] == "Date",
          "fruit names");
    CHECK(fruit_names.size() == 4 && std::strcmp(fruit_names[Fruit::Banana].data(), "Banana") == 0, "size, data");
    DEFINE_ENUM_STR(Local, local_names, First, Second);
    CHECK(local_names[Local::Second] == "Second" && std::string(local_names.whole().chars) == "First",
          "block scope");
}

int main() {
    conststr();
    CHECK_OK(photon::init());
    thread_bits();
    metrics();
    rcu_one_vcpu();
    rcu_vcpus();
    throttle();
    CHECK_OK(photon::fini());
    std::printf("third_pass: all checks passed\n");
    return 0;
}
