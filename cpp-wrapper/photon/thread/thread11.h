// photon/thread/thread11.h: thread_create11, starting a photon thread on
// any callable with arguments, as PhotonLibOS spells it.
//
//     auto th = photon::thread_create11(&Server::serve, this, fd);    // member function
//     auto th = photon::thread_create11(64 * 1024, [&](int n) { ... }, 42);  // stack size first
//     photon::thread_join(photon::thread_enable_join(th));
//
// The callable and the arguments are decay-copied into the new thread (as
// std::thread does: wrap in std::ref to pass a reference) and invoked there
// as rvalues; they are destroyed in the new thread when the call returns.
// If the callable returns an object pointer, thread_join() returns it as
// void*; other results are dropped. An exception escaping the callable is
// rethrown by thread_join() if the thread was made joinable with
// photon::thread_enable_join(), and terminates the process otherwise.
#ifndef PHOTON_CPP_THREAD_THREAD11_H
#define PHOTON_CPP_THREAD_THREAD11_H

#include <photon.h>
#include <photon/thread/detail/escape.h>
#include <photon/thread/detail/invoke.h>
#include <photon/thread/thread.h>

#include <cerrno>
#include <exception>
#include <memory>
#include <new>
#include <type_traits>
#include <utility>

namespace photon {

namespace detail {

template <class F, class... A>
void* thread11_trampoline(void* p) noexcept {
    std::unique_ptr<call_package<F, A...>> package(static_cast<call_package<F, A...>*>(p));
    try {
        void* retval = (*package)();
        package.reset();  // the callable and arguments die in this thread
        return retval;
    } catch (...) {
        package.reset();
        return escaped_from_thread(std::current_exception(), "started by photon::thread_create11");
    }
}

template <class F>
using not_a_stack_size = std::enable_if<!std::is_integral<typename std::decay<F>::type>::value, int>;

}  // namespace detail

/// Starts a photon thread on the calling vcpu, with a stack of
/// `stack_size` bytes, running INVOKE(f, args...) (see the top of this
/// file). It first runs when the caller yields or blocks, and starts
/// detached. Returns nullptr with errno (EPERM off a vcpu, ENOMEM) on failure.
template <class F, class... A, typename detail::not_a_stack_size<F>::type = 0>
thread* thread_create11(uint64_t stack_size, F&& f, A&&... args) {
    using package_t = detail::call_package<F, A...>;
    std::unique_ptr<package_t> package(new package_t(std::forward<F>(f), std::forward<A>(args)...));
    photon_thread* th = photon_thread_create(&detail::thread11_trampoline<F, A...>, package.get(),
                                             detail::c_stack_size(stack_size));
    if (th == nullptr) {
        const int e = errno;
        package.reset();
        errno = e;
        return nullptr;
    }
    package.release();  // the thread owns it now
    return detail::cpp_thread(th);
}

/// thread_create11 with the default stack (DEFAULT_STACK_SIZE).
template <class F, class... A, typename detail::not_a_stack_size<F>::type = 0>
thread* thread_create11(F&& f, A&&... args) {
    return thread_create11(DEFAULT_STACK_SIZE, std::forward<F>(f), std::forward<A>(args)...);
}

}  // namespace photon

#endif  // PHOTON_CPP_THREAD_THREAD11_H
