// photon/thread/thread11.h: thread_create11 on functions, member functions
// (object pointer, reference_wrapper), lambdas and functors, with and
// without a stack size; arguments decay-copied (std::ref for references,
// move-only ones moved); join handles; returned pointers; exceptions
// rethrown by thread_join.
#include <photon/photon.h>
#include <photon/thread/thread11.h>

#include <functional>
#include <memory>
#include <stdexcept>
#include <string>

#include "check.h"

static std::string g_log;

static void append(std::string what, int times) {
    for (int i = 0; i < times; i++) g_log += what;
}

struct Counter {
    int value = 0;
    int* add(int n) {
        value += n;
        return &value;
    }
    int get() const { return value; }
    void fail(const char* why) { throw std::logic_error(why); }
};

struct Functor {
    int* out;
    void operator()(int v) const { *out = v; }
};

static int recurse(int depth) {
    volatile char pad[256];
    pad[0] = static_cast<char>(depth);
    return depth == 0 ? pad[0] : recurse(depth - 1) + 1;
}

template <class E>
static std::string join_expecting(photon::join_handle* jh) {
    try {
        photon::thread_join(jh);
    } catch (const E& e) {
        return e.what();
    }
    return "(nothing thrown)";
}

int main() {
    CHECK_OK(photon::init());

    SAY("a plain function with arguments; the thread starts when the creator yields");
    photon::thread* th = photon::thread_create11(append, std::string("ab"), 2);
    CHECK(th != nullptr, "create");
    CHECK(g_log.empty(), "ran too early");
    photon::thread_yield();
    CHECK(g_log == "abab", "log '%s'", g_log.c_str());

    SAY("a member function on an object pointer returns a pointer, which thread_join hands back");
    Counter c;
    th = photon::thread_create11(&Counter::add, &c, 5);
    photon::join_handle* jh = photon::thread_enable_join(th);
    CHECK(photon::thread_join(jh) == &c.value && c.value == 5, "value %d", c.value);

    SAY("a const member function through std::cref; a thread* cast to join_handle* joins");
    th = photon::thread_create11(&Counter::get, std::cref(c));
    photon::thread_enable_join(th);
    CHECK(photon::thread_join(reinterpret_cast<photon::join_handle*>(th)) == nullptr, "int result dropped");

    SAY("arguments are copies unless wrapped in std::ref");
    int copied = 1, referenced = 1;
    th = photon::thread_create11(
        [](int byval, int& byref) {
            byval++;
            byref++;
        },
        copied, std::ref(referenced));
    photon::thread_join(photon::thread_enable_join(th));
    CHECK(copied == 1 && referenced == 2, "copied %d referenced %d", copied, referenced);

    SAY("a move-only argument is moved in; the callable dies in the new thread");
    auto owned = std::make_unique<int>(7);
    int seen = 0;
    th = photon::thread_create11([&seen](std::unique_ptr<int> p) { seen = *p; }, std::move(owned));
    photon::thread_join(photon::thread_enable_join(th));
    CHECK(seen == 7 && !owned, "seen %d", seen);
    auto tracker = std::make_shared<int>(0);
    std::weak_ptr<int> weak = tracker;
    th = photon::thread_create11([tracker] { (void)tracker; });
    tracker.reset();
    CHECK(!weak.expired(), "the thread holds its copy");
    photon::thread_join(photon::thread_enable_join(th));
    CHECK(weak.expired(), "the copy died with the call");

    SAY("a functor object; the stack-size overload (64 KiB, with some recursion)");
    int out = 0;
    th = photon::thread_create11(64 * 1024, Functor{&out}, 42);
    photon::thread_join(photon::thread_enable_join(th));
    CHECK(out == 42, "functor");
    int depth = 0;
    th = photon::thread_create11(64 * 1024, [&] { depth = recurse(100); });
    photon::thread_join(photon::thread_enable_join(th));
    CHECK(depth == 100, "depth %d", depth);
    th = photon::thread_create11(static_cast<uint64_t>(128 * 1024), &Counter::add, &c, 1);
    photon::thread_join(photon::thread_enable_join(th));
    CHECK(c.value == 6, "stack-size + member function");

    SAY("an exception from a member function is rethrown by thread_join, and the thread is gone");
    th = photon::thread_create11(&Counter::fail, &c, "bad state");
    jh = photon::thread_enable_join(th);
    CHECK(join_expecting<std::logic_error>(jh) == "bad state", "rethrown");
    errno = 0;
    CHECK(photon::thread_join(jh) == nullptr, "joined already");

    SAY("an exception of a non-std type survives the trip too");
    th = photon::thread_create11([] { throw 17; });
    jh = photon::thread_enable_join(th);
    int thrown = 0;
    try {
        photon::thread_join(jh);
    } catch (int v) {
        thrown = v;
    }
    CHECK(thrown == 17, "thrown %d", thrown);

    SAY("many threads, each joined, each throwing or not");
    photon::join_handle* handles[64];
    for (int i = 0; i < 64; i++) {
        handles[i] = photon::thread_enable_join(photon::thread_create11([i] {
            photon::thread_yield();
            if (i % 2) throw std::runtime_error(std::to_string(i));
        }));
    }
    int caught = 0;
    for (int i = 0; i < 64; i++) {
        const std::string what = join_expecting<std::runtime_error>(handles[i]);
        if (i % 2) {
            CHECK(what == std::to_string(i), "thread %d: '%s'", i, what.c_str());
            caught++;
        } else {
            CHECK(what == "(nothing thrown)", "thread %d: '%s'", i, what.c_str());
        }
    }
    CHECK(caught == 32, "caught %d", caught);

    SAY("off a vcpu: nullptr with EPERM");
    CHECK_OK(photon::fini());
    errno = 0;
    CHECK(photon::thread_create11([] {}) == nullptr && errno == EPERM, "errno %d", errno);
    std::printf("thread11: all checks passed\n");
    return 0;
}
