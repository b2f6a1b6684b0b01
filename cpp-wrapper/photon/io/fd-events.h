// photon/io/fd-events.h: waiting for a file descriptor's readiness, as
// PhotonLibOS's wait_for_fd_readable / writable / error, over
// photon_wait_fd; fd_events_init / fini; and (as Photon's header does)
// photon/photon.h's init / fini; and CascadingEventEngine, waiting on many
// fds at once.
//
// Only the calling photon thread blocks. The wait is level-triggered and
// one-shot: it returns once the fd is ready (or was already), 0; or -1 with
// errno (`ETIMEDOUT`, the interrupter's errno, `EPERM` off a vcpu).
#ifndef PHOTON_CPP_IO_FD_EVENTS_H
#define PHOTON_CPP_IO_FD_EVENTS_H

#include <photon.h>
#include <photon/common/timeout.h>
#include <photon/photon.h>

#include <sys/epoll.h>
#include <sys/types.h>
#include <unistd.h>

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

/// Waits on many fds at once and reports which are ready, by the data
/// each was registered with (PhotonLibOS's cascading engine).
class CascadingEventEngine {
public:
    virtual ~CascadingEventEngine() = default;
    struct Event {
        int fd;
        uint32_t interests;  ///< EVENT_READ | EVENT_WRITE | EVENT_ERROR
        void* data;          ///< what wait_for_events reports for it
    };
    /// Watches `e.fd` for `e.interests`. 0, or -1 with errno.
    virtual int add_interest(Event e) = 0;
    /// Stops watching `e.fd`. 0, or -1 with errno.
    virtual int rm_interest(Event e) = 0;
    /// Waits (only the calling photon thread) until some fds are ready or
    /// `timeout` expires; stores up to `count` of their data in `data` and
    /// returns how many (0 on timeout), or -1 with errno.
    virtual ssize_t wait_for_events(void** data, size_t count, Timeout timeout = {}) = 0;
};

namespace detail {
/// A CascadingEventEngine over an epoll set (level-triggered), whose own
/// fd the calling photon thread waits on with photon_wait_fd.
class epoll_cascading_engine final : public CascadingEventEngine {
public:
    epoll_cascading_engine() : m_epfd(::epoll_create1(EPOLL_CLOEXEC)) {}
    ~epoll_cascading_engine() override {
        if (m_epfd >= 0) ::close(m_epfd);
    }
    epoll_cascading_engine(const epoll_cascading_engine&) = delete;
    epoll_cascading_engine& operator=(const epoll_cascading_engine&) = delete;
    bool ok() const noexcept { return m_epfd >= 0; }

    int add_interest(Event e) override {
        struct epoll_event ev;
        ev.events = epoll_events(e.interests);
        ev.data.ptr = e.data;
        if (::epoll_ctl(m_epfd, EPOLL_CTL_ADD, e.fd, &ev) == 0) return 0;
        return errno == EEXIST ? ::epoll_ctl(m_epfd, EPOLL_CTL_MOD, e.fd, &ev) : -1;
    }
    int rm_interest(Event e) override { return ::epoll_ctl(m_epfd, EPOLL_CTL_DEL, e.fd, nullptr); }
    ssize_t wait_for_events(void** data, size_t count, Timeout timeout = {}) override {
        if (count == 0) return 0;
        struct epoll_event evs[64];
        const int max = static_cast<int>(count < 64 ? count : 64);
        for (;;) {
            const int n = ::epoll_wait(m_epfd, evs, max, 0);
            if (n < 0 && errno != EINTR) return -1;
            if (n > 0) {
                for (int i = 0; i < n; ++i) data[i] = evs[i].data.ptr;
                return n;
            }
            if (photon_wait_fd(m_epfd, PHOTON_READABLE, timeout.timeout()) < 0) return errno == ETIMEDOUT ? 0 : -1;
        }
    }

private:
    static uint32_t epoll_events(uint32_t interests) noexcept {
        uint32_t ev = 0;
        if (interests & EVENT_READ) ev |= EPOLLIN | EPOLLRDHUP;
        if (interests & EVENT_WRITE) ev |= EPOLLOUT;
        if (interests & EVENT_ERROR) ev |= EPOLLERR | EPOLLHUP;
        return ev;
    }
    int m_epfd;
};
}  // namespace detail

/// A new cascading engine (over epoll, whatever the vcpu's engine), or
/// nullptr with errno. Delete it when done.
inline CascadingEventEngine* new_epoll_cascading_engine() {
    detail::epoll_cascading_engine* e = new detail::epoll_cascading_engine();
    if (!e->ok()) {
        const int err = errno;
        delete e;
        errno = err;
        return nullptr;
    }
    return e;
}
inline CascadingEventEngine* new_default_cascading_engine() { return new_epoll_cascading_engine(); }

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
