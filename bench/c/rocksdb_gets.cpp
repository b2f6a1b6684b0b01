// RocksDB random Gets with direct reads (Debian's librocksdb, unmodified),
// driven by bench/src/bin/rocksdb.rs.
//
//   rocksdb_gets build DIR            200,000 keys, compacted (once)
//   rocksdb_gets photon DIR N SECS [ro]    N photon threads on one vcpu (run
//                                          under LD_PRELOAD=libphoton_preload.so)
//   rocksdb_gets pthreads DIR N SECS [ro]  N plain pthreads
//
// Gets use ReadOptions::fill_cache=false on a database opened (read-write,
// or read-only with `ro`: that path keeps no SuperVersion in a thread-local)
// with use_direct_reads: every Get reads its data block from the file. Every
// value is checked. After a 0.3 s warm-up, counts Gets over SECS seconds and
// the process's CPU time (getrusage: user + system, every thread) meanwhile.
// Prints one line: RESULT gets_per_s=.. cpu_ns_per_get=.. errors=0 shim=0|1
#include <photon.h>
#include <rocksdb/db.h>
#include <rocksdb/options.h>
#include <rocksdb/write_batch.h>
#include <sys/resource.h>
#include <sys/time.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <pthread.h>
#include <string>
#include <vector>

namespace {

constexpr int kKeys = 200000;

std::string key_of(int i) {
    char b[32];
    std::snprintf(b, sizeof b, "key%08d", i);
    return b;
}

std::string value_of(const std::string &key) {
    std::string v = key + "/0/";
    unsigned h = 2166136261u;
    for (char c : key) h = (h ^ static_cast<unsigned char>(c)) * 16777619u;
    while (v.size() < 100) {
        h = h * 1103515245u + 12345u;
        v.push_back(static_cast<char>('a' + (h >> 16) % 26));
    }
    return v;
}

rocksdb::DB *db;
std::atomic<bool> stop{false};
std::atomic<long> gets{0}, errors{0};

double mono_s() {
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

double cpu_s() {
    rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
           static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

void *worker(void *arg) {
    uint64_t s = 0x9e3779b97f4a7c15ull ^ (reinterpret_cast<uintptr_t>(arg) + 1) * 0x2545F4914F6CDD1Dull;
    rocksdb::ReadOptions ro;
    ro.fill_cache = false;
    std::string got;
    while (!stop.load(std::memory_order_relaxed)) {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        std::string k = key_of(static_cast<int>(s % kKeys));
        rocksdb::Status st = db->Get(ro, k, &got);
        if (!st.ok() || got != value_of(k)) {
            if (errors++ < 5) std::fprintf(stderr, "Get %s: %s\n", k.c_str(), st.ToString().c_str());
        }
        gets.fetch_add(1, std::memory_order_relaxed);
    }
    return nullptr;
}

rocksdb::Options options() {
    rocksdb::Options o;
    o.use_direct_reads = true;
    o.max_open_files = -1;
    o.compression = rocksdb::kNoCompression;
    return o;
}

int build(const std::string &dir) {
    rocksdb::Options o = options();
    rocksdb::DestroyDB(dir, o);
    o.create_if_missing = true;
    rocksdb::Status st = rocksdb::DB::Open(o, dir, &db);
    if (!st.ok()) {
        std::fprintf(stderr, "open %s: %s\n", dir.c_str(), st.ToString().c_str());
        return 1;
    }
    for (int b = 0; b < kKeys && st.ok(); b += 1000) {
        rocksdb::WriteBatch batch;
        for (int i = b; i < b + 1000; i++) batch.Put(key_of(i), value_of(key_of(i)));
        rocksdb::WriteOptions wo;
        wo.disableWAL = true;
        st = db->Write(wo, &batch);
    }
    if (st.ok()) st = db->Flush(rocksdb::FlushOptions());
    if (st.ok()) st = db->CompactRange(rocksdb::CompactRangeOptions(), nullptr, nullptr);
    delete db;
    if (!st.ok()) {
        std::fprintf(stderr, "build: %s\n", st.ToString().c_str());
        return 1;
    }
    std::printf("RESULT keys=%d\n", kKeys);
    return 0;
}

// Sleeps `s` seconds the way the mode's main thread should.
void sleep_s(bool photon, double s) {
    if (photon) {
        photon_thread_usleep(static_cast<uint64_t>(s * 1e6));
    } else {
        timespec ts{static_cast<time_t>(s), static_cast<long>((s - static_cast<double>(static_cast<time_t>(s))) * 1e9)};
        nanosleep(&ts, nullptr);
    }
}

}  // namespace

int main(int argc, char **argv) {
    if (argc == 3 && std::strcmp(argv[1], "build") == 0) return build(argv[2]);
    if (argc != 5 && !(argc == 6 && std::strcmp(argv[5], "ro") == 0)) {
        std::fprintf(stderr, "usage: %s build DIR | photon|pthreads DIR THREADS SECS [ro]\n", argv[0]);
        return 2;
    }
    bool photon = std::strcmp(argv[1], "photon") == 0;
    if (!photon && std::strcmp(argv[1], "pthreads") != 0) return 2;
    int n = std::atoi(argv[3]);
    double secs = std::atof(argv[4]);
    rocksdb::Status st = argc == 6 ? rocksdb::DB::OpenForReadOnly(options(), argv[2], &db)
                                   : rocksdb::DB::Open(options(), argv[2], &db);
    if (!st.ok()) {
        std::fprintf(stderr, "open %s: %s\n", argv[2], st.ToString().c_str());
        return 1;
    }
    int shim = photon_preload_active();
    std::vector<pthread_t> pts;
    std::vector<photon_thread *> phs;
    if (photon) {
        if (photon_init(0, 0) != 0) {
            std::perror("photon_init");
            return 1;
        }
        for (long i = 0; i < n; i++) {
            photon_thread *t = photon_thread_create(worker, reinterpret_cast<void *>(i), 0);
            if (!t || photon_thread_enable_join(t) != 0) return 1;
            phs.push_back(t);
        }
    } else {
        for (long i = 0; i < n; i++) {
            pthread_t t;
            if (pthread_create(&t, nullptr, worker, reinterpret_cast<void *>(i)) != 0) return 1;
            pts.push_back(t);
        }
    }
    sleep_s(photon, 0.3);
    long g0 = gets.load();
    double t0 = mono_s(), c0 = cpu_s();
    sleep_s(photon, secs);
    long g1 = gets.load();
    double t1 = mono_s(), c1 = cpu_s();
    stop = true;
    for (photon_thread *t : phs) photon_thread_join(t, nullptr);
    for (pthread_t t : pts) pthread_join(t, nullptr);
    if (photon) photon_fini();
    delete db;
    double done = static_cast<double>(g1 - g0);
    std::printf("INFO %ld Gets in %.3f s, %.3f s CPU\n", g1 - g0, t1 - t0, c1 - c0);
    std::printf("RESULT gets_per_s=%.1f cpu_ns_per_get=%.1f errors=%ld shim=%d\n", done / (t1 - t0),
                (c1 - c0) * 1e9 / done, errors.load(), shim);
    return errors.load() ? 1 : 0;
}
