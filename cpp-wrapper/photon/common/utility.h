// photon/common/utility.h: the small helpers PhotonLibOS code leans on:
// DEFER (run a statement at scope exit), LEN, xrange, the ENABLE_IF family,
// alignment and power-of-two arithmetic, WITH, likely/unlikely, and
// photon::sat_add/sat_sub (from photon/common/timeout.h).
//
//     int fd = ::open(path, O_RDONLY);
//     DEFER(::close(fd));               // runs when the scope ends
//
// DEFER costs exactly the deferred statement: the lambda is inlined into
// the destructor, and the guard is bound to a reference (no copy or move,
// so nothing to test for "moved from").
#ifndef PHOTON_CPP_COMMON_UTILITY_H
#define PHOTON_CPP_COMMON_UTILITY_H

#include <photon/common/timeout.h>

#include <cassert>
#include <cstddef>
#include <cstdint>
#include <type_traits>
#include <utility>

/// Marks `x` as used.
#define _unused(x) ((void)(x))

/// Marks every argument as used.
template <typename... Ts>
inline void __unused__(const Ts&...) {}

#ifndef __INLINE__
#define __INLINE__ __attribute__((always_inline))
#endif
#ifndef __FORCE_INLINE__
#define __FORCE_INLINE__ __INLINE__ inline
#endif

#define _CONCAT_(a, b) a##b
#define _CONCAT(a, b) _CONCAT_(a, b)

namespace photon {
namespace detail {
/// Runs `F` when destroyed. Neither copied nor moved: DEFER binds the
/// prvalue make_defer returns to a reference.
template <typename F>
class defer_guard {
public:
    __INLINE__ defer_guard(F f) : m_f(std::move(f)) {}  // NOLINT: implicit, for `return {f}`
    __INLINE__ ~defer_guard() { m_f(); }
    defer_guard(const defer_guard&) = delete;
    defer_guard& operator=(const defer_guard&) = delete;
    /// True, so that `if (DEFER(...)) { ... }` works (WITH_Release).
    explicit operator bool() const noexcept { return true; }

private:
    F m_f;
};
}  // namespace detail
}  // namespace photon

/// A guard running `f()` at the end of its scope (PhotonLibOS's make_defer).
template <typename F>
__FORCE_INLINE__ photon::detail::defer_guard<F> make_defer(F f) {
    return {std::move(f)};
}

/// Runs `stmt` when the enclosing scope ends (in reverse order of the
/// DEFERs); one DEFER per source line.
#define DEFER(stmt) \
    auto&& _CONCAT(__defer__, __LINE__) __attribute__((unused)) = make_defer([&]() __INLINE__ { stmt; })

/// The number of elements of an array.
template <typename T, size_t N>
constexpr size_t LEN(T (&)[N]) {
    return N;
}

#define ENABLE_IF(COND) typename _CONCAT(__x__, __LINE__) = typename std::enable_if<COND>::type
#define IS_SAME(T, P) (std::is_same<typename std::remove_cv<T>::type, P>::value)
#define ENABLE_IF_SAME(T, P) ENABLE_IF(IS_SAME(T, P))
#define ENABLE_IF_NOT_SAME(T, P) ENABLE_IF(!IS_SAME(T, P))
#define IS_BASE_OF(A, B) (std::is_base_of<A, B>::value)
#define ENABLE_IF_BASE_OF(A, B) ENABLE_IF(IS_BASE_OF(A, B))
#define ENABLE_IF_NOT_BASE_OF(A, B) ENABLE_IF(!IS_BASE_OF(A, B))
#define IS_POINTER(T) (std::is_pointer<T>::value)
#define ENABLE_IF_POINTER(T) ENABLE_IF(IS_POINTER(T))
#define ENABLE_IF_NOT_POINTER(T) ENABLE_IF(!IS_POINTER(T))

/// True if `x` is a power of two (0 counts as one, as in PhotonLibOS).
constexpr bool is_power_of_2(uint64_t x) { return (x & (x - 1)) == 0; }

/// floor(log2(x)) for x > 0.
constexpr uint8_t log2_truncate(size_t x) { return x <= 1 ? 0 : static_cast<uint8_t>(63 - __builtin_clzll(x)); }

/// log2(x) rounded to the nearest integer.
constexpr uint8_t log2_round(size_t x) {
    return static_cast<uint8_t>(log2_truncate(x) +
                                ((log2_truncate(x) > 0 && (x & (1ULL << (log2_truncate(x) - 1)))) ? 1 : 0));
}

/// ceil(log2(x)).
constexpr uint8_t log2_round_up(size_t x) {
    return static_cast<uint8_t>(log2_truncate(x) + (is_power_of_2(x) ? 0 : 1));
}

/// The least power of two >= x (1 for 0).
inline size_t round_up_to_exp2(size_t x) {
    if (x <= 1) return 1;
    return is_power_of_2(x) ? x : (size_t(1) << (log2_truncate(x) + 1));
}

/// The integers from `begin` (inclusive) to `end` (exclusive) by `step`,
/// for range-for (Python's xrange).
template <typename INT>
struct xrange_t {
    INT b, e;
    int64_t step;
    struct iterator {
        INT i;
        int64_t step;
        iterator& operator++() {
            i = static_cast<INT>(i + step);
            return *this;
        }
        INT operator*() const { return i; }
        bool operator==(const iterator& r) const { return i == r.i; }
        bool operator!=(const iterator& r) const { return i != r.i; }
    };
    iterator begin() const { return iterator{b, step}; }
    iterator end() const { return iterator{e, step}; }
};

template <typename T>
inline xrange_t<T> xrange(T begin, T end, int64_t step = 1) {
    static_assert(std::is_integral<T>::value, "xrange takes integers");
    // Round `end` so that stepping from `begin` meets it exactly.
    if (end <= begin) return xrange_t<T>{begin, begin, step};
    const int64_t span = static_cast<int64_t>(end - begin);
    const int64_t n = (span + step - 1) / step;
    return xrange_t<T>{begin, static_cast<T>(begin + n * step), step};
}

template <typename T>
inline xrange_t<T> xrange(T end) {
    return xrange<T>(T(0), end);
}

#define FOR_LOOP(N) for (auto i = N; i; --i)

inline uint64_t align_down(uint64_t x, uint64_t alignment) { return x & ~(alignment - 1); }
inline uint64_t align_up(uint64_t x, uint64_t alignment) { return align_down(x + alignment - 1, alignment); }
template <typename T>
inline T* align_ptr(T* p, uint64_t alignment) {
    return reinterpret_cast<T*>(align_up(reinterpret_cast<uint64_t>(p), alignment));
}

#define ALIGNED_MEM(name, size, alignment)      \
    char _CONCAT(name, _buf_)[(size) + (alignment)]; \
    char* name = align_ptr(_CONCAT(name, _buf_), alignment);
#define ALIGNED_MEM4K(buf, size) ALIGNED_MEM(buf, size, 4096)

/// Deletes `*obj` and nulls it.
template <typename T>
inline void safe_delete(T*& obj) {
    delete obj;
    obj = nullptr;
}

/// `WITH(auto x = get()) { ... }`: a scoped declaration.
#define WITH(init_expr) if (init_expr)
/// `WITH_Release(auto x = get(), release(x)) { ... }`.
#define WITH_Release(init_expr, release_expr) \
    if (init_expr)                            \
        if (DEFER(release_expr))

#ifndef likely
constexpr bool likely(bool expr) { return __builtin_expect(expr, true); }
#endif
#ifndef unlikely
constexpr bool unlikely(bool expr) { return __builtin_expect(expr, false); }
#endif

#endif  // PHOTON_CPP_COMMON_UTILITY_H
