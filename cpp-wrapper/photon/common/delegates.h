// photon/common/delegates.h: PhotonLibOS's Delegates, a facade of several
// named calls on one object, each call a plain function taking the object
// pointer first (so no virtual call and no knowledge of the object's type at
// the call site).
//
//   DEFINE_DELEGATE_FUNCTION(MemFoo, foo);    // a call named foo
//   DEFINE_DELEGATE_CAST_OP(CastBool, bool);  // operator bool()
//   using D = photon::Delegates<photon::DFeature::Feature<MemFoo, int(), void(char)>,
//                               photon::DFeature::Feature<photon::DFeature::LSH, photon::SelfRef(int)>>;
//   D d(obj);   d.foo(); d.foo('a'); d << 1 << 2;
//
// A Feature lists the overloads (signatures) of one call; `SelfRef` as the
// return type is "the object itself" (T&), and the facade returns a facade
// of what the call returned. Built from an object, every call goes to that
// object's member (a virtual one to the override). DUtils rebinds one
// overload to another member function or to a plain `R (*)(void*, Args...)`,
// binds the object, or reads a call back as a Delegate. An unbound call does
// nothing and returns R().
//
// Where PhotonLibOS decodes each member function pointer when the facade is
// built, this header calls the member through a function made per object
// type; only DUtils::bind_func with a member function pointer decodes one
// (see Delegate in callback.h).
#ifndef PHOTON_CPP_COMMON_DELEGATES_H
#define PHOTON_CPP_COMMON_DELEGATES_H

#include <photon/common/callback.h>

#include <cstddef>
#include <type_traits>
#include <utility>

namespace photon {

struct DUtils;
struct SelfRef {};

/// The object pointer a facade's calls are given.
class DelegatesBase {
protected:
    void* __objptr = nullptr;

public:
    DelegatesBase() = default;
    explicit DelegatesBase(void* obj) : __objptr(obj) {}
    friend struct DUtils;
    friend struct delegates_detail_access;
};

struct delegates_detail_access {
    static void* get(DelegatesBase& d) { return d.__objptr; }
    static void set(DelegatesBase& d, void* p) { d.__objptr = p; }
};

/// The end of a chain of overload accessors.
struct AccessorBase {
    AccessorBase() = default;
    template <typename T>
    explicit AccessorBase(T&&) {}
};

namespace delegates_detail {

/// What a call of return type Rt stores, returns and how it forwards.
template <typename Rt, typename Facade>
struct Ret {
    using stored = Rt;
    using result = Rt;
    template <typename F>
    static Rt thunk_result(F&& f) {
        return f();
    }
    template <typename Fn, typename... Args>
    static Rt call(Facade& self, Fn fn, Args&&... args) {
        return fn ? fn(delegates_detail_access::get(self), std::forward<Args>(args)...) : Rt();
    }
};
template <typename Facade>
struct Ret<void, Facade> {
    using stored = void;
    using result = void;
    template <typename F>
    static void thunk_result(F&& f) {
        f();
    }
    template <typename Fn, typename... Args>
    static void call(Facade& self, Fn fn, Args&&... args) {
        if (fn) fn(delegates_detail_access::get(self), std::forward<Args>(args)...);
    }
};
template <typename Facade>
struct Ret<SelfRef, Facade> {
    using stored = void*;
    using result = Facade;
    template <typename F>
    static void* thunk_result(F&& f) {
        return static_cast<void*>(&f());
    }
    template <typename Fn, typename... Args>
    static Facade call(Facade& self, Fn fn, Args&&... args) {
        void* obj = fn ? fn(delegates_detail_access::get(self), std::forward<Args>(args)...) : nullptr;
        Facade ret = self;
        delegates_detail_access::set(ret, obj);
        return ret;
    }
};

/// What an overload of return type Rt stores its calls as.
template <typename Rt>
struct Stored {
    using type = Rt;
};
template <>
struct Stored<SelfRef> {
    using type = void*;
};

/// Splits a signature Rt(Args...) for Dispatch's accessor.
template <typename Sig>
struct Split;
template <typename Rt, typename... Args>
struct Split<Rt(Args...)> {
    template <typename Dispatch, typename Parent, typename Facade>
    using accessor = typename Dispatch::template accessor<Parent, Facade, Rt, Args...>;
    using stored = typename Stored<Rt>::type (*)(void*, Args...);
    using delegate = Delegate<typename Stored<Rt>::type, Args...>;
    template <typename T>
    using member = typename std::conditional<std::is_same<Rt, SelfRef>::value, T&, Rt>::type (T::*)(Args...);
};

/// The accessor of signature Sig in the chain A (void if none).
template <typename A, typename Sig, typename = void>
struct Find {
    using type = typename Find<typename A::__ParentAccessor, Sig>::type;
};
template <typename Sig>
struct Find<AccessorBase, Sig, void> {
    using type = void;
};
template <typename A, typename Sig>
struct Find<A, Sig, typename std::enable_if<std::is_same<typename A::__signature, Sig>::value>::type> {
    using type = A;
};

/// The Feature of Dispatch D among Convs.
template <typename D, typename... Convs>
struct FeatureOf {
    using type = void;
};
template <typename D, typename C, typename... Convs>
struct FeatureOf<D, C, Convs...> {
    using type = typename std::conditional<std::is_same<typename C::dispatch, D>::value, C,
                                           typename FeatureOf<D, Convs...>::type>::type;
};

}  // namespace delegates_detail

// The body shared by an accessor with a parent overload and the last one.
#define PHOTON_DELEGATE_ACCESSOR_BODY_(funcname, Base)                                                          \
public:                                                                                                        \
    using __signature = Rt(Args...);                                                                           \
    using __ParentAccessor = Base;                                                                             \
    using __ret = photon::delegates_detail::Ret<Rt, Facade>;                                                   \
    using __stored = typename __ret::stored (*)(void*, Args...);                                               \
    __stored __funcptr = nullptr;                                                                              \
    accessor() = default;                                                                                      \
    template <typename T, typename = typename std::enable_if<!std::is_base_of<photon::DelegatesBase, T>::value && \
                                                             !std::is_base_of<accessor, T>::value>::type>      \
    explicit accessor(T& obj) : Base(obj), __funcptr(&accessor::template __thunk<T>) {}                       \
    template <typename T>                                                                                      \
    static typename __ret::stored __thunk(void* o, Args... args) {                                             \
        return __ret::thunk_result(                                                                            \
            [&]() -> decltype(auto) { return static_cast<T*>(o)->funcname(std::forward<Args>(args)...); });    \
    }                                                                                                          \
    typename __ret::result funcname(Args... args) {                                                            \
        return __ret::call(static_cast<Facade&>(*this), __funcptr, std::forward<Args>(args)...);               \
    }

// The same for a unary operator (its Feature signatures take no arguments).
#define PHOTON_DELEGATE_UNARY_BODY_(funcname, Base)                                                          \
public:                                                                                                        \
    static_assert(sizeof...(Args) == 0, "a unary operator takes no arguments");                                \
    using __signature = Rt(Args...);                                                                           \
    using __ParentAccessor = Base;                                                                             \
    using __ret = photon::delegates_detail::Ret<Rt, Facade>;                                                   \
    using __stored = typename __ret::stored (*)(void*, Args...);                                               \
    __stored __funcptr = nullptr;                                                                              \
    accessor() = default;                                                                                      \
    template <typename T, typename = typename std::enable_if<!std::is_base_of<photon::DelegatesBase, T>::value && \
                                                             !std::is_base_of<accessor, T>::value>::type>      \
    explicit accessor(T& obj) : Base(obj), __funcptr(&accessor::template __thunk<T>) {}                       \
    template <typename T>                                                                                      \
    static typename __ret::stored __thunk(void* o) {                                             \
        return __ret::thunk_result(                                                                            \
            [&]() -> decltype(auto) { return static_cast<T*>(o)->funcname(); });    \
    }                                                                                                          \
    typename __ret::result funcname() { return __ret::call(static_cast<Facade&>(*this), __funcptr); }

/// A dispatch `name` for calls of member `funcname`.
#define DEFINE_DELEGATE_FUNCTION(name, funcname)                                        \
    struct name {                                                                       \
        template <typename Parent, typename Facade, typename Rt, typename... Args>      \
        class accessor : public Parent {                                                \
            PHOTON_DELEGATE_ACCESSOR_BODY_(funcname, Parent)                            \
            using Parent::funcname;                                                     \
        };                                                                              \
        template <typename Facade, typename Rt, typename... Args>                       \
        class accessor<photon::AccessorBase, Facade, Rt, Args...> : public photon::AccessorBase { \
            PHOTON_DELEGATE_ACCESSOR_BODY_(funcname, photon::AccessorBase)              \
        };                                                                              \
    }

/// A dispatch `name` for a member operator `opname` (binary, or `()`).
#define DEFINE_DELEGATE_OP(name, opname) DEFINE_DELEGATE_FUNCTION(name, operator opname)

/// A dispatch `name` for a member unary operator `opname`.
#define DEFINE_DELEGATE_UNARY_OP(name, opname)                                        \
    struct name {                                                                       \
        template <typename Parent, typename Facade, typename Rt, typename... Args>      \
        class accessor : public Parent {                                                \
            PHOTON_DELEGATE_UNARY_BODY_(operator opname, Parent)                            \
            using Parent::operator opname;                                                     \
        };                                                                              \
        template <typename Facade, typename Rt, typename... Args>                       \
        class accessor<photon::AccessorBase, Facade, Rt, Args...> : public photon::AccessorBase { \
            PHOTON_DELEGATE_UNARY_BODY_(operator opname, photon::AccessorBase)              \
        };                                                                              \
    }


/// A dispatch `name` for the conversion `operator cast_type()` (Feature<name, cast_type()>).
#define DEFINE_DELEGATE_CAST_OP(name, cast_type)                                                           \
    struct name {                                                                                     \
        template <typename Parent, typename Facade, typename Rt, typename... Args>                    \
        class accessor : public Parent {                                                              \
        public:                                                                                       \
            static_assert(sizeof...(Args) == 0 && std::is_same<Rt, cast_type>::value,                      \
                          "a cast operator's Feature is " #cast_type "()");                                \
            using __signature = Rt();                                                                 \
            using __ParentAccessor = Parent;                                                          \
            using __stored = Rt (*)(void*);                                                           \
            __stored __funcptr = nullptr;                                                             \
            accessor() = default;                                                                     \
            template <typename T, typename = typename std::enable_if<                                 \
                                      !std::is_base_of<photon::DelegatesBase, T>::value &&            \
                                      !std::is_base_of<accessor, T>::value>::type>                    \
            explicit accessor(T& obj) : Parent(obj), __funcptr(&accessor::template __thunk<T>) {}    \
            template <typename T>                                                                     \
            static Rt __thunk(void* o) {                                                              \
                return static_cast<T*>(o)->operator cast_type();                                           \
            }                                                                                         \
            operator cast_type() {                                                                         \
                return __funcptr ? __funcptr(photon::delegates_detail_access::get(static_cast<Facade&>(*this))) \
                                 : Rt();                                                              \
            }                                                                                         \
        };                                                                                            \
    }

namespace DFeature {
/// Dispatch with the overloads Sigs, first to last.
template <typename Dispatch, typename... Sigs>
struct Feature;
template <typename Dispatch, typename Sig>
struct Feature<Dispatch, Sig> {
    using dispatch = Dispatch;
    using first = Sig;
    template <typename Facade>
    using accessor =
        typename delegates_detail::Split<Sig>::template accessor<Dispatch, AccessorBase, Facade>;
};
template <typename Dispatch, typename Sig, typename Next, typename... Sigs>
struct Feature<Dispatch, Sig, Next, Sigs...> {
    using dispatch = Dispatch;
    using first = Sig;
    template <typename Facade>
    using accessor = typename delegates_detail::Split<Sig>::template accessor<
        Dispatch, typename Feature<Dispatch, Next, Sigs...>::template accessor<Facade>, Facade>;
};
}  // namespace DFeature

/// The facade: the object pointer and one accessor chain per Feature.
template <typename... Convs>
struct Delegates : public DelegatesBase, public Convs::template accessor<Delegates<Convs...>>... {
    Delegates() = default;
    template <typename T, typename = typename std::enable_if<!std::is_base_of<DelegatesBase, T>::value>::type>
    explicit Delegates(T& obj)
        : DelegatesBase(const_cast<void*>(static_cast<const void*>(&obj))),
          Convs::template accessor<Delegates<Convs...>>(obj)... {}
};

/// Rebinding and reading a facade's calls.
struct DUtils {
    template <typename... Convs>
    static void* __get_obj(Delegates<Convs...>& d) {
        return d.__objptr;
    }
    template <typename... Convs>
    static void* __set_obj(Delegates<Convs...>& d, void* p) {
        return d.__objptr = p;
    }

private:
    template <typename D, typename Dlgs>
    struct FeatureIn;
    template <typename D, typename... Convs>
    struct FeatureIn<D, Delegates<Convs...>> {
        using feature = typename delegates_detail::FeatureOf<D, Convs...>::type;
        static_assert(!std::is_same<feature, void>::value, "the facade has no Feature of this dispatch");
        using chain = typename feature::template accessor<Delegates<Convs...>>;
    };
    template <typename D, typename C, typename Dlgs>
    using Slot = typename delegates_detail::Find<typename FeatureIn<D, Dlgs>::chain, C>::type;
    template <typename D, typename Dlgs>
    using First = typename FeatureIn<D, Dlgs>::feature::first;

    template <typename D, typename C, typename Dlgs>
    static bool set(Dlgs& d, void* obj, typename delegates_detail::Split<C>::stored fn, std::true_type) {
        using A = Slot<D, C, Dlgs>;
        if (!d.__objptr) d.__objptr = obj;
        if (obj && d.__objptr != obj) return false;
        static_cast<A&>(d).__funcptr = fn;
        return true;
    }
    template <typename D, typename C, typename Dlgs>
    static bool set(Dlgs&, void*, typename delegates_detail::Split<C>::stored, std::false_type) {
        return false;  // no overload of this signature
    }
    template <typename D, typename C, typename Dlgs>
    static bool set(Dlgs& d, void* obj, typename delegates_detail::Split<C>::stored fn) {
        return set<D, C>(d, obj, fn, std::integral_constant<bool, !std::is_void<Slot<D, C, Dlgs>>::value>());
    }
    template <typename C, typename T, typename M>
    static typename delegates_detail::Split<C>::stored decode(T* obj, M func, void*& self) {
        auto t = detail::member_target(obj, func);
        self = t.self;
        typename delegates_detail::Split<C>::stored fn;
        std::memcpy(&fn, &t.fn, sizeof fn);
        return fn;
    }
    template <typename D, typename C, typename Dlgs>
    static typename delegates_detail::Split<C>::delegate get(Dlgs& d, std::true_type) {
        return {d.__objptr, static_cast<Slot<D, C, Dlgs>&>(d).__funcptr};
    }
    template <typename D, typename C, typename Dlgs>
    static typename delegates_detail::Split<C>::delegate get(Dlgs&, std::false_type) {
        return {};
    }

public:
    /// Overload C of dispatch D now calls obj's member function `func`
    /// (false if the facade is bound to another object or has no such overload).
    template <typename D, typename C, typename T, typename Dlgs>
    static bool bind_func(Dlgs& d, T* obj, typename delegates_detail::Split<C>::template member<T> func) {
        void* self = nullptr;
        auto fn = decode<C>(obj, func, self);
        return set<D, C>(d, self, fn);
    }
    /// Overload C of dispatch D now calls fn(obj, args...).
    template <typename D, typename C, typename Dlgs>
    static bool bind_func(Dlgs& d, void* obj, typename delegates_detail::Split<C>::stored fn) {
        return set<D, C>(d, obj, fn);
    }
    template <typename D, typename C, typename Dlgs>
    static bool bind_func(Dlgs& d, std::nullptr_t, typename delegates_detail::Split<C>::stored fn) {
        return set<D, C>(d, nullptr, fn);
    }
    /// The same, for the first overload of D.
    template <typename D, typename T, typename Dlgs, typename = typename std::enable_if<std::is_class<T>::value>::type>
    static bool bind_func(Dlgs& d, T* obj,
                          typename delegates_detail::Split<First<D, Dlgs>>::template member<T> func) {
        return bind_func<D, First<D, Dlgs>>(d, obj, func);
    }
    template <typename D, typename Dlgs>
    static bool bind_func(Dlgs& d, void* obj, typename delegates_detail::Split<First<D, Dlgs>>::stored fn) {
        return set<D, First<D, Dlgs>>(d, obj, fn);
    }
    template <typename D, typename Dlgs>
    static bool bind_func(Dlgs& d, std::nullptr_t, typename delegates_detail::Split<First<D, Dlgs>>::stored fn) {
        return set<D, First<D, Dlgs>>(d, nullptr, fn);
    }

    /// Binds the object, if none is bound yet.
    template <typename T, typename... Convs>
    static bool bind_obj(Delegates<Convs...>& d, T* obj) {
        if (d.__objptr) return false;
        d.__objptr = const_cast<void*>(static_cast<const void*>(obj));
        return true;
    }
    /// Every call now goes to obj's members.
    template <typename T, typename... Convs>
    static bool bind_obj_and_func(Delegates<Convs...>& d, T& obj) {
        d = Delegates<Convs...>(obj);
        return true;
    }

    /// Overload C of dispatch D as a Delegate (empty if there is no such overload).
    template <typename D, typename C, typename Dlgs>
    static typename delegates_detail::Split<C>::delegate get_func(Dlgs& d) {
        return get<D, C>(d, std::integral_constant<bool, !std::is_void<Slot<D, C, Dlgs>>::value>());
    }
    template <typename D, typename Dlgs>
    static typename delegates_detail::Split<First<D, Dlgs>>::delegate get_func(Dlgs& d) {
        return get_func<D, First<D, Dlgs>>(d);
    }
};

// Pre-defined operators.
namespace DFeature {
DEFINE_DELEGATE_OP(EQ, ==);
DEFINE_DELEGATE_OP(NE, !=);
DEFINE_DELEGATE_OP(LT, <);
DEFINE_DELEGATE_OP(LE, <=);
DEFINE_DELEGATE_OP(GT, >);
DEFINE_DELEGATE_OP(GE, >=);
DEFINE_DELEGATE_OP(OR, |);
DEFINE_DELEGATE_OP(AND, &);
DEFINE_DELEGATE_OP(XOR, ^);
DEFINE_DELEGATE_UNARY_OP(NOT, ~);
DEFINE_DELEGATE_UNARY_OP(LNOT, !);
DEFINE_DELEGATE_OP(LOR, ||);
DEFINE_DELEGATE_OP(LAND, &&);
DEFINE_DELEGATE_OP(ADD, +);
DEFINE_DELEGATE_OP(SUB, -);
DEFINE_DELEGATE_OP(MUL, *);
DEFINE_DELEGATE_OP(DIV, /);
DEFINE_DELEGATE_OP(MOD, %);
DEFINE_DELEGATE_OP(ADD_ASSIGN, +=);
DEFINE_DELEGATE_OP(SUB_ASSIGN, -=);
DEFINE_DELEGATE_OP(MUL_ASSIGN, *=);
DEFINE_DELEGATE_OP(DIV_ASSIGN, /=);
DEFINE_DELEGATE_OP(MOD_ASSIGN, %=);
DEFINE_DELEGATE_OP(OR_ASSIGN, |=);
DEFINE_DELEGATE_OP(AND_ASSIGN, &=);
DEFINE_DELEGATE_OP(XOR_ASSIGN, ^=);
DEFINE_DELEGATE_OP(LSH, <<);
DEFINE_DELEGATE_OP(RSH, >>);
DEFINE_DELEGATE_OP(LSH_ASSIGN, <<=);
DEFINE_DELEGATE_OP(RSH_ASSIGN, >>=);
DEFINE_DELEGATE_OP(ASSIGN, =);
DEFINE_DELEGATE_OP(INVOKE, ());
DEFINE_DELEGATE_OP(INC, ++);
DEFINE_DELEGATE_OP(DEC, --);
}  // namespace DFeature

}  // namespace photon

#endif  // PHOTON_CPP_COMMON_DELEGATES_H
