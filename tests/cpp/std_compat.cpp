// photon/thread/std-compat.h: photon_std::thread (joinable, join, detach,
// get_id, hardware_concurrency, moves, swap, exceptions through join),
// mutex, timed_mutex, recursive_mutex, condition_variable (wait, wait_for,
// wait_until, predicates, cv_status), lock_guard, unique_lock,
// this_thread::*, shared_mutex/shared_lock, condition_variable_any,
// call_once, and the work pool (work_pool_init/fini, migrate).
#include <photon/photon.h>
#include <photon/thread/std-compat.h>

#include <atomic>
#include <chrono>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "check.h"

using namespace std::chrono;

static photon_std::mutex g_mutex;  // a global, constant-initialized

static void test_thread() {
    SAY("thread: default is not joinable; a started one is, until joined");
    photon_std::thread none;
    CHECK(!none.joinable() && none.get_id() == photon_std::thread::id(), "default");
    int ran = 0;
    photon_std::thread t([&](int n) { ran = n; }, 3);
    CHECK(t.joinable() && t.get_id() != nullptr, "started");
    CHECK(t.get_id() != photon_std::this_thread::get_id(), "another thread");
    t.join();
    CHECK(!t.joinable() && ran == 3, "joined, ran %d", ran);
    CHECK_THROWS(t.join(), std::system_error);
    CHECK_THROWS(t.detach(), std::system_error);

    SAY("thread: moves and swap");
    photon_std::thread a([&] { ran = 10; });
    photon_std::thread b(std::move(a));
    CHECK(!a.joinable() && b.joinable(), "moved");
    photon_std::thread c;
    c = std::move(b);
    photon_std::thread d;
    std::swap(c, d);
    CHECK(!c.joinable() && d.joinable(), "swapped");
    swap(c, d);
    c.join();
    CHECK(ran == 10, "ran");

    SAY("thread: get_id inside equals get_id outside");
    photon_std::thread::id inside = nullptr;
    photon_std::thread e([&] { inside = photon_std::this_thread::get_id(); });
    const photon_std::thread::id outside = e.get_id();
    e.join();
    CHECK(inside == outside, "ids");

    SAY("thread: an exception escaping the thread is rethrown by join()");
    photon_std::thread f([] { throw std::out_of_range("index 9"); });
    std::string what;
    try {
        f.join();
    } catch (const std::out_of_range& x) {
        what = x.what();
    }
    CHECK(what == "index 9" && !f.joinable(), "caught '%s'", what.c_str());

    SAY("thread: detach; the detached thread finishes on its own (before and after detach)");
    std::atomic<int> finished{0};
    photon_std::thread g([&] {
        photon_std::this_thread::sleep_for(milliseconds(5));
        finished++;
    });
    g.detach();
    CHECK(!g.joinable(), "detached");
    photon_std::thread h([&] { finished++; });
    photon_std::this_thread::yield();  // h ends before it is detached
    h.detach();
    for (int i = 0; i < 5000 && finished < 2; i++) photon_std::this_thread::sleep_for(milliseconds(1));
    CHECK(finished == 2, "finished %d", finished.load());

    SAY("thread: hardware_concurrency is 1 without a work pool");
    CHECK(photon_std::thread::hardware_concurrency() == 1, "hc");
}

static void test_mutexes() {
    SAY("mutex: lock_guard and unique_lock (std's own) across yielding threads");
    long counter = 0;
    std::vector<photon_std::thread> ts;
    for (int i = 0; i < 6; i++)
        ts.emplace_back([&] {
            for (int k = 0; k < 500; k++) {
                photon_std::lock_guard<photon_std::mutex> g(g_mutex);
                const long v = counter;
                if (k % 5 == 0) photon_std::this_thread::yield();
                counter = v + 1;
            }
        });
    for (auto& t : ts) t.join();
    CHECK(counter == 3000, "counter %ld", counter);

    SAY("mutex: try_lock; unique_lock with defer_lock / try_to_lock / adopt_lock");
    photon_std::mutex m;
    CHECK(m.try_lock(), "free");
    photon_std::thread other([&] { CHECK(!m.try_lock(), "held"); });
    other.join();
    m.unlock();
    {
        photon_std::unique_lock<photon_std::mutex> lk(m, photon_std::defer_lock);
        CHECK(!lk.owns_lock(), "deferred");
        lk.lock();
        CHECK(lk.owns_lock(), "locked");
        photon_std::unique_lock<photon_std::mutex> lk2(m, photon_std::try_to_lock);
        CHECK(!lk2.owns_lock(), "try_to_lock of a held mutex");
    }
    m.lock();
    {
        photon_std::lock_guard<photon_std::mutex> adopt(m, photon_std::adopt_lock);
    }
    CHECK(m.try_lock(), "adopt_lock released it");
    m.unlock();
    SAY("mutex: locking it twice throws resource_deadlock_would_occur");
    m.lock();
    bool deadlock = false;
    try {
        m.lock();
    } catch (const std::system_error& e) {
        deadlock = e.code() == std::errc::resource_deadlock_would_occur;
    }
    CHECK(deadlock, "EDEADLK");
    m.unlock();

    SAY("timed_mutex: try_lock_for / try_lock_until time out while held, succeed when free");
    photon_std::timed_mutex tm;
    tm.lock();
    bool tries_done = false;
    photon_std::thread waiter([&] {
        const auto t0 = steady_clock::now();
        CHECK(!tm.try_lock_for(milliseconds(20)), "timed out");
        CHECK(steady_clock::now() - t0 >= milliseconds(20), "waited");
        CHECK(!tm.try_lock_until(system_clock::now() + milliseconds(5)), "until");
        tries_done = true;
        CHECK(tm.try_lock_for(seconds(10)), "got it after unlock");
        tm.unlock();
    });
    while (!tries_done) photon_std::this_thread::sleep_for(milliseconds(1));  // hold it meanwhile
    tm.unlock();
    waiter.join();
    SAY("std::lock / std::try_lock on two photon mutexes");
    photon_std::mutex m1, m2;
    photon_std::lock(m1, m2);
    CHECK(photon_std::try_lock(m1, m2) == 0, "both held");
    m1.unlock();
    m2.unlock();
#if __cplusplus >= 201703L
    {
        photon_std::scoped_lock both(m1, m2);
    }
#endif

    SAY("recursive_mutex: nests, excludes others, timed");
    photon_std::recursive_mutex rm;
    rm.lock();
    rm.lock();
    CHECK(rm.try_lock(), "third");
    photon_std::thread rt([&] {
        CHECK(!rm.try_lock(), "other");
        CHECK(!rm.try_lock_for(milliseconds(5)), "other timed");
    });
    rt.join();
    rm.unlock();
    rm.unlock();
    rm.unlock();
    photon_std::recursive_timed_mutex rtm;
    CHECK(rtm.try_lock_for(milliseconds(1)), "free");
    rtm.unlock();
}

static void test_condition_variable() {
    SAY("condition_variable: producer/consumer with wait(lock, pred) and notify_one");
    photon_std::mutex m;
    photon_std::condition_variable cv;
    std::vector<int> queue;
    long sum = 0;
    bool done = false;
    photon_std::thread consumer([&] {
        photon_std::unique_lock<photon_std::mutex> lk(m);
        for (;;) {
            cv.wait(lk, [&] { return !queue.empty() || done; });
            while (!queue.empty()) {
                sum += queue.back();
                queue.pop_back();
            }
            if (done) return;
        }
    });
    for (int i = 1; i <= 100; i++) {
        {
            photon_std::lock_guard<photon_std::mutex> g(m);
            queue.push_back(i);
        }
        cv.notify_one();
        if (i % 10 == 0) photon_std::this_thread::yield();
    }
    {
        photon_std::lock_guard<photon_std::mutex> g(m);
        done = true;
    }
    cv.notify_all();
    consumer.join();
    CHECK(sum == 5050, "sum %ld", sum);

    SAY("condition_variable: wait_for / wait_until time out with cv_status::timeout, predicates give false");
    photon_std::unique_lock<photon_std::mutex> lk(m);
    auto t0 = steady_clock::now();
    CHECK(cv.wait_for(lk, milliseconds(15)) == photon_std::cv_status::timeout, "wait_for");
    CHECK(steady_clock::now() - t0 >= milliseconds(15), "waited");
    CHECK(lk.owns_lock(), "holds the lock again");
    CHECK(cv.wait_until(lk, system_clock::now() + milliseconds(5)) == std::cv_status::timeout, "wait_until");
    CHECK(!cv.wait_for(lk, milliseconds(5), [] { return false; }), "pred false");
    CHECK(cv.wait_for(lk, milliseconds(5), [] { return true; }), "pred true");
    CHECK(cv.wait_until(lk, steady_clock::now() - seconds(1)) == std::cv_status::timeout, "past");
    SAY("condition_variable: a notify before the timeout gives no_timeout / true");
    bool flag = false;
    photon_std::thread notifier([&] {
        photon_std::this_thread::sleep_for(milliseconds(5));
        photon_std::lock_guard<photon_std::mutex> g(m);
        flag = true;
        cv.notify_all();
    });
    CHECK(cv.wait_for(lk, seconds(10), [&] { return flag; }), "notified");
    lk.unlock();
    notifier.join();
    SAY("condition_variable: an interrupt is a spurious wake-up (the predicate loop carries on)");
    flag = false;
    photon::thread* me = photon::CURRENT;
    photon_std::thread poker([&] {
        photon::thread_interrupt(me, EINTR);
        photon_std::this_thread::sleep_for(milliseconds(5));
        photon_std::lock_guard<photon_std::mutex> g(m);
        flag = true;
        cv.notify_one();
    });
    lk.lock();
    cv.wait(lk, [&] { return flag; });
    lk.unlock();
    poker.join();
    SAY("condition_variable: waiting without holding the lock throws");
    CHECK_THROWS(cv.wait(lk), std::system_error);
}

static void test_this_thread() {
    SAY("this_thread: sleep_for / sleep_until sleep at least that long; yield returns");
    auto t0 = steady_clock::now();
    photon_std::this_thread::sleep_for(milliseconds(10));
    CHECK(steady_clock::now() - t0 >= milliseconds(10), "sleep_for");
    t0 = steady_clock::now();
    photon_std::this_thread::sleep_until(steady_clock::now() + milliseconds(10));
    CHECK(steady_clock::now() - t0 >= milliseconds(10), "sleep_until");
    photon_std::this_thread::sleep_for(microseconds(-5));
    photon_std::this_thread::sleep_until(system_clock::now() - seconds(1));
    photon_std::this_thread::yield();
    CHECK(photon_std::this_thread::get_id() == static_cast<photon::thread*>(photon::CURRENT), "get_id");
    SAY("this_thread::migrate without a work pool throws EPERM");
    bool eperm = false;
    try {
        photon_std::this_thread::migrate();
    } catch (const std::system_error& e) {
        eperm = e.code().value() == EPERM;
    }
    CHECK(eperm, "EPERM");
}

static void test_shared_mutex() {
    SAY("shared_mutex: shared_lock readers together, unique_lock writer alone");
    photon_std::shared_mutex sm;
    int readers_in = 0, max_readers = 0;
    std::vector<photon_std::thread> ts;
    for (int i = 0; i < 4; i++)
        ts.emplace_back([&] {
            photon_std::shared_lock<photon_std::shared_mutex> r(sm);
            readers_in++;
            if (readers_in > max_readers) max_readers = readers_in;
            photon_std::this_thread::sleep_for(milliseconds(5));
            readers_in--;
        });
    for (auto& t : ts) t.join();
    CHECK(max_readers == 4, "readers shared: %d", max_readers);
    {
        photon_std::unique_lock<photon_std::shared_mutex> w(sm);
        photon_std::thread r([&] {
            CHECK(!sm.try_lock_shared(), "reader while writing");
            CHECK(!sm.try_lock(), "writer while writing");
            CHECK(!sm.try_lock_shared_for(milliseconds(5)), "timed reader");
            CHECK(!sm.try_lock_for(milliseconds(5)), "timed writer");
        });
        r.join();
    }
    CHECK(sm.try_lock_shared(), "free for readers");
    CHECK(!sm.try_lock(), "no writer while read");
    sm.unlock_shared();
    CHECK(sm.try_lock_until(steady_clock::now() + milliseconds(1)), "free for a writer");
    sm.unlock();
}

static void test_condition_variable_any() {
    SAY("condition_variable_any: waits with a shared_lock and with a unique_lock of a recursive_mutex");
    photon_std::condition_variable_any cv;
    photon_std::shared_mutex sm;
    photon_std::recursive_mutex rm;
    int stage = 0;
    photon_std::thread t([&] {
        photon_std::shared_lock<photon_std::shared_mutex> r(sm);
        cv.wait(r, [&] { return stage >= 1; });
    });
    photon_std::thread u([&] {
        photon_std::unique_lock<photon_std::recursive_mutex> lk(rm);
        CHECK(cv.wait_for(lk, seconds(10), [&] { return stage >= 1; }), "woken");
    });
    photon_std::this_thread::sleep_for(milliseconds(5));
    {
        photon_std::unique_lock<photon_std::shared_mutex> w(sm);
        photon_std::lock_guard<photon_std::recursive_mutex> g(rm);
        stage = 1;
    }
    cv.notify_all();
    t.join();
    u.join();
    photon_std::unique_lock<photon_std::recursive_mutex> lk(rm);
    CHECK(cv.wait_for(lk, milliseconds(5)) == std::cv_status::timeout, "timeout");
    CHECK(!cv.wait_until(lk, steady_clock::now() + milliseconds(2), [] { return false; }), "pred timeout");
    cv.notify_one();
}

static void test_call_once() {
    SAY("call_once: once across threads; a throwing call lets the next caller try");
    photon_std::once_flag once;
    int calls = 0;
    std::vector<photon_std::thread> ts;
    for (int i = 0; i < 5; i++)
        ts.emplace_back([&] {
            photon_std::call_once(once, [&](int n) {
                photon_std::this_thread::sleep_for(milliseconds(2));
                calls += n;
            }, 1);
        });
    for (auto& t : ts) t.join();
    CHECK(calls == 1, "calls %d", calls);
    photon_std::once_flag retry;
    int attempts = 0;
    CHECK_THROWS(photon_std::call_once(retry, [&] {
        attempts++;
        throw std::runtime_error("first try fails");
    }), std::runtime_error);
    photon_std::call_once(retry, [&] { attempts++; });
    photon_std::call_once(retry, [&] { attempts++; });
    CHECK(attempts == 2, "attempts %d", attempts);
}

static void test_work_pool() {
    SAY("work pool: threads spread over its 3 vcpus, hardware_concurrency says 3, migrate works");
    CHECK_OK(photon_std::work_pool_init(3));
    CHECK_ERRNO(photon_std::work_pool_init(2), EALREADY);
    CHECK(photon_std::thread::hardware_concurrency() == 3, "hc %u", photon_std::thread::hardware_concurrency());
    photon_vcpu* main_vcpu = photon_vcpu_current();
    photon_std::mutex m;
    std::set<photon_vcpu*> vcpus;
    long counter = 0;
    std::vector<photon_std::thread> ts;
    for (int i = 0; i < 6; i++)
        ts.emplace_back([&] {
            {
                photon_std::lock_guard<photon_std::mutex> g(m);
                vcpus.insert(photon_vcpu_current());
            }
            for (int k = 0; k < 1000; k++) {
                photon_std::lock_guard<photon_std::mutex> g(m);
                counter++;
            }
        });
    for (auto& t : ts) t.join();
    CHECK(counter == 6000, "counter %ld", counter);
    CHECK(vcpus.size() == 3 && vcpus.count(main_vcpu) == 0, "ran on %zu pool vcpus", vcpus.size());
    SAY("work pool: an exception crosses vcpus to join()");
    photon_std::thread thrower([] { throw std::runtime_error("from the pool"); });
    CHECK_THROWS(thrower.join(), std::runtime_error);
    SAY("work pool: this_thread::migrate moves a thread among the pool's vcpus");
    photon_std::thread mover([&] {
        photon_vcpu* before = photon_vcpu_current();
        photon_std::this_thread::migrate();
        CHECK(photon_vcpu_current() != before, "moved");
    });
    mover.join();
    CHECK_OK(photon_std::work_pool_fini());
    CHECK_ERRNO(photon_std::work_pool_fini(), EINVAL);
    CHECK(photon_std::thread::hardware_concurrency() == 1, "no pool");
}

int main(int argc, char** argv) {
    SAY("off a vcpu: this_thread falls back to std::, a mutex throws EPERM, a thread cannot start");
    photon_std::this_thread::sleep_for(milliseconds(1));
    photon_std::this_thread::yield();
    CHECK(photon_std::this_thread::get_id() == nullptr, "no photon thread");
    CHECK_THROWS(g_mutex.lock(), std::system_error);
    CHECK_THROWS(photon_std::thread([] {}), std::system_error);
    return photon_std::run_as_main(
        [](int, char**) {
            test_thread();
            test_mutexes();
            test_condition_variable();
            test_this_thread();
            test_shared_mutex();
            test_condition_variable_any();
            test_call_once();
            test_work_pool();
            std::printf("std_compat: all checks passed\n");
            return 0;
        },
        argc, argv);
}
