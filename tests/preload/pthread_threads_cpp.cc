// std::thread, written for OS threads, under the shim with
// PHOTON_PRELOAD_THREADS=photon: 100 threads (photon threads there) each
// keep a thread_local object across sleeps, throw and catch an exception
// across a sleep inside the catch block, meet main through std::mutex and
// std::condition_variable, and are joined; every thread_local destructor
// runs once, each on its own thread's object. Also passes as OS threads.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

static std::atomic<int> dtors{0};
static std::atomic<int> wrong{0};

struct Tracker {
    std::string s;
    ~Tracker() {
        if (!s.empty())
            dtors++;
    }
};

thread_local Tracker tl;

int main() {
    std::mutex m;
    std::condition_variable cv;
    int ready = 0;
    long sum = 0;
    std::vector<std::thread> ts;
    for (int i = 0; i < 100; i++)
        ts.emplace_back([&, i] {
            tl.s = std::to_string(i);
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
            try {
                throw std::runtime_error(tl.s);
            } catch (const std::exception &e) {
                std::this_thread::sleep_for(std::chrono::milliseconds(1));
                std::unique_lock<std::mutex> l(m);
                sum += std::stol(e.what());
                ready++;
                cv.notify_all();
            }
            if (tl.s != std::to_string(i))
                wrong++;
        });
    {
        std::unique_lock<std::mutex> l(m);
        cv.wait(l, [&] { return ready == 100; });
    }
    for (auto &t : ts)
        t.join();
    std::printf("100 std::threads: exception sum %ld (want 4950), thread_local kept %s, destructors %d (want 100)\n",
                sum, wrong.load() ? "NO" : "yes", dtors.load());
    return sum == 4950 && wrong.load() == 0 && dtors.load() == 100 ? 0 : 1;
}
