// What the C++ wrapper adds to libphoton's hot paths: none, if it works.
// One process, one vcpu, each contender timed in turn, repeatedly
// (interleaved, the order rotating every repetition), reported as median,
// range and the ratio of each C++ row to its C API row from the same run.
//
//   yield: two photon threads handing the CPU back and forth; ns per yield
//     C API   photon_thread_create + photon_thread_yield()
//     C++     photon::thread_create11 + photon::thread_yield()
//     C++ std photon_std::thread + photon_std::this_thread::yield()
//   mutex: one photon thread locking and unlocking a free mutex; ns per pair
//     C API   photon_mutex_lock(m, PHOTON_FOREVER) + photon_mutex_unlock(m)
//     C++     photon_std::mutex: lock() + unlock()
//     C++     std::lock_guard<photon_std::mutex> for an empty scope
//     C++     photon::mutex: lock() + unlock() (PhotonLibOS's API)
//
// Usage: wrapper_overhead [--reps N] [--secs S]   (21 reps of 0.1 s runs)
// Columns: median, range, the ratio of medians and the ratio of minima (on
// a shared host the quickest run is the least disturbed one; the medians
// swing with the other jobs' load).
// Pins itself to CPU $BENCH_CPU (default 1). Exits non-zero, printing no
// table, if any run fails.
//
// wrapper_overhead --instructions N, run under valgrind --tool=callgrind
// (run.sh --instructions does it), runs each contender once for N units
// between a reset and a dump of callgrind's counters and prints
// "INSTR <ops> <name>" per contender: instructions per operation, exact and
// immune to the noise of a shared machine (run.sh divides).
#include <photon/photon.h>
#include <photon/thread/std-compat.h>
#include <photon/thread/thread.h>
#include <photon/thread/thread11.h>

#include <sched.h>
#include <valgrind/callgrind.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <string>
#include <utility>
#include <vector>

namespace {

[[noreturn]] void die(const char* what) {
    std::fprintf(stderr, "ERROR: %s (errno %d: %s)\n", what, errno, std::strerror(errno));
    std::exit(1);
}

double now_s() {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// ---- yield: each body runs n yields in each of two threads (2n switches) ----

void* c_yielder(void* arg) {
    const uint64_t n = *static_cast<const uint64_t*>(arg);
    for (uint64_t i = 0; i < n; i++) photon_thread_yield();
    return arg;
}

void yield_c(uint64_t n) {
    photon_thread* a = photon_thread_create(c_yielder, &n, 0);
    photon_thread* b = photon_thread_create(c_yielder, &n, 0);
    if (a == nullptr || b == nullptr) die("photon_thread_create");
    if (photon_thread_enable_join(a) != 0 || photon_thread_enable_join(b) != 0) die("photon_thread_enable_join");
    void* ra = nullptr;
    void* rb = nullptr;
    if (photon_thread_join(a, &ra) != 0 || photon_thread_join(b, &rb) != 0) die("photon_thread_join");
    if (ra != &n || rb != &n) die("photon_thread_join: wrong value");
}

// The C++ bodies copy their count to a local first, as c_yielder does: a
// count read through the callable object (which the C calls could change,
// for all the compiler knows) costs a load per iteration, which is the
// loop's, not the wrapper's.
void yield_cpp(uint64_t n) {
    auto body = [n] {
        const uint64_t count = n;
        for (uint64_t i = 0; i < count; i++) photon::thread_yield();
    };
    photon::thread* a = photon::thread_create11(body);
    photon::thread* b = photon::thread_create11(body);
    if (a == nullptr || b == nullptr) die("photon::thread_create11");
    photon::join_handle* ja = photon::thread_enable_join(a);
    photon::join_handle* jb = photon::thread_enable_join(b);
    if (ja == nullptr || jb == nullptr) die("photon::thread_enable_join");
    photon::thread_join(ja);
    photon::thread_join(jb);
}

void yield_std(uint64_t n) {
    auto body = [n] {
        const uint64_t count = n;
        for (uint64_t i = 0; i < count; i++) photon_std::this_thread::yield();
    };
    photon_std::thread a(body);
    photon_std::thread b(body);
    a.join();
    b.join();
}

// ---- mutex: n lock/unlock pairs of a free mutex ----

photon_mutex* g_c_mutex;
photon_std::mutex g_std_mutex;
photon::mutex g_photon_mutex;

void mutex_c(uint64_t n) {
    for (uint64_t i = 0; i < n; i++) {
        if (photon_mutex_lock(g_c_mutex, PHOTON_FOREVER) != 0) die("photon_mutex_lock");
        photon_mutex_unlock(g_c_mutex);
    }
}

void mutex_std(uint64_t n) {
    for (uint64_t i = 0; i < n; i++) {
        g_std_mutex.lock();
        g_std_mutex.unlock();
    }
}

void mutex_guard(uint64_t n) {
    for (uint64_t i = 0; i < n; i++) {
        photon_std::lock_guard<photon_std::mutex> guard(g_std_mutex);
    }
}

void mutex_photon(uint64_t n) {
    for (uint64_t i = 0; i < n; i++) {
        if (g_photon_mutex.lock() != 0) die("photon::mutex::lock");
        g_photon_mutex.unlock();
    }
}

struct Contender {
    Contender(const char* table_, const char* name_, std::function<void(uint64_t)> body_, double ops_per_n_)
        : table(table_), name(name_), body(std::move(body_)), ops_per_n(ops_per_n_) {}
    const char* table;
    const char* name;
    std::function<void(uint64_t)> body;
    double ops_per_n;  // operations one unit of n performs
    uint64_t n = 0;
    std::vector<double> ns_per_op;
};

/// Grows n until one run takes >= 50 ms, then sizes it for `secs`.
uint64_t calibrate(const std::function<void(uint64_t)>& body, double secs) {
    uint64_t n = 64;
    for (;;) {
        const double t0 = now_s();
        body(n);
        const double dt = now_s() - t0;
        if (dt >= 0.05) return std::max<uint64_t>(1, static_cast<uint64_t>(static_cast<double>(n) * secs / dt));
        n *= dt < 0.005 ? 8 : 2;
    }
}

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    const size_t m = v.size() / 2;
    return v.size() % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
}

std::string cpu_model() {
    std::ifstream in("/proc/cpuinfo");
    std::string line;
    while (std::getline(in, line))
        if (line.rfind("model name", 0) == 0) return line.substr(line.find(':') + 2);
    return "?";
}

}  // namespace

int main(int argc, char** argv) {
    int reps = 21;
    double secs = 0.1;
    long instructions = 0;
    for (int i = 1; i < argc; i++) {
        if (std::strcmp(argv[i], "--reps") == 0 && i + 1 < argc)
            reps = std::atoi(argv[++i]);
        else if (std::strcmp(argv[i], "--instructions") == 0 && i + 1 < argc)
            instructions = std::atol(argv[++i]);
        else if (std::strcmp(argv[i], "--secs") == 0 && i + 1 < argc)
            secs = std::atof(argv[++i]);
        else {
            std::fprintf(stderr, "usage: %s [--reps N] [--secs S] | --instructions N\n", argv[0]);
            return 2;
        }
    }
    if (reps < 1 || !(secs > 0)) die("bad --reps or --secs");

    const char* cpu_env = std::getenv("BENCH_CPU");
    const int cpu = cpu_env ? std::atoi(cpu_env) : 1;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    const bool pinned = sched_setaffinity(0, sizeof set, &set) == 0;

    if (photon::init() != 0) die("photon::init");
    g_c_mutex = photon_mutex_new();
    if (g_c_mutex == nullptr) die("photon_mutex_new");

    std::vector<Contender> cs = {
        {"yield", "C API      photon_thread_yield", yield_c, 2.0},
        {"yield", "C++        photon::thread_yield", yield_cpp, 2.0},
        {"yield", "C++ std    photon_std::this_thread::yield", yield_std, 2.0},
        {"mutex", "C API      photon_mutex_lock + unlock", mutex_c, 1.0},
        {"mutex", "C++ std    photon_std::mutex lock + unlock", mutex_std, 1.0},
        {"mutex", "C++ std    lock_guard<photon_std::mutex>", mutex_guard, 1.0},
        {"mutex", "C++        photon::mutex lock + unlock", mutex_photon, 1.0},
    };
    if (instructions > 0) {
        if (!RUNNING_ON_VALGRIND) {
            errno = EINVAL;
            die("--instructions: run me under valgrind --tool=callgrind (see run.sh)");
        }
        for (Contender& c : cs) {
            c.body(1000);  // warm up: stacks, lazily allocated locks
            CALLGRIND_ZERO_STATS;
            c.body(static_cast<uint64_t>(instructions));
            CALLGRIND_DUMP_STATS_AT(c.name);
            std::printf("INSTR %.0f %s\n", static_cast<double>(instructions) * c.ops_per_n, c.name);
        }
        if (photon_mutex_free(g_c_mutex) != 0) die("photon_mutex_free");
        if (photon::fini() != 0) die("photon::fini");
        return 0;
    }
    std::fprintf(stderr, "calibrating...\n");
    for (Contender& c : cs) c.n = calibrate(c.body, secs);
    for (int rep = 0; rep < reps; rep++) {
        std::fprintf(stderr, "rep %d/%d\n", rep + 1, reps);
        for (size_t k = 0; k < cs.size(); k++) {
            Contender& c = cs[(k + static_cast<size_t>(rep)) % cs.size()];  // rotate the order
            const double t0 = now_s();
            c.body(c.n);
            const double dt = now_s() - t0;
            c.ns_per_op.push_back(dt * 1e9 / (static_cast<double>(c.n) * c.ops_per_n));
        }
    }
    const char* engine = photon_engine_name();
    if (photon_mutex_free(g_c_mutex) != 0) die("photon_mutex_free");
    if (photon::fini() != 0) die("photon::fini");

    utsname u;
    uname(&u);
    std::printf("C++ wrapper overhead: libphoton %s, engine %s, %s %s, %s, %ld CPUs, %s\n", photon_version(),
                engine ? engine : "?", u.sysname, u.release, cpu_model().c_str(), sysconf(_SC_NPROCESSORS_ONLN),
                pinned ? ("pinned to CPU " + std::to_string(cpu)).c_str() : "not pinned");
    std::printf("compiler: %s, %d interleaved reps of ~%.2f s each\n\n", __VERSION__, reps, secs);
    bool medians_within = true, minima_within = true;
    for (const char* table : {"yield", "mutex"}) {
        std::printf("%s: ns per %s (lower is better)\n", table,
                    std::strcmp(table, "yield") == 0 ? "yield (one switch)" : "lock/unlock pair");
        std::printf("  %-44s %8s %19s %10s %10s\n", "row", "median", "range", "median/C", "min/C");
        double c_median = 0, c_min = 0;
        for (const Contender& c : cs) {
            if (std::strcmp(c.table, table) != 0) continue;
            const double med = median(c.ns_per_op);
            const auto mm = std::minmax_element(c.ns_per_op.begin(), c.ns_per_op.end());
            char by_median[32] = "(baseline)", by_min[32] = "";
            if (std::strncmp(c.name, "C API", 5) == 0) {
                c_median = med;
                c_min = *mm.first;
            } else {
                const double rm = med / c_median, rn = *mm.first / c_min;
                std::snprintf(by_median, sizeof by_median, "%.3f", rm);
                std::snprintf(by_min, sizeof by_min, "%.3f", rn);
                medians_within = medians_within && rm <= 1.05;
                minima_within = minima_within && rn <= 1.05;
            }
            std::printf("  %-44s %8.2f %8.2f - %8.2f %10s %10s\n", c.name, med, *mm.first, *mm.second, by_median,
                        by_min);
        }
        std::printf("\n");
    }
    std::printf("target, every C++ row within 5%% of its C API row: by medians %s, by minima %s\n",
                medians_within ? "met" : "MISSED", minima_within ? "met" : "MISSED");
    return 0;
}
