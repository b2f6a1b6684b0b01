// photon/thread/thread-key.h: per-photon-thread storage keys, as
// PhotonLibOS's thread_key_create / getspecific / setspecific / delete,
// over the C API's photon_key_* (pthread_key semantics: a destructor runs
// on a non-null value when its thread ends).
#ifndef PHOTON_CPP_THREAD_THREAD_KEY_H
#define PHOTON_CPP_THREAD_THREAD_KEY_H

#include <photon.h>
#include <photon/thread/thread.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>

namespace photon {

/// How many keys PhotonLibOS offers (libphoton's limit may differ).
constexpr size_t THREAD_KEYS_MAX = 1024;

/// A key (PhotonLibOS's type is 64 bits; libphoton's keys fit in 32).
using thread_key_t = uint64_t;

/// Creates a key; `dtor` (may be null) runs on each thread's non-null
/// value when that thread ends. 0, or -1 with errno (`EAGAIN` no key left).
inline int thread_key_create(thread_key_t* key, void (*dtor)(void*)) noexcept {
    if (key == nullptr) {
        errno = EINVAL;
        return -1;
    }
    uint32_t k = 0;
    if (photon_key_create(&k, dtor) != 0) return -1;
    *key = k;
    return 0;
}

/// The calling photon thread's value for `key` (nullptr if none, or off a
/// vcpu).
__attribute__((always_inline)) inline void* thread_getspecific(thread_key_t key) noexcept {
    return photon_getspecific(static_cast<uint32_t>(key));
}

/// Sets the calling photon thread's value for `key`. 0, or -1 with errno.
__attribute__((always_inline)) inline int thread_setspecific(thread_key_t key, const void* value) noexcept {
    return photon_setspecific(static_cast<uint32_t>(key), value);
}

/// Deletes `key` (values left are not destroyed). 0, or -1 with errno.
inline int thread_key_delete(thread_key_t key) noexcept { return photon_key_delete(static_cast<uint32_t>(key)); }

}  // namespace photon

#endif  // PHOTON_CPP_THREAD_THREAD_KEY_H
