// A producer/consumer program written with std:: threads, to be ported to
// photon threads by cpp-wrapper/port-to-photon.sed:
//
//   sed -f port-to-photon.sed producer_consumer.cpp > producer_consumer_photon.cpp
//
// Three producers put numbered jobs into a bounded queue; two consumers take
// them, "work" on each (a short sleep), and add up the results. The output
// does not depend on the interleaving, so the std:: build, the photon build
// on one vcpu and the photon build on a work pool (PHOTON_STD_WORK_POOL=4)
// print the same lines.
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <mutex>
#include <thread>
#include <vector>

class BoundedQueue {
public:
    explicit BoundedQueue(size_t capacity) : capacity_(capacity) {}

    void push(long job) {
        std::unique_lock<std::mutex> lock(mutex_);
        not_full_.wait(lock, [&] { return jobs_.size() < capacity_; });
        jobs_.push_back(job);
        not_empty_.notify_one();
    }

    // Returns false once the queue is closed and empty.
    bool pop(long& job) {
        std::unique_lock<std::mutex> lock(mutex_);
        not_empty_.wait(lock, [&] { return !jobs_.empty() || closed_; });
        if (jobs_.empty()) return false;
        job = jobs_.front();
        jobs_.pop_front();
        not_full_.notify_one();
        return true;
    }

    void close() {
        std::lock_guard<std::mutex> lock(mutex_);
        closed_ = true;
        not_empty_.notify_all();
    }

private:
    std::mutex mutex_;
    std::condition_variable not_full_, not_empty_;
    std::deque<long> jobs_;
    size_t capacity_;
    bool closed_ = false;
};

int main() {
    const int producers = 3, consumers = 2, jobs_each = 200;
    BoundedQueue queue(8);
    std::mutex totals_mutex;
    long total = 0, count = 0;

    std::vector<std::thread> consumer_threads;
    for (int c = 0; c < consumers; c++) {
        consumer_threads.emplace_back([&] {
            long job;
            while (queue.pop(job)) {
                if (job % 50 == 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
                std::lock_guard<std::mutex> lock(totals_mutex);
                total += job * job;
                count++;
            }
        });
    }
    std::vector<std::thread> producer_threads;
    for (int p = 0; p < producers; p++) {
        producer_threads.emplace_back([&queue, p, jobs_each] {
            for (int i = 1; i <= jobs_each; i++) {
                queue.push(p * 1000 + i);
                if (i % 40 == 0) std::this_thread::sleep_for(std::chrono::microseconds(500));
            }
        });
    }
    for (auto& t : producer_threads) t.join();
    queue.close();
    for (auto& t : consumer_threads) t.join();

    std::printf("consumed %ld jobs, sum of squares %ld\n", count, total);
    return 0;
}
