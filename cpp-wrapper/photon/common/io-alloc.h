// photon/common/io-alloc.h: PhotonLibOS's IOAlloc, an allocator of I/O
// buffers handed around by pointer (alloc / dealloc through two callbacks),
// and AlignedAlloc, whose buffers are aligned (for O_DIRECT I/O).
// (PhotonLibOS's PooledAllocator is not offered.)
#ifndef PHOTON_CPP_COMMON_IO_ALLOC_H
#define PHOTON_CPP_COMMON_IO_ALLOC_H

#include <photon/common/callback.h>

#include <cerrno>
#include <cstdint>
#include <cstdlib>

struct IOAlloc {
    /// A size request: anything from `min` to `max` bytes will do.
    struct RangeSize {
        int min, max;
    };
    /// Allocates a buffer of a size in the range into `*ptr`; returns its size, or -1.
    typedef photon::Callback<RangeSize, void**> Allocator;
    /// Frees a buffer.
    typedef photon::Callback<void*> Deallocator;

    Allocator allocate;
    Deallocator deallocate;

    IOAlloc() : allocate(nullptr, &default_allocator), deallocate(nullptr, &default_deallocator) {}
    IOAlloc(Allocator alloc, Deallocator dealloc) : allocate(alloc), deallocate(dealloc) {}
    virtual ~IOAlloc() = default;

    /// A buffer of `size` bytes, or nullptr with errno.
    void* alloc(size_t size) {
        if (size == 0 || size > INT32_MAX) {
            errno = EINVAL;
            return nullptr;
        }
        void* ptr = nullptr;
        const int ret = allocate(RangeSize{static_cast<int>(size), static_cast<int>(size)}, &ptr);
        return ret < 0 ? nullptr : ptr;
    }
    int dealloc(void* ptr) { return deallocate(ptr); }
    virtual void reset() {
        allocate = Allocator(nullptr, &default_allocator);
        deallocate = Deallocator(nullptr, &default_deallocator);
    }

    static int default_allocator(void*, RangeSize size, void** ptr) {
        if (size.min <= 0 || size.max < size.min) {
            errno = EINVAL;
            return -1;
        }
        *ptr = std::malloc(static_cast<size_t>(size.max));
        if (*ptr == nullptr) {
            errno = ENOMEM;
            return -1;
        }
        return size.max;
    }
    static int default_deallocator(void*, void* ptr) {
        std::free(ptr);
        return 0;
    }
};

/// An IOAlloc whose buffers are aligned to `alignment` (a power of two).
struct AlignedAlloc : public IOAlloc {
    explicit AlignedAlloc(size_t alignment)
        : IOAlloc(Allocator(reinterpret_cast<void*>(alignment), &aligned_allocator),
                  Deallocator(nullptr, &default_deallocator)),
          m_alignment(alignment) {}
    void reset() override {
        allocate = Allocator(reinterpret_cast<void*>(m_alignment), &aligned_allocator);
        deallocate = Deallocator(nullptr, &default_deallocator);
    }
    static int aligned_allocator(void* alignment, RangeSize size, void** ptr) {
        if (size.min <= 0 || size.max < size.min) {
            errno = EINVAL;
            return -1;
        }
        const int err = ::posix_memalign(ptr, reinterpret_cast<size_t>(alignment), static_cast<size_t>(size.max));
        if (err != 0) {
            errno = err;
            return -1;
        }
        return size.max;
    }

private:
    size_t m_alignment;
};

#endif  // PHOTON_CPP_COMMON_IO_ALLOC_H
