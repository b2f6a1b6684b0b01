// photon/thread/stack-allocator.h: PhotonLibOS's stack allocator hooks.
//
// libphoton allocates and pools its threads' stacks itself (mmap with a
// guard page, reused per vcpu), and its C API takes no allocator: so
// use_pooled_stack_allocator(), use_global_pooled_stack_allocator() and
// set_photon_thread_stack_allocator() accept their arguments and change
// nothing (threads keep libphoton's pooled stacks), and the trim calls
// return 0. The allocation functions themselves work, for code that calls
// them directly: each maps fresh memory (no pooling here) and the stats
// count what they mapped.
#ifndef PHOTON_CPP_THREAD_STACK_ALLOCATOR_H
#define PHOTON_CPP_THREAD_STACK_ALLOCATOR_H

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <sys/mman.h>

namespace photon {

struct StackPoolStats {
    size_t pooled_bytes = 0;  ///< idle memory kept for reuse (always 0 here)
    size_t live_bytes = 0;    ///< handed out by the functions below, not yet freed
    uint64_t hits = 0;        ///< served from a pool (always 0 here)
    uint64_t misses = 0;      ///< mapped afresh
};

struct GlobalStackPoolOptions {
    size_t max_pooled_bytes = 1ULL << 30;
    size_t per_vcpu_cache_bytes = 64ULL << 20;
    size_t max_pending_bytes = 256ULL << 20;
    size_t max_cold_bytes = 4ULL << 30;
    uint32_t guard_pages = 1;
    uint32_t wipe_bytes = 0;
    bool paranoid = false;
    bool no_huge_page = true;
};

struct GlobalStackPoolStats : StackPoolStats {
    size_t mapped_bytes = 0;
    size_t pending_bytes = 0;
    size_t cold_bytes = 0;
    uint64_t os_maps = 0;
    uint64_t os_unmaps = 0;
    uint64_t corruptions = 0;
};

namespace detail {
struct stack_counters {
    std::atomic<size_t> live{0};
    std::atomic<uint64_t> maps{0}, unmaps{0};
};
inline stack_counters& stack_stats() noexcept {
    static stack_counters c;
    return c;
}
inline void* map_stack(size_t size) noexcept {
    void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) return nullptr;
    stack_stats().live += size;
    ++stack_stats().maps;
    return p;
}
inline void unmap_stack(void* p, size_t size) noexcept {
    if (p == nullptr) return;
    ::munmap(p, size);
    stack_stats().live -= size;
    ++stack_stats().unmaps;
}
}  // namespace detail

/// Maps `stack_size` bytes for a stack (the first argument is the
/// allocator's object, unused). nullptr on failure.
inline void* default_photon_thread_stack_alloc(void*, size_t stack_size) { return detail::map_stack(stack_size); }
inline void default_photon_thread_stack_dealloc(void*, void* stack_ptr, size_t stack_size) {
    detail::unmap_stack(stack_ptr, stack_size);
}
inline void* pooled_stack_alloc(void*, size_t stack_size) { return detail::map_stack(stack_size); }
inline void pooled_stack_dealloc(void*, void* stack_ptr, size_t stack_size) {
    detail::unmap_stack(stack_ptr, stack_size);
}
inline void* global_pooled_stack_alloc(void*, size_t stack_size) { return detail::map_stack(stack_size); }
inline void global_pooled_stack_dealloc(void*, void* stack_ptr, size_t stack_size) {
    detail::unmap_stack(stack_ptr, stack_size);
}

/// An allocation hook as PhotonLibOS's Delegate spells it: a function
/// taking the object first, and the object.
template <typename R, typename... A>
struct StackDelegate {
    R (*func)(void*, A...);
    void* obj;
};

/// Accepted and ignored (see the top of the file).
inline void set_photon_thread_stack_allocator(
    StackDelegate<void*, size_t> alloc = {&default_photon_thread_stack_alloc, nullptr},
    StackDelegate<void, void*, size_t> dealloc = {&default_photon_thread_stack_dealloc, nullptr}) {
    (void)alloc;
    (void)dealloc;
}
/// Accepted and ignored: libphoton pools its threads' stacks already.
inline void use_pooled_stack_allocator() {}
/// Accepted and ignored; returns 0.
inline int use_global_pooled_stack_allocator(const GlobalStackPoolOptions& options = {}) {
    (void)options;
    return 0;
}
/// Nothing is pooled here: return 0.
inline size_t pooled_stack_trim_current_vcpu(size_t keep_size) {
    (void)keep_size;
    return 0;
}
inline size_t pooled_stack_trim_threshold(size_t threshold) {
    (void)threshold;
    return 0;
}
inline size_t global_pooled_stack_trim(size_t keep_bytes = 0) {
    (void)keep_bytes;
    return 0;
}
/// What the allocation functions above have mapped.
inline GlobalStackPoolStats global_pooled_stack_stats() {
    GlobalStackPoolStats s;
    s.live_bytes = s.mapped_bytes = detail::stack_stats().live.load();
    s.misses = s.os_maps = detail::stack_stats().maps.load();
    s.os_unmaps = detail::stack_stats().unmaps.load();
    return s;
}

}  // namespace photon

#endif  // PHOTON_CPP_THREAD_STACK_ALLOCATOR_H
