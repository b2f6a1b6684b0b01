// photon/io/fd-events.h: waiting for a file descriptor's readiness, as
// PhotonLibOS's wait_for_fd_readable / writable / error, over
// photon_wait_fd; fd_events_init / fini; and (as Photon's header does)
// photon/photon.h's init / fini.
//
// Only the calling photon thread blocks. The wait is level-triggered and
// one-shot: it returns once the fd is ready (or was already), 0; or -1 with
// errno (`ETIMEDOUT`, the interrupter's errno, `EPERM` off a vcpu).
#ifndef PHOTON_CPP_IO_FD_EVENTS_H
#define PHOTON_CPP_IO_FD_EVENTS_H

#include <photon.h>
#include <photon/common/timeout.h>
#include <photon/photon.h>

#include <cerrno>
#include <cstdint>

namespace photon {

const static uint32_t EVENT_READ = 1;
const static uint32_t EVENT_WRITE = 2;
const static uint32_t EVENT_ERROR = 4;
const static uint32_t EVENT_RWE = EVENT_READ | EVENT_WRITE | EVENT_ERROR;

/// Waits until `fd` is readable (or at end of file, or in error).
inline int wait_for_fd_readable(int fd, Timeout timeout = {}) noexcept {
    return photon_wait_fd(fd, PHOTON_READABLE, timeout.timeout()) < 0 ? -1 : 0;
}

/// Waits until `fd` is writable (or in error).
inline int wait_for_fd_writable(int fd, Timeout timeout = {}) noexcept {
    return photon_wait_fd(fd, PHOTON_WRITABLE, timeout.timeout()) < 0 ? -1 : 0;
}

/// Waits until `fd` has an error or hang-up. The C API reports errors and
/// hang-ups as readiness, so this waits for either direction to be ready.
inline int wait_for_fd_error(int fd, Timeout timeout = {}) noexcept {
    return photon_wait_fd(fd, PHOTON_READABLE | PHOTON_WRITABLE, timeout.timeout()) < 0 ? -1 : 0;
}

/// Waits for any of `events` (EVENT_READ | EVENT_WRITE | EVENT_ERROR).
inline int wait_for_fd(int fd, uint32_t events, Timeout timeout = {}) noexcept {
    uint32_t c = 0;
    if (events & EVENT_READ) c |= PHOTON_READABLE;
    if (events & EVENT_WRITE) c |= PHOTON_WRITABLE;
    if ((events & EVENT_ERROR) || c == 0) c = PHOTON_READABLE | PHOTON_WRITABLE;
    return photon_wait_fd(fd, c, timeout.timeout()) < 0 ? -1 : 0;
}

/// Starts the event engine on the calling thread: a vcpu already has one
/// (returns 0); otherwise this is photon_init with the default engine.
inline int fd_events_init(uint64_t master_engine = 0) noexcept {
    if (photon_vcpu_current() != nullptr) return 0;
    return photon_init(master_engine == INIT_EVENT_EPOLL ? PHOTON_EVENT_EPOLL
                       : master_engine == INIT_EVENT_IOURING ? PHOTON_EVENT_IOURING
                                                              : PHOTON_EVENT_DEFAULT,
                       0);
}

/// The event engine ends with the vcpu (vcpu_fini / fini): returns 0.
inline int fd_events_fini() noexcept { return 0; }

}  // namespace photon

#endif  // PHOTON_CPP_IO_FD_EVENTS_H
