//! A service thread's own fd table, so that the library's threads do not
//! make the program's fd table shared.
//!
//! The kernel looks an fd up without touching the file's reference count
//! while the calling thread's fd table is not shared (`fdget`'s light path,
//! taken when `files_struct.count` is 1). One more thread sharing it (the
//! monitor behind `PHOTON_STALL_MS`, which every process has by default)
//! puts every `recv`, `send` and `epoll_wait` of a one-vcpu server on the
//! shared path: an atomic increment and decrement of the file's count per
//! call. `perf record` of bench echo 64 x 512 (epoll) put `fdget` + `fput`
//! 32 ns per request above the mio loop's (one thread); timed, the change
//! is at the VM's noise (bench/README, "The library's own threads").
//!
//! A thread that enters its own table ([`PrivateFds::enter`]) keeps only
//! the fds it names: `close_range(CLOSE_RANGE_UNSHARE)` gives it a copy
//! holding those (the fds below the highest kept one are copied and closed
//! again at once), so it holds no reference to the program's files: a
//! socket or pipe end the program closes is closed. What it writes to
//! standard error goes to the program's fd 2 of the moment, fetched with
//! `pidfd_getfd` for each write ([`PrivateFds::with_stderr`]).
//!
//! Probed: without `pidfd_open` (5.3), `pidfd_getfd` (5.6) or `close_range`
//! (5.9), or where a seccomp filter refuses them, the thread shares the
//! table as before (said once, at info level).

use crate::engine::{Notify, notify_eventfd};
use crate::errno::Errno;

/// The thread's own fd table, entered by [`PrivateFds::enter`].
pub(crate) struct PrivateFds {
    /// A pidfd of the process, to fetch its standard error.
    pidfd: i32,
}

/// A pidfd of this process, if the kernel can fetch its fds and give a
/// thread its own table; None (said once) if not.
pub(crate) fn prepare() -> Option<Pidfd> {
    // SAFETY: plain syscalls on integers.
    unsafe {
        let pidfd = libc::syscall(libc::SYS_pidfd_open, libc::getpid(), 0) as i32;
        if pidfd < 0 {
            return cannot("pidfd_open", Errno::last_os_error());
        }
        // Probes: fetching one of our own fds, and an empty close_range.
        let copy = libc::syscall(libc::SYS_pidfd_getfd, pidfd, pidfd, 0) as i32;
        let e = Errno::last_os_error();
        if copy < 0 {
            crate::sys::close(pidfd);
            return cannot("pidfd_getfd", e);
        }
        crate::sys::close(copy);
        if libc::syscall(libc::SYS_close_range, u32::MAX, u32::MAX, 0) != 0 {
            let e = Errno::last_os_error();
            crate::sys::close(pidfd);
            return cannot("close_range", e);
        }
        Some(Pidfd(pidfd))
    }
}

#[cold]
fn cannot(what: &str, e: Errno) -> Option<Pidfd> {
    log::info!(
        "photon: {what}: {e}: the monitor thread shares the program's fd table (Linux 5.9+ gives it its own), \
         so the kernel counts file references on every fd call"
    );
    None
}

/// A pidfd of this process, made by [`prepare`] in the program's table.
pub(crate) struct Pidfd(i32);

impl Pidfd {
    /// The fd number in the program's table, for the thread that made it
    /// to close once the service thread entered its own table (or failed
    /// to).
    pub(crate) fn raw(&self) -> i32 {
        self.0
    }
}

impl PrivateFds {
    /// Gives the calling thread its own fd table holding only `pidfd` and
    /// the fds in `keep` (negative ones ignored), each moved to 3 or above
    /// if it was below (fd 2 is where [`PrivateFds::with_stderr`] puts the
    /// program's standard error); `keep` is updated to their numbers in
    /// the new table. None: the table is still shared (nothing changed).
    ///
    /// The thread must not be one whose fds the program uses (a service
    /// thread of the library's own).
    pub(crate) fn enter(pidfd: Pidfd, keep: &mut [i32]) -> Option<PrivateFds> {
        let mut all: Vec<i32> = keep.iter().copied().filter(|&fd| fd >= 0).collect();
        all.push(pidfd.0);
        all.sort_unstable();
        all.dedup();
        let top = *all.last()? as u32;
        // SAFETY: close_range on this thread's own new table only (the
        // UNSHARE flag copies the fds up to `top` first); plain integers.
        unsafe {
            if libc::syscall(
                libc::SYS_close_range,
                top + 1,
                u32::MAX,
                libc::CLOSE_RANGE_UNSHARE as libc::c_uint,
            ) != 0
            {
                log::info!(
                    "photon: close_range(CLOSE_RANGE_UNSHARE): {}: the monitor thread shares the program's fd table",
                    Errno::last_os_error()
                );
                return None;
            }
            // The copies below `top` that are not kept: closed again now
            // (in this thread's table only).
            let mut next = 0u32;
            for &fd in &all {
                if (fd as u32) > next {
                    libc::syscall(libc::SYS_close_range, next, fd as u32 - 1, 0);
                }
                next = fd as u32 + 1;
            }
        }
        let mut own = PrivateFds { pidfd: pidfd.0 };
        own.pidfd = above_stdio(own.pidfd);
        for fd in keep.iter_mut().filter(|fd| **fd >= 0) {
            *fd = above_stdio(*fd);
        }
        Some(own)
    }

    /// Runs `f` with fd 2 of this thread's table being the program's
    /// standard error of the moment (nothing there if the program has
    /// none, or its main thread has exited: `f`'s writes then fail).
    pub(crate) fn with_stderr<R>(&self, f: impl FnOnce() -> R) -> R {
        // SAFETY: fd 2 of this thread's own table, free outside this call
        // (`enter` moved what it kept above it); plain syscalls.
        unsafe {
            let fd = libc::syscall(libc::SYS_pidfd_getfd, self.pidfd, 2, 0) as i32;
            if fd >= 0 && fd != 2 {
                libc::dup3(fd, 2, libc::O_CLOEXEC);
                crate::sys::close(fd);
            }
            let r = f();
            crate::sys::close(2);
            r
        }
    }

    /// Wakes a vcpu from this thread: through a copy of its eventfd,
    /// fetched from the program's table (the notifier, alive while `n` is,
    /// keeps that number its eventfd meanwhile).
    pub(crate) fn notify(&self, n: &dyn Notify) {
        let Some(fd) = n.eventfd() else {
            return n.notify();
        };
        // SAFETY: plain syscalls; the copy is ours to close.
        unsafe {
            let copy = libc::syscall(libc::SYS_pidfd_getfd, self.pidfd, fd, 0) as i32;
            if copy >= 0 {
                notify_eventfd(copy);
                crate::sys::close(copy);
            }
        }
    }
}

/// `fd` itself if it is 3 or above, else a copy there (the original
/// closed): keeps fds 0-2 of a private table free.
fn above_stdio(fd: i32) -> i32 {
    if fd > 2 {
        return fd;
    }
    // SAFETY: plain syscalls on this thread's own table.
    unsafe {
        let moved = libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 3);
        if moved < 0 {
            return fd;
        }
        crate::sys::close(fd);
        moved
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fds of the calling thread's table, from /proc.
    fn my_fds() -> Vec<i32> {
        let mut fds: Vec<i32> = std::fs::read_dir("/proc/thread-self/fd")
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .collect();
        fds.sort_unstable();
        fds
    }

    fn pipe() -> (i32, i32) {
        let mut p = [0; 2];
        // SAFETY: a live array of two ints.
        assert_eq!(unsafe { libc::pipe2(p.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
        (p[0], p[1])
    }

    /// A thread in its own table keeps what it names and nothing else:
    /// while it runs, a pipe's write end that the program closes is closed
    /// (its reader sees end of file), and the program's fds are untouched.
    #[test]
    fn own_table_keeps_only_what_it_names() {
        let Some(pidfd) = prepare() else {
            eprintln!("skipped: the kernel gives no thread its own fd table");
            return;
        };
        let (kept_r, kept_w) = pipe();
        let (eof_r, eof_w) = pipe();
        let pid_raw = pidfd.raw();
        let (tx, rx) = std::sync::mpsc::channel();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let th = std::thread::spawn(move || {
            let mut keep = [kept_r];
            let own = PrivateFds::enter(pidfd, &mut keep).expect("entered");
            let inside = my_fds();
            let stderr_during = own.with_stderr(|| my_fds().contains(&2));
            tx.send((inside, keep[0], stderr_during, my_fds().contains(&2)))
                .unwrap();
            done_rx.recv().unwrap(); // alive, with its table, until the checks ran
        });
        let (inside, kept_inside, stderr_during, stderr_after) = rx.recv().unwrap();
        // The thread's table: the kept pipe end and the pidfd (each moved
        // above 2 if it was below); none of the program's other fds.
        assert!(inside.contains(&kept_inside), "{inside:?}");
        for fd in [kept_w, eof_r, eof_w] {
            assert!(!inside.contains(&fd), "{inside:?} holds the program's fd {fd}");
        }
        assert!(stderr_during && !stderr_after, "fd 2 is there only inside with_stderr");
        // The program's table is as it was.
        let mine = my_fds();
        for fd in [kept_r, kept_w, eof_r, eof_w, pid_raw] {
            assert!(mine.contains(&fd), "{mine:?} lost {fd}");
        }
        // SAFETY: our own fds.
        unsafe {
            assert_eq!(libc::fcntl(eof_r, libc::F_SETFL, libc::O_NONBLOCK), 0);
            crate::sys::close(eof_w);
            let mut b = [0u8; 1];
            let n = crate::sys::read(eof_r, b.as_mut_ptr().cast(), 1);
            assert_eq!(
                n,
                0,
                "end of file, not {} (a reference held elsewhere)",
                Errno::last_os_error()
            );
        }
        done_tx.send(()).unwrap();
        th.join().unwrap();
        // SAFETY: our own fds.
        unsafe {
            for fd in [kept_r, kept_w, eof_r, pid_raw] {
                crate::sys::close(fd);
            }
        }
    }
}
