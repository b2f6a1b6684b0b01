// photon/photon.h and photon/thread/thread.h: init/fini, thread_create,
// join handles (including a thread* cast to join_handle*), yield, sleeps,
// interrupts, CURRENT, now, migration, Timeout, and an exception thrown by a
// C-style entry, rethrown by thread_join.
#include <photon/photon.h>
#include <photon/thread/thread.h>
#include <photon/thread/thread11.h>
#include <photon/thread/workerpool.h>

#include <stdexcept>
#include <string>
#include <vector>

#include "check.h"

static std::vector<int> g_order;

static void* record(void* arg) {
    g_order.push_back(static_cast<int>(reinterpret_cast<intptr_t>(arg)));
    return arg;
}

static void* sleeper(void* arg) {
    const int r = photon::thread_usleep(1000 * 1000 * 10);  // 10 s unless interrupted
    *static_cast<int*>(arg) = r == 0 ? 0 : errno;
    return nullptr;
}

static void* thrower(void*) { throw std::runtime_error("from a C-style entry"); }

static void* who_am_i(void* arg) {
    *static_cast<photon::thread**>(arg) = photon::CURRENT;
    return nullptr;
}

int main() {
    SAY("off a vcpu: CURRENT is nullptr, thread_create fails with EPERM");
    CHECK(static_cast<photon::thread*>(photon::CURRENT) == nullptr, "CURRENT off a vcpu");
    errno = 0;
    CHECK(photon::thread_create(record, nullptr) == nullptr && errno == EPERM, "errno %d", errno);
    CHECK(photon::get_event_engine() == photon::INIT_EVENT_NONE, "engine off a vcpu");

    SAY("init with PhotonLibOS's flags, twice fails with EALREADY");
    CHECK_OK(photon::init(photon::INIT_EVENT_DEFAULT, photon::INIT_IO_DEFAULT));
    CHECK_ERRNO(photon::init(), EALREADY);
    const uint64_t engine = photon::get_event_engine();
    CHECK(engine == photon::INIT_EVENT_EPOLL || engine == photon::INIT_EVENT_IOURING, "engine %lu",
          (unsigned long)engine);
    SAY("engine: %s", engine == photon::INIT_EVENT_IOURING ? "io_uring" : "epoll");
    photon::thread* main_th = photon::CURRENT;
    CHECK(main_th != nullptr, "CURRENT on the main thread");

    SAY("threads run in creation order when the creator yields; join returns the entry's value");
    photon::thread* a = photon::thread_create(record, reinterpret_cast<void*>(1));
    photon::thread* b = photon::thread_create(record, reinterpret_cast<void*>(2), 64 * 1024);
    CHECK(a != nullptr && b != nullptr, "create");
    photon::join_handle* ja = photon::thread_enable_join(a);
    CHECK(ja != nullptr, "enable_join");
    CHECK(photon::thread_enable_join(b) != nullptr, "enable_join b");
    CHECK(g_order.empty(), "new threads must not run before the creator yields");
    photon::thread_yield();
    CHECK(g_order.size() == 2 && g_order[0] == 1 && g_order[1] == 2, "order");
    CHECK(photon::thread_join(ja) == reinterpret_cast<void*>(1), "join value");
    SAY("a thread* cast to join_handle* joins too");
    CHECK(photon::thread_join(reinterpret_cast<photon::join_handle*>(b)) == reinterpret_cast<void*>(2),
          "join via cast");
    SAY("joining again fails (EINVAL or ESRCH), with nullptr");
    errno = 0;
    CHECK(photon::thread_join(ja) == nullptr && (errno == EINVAL || errno == ESRCH), "errno %d", errno);
    SAY("thread_create with a NULL entry: EINVAL");
    errno = 0;
    CHECK(photon::thread_create(nullptr, nullptr) == nullptr && errno == EINVAL, "errno %d", errno);

    SAY("CURRENT inside a thread is that thread");
    photon::thread* seen = nullptr;
    photon::thread* c = photon::thread_create(who_am_i, &seen);
    photon::thread_join(photon::thread_enable_join(c));
    CHECK(seen == c && seen != main_th, "CURRENT %p, thread %p", (void*)seen, (void*)c);

    SAY("detached threads run and go away; enable_join(th, false) detaches again");
    g_order.clear();
    photon::thread_create(record, reinterpret_cast<void*>(3));
    photon::thread* d = photon::thread_create(record, reinterpret_cast<void*>(4));
    photon::thread_enable_join(d);
    CHECK(photon::thread_enable_join(d, false) == nullptr, "detach");
    photon::thread_yield();
    CHECK(g_order.size() == 2 && g_order[0] == 3 && g_order[1] == 4, "detached threads ran");

    SAY("now is monotonic microseconds; thread_usleep sleeps at least that long");
    const uint64_t t0 = photon::now;
    CHECK_OK(photon::thread_usleep(20000));
    const uint64_t slept = photon::now - t0;
    CHECK(slept >= 20000 && slept < 2000000, "slept %lu us", (unsigned long)slept);
    CHECK_OK(photon::thread_usleep(photon::Timeout(5000)));
    CHECK_OK(photon::thread_sleep(0));

    SAY("thread_interrupt: default EINTR, and a chosen errno");
    int result = -1;
    photon::thread* s = photon::thread_create(sleeper, &result);
    photon::thread_enable_join(s);
    photon::thread_yield();
    CHECK_OK(photon::thread_interrupt(s));
    photon::thread_join(reinterpret_cast<photon::join_handle*>(s));
    CHECK(result == EINTR, "result %d", result);
    s = photon::thread_create(sleeper, &result);
    photon::thread_enable_join(s);
    photon::thread_yield();
    CHECK_OK(photon::thread_interrupt(s, ECONNRESET));
    photon::thread_join(reinterpret_cast<photon::join_handle*>(s));
    CHECK(result == ECONNRESET, "result %d", result);
    SAY("an interrupt before the sleep stays pending: the sleep fails at once");
    CHECK_OK(photon::thread_interrupt(photon::CURRENT, EIO));
    CHECK_ERRNO(photon::thread_usleep(1000000), EIO);
    SAY("thread_interrupt of an ended thread: ESRCH");
    CHECK_ERRNO(photon::thread_interrupt(s), ESRCH);

    SAY("Timeout: default never expires; from 0 it has; from a duration it counts down");
    photon::Timeout forever;
    CHECK(!forever.expired() && forever.timeout() == PHOTON_FOREVER, "forever");
    photon::Timeout zero(0);
    CHECK(zero.expired() && zero.timeout() == 0, "zero");
    photon::Timeout later(10 * 1000 * 1000);
    CHECK(!later.expired() && later.timeout() <= 10 * 1000 * 1000 && later.timeout() > 0, "later");
    photon::Timeout soon(20000);
    photon::thread_usleep(soon);
    CHECK(soon.expired() && soon.timeout() == 0, "soon expired");
    CHECK(photon::Timeout(-1UL).timeout() == PHOTON_FOREVER, "-1UL is forever");
    photon::Timeout limited(PHOTON_FOREVER);
    limited.timeout_at_most(1000);
    CHECK(limited.timeout() <= 1000, "timeout_at_most");

    SAY("an exception from a C-style entry is rethrown by thread_join");
    photon::thread* t = photon::thread_create(thrower, nullptr);
    photon::join_handle* jt = photon::thread_enable_join(t);
    std::string what;
    try {
        photon::thread_join(jt);
    } catch (const std::runtime_error& e) {
        what = e.what();
    }
    CHECK(what == "from a C-style entry", "caught '%s'", what.c_str());

    SAY("thread_joinable follows enable_join, detach and join; an exception reaches the joiner of a thread made "
        "joinable through the C API too");
    photon::thread* t2 = photon::thread_create(thrower, nullptr);
    CHECK(!photon::thread_joinable(t2), "a new thread is detached");
    CHECK_OK(photon_thread_enable_join(reinterpret_cast<photon_thread*>(t2)));
    CHECK(photon::thread_joinable(t2), "joinable after the C API's enable_join");
    photon::thread_yield();  // it throws and ends, joinable
    CHECK(photon::thread_joinable(t2), "an ended joinable thread stays joinable");
    what.clear();
    try {
        photon::thread_join(reinterpret_cast<photon::join_handle*>(t2));
    } catch (const std::runtime_error& e) {
        what = e.what();
    }
    CHECK(what == "from a C-style entry", "caught '%s'", what.c_str());
    CHECK(!photon::thread_joinable(t2), "joined");
    static int t3_result = -1;
    photon::thread* t3 = photon::thread_create(sleeper, &t3_result);
    photon::thread_enable_join(t3);
    photon::thread_enable_join(t3, false);
    CHECK(!photon::thread_joinable(t3), "detached again");
    photon::thread_interrupt(t3);

    SAY("thread_migrate moves the caller to another vcpu and back; get_vcpu follows");
    {
        photon::WorkPool pool(1);
        photon::vcpu_base* home = photon::get_vcpu();
        CHECK(home != nullptr, "get_vcpu");
        photon::thread* mover = photon::thread_create11([&] {
            photon::vcpu_base* there = reinterpret_cast<photon::vcpu_base*>(pool.vcpu(0));
            CHECK_OK(photon::thread_migrate(photon::CURRENT, there));
            CHECK(photon::get_vcpu() == there, "now on the pool's vcpu");
            CHECK_OK(photon::thread_migrate(photon::CURRENT, home));
            CHECK(photon::get_vcpu() == home, "back home");
        });
        photon::thread_join(photon::thread_enable_join(mover));
        errno = 0;
        CHECK(photon::get_vcpu(mover) == nullptr && errno == ENOSYS, "get_vcpu of another thread");
    }

    CHECK_OK(photon::fini());
    CHECK(static_cast<photon::thread*>(photon::CURRENT) == nullptr, "CURRENT after fini");
    std::printf("thread: all checks passed\n");
    return 0;
}
