// A library with thread-local state of both kinds, for tls_isolation.cc:
// a C `__thread` int and a C++ `thread_local` object with a constructor and
// a destructor (registered per thread through __cxa_thread_atexit).
#include <atomic>

namespace {
std::atomic<int> constructed{0};
std::atomic<int> destroyed{0};
std::atomic<long> destroyed_sum{0};

struct Counted {
    long value;
    long check;
    Counted() : value(0), check(0) { constructed++; }
    ~Counted() {
        if (check != value * 3) // every set keeps check == 3 * value
            __builtin_trap();
        destroyed_sum += value;
        destroyed++;
    }
};

__thread int plain_tls = 0;
thread_local Counted object;
} // namespace

extern "C" {
void tlsprobe_set(int v) { plain_tls = v; }
int tlsprobe_get(void) { return plain_tls; }
void tlsprobe_obj_set(long v) {
    object.value = v;
    object.check = v * 3;
}
long tlsprobe_obj_get(void) { return object.value; }
int tlsprobe_constructed(void) { return constructed.load(); }
int tlsprobe_destroyed(void) { return destroyed.load(); }
long tlsprobe_destroyed_sum(void) { return destroyed_sum.load(); }
}
