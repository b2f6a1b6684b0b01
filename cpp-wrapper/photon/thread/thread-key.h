// photon/thread/thread-key.h: per-photon-thread storage keys, as
// PhotonLibOS's thread_key_create / getspecific / setspecific / delete,
// over the C API's photon_key_* (pthread_key semantics: a destructor runs
// on a non-null value when its thread ends). As pthread's and PhotonLibOS's,
// these return 0 or an error number (not -1 with errno).
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
/// value when that thread ends. 0, or an error number (`EAGAIN` no key
/// left, `EINVAL`).
inline int thread_key_create(thread_key_t* key, void (*dtor)(void*)) noexcept {
    if (key == nullptr) return EINVAL;
    uint32_t k = 0;
    if (photon_key_create(&k, dtor) != 0) return errno;
    *key = k;
    return 0;
}

/// The calling photon thread's value for `key` (nullptr if none, or off a
/// vcpu).
__attribute__((always_inline)) inline void* thread_getspecific(thread_key_t key) noexcept {
    return key > UINT32_MAX ? nullptr : photon_getspecific(static_cast<uint32_t>(key));
}

/// Sets the calling photon thread's value for `key`. 0, or an error number
/// (`EINVAL` bad key, `EPERM` off a vcpu).
__attribute__((always_inline)) inline int thread_setspecific(thread_key_t key, const void* value) noexcept {
    if (key > UINT32_MAX) return EINVAL;
    return photon_setspecific(static_cast<uint32_t>(key), value) == 0 ? 0 : errno;
}

/// Deletes `key` (values left are not destroyed). 0, or `EINVAL`.
inline int thread_key_delete(thread_key_t key) noexcept {
    if (key > UINT32_MAX) return EINVAL;
    return photon_key_delete(static_cast<uint32_t>(key)) == 0 ? 0 : errno;
}

}  // namespace photon

#endif  // PHOTON_CPP_THREAD_THREAD_KEY_H
