// The second pass over photon/thread/: vcpu_init / vcpu_fini; CURRENT and
// now copied as values; thread_usleep_defer (the defer runs after the
// caller sleeps, and can wake it); thread_yield_to; qspinlock and
// spinlock::locked; thread-key.h; thread_local_ptr (one object per photon
// thread, built from the kept arguments, destroyed when the thread ends);
// thread-pool.h (joinable and detached); photon::Future / Promise and
// photon_std::promise / future (across vcpus, with timeouts);
// stack-allocator.h; WorkPool call<Context>, the ring-size constructor and
// join_current_vcpu_into_workpool.
#include <photon/common/singleflight.h>
#include <photon/photon.h>
#include <photon/thread/future.h>
#include <photon/thread/go.h>
#include <photon/thread/stack-allocator.h>
#include <photon/thread/std-compat.h>
#include <photon/thread/thread-key.h>
#include <photon/thread/thread-local.h>
#include <photon/thread/thread-pool.h>
#include <photon/thread/thread.h>
#include <photon/thread/thread11.h>
#include <photon/thread/workerpool.h>

#include <atomic>
#include <chrono>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "check.h"

static std::atomic<int> live_objects{0};
struct counted {
    std::string name;
    int value;
    counted(const std::string& n, int v) : name(n), value(v) { ++live_objects; }
    ~counted() { --live_objects; }
};

static photon::thread* sleeper = nullptr;
static void wake_sleeper(void* arg) {
    *static_cast<int*>(arg) += 1;
    photon::thread_interrupt(sleeper, EINTR);
}

static void* pool_entry(void* arg) {
    photon::thread_usleep(1000);
    return static_cast<char*>(arg) + 1;
}

int main() {
    SAY("vcpu_init / vcpu_fini");
    CHECK_OK(photon::vcpu_init());
    CHECK_ERRNO(photon::vcpu_init(), EALREADY);
    CHECK_OK(photon::vcpu_fini());
    CHECK_OK(photon::vcpu_init());

    SAY("now and CURRENT as values");
    auto t0 = photon::now;
    photon::thread_usleep(2000);
    const uint64_t elapsed = photon::now - t0;
    CHECK(elapsed >= 2000 && elapsed < 2000000, "elapsed %lu", (unsigned long)elapsed);
    const uint64_t t0_again = t0;
    photon::thread_usleep(1000);
    CHECK(static_cast<uint64_t>(t0) == t0_again, "a copy of now stays put");
    auto me = photon::CURRENT;
    photon::thread* other = nullptr;
    photon::thread* th = photon::thread_create11([&] { other = photon::CURRENT; });
    photon::thread_join(photon::thread_enable_join(th));
    CHECK(other == th && static_cast<photon::thread*>(me) == photon::CURRENT && other != me, "CURRENT copies");

    SAY("thread_usleep_defer: the defer runs once the caller sleeps, and may wake it");
    int deferred = 0;
    sleeper = photon::CURRENT;
    const uint64_t s0 = photon::now;
    CHECK_ERRNO(photon::thread_usleep_defer(10 * 1000 * 1000, &wake_sleeper, &deferred), EINTR);
    CHECK(deferred == 1 && photon::now - s0 < 5 * 1000 * 1000, "deferred %d", deferred);
    CHECK_OK(photon::thread_usleep_defer(1000, nullptr));

    SAY("thread_yield_to lets the target run");
    bool ran = false;
    photon::thread* target = photon::thread_create11([&] { ran = true; });
    CHECK_OK(photon::thread_yield_to(target));
    CHECK(ran, "target ran");
    CHECK_ERRNO(photon::thread_yield_to(nullptr), EINVAL);

    SAY("qspinlock, spinlock::locked");
    photon::qspinlock q;
    CHECK(!q.locked() && q.try_lock() == 0 && q.locked() && q.try_lock() == -1, "qspinlock");
    q.unlock();
    photon::spinlock sl;
    sl.lock();
    CHECK(sl.locked(), "locked");
    sl.unlock();
    CHECK(!sl.locked(), "unlocked");

    SAY("thread keys");
    photon::thread_key_t key;
    static std::atomic<int> key_dtors{0};
    CHECK(photon::thread_key_create(&key, [](void*) { ++key_dtors; }) == 0, "thread_key_create");
    CHECK(photon::thread_key_create(nullptr, nullptr) == EINVAL, "an error number, returned");
    int v1 = 1;
    CHECK_OK(photon::thread_setspecific(key, &v1));
    CHECK(photon::thread_getspecific(key) == &v1, "getspecific");
    th = photon::thread_create11([&] {
        CHECK(photon::thread_getspecific(key) == nullptr, "fresh thread has no value");
        static int v2 = 2;
        photon::thread_setspecific(key, &v2);
    });
    photon::thread_join(photon::thread_enable_join(th));
    CHECK(key_dtors == 1, "destructor ran at the thread's end: %d", key_dtors.load());
    CHECK_OK(photon::thread_setspecific(key, nullptr));
    CHECK_OK(photon::thread_key_delete(key));
    CHECK(photon::thread_key_delete(key) == EINVAL, "a deleted key: EINVAL, returned");

    SAY("thread_local_ptr: an object per photon thread, from the kept arguments");
    {
        static photon::thread_local_ptr<counted, std::string, int> tlp(std::string("seed"), 7);
        CHECK(tlp->name == "seed" && tlp->value == 7, "first use builds from the arguments");
        tlp->value = 100;
        CHECK((*tlp).value == 100, "same object");
        int seen_in_child = -1;
        th = photon::thread_create11([&] {
            seen_in_child = tlp->value;
            tlp->value = 5;
        });
        photon::thread_join(photon::thread_enable_join(th));
        CHECK(seen_in_child == 7 && tlp->value == 100, "child %d, mine %d", seen_in_child, tlp->value);
        CHECK(live_objects == 1, "the child's object was destroyed at its end: %d live", live_objects.load());
    }

    SAY("thread pools: joinable and detached threads");
    {
        auto* pool = photon::new_thread_pool(4);
        char base[4];
        photon::TPControl* c = pool->thread_create_ex(&pool_entry, base, true);
        CHECK(c != nullptr && c->th != nullptr, "thread_create_ex");
        pool->join(c);
        int done = 0;
        for (int i = 0; i < 3; i++) {
            CHECK(pool->thread_create([](void* p) -> void* {
                ++*static_cast<int*>(p);
                return nullptr;
            }, &done) != nullptr, "thread_create");
        }
        photon::thread_usleep(1000);
        CHECK(done == 3, "done %d", done);
        photon::delete_thread_pool(pool);
        photon::ThreadPool<8> local_pool;
        c = local_pool.thread_create_ex(&pool_entry, base, true);
        local_pool.join(c);
        SAY("thread pools: an exception escaping a joinable pool thread is rethrown by join");
        c = local_pool.thread_create_ex([](void*) -> void* { throw std::runtime_error("pool boom"); }, nullptr, true);
        CHECK(c != nullptr, "thread_create_ex");
        std::string what;
        try {
            local_pool.join(c);
        } catch (const std::runtime_error& e) {
            what = e.what();
        }
        CHECK(what == "pool boom", "caught '%s'", what.c_str());
    }

    SAY("photon::Future / Promise, across vcpus and with a timeout");
    {
        photon::WorkPool pool(1, 0, 0, -1, 1024);
        photon::Future<int> fut;
        CHECK_ERRNO(fut.wait(1000), ETIMEDOUT);
        auto promise = fut.get_promise();
        pool.async_call(new auto([promise]() mutable {
            photon::thread_usleep(2000);
            promise.set_value(42);
        }));
        CHECK(fut.get() == 42 && fut.ready(), "future got %d", fut.get());
        CHECK_OK(fut.wait(0));

        SAY("photon_std::promise / future");
        photon_std::promise<std::string> p;
        photon_std::future<std::string> f = p.get_future();
        CHECK(f.valid(), "valid");
        CHECK(f.wait_for(std::chrono::milliseconds(1)) == std::future_status::timeout, "not yet");
        photon_std::thread producer([&] {
            photon::thread_usleep(1000);
            p.set_value(std::string("hello"));
        });
        CHECK(f.get() == "hello", "value");
        producer.join();
        photon_std::promise<void> pv;
        auto fv = pv.get_future();
        pv.set_value();
        fv.get();

        SAY("WorkPool call<PhotonContext> / call<StdContext>");
        int where = 0;
        CHECK_OK(pool.call<photon::PhotonContext>([&] { where = 1; }));
        CHECK(where == 1, "PhotonContext");
        CHECK_OK(pool.call<photon::StdContext>([&](int x) { where = x; }, 2));
        CHECK(where == 2, "StdContext");

        SAY("join_current_vcpu_into_workpool returns when the pool ends");
        auto* joined_pool = new photon::WorkPool(1);
        std::atomic<int> joined{0};
        photon::thread* joiner = photon::thread_create11([&] {
            joined = 1;
            joined = joined_pool->join_current_vcpu_into_workpool() == 0 ? 2 : -1;
        });
        photon::thread_enable_join(joiner);
        photon::thread_usleep(2000);
        CHECK(joined == 1, "waiting");
        std::thread killer([&] { delete joined_pool; });
        photon::thread_join(reinterpret_cast<photon::join_handle*>(joiner));
        killer.join();
        CHECK(joined == 2, "joined %d", joined.load());
    }

    SAY("WorkPool(0) runs its work on the vcpus that join it");
    {
        auto* pool = new photon::WorkPool(0, 0, 0, 0);
        std::atomic<int> joined_ended{0};
        std::vector<std::thread> helpers;
        for (int i = 0; i < 2; i++)
            helpers.emplace_back([&] {
                photon::vcpu_init();
                CHECK(pool->join_current_vcpu_into_workpool() == 0, "join returns 0");
                ++joined_ended;
                photon::vcpu_fini();
            });
        // Both helpers must have joined before the pool can be deleted (a
        // join that starts after the delete uses a dead pool): the pool
        // names two different joined vcpus once both are in.
        while (pool->vcpu(0) == nullptr || pool->vcpu(1) == pool->vcpu(0)) photon::thread_usleep(100);
        std::atomic<int> ran{0};
        photon::semaphore sem(0);
        for (int i = 0; i < 4; i++)
            CHECK_OK(pool->async_call(new auto([&] {
                photon::thread_usleep(1000);
                CHECK(photon::get_vcpu() != nullptr, "on a vcpu");
                ++ran;
                sem.signal(1);
            })));
        CHECK_OK(sem.wait(4, 10 * 1000 * 1000));
        CHECK(ran == 4, "ran %d", ran.load());
        photon_vcpu* where = nullptr;
        CHECK_OK(pool->call([&] { where = photon_vcpu_current(); }));
        CHECK(where != nullptr && where != photon_vcpu_current(), "call ran on a joined vcpu");
        std::thread killer([&] { delete pool; });
        while (joined_ended < 2) photon::thread_usleep(1000);
        killer.join();
        for (auto& t : helpers) t.join();
    }

    SAY("threads: lvalue arguments go by reference only where a copy cannot serve (as Photon's)");
    {
        int counter = 1;
        photon_std::mutex mu;  // not copyable
        auto bump = [](int& c, photon_std::mutex& m) {
            photon_std::lock_guard<photon_std::mutex> g(m);
            c += 10;
        };
        photon_std::thread t(bump, counter, mu);
        t.join();
        CHECK(counter == 11, "by reference: %d", counter);
        int copied = 5;
        photon_std::thread u([](int v) { CHECK(v == 5, "by value: %d", v); }, copied);
        copied = 6;
        u.join();
        photon::thread* th11 = photon::thread_create11([](int& c) { c = 99; }, counter);
        photon::thread_join(photon::thread_enable_join(th11));
        CHECK(counter == 99, "thread_create11 by reference: %d", counter);
    }

    SAY("go.h: go, buffered and unbuffered channels, close, range-for, select");
    {
        photon::channel<int> ch(4);
        photon::go([&] {
            for (int i = 1; i <= 10; i++) ch << i;
            ch.close();
        });
        int sum = 0;
        for (int v : ch) sum += v;
        CHECK(sum == 55 && ch.is_closed() && !ch.send(1), "sum %d", sum);
        int v = 0;
        CHECK(!ch.recv(v), "closed and drained");

        photon::channel<std::string> unbuf;
        bool sent = false;
        photon::go([&] { sent = unbuf.send(std::string("hand-off")); });
        photon::thread_usleep(2000);
        CHECK(!sent, "an unbuffered send waits for a receiver");
        auto r = unbuf.recv(1000 * 1000);
        CHECK(r.second && r.first == "hand-off", "received");
        photon::thread_usleep(1000);
        CHECK(sent, "the sender returned true");
        CHECK(!unbuf.send(std::string("nobody"), 2000), "an unbuffered send times out");
        CHECK(!unbuf.try_send(std::string("x")), "try_send without a receiver");

        photon::channel<int> a(1), b(1);
        int got = 0;
        CHECK(photon::select_nonblock(photon::recv_case_of(a, [&](int x, bool) { got = x; }),
                                      photon::recv_case_of(b, [&](int x, bool) { got = x; })) == -1,
              "nothing ready");
        b << 7;
        CHECK(photon::select(photon::recv_case_of(a, [&](int x, bool) { got = x; }),
                             photon::recv_case_of(b, [&](int x, bool) { got = -x; })) == 1 &&
                  got == -7,
              "select picked b: %d", got);
        const uint64_t t0 = photon::now;
        CHECK(photon::select(photon::Timeout(3000), photon::recv_case_of(a, [&](int, bool) {})) == -1, "timeout");
        CHECK(photon::now - t0 >= 2000, "waited");
        bool wrote = false;
        CHECK(photon::select_nonblock(photon::send_case_of(a, 5, [&] { wrote = true; })) == 0 && wrote && a.size() == 1,
              "send case");

        SAY("a channel across vcpus");
        photon::WorkPool pool(1);
        photon::channel<int> cross(2);
        pool.async_call(new auto([&] {
            for (int i = 0; i < 100; i++) cross.send(i);
            cross.close();
        }));
        long total = 0;
        for (int x : cross) total += x;
        CHECK(total == 4950, "total %ld", total);
    }

    SAY("SingleFlight: concurrent callers share one run and its result (or exception)");
    {
        photon::SingleFlight sf;
        std::atomic<int> runs{0};
        std::vector<photon::join_handle*> jhs;
        int results[4] = {0, 0, 0, 0};
        for (int i = 0; i < 4; i++)
            jhs.push_back(photon::thread_enable_join(photon::thread_create11([&, i] {
                results[i] = sf.Do([&] {
                    ++runs;
                    photon::thread_usleep(3000);
                    return 40 + runs.load();
                });
            })));
        for (auto* j : jhs) photon::thread_join(j);
        CHECK(runs == 1 && results[0] == 41 && results[3] == 41, "runs %d results %d %d", runs.load(), results[0],
              results[3]);
        std::thread os([&] {
            CHECK(sf.Do([] { return std::string("off a vcpu"); }) == "off a vcpu", "OS thread");
        });
        os.join();
        int caught = 0;
        jhs.clear();
        for (int i = 0; i < 2; i++)
            jhs.push_back(photon::thread_enable_join(photon::thread_create11([&] {
                try {
                    sf.Do([]() -> int {
                        photon::thread_usleep(2000);
                        throw std::runtime_error("shared failure");
                    });
                } catch (const std::runtime_error&) {
                    ++caught;
                }
            })));
        for (auto* j : jhs) photon::thread_join(j);
        CHECK(caught == 2, "both callers got the exception: %d", caught);
        sf.Do([&] { ++runs; });
        CHECK(runs == 2, "void");
    }

    SAY("stack-allocator.h: accepted; the allocation functions work");
    photon::use_pooled_stack_allocator();
    CHECK(photon::use_global_pooled_stack_allocator() == 0, "use_global_pooled_stack_allocator");
    photon::set_photon_thread_stack_allocator();
    void* st = photon::pooled_stack_alloc(nullptr, 1 << 20);
    CHECK(st != nullptr, "pooled_stack_alloc");
    static_cast<char*>(st)[100] = 1;
    CHECK(photon::global_pooled_stack_stats().live_bytes >= (1u << 20), "stats");
    photon::pooled_stack_dealloc(nullptr, st, 1 << 20);
    bool ok = false;
    th = photon::thread_create11([&] { ok = true; });
    photon::thread_join(photon::thread_enable_join(th));
    CHECK(ok, "threads still run");

    CHECK_OK(photon::vcpu_fini());
    std::printf("thread_extras: all checks passed\n");
    return 0;
}
