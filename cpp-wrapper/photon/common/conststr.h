// photon/common/conststr.h: PhotonLibOS's compile-time strings (namespace
// ConstString), which owe nothing to libphoton: a string as a type, split and
// joined by the compiler, and enums whose names are strings.
//
//     auto hello = TSTRING("Hello");       // a TString<'H','e','l','l','o'>
//     hello.chars                          // "Hello": one static array per
//                                          // distinct string in the program
//     auto parts = TSTRING("a, b,c").split<',', ' '>();   // ' ' dropped
//     parts.size == 3; parts.views[1] == "b"; parts.join<'|'>().chars: "a|b|c"
//     ConstString::make_tstring_array(TSTRING("x"), TSTRING("y"))
//     auto arr = ConstString::make_compact_str_array<uint16_t>(TSTRING("a"), ...);
//     arr.size(); arr[0].data()           // NUL-terminated views
//
//     DEFINE_ENUM_STR(Color, color_names, Red, Green, Blue);
//     color_names[Color::Green] == "Green"
//
// The views are ConstString::string_view: std::string_view from C++17,
// std::experimental::string_view before (as PhotonLibOS uses).
#ifndef PHOTON_CPP_COMMON_CONSTSTR_H
#define PHOTON_CPP_COMMON_CONSTSTR_H

#include <cstddef>
#include <cstdint>
#include <type_traits>
#include <utility>

#if __cplusplus >= 201703L
#include <string_view>
#else
#include <experimental/string_view>
#endif

namespace ConstString {

#if __cplusplus >= 201703L
using string_view = std::string_view;
#else
using string_view = std::experimental::string_view;
#endif

template <char... cs>
struct TString;
template <typename... Ts>
struct TStringArray;

namespace detail {

template <typename A, typename B>
struct concat2;
template <char... a, char... b>
struct concat2<TString<a...>, TString<b...>> {
    using type = TString<a..., b...>;
};

/// Joins the strings, `sep` between each two (and after the last if `trail`).
template <char sep, bool trail, typename... Ts>
struct join;
template <char sep, bool trail>
struct join<sep, trail> {
    using type = TString<>;
};
template <char sep, bool trail, typename T>
struct join<sep, trail, T> {
    using type = typename std::conditional<trail, typename concat2<T, TString<sep>>::type, T>::type;
};
template <char sep, bool trail, typename T, typename U, typename... Rest>
struct join<sep, trail, T, U, Rest...> {
    using type = typename concat2<typename concat2<T, TString<sep>>::type,
                                  typename join<sep, trail, U, Rest...>::type>::type;
};

template <typename... Ts>
struct type_list {};

/// Splits chars at `sp`, dropping every `ign`: a step per char, chosen by
/// its kind (0 separator, 1 ignored, 2 kept) so only one branch is
/// instantiated.
template <char sp, char ign, typename Done, typename Cur, char... rest>
struct splitter;
template <int kind, char sp, char ign, typename Done, typename Cur, char c, char... rest>
struct split_step;
template <char sp, char ign, typename... Done, char... cur>
struct splitter<sp, ign, type_list<Done...>, TString<cur...>> {
    using type = TStringArray<Done..., TString<cur...>>;
};
template <char sp, char ign, typename Done, typename Cur, char c, char... rest>
struct splitter<sp, ign, Done, Cur, c, rest...> {
    using type = typename split_step<c == sp ? 0 : c == ign ? 1 : 2, sp, ign, Done, Cur, c, rest...>::type;
};
template <char sp, char ign, typename... Done, char... cur, char c, char... rest>
struct split_step<0, sp, ign, type_list<Done...>, TString<cur...>, c, rest...> {
    using type = typename splitter<sp, ign, type_list<Done..., TString<cur...>>, TString<>, rest...>::type;
};
template <char sp, char ign, typename Done, typename Cur, char c, char... rest>
struct split_step<1, sp, ign, Done, Cur, c, rest...> {
    using type = typename splitter<sp, ign, Done, Cur, rest...>::type;
};
template <char sp, char ign, typename Done, char... cur, char c, char... rest>
struct split_step<2, sp, ign, Done, TString<cur...>, c, rest...> {
    using type = typename splitter<sp, ign, Done, TString<cur..., c>, rest...>::type;
};

/// The offsets of each string in the strings joined with a NUL after each,
/// and the total length as the last entry.
template <typename SizeType, size_t N>
struct offsets {
    SizeType arr[N + 1];
};
template <typename SizeType, typename... Ts>
constexpr offsets<SizeType, sizeof...(Ts)> make_offsets() {
    offsets<SizeType, sizeof...(Ts)> o{};
    const size_t lens[sizeof...(Ts) + 1] = {Ts::len..., 0};
    size_t at = 0;
    for (size_t i = 0; i < sizeof...(Ts); ++i) {
        o.arr[i] = static_cast<SizeType>(at);
        at += lens[i] + 1;
    }
    o.arr[sizeof...(Ts)] = static_cast<SizeType>(at);
    return o;
}

/// A string literal, through the local class `Lit` whose get() returns it.
template <typename Lit, size_t... I>
constexpr TString<Lit::get()[I]...> from_literal(std::index_sequence<I...>) {
    return {};
}

}  // namespace detail

/// Strings joined by NULs (one after each) with their offsets: what
/// DEFINE_ENUM_STR and make_compact_str_array give. `whole().chars` is the
/// joined text, `arr().offset.arr[i]` where string `i` starts.
template <typename SizeType, typename... Ts>
struct CompactStringArray {
    using Whole = typename detail::join<'\0', true, Ts...>::type;
    struct Array {
        static constexpr detail::offsets<SizeType, sizeof...(Ts)> offset = detail::make_offsets<SizeType, Ts...>();
        static constexpr size_t size = sizeof...(Ts);
        static constexpr Whole whole() { return {}; }
    };
    static constexpr Whole whole() { return {}; }
    static constexpr Array arr() { return {}; }
    static constexpr size_t size() { return sizeof...(Ts); }
    /// String `i` (NUL-terminated); empty past the end.
    string_view operator[](size_t i) const { return at(i); }
    static string_view at(size_t i) {
        if (i >= sizeof...(Ts)) return string_view();
        const SizeType b = Array::offset.arr[i];
        const SizeType e = Array::offset.arr[i + 1];
        return string_view(Whole::chars + b, static_cast<size_t>(e - b) - 1);
    }
};
template <typename SizeType, typename... Ts>
constexpr detail::offsets<SizeType, sizeof...(Ts)> CompactStringArray<SizeType, Ts...>::Array::offset;
template <typename SizeType, typename... Ts>
constexpr size_t CompactStringArray<SizeType, Ts...>::Array::size;

/// A compile-time string: its characters are the type's arguments.
template <char... cs>
struct TString {
    static constexpr size_t len = sizeof...(cs);
    static constexpr char chars[sizeof...(cs) + 1] = {cs..., '\0'};

    static constexpr size_t size() { return len; }
    static constexpr const char* data() { return chars; }
    static string_view view() { return string_view(chars, len); }
    operator string_view() const { return view(); }

    template <char c>
    using Append = TString<cs..., c>;
    template <char c>
    constexpr TString<cs..., c> append() const { return {}; }
    template <char c>
    constexpr TString<c, cs...> prepend() const { return {}; }
    template <char... ds>
    constexpr TString<cs..., ds...> concat(TString<ds...>) const { return {}; }
    /// The pieces between `sp` characters, with every `ign` dropped.
    template <char sp, char ign = '\0'>
    constexpr typename detail::splitter<sp, ign, detail::type_list<>, TString<>, cs...>::type split() const {
        return {};
    }
};
template <char... cs>
constexpr char TString<cs...>::chars[sizeof...(cs) + 1];
template <char... cs>
constexpr size_t TString<cs...>::len;

template <char... a, char... b>
bool operator==(TString<a...>, TString<b...>) {
    return std::is_same<TString<a...>, TString<b...>>::value;
}

/// Compile-time strings as one value: `size`, `views[i]`, join<sep>().
template <typename... Ts>
struct TStringArray {
    static constexpr size_t size = sizeof...(Ts);
    static const string_view views[sizeof...(Ts) == 0 ? 1 : sizeof...(Ts)];
    template <char sep>
    constexpr typename detail::join<sep, false, Ts...>::type join() const {
        return {};
    }
    using Compact = CompactStringArray<int16_t, Ts...>;
};
template <typename... Ts>
constexpr size_t TStringArray<Ts...>::size;
template <typename... Ts>
const string_view TStringArray<Ts...>::views[sizeof...(Ts) == 0 ? 1 : sizeof...(Ts)] = {
    string_view(Ts::chars, Ts::len)...};

template <typename... Ts>
constexpr TStringArray<Ts...> make_tstring_array(Ts...) {
    return {};
}

template <typename SizeType, typename... Ts>
constexpr CompactStringArray<SizeType, Ts...> make_compact_str_array(Ts...) {
    return {};
}

/// The names of an enum's values, from DEFINE_ENUM_STR.
template <typename EnumType, typename Array>
struct EnumStr;
template <typename EnumType, typename... Ts>
struct EnumStr<EnumType, TStringArray<Ts...>> : CompactStringArray<int16_t, Ts...> {
    using Enum = EnumType;
    using base = CompactStringArray<int16_t, Ts...>;
    string_view operator[](EnumType x) const { return base::at(static_cast<size_t>(x)); }
};

}  // namespace ConstString

/// The compile-time string (a ConstString::TString) of the literal `x`.
#define TSTRING(x)                                                                                  \
    ([] {                                                                                           \
        struct tstring_literal_ {                                                                   \
            static constexpr const char* get() { return x; }                                        \
        };                                                                                          \
        return ::ConstString::detail::from_literal<tstring_literal_>(std::make_index_sequence<sizeof(x) - 1>{}); \
    }())

/// Defines `enum class enum_name : char { ... }` and `str_name`, whose
/// `str_name[enum_name::X]` is "X" (a NUL-terminated view).
#define DEFINE_ENUM_STR(enum_name, str_name, ...)                                                   \
    enum class enum_name : char { __VA_ARGS__ };                                                    \
    static const auto str_name = [] {                                                               \
        auto all_ = TSTRING(#__VA_ARGS__);                                                          \
        using split_ = decltype(all_.split<',', ' '>());                                            \
        return ::ConstString::EnumStr<enum_name, split_>();                                          \
    }()

#endif  // PHOTON_CPP_COMMON_CONSTSTR_H
