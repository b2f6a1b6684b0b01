/*
 * The runtime's own OS threads take no process signals. A program that,
 * after photon_init, blocks every signal and reads them from a signalfd
 * (PhotonLibOS's block_all_signal + sync_signal; net-perf does this) must
 * get SIGTERM from its signalfd. If the stall monitor or an offload worker
 * (started before the program blocked its signals) left them unblocked,
 * the kernel would deliver SIGTERM to that thread and its default action
 * would kill the process.
 */
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "check.h"

int main(void) {
    test_start("signal_mask");
    unsetenv("PHOTON_STALL_MS"); /* the monitor thread is on by default */
    CHECK_OK(photon_init(PHOTON_EVENT_DEFAULT, 0));

    SAY("a file read through the runtime (offloaded under epoll) starts its worker threads");
    char path[] = "/tmp/photon-sigmask-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0, "mkstemp: %s", strerror(errno));
    unlink(path);
    CHECK(write(fd, "abc", 3) == 3, "write: %s", strerror(errno));
    char buf[3];
    CHECK(photon_pread(fd, buf, 3, 0) == 3, "photon_pread: %s", strerror(errno));
    photon_thread_usleep(20000); /* let the monitor make its first round */

    SAY("every signal blocked in main, SIGTERM and SIGUSR2 read from a signalfd");
    sigset_t all, want;
    sigfillset(&all);
    CHECK(pthread_sigmask(SIG_BLOCK, &all, NULL) == 0, "pthread_sigmask");
    sigemptyset(&want);
    sigaddset(&want, SIGTERM);
    sigaddset(&want, SIGUSR2);
    int sfd = signalfd(-1, &want, SFD_CLOEXEC);
    CHECK(sfd >= 0, "signalfd: %s", strerror(errno));

    for (int i = 0; i < 20; i++) {
        int sig = i % 2 ? SIGUSR2 : SIGTERM;
        CHECK(kill(getpid(), sig) == 0, "kill: %s", strerror(errno));
        struct pollfd p = {.fd = sfd, .events = POLLIN, .revents = 0};
        CHECK(poll(&p, 1, 5000) == 1, "signal %d not readable from the signalfd", sig);
        struct signalfd_siginfo si;
        CHECK(read(sfd, &si, sizeof si) == (ssize_t)sizeof si, "read signalfd: %s", strerror(errno));
        CHECK((int)si.ssi_signo == sig, "got signal %u, want %d", si.ssi_signo, sig);
    }
    close(sfd);
    close(fd);
    CHECK_OK(photon_fini());
    SAY("ok");
    return 0;
}
