// The port test's program: plain C++ with std:: threads (std::thread,
// std::mutex, std::condition_variable, std::unique_lock, std::lock_guard,
// std::this_thread::sleep_for / yield / get_id, std::thread::id), no photon
// in sight. tests/cpp_wrapper.rs builds it as is (OS threads), and after
// cpp-wrapper/port-to-photon.sed (photon threads on one vcpu, and on a work
// pool of 3 vcpus), and wants the same output from all three.
//
// A bank: 4 tellers submit transfer orders to a bounded queue, 3 clerks
// apply them to 8 accounts (each with its own mutex, taken in order), and
// an auditor checks that money is neither made nor lost, waking every 2 ms
// or when told to stop. Every order is applied, whatever the interleaving,
// so the final balances are fixed.
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <deque>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

struct Order {
    int from, to;
    long amount;
};

static const int kAccounts = 8, kTellers = 4, kClerks = 3, kOrdersEach = 400;
static const long kOpening = 1000;

struct Account {
    std::mutex mutex;
    long balance = kOpening;
};

static Account accounts[kAccounts];

static std::mutex queue_mutex;
static std::condition_variable queue_not_full, queue_not_empty;
static std::deque<Order> queue;
static bool tellers_done = false;

static std::mutex audit_mutex;
static std::condition_variable audit_wake;
static bool audit_stop = false;

static std::mutex ids_mutex;
static std::set<std::thread::id> ids;

static void remember_id() {
    std::lock_guard<std::mutex> lock(ids_mutex);
    ids.insert(std::this_thread::get_id());
}

static void teller(int id, long* submitted) {
    remember_id();
    uint32_t seed = 12345u + static_cast<uint32_t>(id) * 7919u;
    for (int i = 0; i < kOrdersEach; i++) {
        seed = seed * 1103515245u + 12345u;
        Order o{static_cast<int>((seed >> 8) % kAccounts), static_cast<int>((seed >> 16) % kAccounts),
                static_cast<long>((seed >> 4) % 50) + 1};
        {
            std::unique_lock<std::mutex> lock(queue_mutex);
            queue_not_full.wait(lock, [] { return queue.size() < 16; });
            queue.push_back(o);
        }
        queue_not_empty.notify_one();
        *submitted += o.amount;
        if (i % 100 == 99) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
}

static void clerk(long* applied) {
    remember_id();
    for (;;) {
        Order o;
        {
            std::unique_lock<std::mutex> lock(queue_mutex);
            queue_not_empty.wait(lock, [] { return !queue.empty() || tellers_done; });
            if (queue.empty()) return;
            o = queue.front();
            queue.pop_front();
        }
        queue_not_full.notify_one();
        if (o.from != o.to) {
            Account& first = accounts[o.from < o.to ? o.from : o.to];
            Account& second = accounts[o.from < o.to ? o.to : o.from];
            std::lock_guard<std::mutex> l1(first.mutex);
            std::lock_guard<std::mutex> l2(second.mutex);
            accounts[o.from].balance -= o.amount;
            accounts[o.to].balance += o.amount;
        }
        (*applied)++;
        if (*applied % 64 == 0) std::this_thread::yield();
    }
}

static void auditor(bool* ok) {
    remember_id();
    std::unique_lock<std::mutex> lock(audit_mutex);
    while (!audit_wake.wait_for(lock, std::chrono::milliseconds(2), [] { return audit_stop; })) {
        long total = 0;
        for (Account& a : accounts) a.mutex.lock();
        for (Account& a : accounts) total += a.balance;
        for (Account& a : accounts) a.mutex.unlock();
        if (total != kAccounts * kOpening) *ok = false;
    }
}

int main() {
    std::vector<long> submitted(kTellers, 0), applied(kClerks, 0);
    bool audits_ok = true;
    std::thread audit(auditor, &audits_ok);
    std::vector<std::thread> clerks, tellers;
    for (int c = 0; c < kClerks; c++) clerks.emplace_back(clerk, &applied[c]);
    for (int t = 0; t < kTellers; t++) tellers.emplace_back(teller, t, &submitted[t]);
    for (std::thread& t : tellers) t.join();
    {
        std::lock_guard<std::mutex> lock(queue_mutex);
        tellers_done = true;
    }
    queue_not_empty.notify_all();
    for (std::thread& c : clerks) c.join();
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    {
        std::lock_guard<std::mutex> lock(audit_mutex);
        audit_stop = true;
    }
    audit_wake.notify_one();
    audit.join();

    long orders = 0, total = 0;
    for (long a : applied) orders += a;
    for (int t = 0; t < kTellers; t++) std::printf("teller %d submitted %ld\n", t, submitted[t]);
    for (int i = 0; i < kAccounts; i++) {
        std::printf("account %d: %ld\n", i, accounts[i].balance);
        total += accounts[i].balance;
    }
    std::printf("orders applied: %ld of %d\n", orders, kTellers * kOrdersEach);
    std::printf("total: %ld (opening %ld)\n", total, kAccounts * kOpening);
    std::printf("audits: %s\n", audits_ok ? "money conserved" : "MONEY LOST");
    std::printf("distinct thread ids: %zu\n", ids.size());
    return 0;
}
