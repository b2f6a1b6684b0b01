// photon/thread/workerpool.h: WorkPool::call (arguments by reference, runs
// on a pool vcpu, waits, rethrows), async_call, thread_migrate, vcpu(),
// get_vcpu_num; call from an OS thread that is not a vcpu; an interrupt
// during call() neither cuts the wait short nor gets lost.
#include <photon/photon.h>
#include <photon/thread/thread11.h>
#include <photon/thread/workerpool.h>

#include <atomic>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>

#include "check.h"

static int add_into(int a, int b, int& out) {
    out = a + b;
    return out;
}

int main() {
    CHECK_OK(photon::init());
    photon_vcpu* home = photon_vcpu_current();
    {
        photon::WorkPool pool(2);
        CHECK(pool.get_vcpu_num() == 2, "vcpus");
        CHECK(pool.vcpu(0) != nullptr && pool.vcpu(1) != nullptr && pool.vcpu(0) != pool.vcpu(1), "vcpu()");

        SAY("call runs on a pool vcpu and waits; arguments are references to the caller's");
        photon_vcpu* where = nullptr;
        CHECK_OK(pool.call([&] { where = photon_vcpu_current(); }));
        CHECK(where != nullptr && where != home, "ran on %p (home %p)", (void*)where, (void*)home);
        int sum = 0;
        CHECK_OK(pool.call(add_into, 2, 3, sum));
        CHECK(sum == 5, "sum %d", sum);
        std::string text = "abc";
        CHECK_OK(pool.call([](std::string& s) { s += "def"; }, text));
        CHECK(text == "abcdef", "text %s", text.c_str());
        SAY("call goes round the vcpus");
        std::set<photon_vcpu*> seen;
        for (int i = 0; i < 4; i++) pool.call([&] { seen.insert(photon_vcpu_current()); });
        CHECK(seen.size() == 2, "seen %zu vcpus", seen.size());

        SAY("call rethrows what the work threw");
        std::string what;
        try {
            pool.call([] { throw std::invalid_argument("bad work"); });
        } catch (const std::invalid_argument& e) {
            what = e.what();
        }
        CHECK(what == "bad work", "caught '%s'", what.c_str());

        SAY("call keeps waiting through an interrupt, and the interrupt stays pending afterwards");
        photon::thread* me = photon::CURRENT;
        std::atomic<bool> finished{false};
        photon::thread* poker = photon::thread_create11([me] {
            photon::thread_usleep(5000);
            photon::thread_interrupt(me, ENOTCONN);
        });
        photon::thread_enable_join(poker);
        CHECK_OK(pool.call([&] {
            photon::thread_usleep(30000);
            finished = true;
        }));
        CHECK(finished, "returned before the work finished");
        CHECK_ERRNO(photon::thread_usleep(1000000), ENOTCONN);
        photon::thread_join(reinterpret_cast<photon::join_handle*>(poker));

        SAY("async_call runs detached on the pool and deletes the task");
        photon::semaphore done;
        auto shared = std::make_shared<int>(0);
        std::weak_ptr<int> weak = shared;
        CHECK_OK(pool.async_call(new auto([&done, shared] {
            (*shared)++;
            done.signal(1);
        })));
        shared.reset();
        CHECK_OK(done.wait(1, 10 * 1000 * 1000));
        for (int i = 0; i < 1000 && !weak.expired(); i++) photon::thread_usleep(10000);  // deleted after it signals
        CHECK(weak.expired(), "task deleted");

        SAY("thread_migrate: the caller to vcpu 1 and back home; a new thread to vcpu 0");
        photon::thread* mover = photon::thread_create11([&] {
            CHECK_OK(pool.thread_migrate(photon::CURRENT, 1));
            CHECK(photon_vcpu_current() == pool.vcpu(1), "on vcpu 1");
            CHECK_OK(photon::thread_migrate(photon::CURRENT, reinterpret_cast<photon::vcpu_base*>(home)));
            CHECK(photon_vcpu_current() == home, "home again");
        });
        photon::thread_join(photon::thread_enable_join(mover));
        photon_vcpu* ran_on = nullptr;
        photon::thread* fresh = photon::thread_create11([&] { ran_on = photon_vcpu_current(); });
        photon::thread_enable_join(fresh);
        CHECK_OK(pool.thread_migrate(fresh, 0));
        photon::thread_join(reinterpret_cast<photon::join_handle*>(fresh));
        CHECK(ran_on == pool.vcpu(0), "ran on vcpu 0");

        SAY("call from an OS thread that is not a vcpu blocks that thread, and works");
        int from_os_thread = 0;
        std::thread os([&] {
            CHECK(static_cast<photon::thread*>(photon::CURRENT) == nullptr, "not a photon thread");
            pool.call([&] { from_os_thread = 7; });
            bool caught = false;
            try {
                pool.call([] { throw std::runtime_error("x"); });
            } catch (const std::runtime_error&) {
                caught = true;
            }
            CHECK(caught, "rethrown on an OS thread too");
        });
        os.join();
        CHECK(from_os_thread == 7, "from an OS thread");
    }
    SAY("WorkPool(0) starts no vcpu: it waits for vcpus to join (tests/cpp/thread_extras.cpp)");
    {
        photon::WorkPool none(0);
        CHECK(none.get_vcpu_num() == 0 && none.vcpu() == nullptr, "no vcpu");
        CHECK_ERRNO(none.thread_migrate(), EINVAL);
    }
    CHECK_OK(photon::fini());
    std::printf("workpool: all checks passed\n");
    return 0;
}
