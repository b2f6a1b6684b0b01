// Unmodified RocksDB (Debian's librocksdb) on photon threads under
// libphoton_preload.so (LD_PRELOAD, or the shim linked first).
//
//   rocksdb_test DIR [in-photon]
//
// Builds a database of 200,000 keys in DIR (removed first), then, on one
// vcpu:
//   1. 128 photon threads doing random Gets with direct reads and the block
//      cache bypassed (fill_cache=false: every Get reads the file), every
//      value checked;
//   2. Puts from photon threads (a 64 KiB write buffer: RocksDB's own flush
//      and compaction pthreads run meanwhile) with Gets alongside, then every
//      value put read back;
//   3. an iterator scan of the whole database with Gets alongside;
// then the same three on a pool of 2 vcpus, each photon thread migrating to
// the other vcpu half-way. The database is opened and built on the OS
// thread before photon_init; with `in-photon`, everything (open, build,
// the phases, close, destroy) runs in a photon thread that is not the
// vcpu's main thread, so RocksDB's own pthreads are created from it.
// Exit status 0 when every check passed.
#include <photon.h>
#include <rocksdb/db.h>
#include <rocksdb/iterator.h>
#include <rocksdb/listener.h>
#include <rocksdb/options.h>
#include <rocksdb/table.h>
#include <rocksdb/write_batch.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <unistd.h>

namespace {

constexpr int kKeys = 200000;
constexpr int kGetThreads = 128;
constexpr int kGetsPerThread = 300;
constexpr int kPutThreads = 8;
constexpr int kPutsPerThread = 1500;
constexpr int kSideGetThreads = 16;

std::atomic<int> failures{0};

#define CHECK(cond, ...)                                                         \
    do {                                                                         \
        if (!(cond)) {                                                           \
            std::fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);            \
            std::fprintf(stderr, __VA_ARGS__);                                   \
            std::fprintf(stderr, "\n");                                          \
            if (failures.fetch_add(1) > 50) std::abort();                        \
        }                                                                        \
    } while (0)

std::string key_of(int i) {
    char b[32];
    std::snprintf(b, sizeof b, "key%08d", i);
    return b;
}

std::string value_of(const std::string &key, int version) {
    std::string v = key + "/" + std::to_string(version) + "/";
    unsigned h = 2166136261u;
    for (char c : key) h = (h ^ static_cast<unsigned char>(c)) * 16777619u;
    while (v.size() < 100) {
        h = h * 1103515245u + 12345u;
        v.push_back(static_cast<char>('a' + (h >> 16) % 26));
    }
    return v;
}

std::string put_key(int round, int t, int j) {
    char b[48];
    std::snprintf(b, sizeof b, "put%d-%03d-%06d", round, t, j);
    return b;
}

struct Counter : rocksdb::EventListener {
    std::atomic<int> flushes{0}, compactions{0};
    void OnFlushCompleted(rocksdb::DB *, const rocksdb::FlushJobInfo &) override { flushes++; }
    void OnCompactionCompleted(rocksdb::DB *, const rocksdb::CompactionJobInfo &) override {
        compactions++;
    }
};

rocksdb::DB *db;
std::shared_ptr<Counter> counter = std::make_shared<Counter>();
photon_workpool *pool;  // phase on 2 vcpus: set; on one vcpu: NULL
std::atomic<int> running{0};
std::atomic<long> gets_done{0};
int round_no;

// Moves the calling photon thread to the pool's other vcpu.
void migrate_to_other_vcpu() {
    if (!pool) return;
    photon_vcpu *me = photon_vcpu_current();
    photon_vcpu *to = photon_workpool_vcpu(pool, 0) == me ? photon_workpool_vcpu(pool, 1)
                                                          : photon_workpool_vcpu(pool, 0);
    CHECK(photon_thread_migrate(photon_thread_self(), to) == 0, "migrate: errno %d", errno);
}

uint64_t next_rand(uint64_t &s) {
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    return s;
}

void do_gets(long seed, int n) {
    rocksdb::ReadOptions ro;
    ro.fill_cache = false;
    uint64_t s = 0x9e3779b97f4a7c15ull ^ static_cast<uint64_t>(seed + 1) * 0x2545F4914F6CDD1Dull;
    std::string got;
    for (int j = 0; j < n; j++) {
        if (j == n / 2) migrate_to_other_vcpu();
        int i = static_cast<int>(next_rand(s) % kKeys);
        std::string k = key_of(i);
        rocksdb::Status st = db->Get(ro, k, &got);
        CHECK(st.ok(), "Get %s: %s", k.c_str(), st.ToString().c_str());
        CHECK(!st.ok() || got == value_of(k, 0), "Get %s: wrong value", k.c_str());
    }
    gets_done += n;
}

void *getter(void *arg) {
    do_gets(reinterpret_cast<long>(arg), kGetsPerThread);
    running--;
    return nullptr;
}

void *putter(void *arg) {
    int t = static_cast<int>(reinterpret_cast<long>(arg));
    rocksdb::WriteOptions wo;
    for (int j = 0; j < kPutsPerThread; j++) {
        if (j == kPutsPerThread / 2) migrate_to_other_vcpu();
        std::string k = put_key(round_no, t, j);
        rocksdb::Status st = db->Put(wo, k, value_of(k, 1));
        CHECK(st.ok(), "Put %s: %s", k.c_str(), st.ToString().c_str());
    }
    // read back what this thread put
    rocksdb::ReadOptions ro;
    ro.fill_cache = false;
    std::string got;
    for (int j = 0; j < kPutsPerThread; j++) {
        std::string k = put_key(round_no, t, j);
        rocksdb::Status st = db->Get(ro, k, &got);
        CHECK(st.ok() && got == value_of(k, 1), "Get of put %s: %s", k.c_str(), st.ToString().c_str());
    }
    running--;
    return nullptr;
}

void *side_getter(void *arg) {
    do_gets(reinterpret_cast<long>(arg) + 100000, 200);
    running--;
    return nullptr;
}

void *scanner(void *) {
    rocksdb::ReadOptions ro;
    ro.fill_cache = false;
    std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(ro));
    int keys = 0, puts = 0;
    std::string prev;
    bool halfway = false;
    for (it->Seek("key"); it->Valid(); it->Next()) {
        std::string k = it->key().ToString();
        CHECK(prev < k, "scan out of order at %s", k.c_str());
        prev = k;
        if (k.compare(0, 3, "key") == 0) {
            CHECK(k == key_of(keys), "scan: %s where %s was due", k.c_str(), key_of(keys).c_str());
            CHECK(it->value().ToString() == value_of(k, 0), "scan: wrong value at %s", k.c_str());
            keys++;
            if (!halfway && keys == kKeys / 2) {
                halfway = true;
                usleep(1000);  // a hooked sleep with the iterator open
            }
        }
    }
    CHECK(it->status().ok(), "scan: %s", it->status().ToString().c_str());
    CHECK(keys == kKeys, "scan saw %d keys", keys);
    for (it->Seek("put"); it->Valid() && it->key().starts_with("put"); it->Next()) puts++;
    CHECK(puts == round_no * kPutThreads * kPutsPerThread, "scan saw %d put keys", puts);
    running--;
    return nullptr;
}

// Starts `fn(arg)` as a photon thread: on this vcpu, or in the pool.
void start(photon_entry fn, long arg) {
    running++;
    if (pool) {
        CHECK(photon_workpool_spawn(pool, fn, reinterpret_cast<void *>(arg)) == 0, "spawn");
    } else {
        photon_thread *t = photon_thread_create(fn, reinterpret_cast<void *>(arg), 0);
        CHECK(t != nullptr, "photon_thread_create");
    }
}

void wait_all() {
    while (running.load() > 0) photon_thread_usleep(1000);
}

double now() { return static_cast<double>(photon_now_us()) / 1e6; }

void phases(const char *where) {
    double t0 = now();
    gets_done = 0;
    for (long i = 0; i < kGetThreads; i++) start(getter, i);
    wait_all();
    double t1 = now();
    std::printf("%s: %ld Gets from %d photon threads in %.2f s (%.0f Gets/s)\n", where, gets_done.load(),
                kGetThreads, t1 - t0, static_cast<double>(gets_done.load()) / (t1 - t0));

    round_no++;
    int flushes = counter->flushes;
    for (long t = 0; t < kPutThreads; t++) start(putter, t);
    for (long t = 0; t < kSideGetThreads; t++) start(side_getter, t);
    wait_all();
    int f = counter->flushes - flushes;
    CHECK(f > 0, "no flush ran during the Puts");
    std::printf("%s: %d Puts from %d photon threads with Gets alongside in %.2f s; %d flushes, %d "
                "compactions so far\n",
                where, kPutThreads * kPutsPerThread, kPutThreads, now() - t1, f, counter->compactions.load());

    double t2 = now();
    start(scanner, 0);
    for (long t = 0; t < kSideGetThreads; t++) start(side_getter, t + 50);
    wait_all();
    std::printf("%s: scan of %d keys with Gets alongside in %.2f s\n", where, kKeys, now() - t2);
}

// Opens a new database in `dir` and fills it (200,000 keys, compacted).
int open_and_build(const std::string &dir) {
    rocksdb::Options opt;
    rocksdb::DestroyDB(dir, opt);
    opt.create_if_missing = true;
    opt.use_direct_reads = true;
    opt.write_buffer_size = 64 << 10;
    opt.max_write_buffer_number = 4;
    opt.target_file_size_base = 4 << 20;
    opt.max_background_jobs = 2;
    opt.max_open_files = -1;
    opt.compression = rocksdb::kNoCompression;
    opt.listeners.push_back(counter);
    rocksdb::Status st = rocksdb::DB::Open(opt, dir, &db);
    if (!st.ok()) {
        std::fprintf(stderr, "open %s: %s\n", dir.c_str(), st.ToString().c_str());
        return 2;
    }
    double t0 = static_cast<double>(photon_now_us()) / 1e6;
    for (int b = 0; b < kKeys; b += 1000) {
        rocksdb::WriteBatch batch;
        for (int i = b; i < b + 1000; i++) batch.Put(key_of(i), value_of(key_of(i), 0));
        rocksdb::WriteOptions wo;
        wo.disableWAL = true;
        st = db->Write(wo, &batch);
        if (!st.ok()) {
            std::fprintf(stderr, "build: %s\n", st.ToString().c_str());
            return 2;
        }
    }
    st = db->Flush(rocksdb::FlushOptions());
    if (st.ok()) st = db->CompactRange(rocksdb::CompactRangeOptions(), nullptr, nullptr);
    if (!st.ok()) {
        std::fprintf(stderr, "flush/compact: %s\n", st.ToString().c_str());
        return 2;
    }
    std::printf("built %d keys in %.2f s\n", kKeys, static_cast<double>(photon_now_us()) / 1e6 - t0);
    return 0;
}

// The phases on this vcpu, then on a 2-vcpu pool.
void all_phases() {
    phases("one vcpu");
    pool = photon_workpool_new(2, 0);
    CHECK(pool != nullptr, "photon_workpool_new");
    if (pool) {
        phases("2-vcpu pool");
        photon_workpool_free(pool);
        pool = nullptr;
    }
}

void close_and_destroy(const std::string &dir) {
    rocksdb::Status st = db->Close();
    CHECK(st.ok(), "close: %s", st.ToString().c_str());
    delete db;
    db = nullptr;
    st = rocksdb::DestroyDB(dir, rocksdb::Options());
    CHECK(st.ok(), "destroy: %s", st.ToString().c_str());
}

struct InPhoton {
    std::string dir;
    int rc;
};

// Everything, RocksDB's own pthreads created from here included, in a
// photon thread that is not the vcpu's main thread.
void *in_photon(void *arg) {
    auto *p = static_cast<InPhoton *>(arg);
    p->rc = open_and_build(p->dir);
    if (p->rc == 0) {
        all_phases();
        close_and_destroy(p->dir);
    }
    return nullptr;
}

}  // namespace

int main(int argc, char **argv) {
    bool photon_open = argc == 3 && std::strcmp(argv[2], "in-photon") == 0;
    if (argc != 2 && !photon_open) {
        std::fprintf(stderr, "usage: %s DIR [in-photon]\n", argv[0]);
        return 2;
    }
    std::string dir = argv[1];
    if (photon_open) {
        // open, build, run and close in a photon thread (not main)
        if (photon_init(0, 0) != 0) {
            std::perror("photon_init");
            return 2;
        }
        InPhoton p{dir, 0};
        photon_thread *t = photon_thread_create(in_photon, &p, 0);
        if (!t || photon_thread_enable_join(t) != 0 || photon_thread_join(t, nullptr) != 0) {
            std::perror("photon thread");
            return 2;
        }
        photon_fini();
        if (p.rc) return p.rc;
    } else {
        // open and build on the OS thread before photon_init
        int rc = open_and_build(dir);
        if (rc) return rc;
        if (photon_init(0, 0) != 0) {
            std::perror("photon_init");
            return 2;
        }
        all_phases();
        photon_fini();
        close_and_destroy(dir);
    }
    if (failures) {
        std::fprintf(stderr, "%d checks failed\n", failures.load());
        return 1;
    }
    std::printf("rocksdb: every check passed\n");
    return 0;
}
