// photon/common/callback.h: photon::Callback<T...>, a callable returning
// int, as PhotonLibOS's handlers take it: from a lambda or other callable
// (copied in; it may return void, meaning 0), from an object and one of its
// member functions (`{this, &Server::handle}`), or from a C-style
// `int (*)(void*, T...)` and its first argument.
#ifndef PHOTON_CPP_COMMON_CALLBACK_H
#define PHOTON_CPP_COMMON_CALLBACK_H

#include <photon/thread/detail/invoke.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
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

namespace detail {

#if !defined(__GXX_ABI_VERSION)
#error "photon/common/callback.h: Delegate binds member functions through the Itanium C++ ABI (g++, clang++)"
#endif

/// The function a member function pointer calls on `obj`, and the `this` it
/// calls it with, per the Itanium C++ ABI: a member function pointer is two
/// words {ptr, adj}; `this` is `obj` plus adj; a virtual function is marked
/// by the low bit of ptr (x86, most targets) or of adj (ARM, where adj is
/// doubled), and then ptr (less the mark on x86) is the byte offset of its
/// slot in the vtable that `this` points to.
struct MemberTarget {
    void* fn;
    void* self;
};
template <class PMF>
inline MemberTarget member_target(const void* obj, PMF pmf) noexcept {
    static_assert(sizeof(PMF) == 2 * sizeof(std::ptrdiff_t), "an Itanium ABI member function pointer");
    std::uintptr_t ptr;
    std::ptrdiff_t adj;
    std::memcpy(&ptr, &pmf, sizeof ptr);
    std::memcpy(&adj, reinterpret_cast<const char*>(&pmf) + sizeof ptr, sizeof adj);
#if defined(__arm__) || defined(__aarch64__)
    const bool is_virtual = (adj & 1) != 0;
    adj >>= 1;
    const std::uintptr_t slot = ptr;
#else
    const bool is_virtual = (ptr & 1) != 0;
    const std::uintptr_t slot = ptr - 1;
#endif
    char* self = const_cast<char*>(static_cast<const char*>(obj)) + adj;
    MemberTarget t;
    t.self = self;
    if (is_virtual) {
        const char* vtable;
        std::memcpy(&vtable, self, sizeof vtable);
        std::memcpy(&t.fn, vtable + slot, sizeof t.fn);
    } else {
        std::memcpy(&t.fn, &ptr, sizeof t.fn);
    }
    return t;
}

}  // namespace detail
}  // namespace photon

/// PhotonLibOS's Delegate<R, Ts...>: an object pointer `_obj` and a plain
/// function `_func` taking it first, `R (*)(void*, Ts...)`; from such a pair,
/// from a function taking `U*` first, or from an object and one of its member
/// functions (bound at construction: a virtual one resolves to the object's
/// override then). Calling an empty one returns R().
struct Delegate_Base {};

template <typename R, typename... Ts>
struct Delegate : public Delegate_Base {
    using Func = R (*)(void*, Ts...);
    void* _obj = nullptr;
    Func _func = nullptr;

    Delegate() = default;
    constexpr Delegate(void* obj, Func func) : _obj(obj), _func(func) {}
    constexpr Delegate(Func func, void* obj) : _obj(obj), _func(func) {}
    template <typename U>
    Delegate(U* obj, R (*func)(U*, Ts...)) {
        bind(obj, func);
    }
    template <typename T, typename U, typename std::enable_if<std::is_base_of<U, T>::value, int>::type = 0>
    Delegate(T* obj, R (U::*func)(Ts...)) {
        bind(obj, func);
    }
    template <typename T, typename U, typename std::enable_if<std::is_base_of<U, T>::value, int>::type = 0>
    Delegate(T* obj, R (U::*func)(Ts...) const) {
        bind(obj, func);
    }

    void bind(void* obj, Func func) {
        _obj = obj;
        _func = func;
    }
    void bind(Func func, void* obj) { bind(obj, func); }
    template <typename U>
    void bind(U* obj, R (*func)(U*, Ts...)) {
        _obj = const_cast<void*>(static_cast<const void*>(obj));
        std::memcpy(&_func, &func, sizeof _func);
    }
    template <typename T, typename U, typename std::enable_if<std::is_base_of<U, T>::value, int>::type = 0>
    void bind(T* obj, R (U::*func)(Ts...)) {
        bind_target(photon::detail::member_target(static_cast<U*>(obj), func));
    }
    template <typename T, typename U, typename std::enable_if<std::is_base_of<U, T>::value, int>::type = 0>
    void bind(T* obj, R (U::*func)(Ts...) const) {
        bind_target(photon::detail::member_target(static_cast<const U*>(obj), func));
    }
    void bind(const Delegate& rhs) { *this = rhs; }
    void clear() { _func = nullptr; }

    explicit operator bool() const { return _func != nullptr; }
    R operator()(const Ts&... args) const { return fire(args...); }
    R fire(const Ts&... args) const { return _func ? _func(_obj, args...) : R(); }
    R fire_once(const Ts&... args) {
        Func f = _func;
        _func = nullptr;
        return f ? f(_obj, args...) : R();
    }
    bool operator==(const Delegate& rhs) const { return _obj == rhs._obj && _func == rhs._func; }
    bool operator!=(const Delegate& rhs) const { return !(*this == rhs); }

private:
    void bind_target(photon::detail::MemberTarget t) {
        _obj = t.self;
        std::memcpy(&_func, &t.fn, sizeof _func);
    }
};

#endif  // PHOTON_CPP_COMMON_CALLBACK_H
