// photon/thread/detail/invoke.h: INVOKE for C++14 (std::invoke is C++17),
// and the decay-copied call package that every C++ thread entry runs.
// Internal to the wrapper: not part of PhotonLibOS's API.
#ifndef PHOTON_CPP_THREAD_DETAIL_INVOKE_H
#define PHOTON_CPP_THREAD_DETAIL_INVOKE_H

#include <cstddef>
#include <functional>
#include <tuple>
#include <type_traits>
#include <utility>

namespace photon {
namespace detail {

template <class T>
struct is_reference_wrapper : std::false_type {};
template <class U>
struct is_reference_wrapper<std::reference_wrapper<U>> : std::true_type {};

template <class C, class T>
using is_object_of = std::is_base_of<C, typename std::decay<T>::type>;

// The object a pointer to member is applied to: the object itself (or one
// derived from its class), the referent of a reference_wrapper, or *pointer.
template <class C, class T, typename std::enable_if<is_object_of<C, T>::value, int>::type = 0>
T&& member_object(T&& obj) noexcept {
    return std::forward<T>(obj);
}
template <class C, class T,
          typename std::enable_if<!is_object_of<C, T>::value &&
                                      is_reference_wrapper<typename std::decay<T>::type>::value,
                                  int>::type = 0>
auto member_object(T&& obj) noexcept -> decltype(obj.get()) {
    return obj.get();
}
template <class C, class T,
          typename std::enable_if<!is_object_of<C, T>::value &&
                                      !is_reference_wrapper<typename std::decay<T>::type>::value,
                                  int>::type = 0>
auto member_object(T&& obj) -> decltype(*std::forward<T>(obj)) {
    return *std::forward<T>(obj);
}

/// INVOKE(f, args...) of the standard: callables, pointers to member
/// functions (object, reference_wrapper or pointer first) and to data members.
template <class F, class... A>
auto invoke(F&& f, A&&... a) -> decltype(std::forward<F>(f)(std::forward<A>(a)...)) {
    return std::forward<F>(f)(std::forward<A>(a)...);
}
template <class M, class C, class T, class... A,
          typename std::enable_if<std::is_function<M>::value, int>::type = 0>
auto invoke(M C::*pm, T&& obj, A&&... a)
    -> decltype((member_object<C>(std::forward<T>(obj)).*pm)(std::forward<A>(a)...)) {
    return (member_object<C>(std::forward<T>(obj)).*pm)(std::forward<A>(a)...);
}
template <class M, class C, class T, typename std::enable_if<!std::is_function<M>::value, int>::type = 0>
auto invoke(M C::*pm, T&& obj) -> decltype(member_object<C>(std::forward<T>(obj)).*pm) {
    return member_object<C>(std::forward<T>(obj)).*pm;
}

template <class F, class... A>
using invoke_result_t = decltype(detail::invoke(std::declval<F>(), std::declval<A>()...));

/// A thread's return value as the C API's `void*`: an object pointer is
/// passed through (so `thread_join` hands it back), anything else is dropped.
template <class R>
using passes_as_pointer =
    std::integral_constant<bool, std::is_pointer<R>::value &&
                                     std::is_object<typename std::remove_pointer<R>::type>::value>;

template <class...>
struct voider {
    using type = void;
};
/// Whether INVOKE(F, A...) is well-formed.
template <class Sig, class = void>
struct is_invocable_ : std::false_type {};
template <class F, class... A>
struct is_invocable_<F(A...), typename voider<invoke_result_t<F, A...>>::type> : std::true_type {};

/// How a thread keeps an argument of (forwarded) type A: decay-copied, as
/// std::thread does; or, only when the call could not be made that way
/// (`by_ref`: a parameter is a non-const lvalue reference, or an argument
/// cannot be copied), an lvalue argument by reference, as PhotonLibOS's
/// thread_create11 and photon_std::thread keep every lvalue argument.
template <class A, bool by_ref>
struct stored_arg {
    using type = typename std::decay<A>::type;
};
template <class A>
struct stored_arg<A, true> {
    using type = typename std::conditional<std::is_lvalue_reference<A>::value,
                                           std::reference_wrapper<typename std::remove_reference<A>::type>,
                                           typename std::decay<A>::type>::type;
};
template <class F, class... A>
using args_by_ref = std::integral_constant<
    bool, !is_invocable_<typename std::decay<F>::type(typename std::decay<A>::type...)>::value &&
              is_invocable_<typename std::decay<F>::type(A...)>::value>;

/// A callable and its arguments, decay-copied (as std::thread does; see
/// stored_arg for the one exception), to be invoked once, as rvalues, in
/// the new thread.
template <class F, class... A>
class call_package {
    static constexpr bool by_ref = args_by_ref<F, A...>::value;

public:
    template <class FF, class... AA>
    explicit call_package(FF&& f, AA&&... a) : m_call(std::forward<FF>(f), std::forward<AA>(a)...) {}

    using result_type =
        invoke_result_t<typename std::decay<F>::type, typename stored_arg<A, by_ref>::type...>;

    /// Invokes it; the result as a `void*` (see passes_as_pointer).
    void* operator()() { return call(std::index_sequence_for<A...>(), passes_as_pointer<result_type>()); }

private:
    template <std::size_t... I>
    void* call(std::index_sequence<I...>, std::true_type) {
        const volatile void* r =
            detail::invoke(std::move(std::get<0>(m_call)), std::move(std::get<I + 1>(m_call))...);
        return const_cast<void*>(r);
    }
    template <std::size_t... I>
    void* call(std::index_sequence<I...>, std::false_type) {
        detail::invoke(std::move(std::get<0>(m_call)), std::move(std::get<I + 1>(m_call))...);
        return nullptr;
    }

    std::tuple<typename std::decay<F>::type, typename stored_arg<A, by_ref>::type...> m_call;
};

}  // namespace detail
}  // namespace photon

#endif  // PHOTON_CPP_THREAD_DETAIL_INVOKE_H
