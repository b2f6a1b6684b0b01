// Exceptions escaping photon threads that nobody joins, one case per run
// (`escape <case>`): a detached thread's exception ends the process with a
// message naming the thread and the exception (the harness checks SIGABRT
// and stderr); a cancellation (std::system_error(ECANCELED)) ends just that
// thread; destroying a joinable photon_std::thread calls std::terminate.
#include <photon/net/socket.h>
#include <photon/photon.h>
#include <photon/thread/std-compat.h>
#include <photon/thread/thread11.h>
#include <photon/thread/workerpool.h>

#include <stdexcept>
#include <string>
#include <system_error>

#include "check.h"

static void* c_style_thrower(void*) { throw std::runtime_error("c-style boom"); }

static int run(const std::string& what) {
    if (what == "thread11-detached") {
        photon::thread_create11([] { throw std::runtime_error("thread11 boom"); });
        photon::thread_usleep(10000);
    } else if (what == "thread-create-detached") {
        photon::thread_create(c_style_thrower, nullptr);
        photon::thread_usleep(10000);
    } else if (what == "detach-after-throw") {
        photon::thread* th = photon::thread_create11([] { throw std::runtime_error("late detach boom"); });
        photon::thread_enable_join(th);
        photon::thread_usleep(10000);       // it has thrown and ended, waiting for a joiner
        photon::thread_enable_join(th, false);  // nobody will join: the exception has nowhere to go
    } else if (what == "std-detached") {
        photon_std::thread t([] {
            photon_std::this_thread::sleep_for(std::chrono::milliseconds(5));
            throw std::logic_error("std boom");
        });
        t.detach();
        photon_std::this_thread::sleep_for(std::chrono::milliseconds(50));
    } else if (what == "std-detach-after-end") {
        photon_std::thread t([] { throw 42; });
        photon_std::this_thread::sleep_for(std::chrono::milliseconds(5));
        t.detach();
    } else if (what == "std-destroy-joinable") {
        photon_std::thread t([] {});
        // leaving the scope with t joinable: std::terminate, as std::thread
    } else if (what == "async-call") {
        photon::WorkPool pool(1);
        pool.async_call(new auto([] { throw std::runtime_error("async boom"); }));
        photon::thread_usleep(100000);
    } else if (what == "socket-handler") {
        auto server = photon::net::new_tcp_socket_server();
        CHECK_OK(server->bind_v4localhost());
        CHECK_OK(server->listen());
        server->set_handler([](photon::net::ISocketStream*) -> int { throw std::runtime_error("handler boom"); });
        CHECK_OK(server->start_loop());
        auto client = photon::net::new_tcp_socket_client();
        auto stream = client->connect(server->getsockname());
        CHECK(stream != nullptr, "connect");
        char c;
        stream->recv(&c, 1);
    } else if (what == "cancelled-detached") {
        // A detached thread ended by a cancellation ends quietly.
        photon_std::thread t([] { throw std::system_error(ECANCELED, std::generic_category(), "cancelled"); });
        t.detach();
        photon::thread_create11([] { throw std::system_error(ECANCELED, std::system_category(), "cancelled"); });
        photon_std::this_thread::sleep_for(std::chrono::milliseconds(10));
        std::printf("escape: cancelled threads ended quietly\n");
        return 0;
    } else if (what == "cancelled-by-fini") {
        // photon::fini cancels a detached photon_std thread blocked for good on
        // a condition variable: it unwinds and ends, and fini returns.
        static photon_std::mutex m;
        static photon_std::condition_variable cv;
        photon_std::thread t([] {
            photon_std::unique_lock<photon_std::mutex> lk(m);
            cv.wait(lk, [] { return false; });
        });
        t.detach();
        photon_std::this_thread::sleep_for(std::chrono::milliseconds(5));
        std::printf("escape: fini with a thread blocked on a condition variable\n");
        return 0;
    } else {
        std::fprintf(stderr, "escape: unknown case '%s'\n", what.c_str());
        return 2;
    }
    std::printf("escape: case '%s' did not terminate\n", what.c_str());
    return 3;
}

int main(int argc, char** argv) {
    if (argc != 2) {
        std::fprintf(stderr, "usage: escape <case>\n");
        return 2;
    }
    CHECK_OK(photon::init());
    const int ret = run(argv[1]);
    CHECK_OK(photon::fini());
    if (ret == 0) std::printf("escape: fini returned\n");
    return ret;
}
