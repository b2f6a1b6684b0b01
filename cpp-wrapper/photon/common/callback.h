// photon/common/callback.h: photon::Callback<T...>, a callable returning
// int, as PhotonLibOS's handlers take it: from a lambda or other callable
// (copied in; it may return void, meaning 0), from an object and one of its
// member functions (`{this, &Server::handle}`), or from a C-style
// `int (*)(void*, T...)` and its first argument.
#ifndef PHOTON_CPP_COMMON_CALLBACK_H
#define PHOTON_CPP_COMMON_CALLBACK_H

#include <photon/thread/detail/invoke.h>

#include <functional>
#include <type_traits>
#include <utility>

namespace photon {

template <class... T>
class Callback {
public:
    Callback() = default;

    /// From any callable with these arguments returning int (or void: 0).
    template <class F,
              typename std::enable_if<!std::is_same<typename std::decay<F>::type, Callback>::value, int>::type = 0,
              class R = detail::invoke_result_t<F&, T...>>
    Callback(F&& f)  // NOLINT: implicit, as in PhotonLibOS
        : m_fn(wrap(std::forward<F>(f), std::is_void<R>())) {}

    /// From an object and a member function of its class.
    template <class C, class R>
    Callback(C* obj, R (C::*member)(T...))
        : m_fn([obj, member](T... args) -> int { return static_cast<int>((obj->*member)(args...)); }) {}

    /// From a C-style function and its first argument.
    Callback(void* obj, int (*fn)(void*, T...)) : m_fn([obj, fn](T... args) { return fn(obj, args...); }) {}

    /// Calls it (0 if empty).
    int operator()(T... args) const { return m_fn ? m_fn(args...) : 0; }
    explicit operator bool() const noexcept { return static_cast<bool>(m_fn); }

private:
    template <class F>
    static std::function<int(T...)> wrap(F&& f, std::false_type) {
        typename std::decay<F>::type fn(std::forward<F>(f));
        return [fn](T... args) mutable -> int { return static_cast<int>(detail::invoke(fn, args...)); };
    }
    template <class F>
    static std::function<int(T...)> wrap(F&& f, std::true_type) {
        typename std::decay<F>::type fn(std::forward<F>(f));
        return [fn](T... args) mutable -> int {
            detail::invoke(fn, args...);
            return 0;
        };
    }
    std::function<int(T...)> m_fn;
};

}  // namespace photon

#endif  // PHOTON_CPP_COMMON_CALLBACK_H
