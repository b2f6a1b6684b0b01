// photon/photon.h: the lifecycle of a vcpu, as PhotonLibOS spells it.
//
// Part of libphoton's header-only C++ wrapper (see cpp-wrapper/README.md).
// Every wrapper header calls the C API of libphoton.so only, which is
// <photon.h> (include/photon.h): the C header is always included with angle
// brackets and its bare name, and this file is always reached as
// <photon/photon.h>, so the two are never confused (their include guards
// differ too: PHOTON_H is the C header's).
#ifndef PHOTON_CPP_PHOTON_PHOTON_H
#define PHOTON_CPP_PHOTON_PHOTON_H

#include <photon.h>

#include <cstdint>
#include <cstring>

namespace photon {

/// Event engine flags for init(), with PhotonLibOS's values so that masks
/// such as `INIT_EVENT_DEFAULT & ~INIT_EVENT_SIGNAL` keep working. libphoton
/// has two engines: a mask naming io_uring and epoll (or neither) means
/// "io_uring when usable, else epoll"; one naming only one of them asks for
/// that engine. The other bits are accepted and ignored.
constexpr uint64_t INIT_EVENT_NONE = 0;
constexpr uint64_t INIT_EVENT_EPOLL = 1u << 0;            ///< the epoll engine
constexpr uint64_t INIT_EVENT_IOURING = 1u << 1;          ///< the io_uring engine
constexpr uint64_t INIT_EVENT_SELECT = 1u << 2;           ///< ignored
constexpr uint64_t INIT_EVENT_KQUEUE = 1u << 3;           ///< ignored (not Linux)
constexpr uint64_t INIT_EVENT_IOCP = 1u << 4;             ///< ignored (not Linux)
constexpr uint64_t INIT_EVENT_EPOLL_NG = 1u << 5;         ///< ignored
constexpr uint64_t INIT_EVENT_IOURING_SQPOLL = 1u << 6;   ///< ignored
constexpr uint64_t INIT_EVENT_IOURING_SQ_AFF = 1u << 7;   ///< ignored
constexpr uint64_t INIT_EVENT_IOURING_IOPOLL = 1u << 8;   ///< ignored
constexpr uint64_t INIT_EVENT_SIGNAL = 1u << 10;          ///< ignored
/// io_uring when usable, else epoll (`PHOTON_EVENT_DEFAULT`).
constexpr uint64_t INIT_EVENT_DEFAULT =
    INIT_EVENT_IOURING | INIT_EVENT_EPOLL | INIT_EVENT_SELECT | INIT_EVENT_SIGNAL;

/// I/O engine flags for init(). Accepted and ignored: libphoton's files and
/// sockets always go through the vcpu's event engine.
constexpr uint64_t INIT_IO_NONE = 0;
constexpr uint64_t INIT_IO_LIBAIO = 1u << 0;               ///< ignored
constexpr uint64_t INIT_IO_LIBCURL = 1u << 1;              ///< ignored
constexpr uint64_t INIT_IO_SOCKET_EDGE_TRIGGER = 1u << 2;  ///< ignored
constexpr uint64_t INIT_IO_EXPORTFS = 1u << 10;            ///< ignored
constexpr uint64_t INIT_IO_DEFAULT = INIT_IO_LIBAIO | INIT_IO_LIBCURL;

/// PhotonLibOS's init options. Accepted for source compatibility; libphoton
/// has none of these knobs, so every field is ignored.
struct PhotonOptions {
    int libaio_queue_depth = 32;
    uint32_t iouring_sq_thread_cpu = 0;
    uint32_t iouring_sq_thread_idle_ms = 1000;
    uint8_t use_pooled_stack_allocator = 0;
    bool bypass_threadpool = false;
};

namespace detail {
/// The `PHOTON_EVENT_*` code for a PhotonLibOS `INIT_EVENT_*` mask.
inline uint64_t c_event_engine(uint64_t mask) noexcept {
    const bool uring = (mask & INIT_EVENT_IOURING) != 0;
    const bool epoll = (mask & INIT_EVENT_EPOLL) != 0;
    if (uring && !epoll) return PHOTON_EVENT_IOURING;
    if (epoll && !uring) return PHOTON_EVENT_EPOLL;
    return PHOTON_EVENT_DEFAULT;
}
}  // namespace detail

/// Makes the calling OS thread a vcpu (`photon_init`); the caller becomes
/// its main photon thread. Returns 0, or -1 with errno (`EALREADY` if this
/// OS thread is a vcpu already, `ENOSYS` if the one engine asked for is
/// unavailable). `io_engine` and `options` are ignored.
inline int init(uint64_t event_engine = INIT_EVENT_DEFAULT, uint64_t io_engine = INIT_IO_DEFAULT,
                const PhotonOptions& options = PhotonOptions()) {
    (void)io_engine;
    (void)options;
    return photon_init(detail::c_event_engine(event_engine), 0);
}

/// Ends the calling vcpu (`photon_fini`): waits for its other photon threads;
/// those blocked without a timeout are interrupted with `ECANCELED`. Returns
/// 0, or -1 with `EPERM` when not called by the thread that called init().
inline int fini() { return photon_fini(); }

/// The engine this vcpu runs, as one INIT_EVENT_* flag (INIT_EVENT_NONE,
/// errno `EPERM`, off a vcpu).
inline uint64_t get_event_engine() {
    const char* name = photon_engine_name();
    if (name == nullptr) return INIT_EVENT_NONE;
    return std::strcmp(name, "io_uring") == 0 ? INIT_EVENT_IOURING : INIT_EVENT_EPOLL;
}

}  // namespace photon

#endif  // PHOTON_CPP_PHOTON_PHOTON_H
