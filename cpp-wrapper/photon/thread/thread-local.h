// photon/thread/thread-local.h: photon::thread_local_ptr<T, ARGS...>, an
// object per photon thread, built on the thread's first use from the
// constructor arguments the pointer keeps, and deleted when the thread ends
// (a photon key with a destructor; see photon/thread/thread-key.h).
//
//     static photon::thread_local_ptr<std::string, const char*> name("anon");
//     name->append("!");        // this photon thread's own string
//
// Off a vcpu there is no photon thread to own the object: get() aborts, as
// PhotonLibOS's does when the key's value cannot be set.
#ifndef PHOTON_CPP_THREAD_THREAD_LOCAL_H
#define PHOTON_CPP_THREAD_THREAD_LOCAL_H

#include <photon.h>
#include <photon/thread/thread-key.h>

#include <cstdlib>
#include <tuple>
#include <utility>

namespace photon {

template <typename T, typename... ARGS>
class thread_local_ptr {
public:
    /// Creates the key (aborts if no key is left, as PhotonLibOS does) and
    /// keeps `args` for each thread's object.
    explicit thread_local_ptr(ARGS&&... args) : m_args(std::forward<ARGS>(args)...) {
        uint32_t k = 0;
        if (photon_key_create(&k, &destroy) != 0) std::abort();
        m_key = k;
    }
    /// The key stays (threads may still hold objects under it).
    ~thread_local_ptr() = default;
    thread_local_ptr(const thread_local_ptr&) = delete;
    thread_local_ptr& operator=(const thread_local_ptr&) = delete;

    /// This photon thread's object (created now if it has none).
    __attribute__((always_inline)) T* get() const {
        void* p = photon_getspecific(m_key);
        return p != nullptr ? static_cast<T*>(p) : create();
    }
    T& operator*() const { return *get(); }
    T* operator->() const { return get(); }

    /// Assigns `value` to this photon thread's object.
    thread_local_ptr& operator=(T&& value) {
        *get() = std::move(value);
        return *this;
    }

private:
    __attribute__((noinline)) T* create() const {
        T* obj = make(std::index_sequence_for<ARGS...>{});
        if (photon_setspecific(m_key, obj) != 0) std::abort();
        return obj;
    }
    template <size_t... I>
    T* make(std::index_sequence<I...>) const {
        return new T(std::get<I>(m_args)...);
    }
    static void destroy(void* p) { delete static_cast<T*>(p); }

    std::tuple<typename std::decay<ARGS>::type...> m_args;
    uint32_t m_key = 0;
};

}  // namespace photon

#endif  // PHOTON_CPP_THREAD_THREAD_LOCAL_H
