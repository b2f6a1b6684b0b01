// pthread_sync_cpp.cpp: the C++ standard library's locks (std::mutex,
// std::timed_mutex, std::condition_variable, std::shared_mutex,
// std::call_once) reach the shim's pthread hooks, so in photon threads they
// wait as photon waits. Each check has a holder suspended in a hooked
// usleep while another photon thread of the same vcpu contends, and a
// ticker photon thread that must keep running meanwhile. Without the hooks
// the program deadlocks (the watchdog exits 3) or a check fails.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <shared_mutex>
#include <thread>
#include <unistd.h>

#include "photon.h"

static int failures = 0;
#define CHECK(c)                                                                  \
    do {                                                                          \
        if (!(c)) {                                                               \
            std::fprintf(stderr, "FAILED %s:%d: %s\n", __FILE__, __LINE__, #c);   \
            failures++;                                                           \
        }                                                                         \
    } while (0)

static std::atomic<int> ticks{0}, stop{0};
static void *ticker(void *) {
    while (!stop.load()) {
        usleep(1000);
        ticks++;
    }
    return nullptr;
}

template <class F> static photon_thread *spawn(F *f) {
    photon_thread *th = photon_thread_create([](void *a) -> void * { (*static_cast<F *>(a))(); return nullptr; }, f, 0);
    photon_thread_enable_join(th);
    return th;
}

int main() {
    const char *w = std::getenv("SYNC_WATCHDOG_S"); // default 30 s
    int secs = w ? std::atoi(w) : 30;
    std::thread([secs] {
        std::this_thread::sleep_for(std::chrono::seconds(secs));
        std::fprintf(stderr, "WATCHDOG\n");
        std::_Exit(3);
    }).detach();
    if (photon_init(PHOTON_EVENT_DEFAULT, 0) != 0) return 2;
    photon_thread *tk = photon_thread_create(ticker, nullptr, 0);
    photon_thread_enable_join(tk);

    // std::mutex: exclusion with the holder suspended inside
    std::mutex m;
    int counter = 0;
    auto work = [&] {
        for (int i = 0; i < 5; i++) {
            std::lock_guard<std::mutex> g(m);
            int v = counter;
            usleep(2000);
            counter = v + 1;
        }
    };
    photon_thread *a = spawn(&work), *b = spawn(&work);
    photon_thread_join(a, nullptr);
    photon_thread_join(b, nullptr);
    CHECK(counter == 10);

    // std::timed_mutex: try_lock_for times out as a photon wait
    std::timed_mutex tm;
    auto hold = [&] { std::lock_guard<std::timed_mutex> g(tm); usleep(60000); };
    a = spawn(&hold);
    photon_thread_yield();
    int t0 = ticks.load();
    CHECK(!tm.try_lock_for(std::chrono::milliseconds(20)));
    CHECK(ticks.load() - t0 >= 3);
    tm.lock();
    tm.unlock();
    photon_thread_join(a, nullptr);

    // std::condition_variable (pthread_cond_clockwait for steady_clock)
    std::condition_variable cv;
    bool ready = false;
    auto notifier = [&] { usleep(20000); { std::lock_guard<std::mutex> g(m); ready = true; } cv.notify_all(); };
    a = spawn(&notifier);
    {
        std::unique_lock<std::mutex> l(m);
        t0 = ticks.load();
        CHECK(cv.wait_for(l, std::chrono::seconds(5), [&] { return ready; }));
        CHECK(ticks.load() - t0 >= 3);
        CHECK(!cv.wait_for(l, std::chrono::milliseconds(10), [] { return false; }));
    }
    photon_thread_join(a, nullptr);

    // std::shared_mutex: readers share, a writer waits as a photon wait
    std::shared_mutex sm;
    std::atomic<int> readers{0}, max_readers{0};
    auto reader = [&] {
        std::shared_lock<std::shared_mutex> l(sm);
        int n = ++readers;
        if (n > max_readers) max_readers = n;
        usleep(10000);
        --readers;
    };
    a = spawn(&reader);
    b = spawn(&reader);
    photon_thread_yield();
    {
        std::unique_lock<std::shared_mutex> l(sm);
        CHECK(readers.load() == 0);
    }
    photon_thread_join(a, nullptr);
    photon_thread_join(b, nullptr);
    CHECK(max_readers.load() == 2);

    // std::call_once whose callable sleeps
    std::once_flag once;
    std::atomic<int> runs{0}, early{0};
    std::atomic<bool> done{false};
    auto caller = [&] {
        std::call_once(once, [&] { runs++; usleep(20000); done = true; });
        if (!done) early++;
    };
    photon_thread *th[5];
    for (auto &t : th) t = spawn(&caller);
    for (auto &t : th) photon_thread_join(t, nullptr);
    CHECK(runs.load() == 1);
    CHECK(early.load() == 0);

    stop = 1;
    photon_thread_join(tk, nullptr);
    photon_fini();
    std::printf("pthread_sync_cpp: %s\n", failures ? "FAILED" : "ok");
    return failures ? 1 : 0;
}
