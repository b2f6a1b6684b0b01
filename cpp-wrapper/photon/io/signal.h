// photon/io/signal.h: PhotonLibOS's synchronous signal handling. A handler
// set with sync_signal() runs in a photon thread of the vcpu that first
// called sync_signal (or sync_signal_init), not in signal context, so it
// may call anything, photon calls included.
//
// Underneath: the signals handled are blocked in the calling OS thread and
// read from a signalfd by that photon thread. Signals are delivered to a
// signalfd only while blocked in every thread that could take them: call
// block_all_signal() (or sync_signal) before starting other OS threads, as
// PhotonLibOS asks too. The reader ends with sync_signal_fini() or the
// vcpu's end.
#ifndef PHOTON_CPP_IO_SIGNAL_H
#define PHOTON_CPP_IO_SIGNAL_H

#include <photon.h>

#include <pthread.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>

namespace photon {

namespace detail {
struct sync_signal_state {
    int fd = -1;
    sigset_t mask;
    struct sigaction actions[NSIG];
    photon_thread* reader = nullptr;
};
inline sync_signal_state& signal_state() {
    static sync_signal_state s;
    return s;
}
inline void* signal_reader(void*) noexcept {
    sync_signal_state& s = signal_state();
    for (;;) {
        signalfd_siginfo info;
        const ssize_t n = photon_read(s.fd, &info, sizeof info, PHOTON_FOREVER);
        if (n != static_cast<ssize_t>(sizeof info)) {
            if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
            break;  // cancelled (the vcpu ends) or the fd closed
        }
        const int signo = static_cast<int>(info.ssi_signo);
        if (signo <= 0 || signo >= NSIG) continue;
        const struct sigaction& a = s.actions[signo];
        if (a.sa_flags & SA_SIGINFO) {
            if (a.sa_sigaction != nullptr) {
                siginfo_t si{};
                si.si_signo = signo;
                si.si_code = info.ssi_code;
                a.sa_sigaction(signo, &si, nullptr);
            }
        } else if (a.sa_handler != SIG_DFL && a.sa_handler != SIG_IGN && a.sa_handler != nullptr) {
            a.sa_handler(signo);
        }
    }
    s.reader = nullptr;
    return nullptr;
}
}  // namespace detail

/// Starts the signal reader on the calling vcpu (once). 0, or -1 with
/// errno (`EPERM` off a vcpu).
inline int sync_signal_init() {
    detail::sync_signal_state& s = detail::signal_state();
    if (s.fd >= 0 && s.reader != nullptr) return 0;
    if (s.fd < 0) {
        sigemptyset(&s.mask);
        s.fd = ::signalfd(-1, &s.mask, SFD_NONBLOCK | SFD_CLOEXEC);
        if (s.fd < 0) return -1;
    }
    s.reader = photon_thread_create(&detail::signal_reader, nullptr, 64 * 1024);
    return s.reader != nullptr ? 0 : -1;
}

/// Blocks every signal in the calling OS thread (threads it starts later
/// inherit that), so that sync_signal's signals reach the reader.
inline int block_all_signal() {
    sigset_t all;
    sigfillset(&all);
    return ::pthread_sigmask(SIG_BLOCK, &all, nullptr) == 0 ? 0 : -1;
}

/// Sets what `signum` does, as sigaction(2), with the action run by the
/// reader thread. 0, or -1 with errno.
inline int sync_sigaction(int signum, const struct sigaction* act, struct sigaction* oldact) {
    if (signum <= 0 || signum >= NSIG || signum == SIGKILL || signum == SIGSTOP) {
        errno = EINVAL;
        return -1;
    }
    if (sync_signal_init() != 0) return -1;
    detail::sync_signal_state& s = detail::signal_state();
    if (oldact != nullptr) *oldact = s.actions[signum];
    if (act == nullptr) return 0;
    s.actions[signum] = *act;
    sigset_t one;
    sigemptyset(&one);
    sigaddset(&one, signum);
    ::pthread_sigmask(SIG_BLOCK, &one, nullptr);
    sigaddset(&s.mask, signum);
    return ::signalfd(s.fd, &s.mask, 0) >= 0 ? 0 : -1;
}

/// Sets `handler` for `signum`; returns the previous one (SIG_ERR on
/// failure, with errno).
inline sighandler_t sync_signal(int signum, sighandler_t handler) {
    struct sigaction act {};
    struct sigaction old {};
    act.sa_handler = handler;
    if (sync_sigaction(signum, &act, &old) != 0) return SIG_ERR;
    return (old.sa_flags & SA_SIGINFO) ? nullptr : old.sa_handler;
}

/// Stops the reader and closes its signalfd.
inline int sync_signal_fini() {
    detail::sync_signal_state& s = detail::signal_state();
    if (s.reader != nullptr) photon_thread_interrupt(s.reader, ECANCELED);
    if (s.fd >= 0) photon_close(s.fd);
    s.fd = -1;
    return 0;
}

}  // namespace photon

#endif  // PHOTON_CPP_IO_SIGNAL_H
