//! Making, connecting, accepting, duplicating and closing fds, and the
//! calls that change how an fd blocks (fcntl, ioctl FIONBIO, setsockopt
//! SO_RCVTIMEO/SO_SNDTIMEO), kept in step with [`crate::fdtab`].

use core::ffi::{c_int, c_ulong, c_void};
use core::sync::atomic::Ordering::Relaxed;
use libc::{sockaddr, socklen_t};

use crate::fdtab::{self, KNOWN, SOCKET, UNDER_NB, USER_NB};
use crate::io::{Dir, Route, libc_result, poll_until, route};
use crate::{active, errno, photon, real, set_errno};

/// A new fd made by a hooked call: libphoton forgets what it knew of the
/// number (it may have been closed behind its back), and the table learns
/// `flags` (0: learn on first use).
fn adopt(fd: c_int, flags: u32) {
    // SAFETY: no memory arguments.
    unsafe { photon::photon_fd_forget(fd) };
    if flags == 0 {
        fdtab::reset(fd);
    } else {
        fdtab::set(fd, flags);
    }
}

fn user_nb(nonblocking: bool) -> u32 {
    if nonblocking { USER_NB } else { 0 }
}

/// The hooked `socket` (libc's semantics; see the module doc).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn socket(domain: c_int, ty: c_int, proto: c_int) -> c_int {
    crate::boundary(-1, || {
        if !active() {
            // SAFETY: no memory arguments.
            let fd = unsafe { real::socket(domain, ty, proto) };
            if fd >= 0 {
                adopt(fd, 0);
            }
            return fd;
        }
        // In a photon thread it is made non-blocking underneath at once, by
        // libphoton, which then knows it as a non-blocking socket of its type
        // (no fstat, SO_TYPE and F_GETFL probes at its first use, as after
        // photon_fd_forget) and forgets what its engine knew of the number.
        // Threads that waited on the number's previous file were woken by
        // its close (hooked: photon_close).
        // SAFETY: no memory arguments.
        let fd = unsafe { photon::photon_socket(domain, ty, proto) };
        if fd >= 0 {
            fdtab::set(fd, SOCKET | UNDER_NB | user_nb(ty & libc::SOCK_NONBLOCK != 0));
        }
        fd
    })
}

/// Two fds from pipe2 or socketpair, made non-blocking underneath in a
/// photon thread.
fn adopt_pair(sv: *mut c_int, kind: u32, nonblocking: bool, made_nb: bool) {
    for i in 0..2 {
        // SAFETY: the call that filled sv succeeded.
        let fd = unsafe { *sv.add(i) };
        adopt(
            fd,
            if made_nb {
                kind | UNDER_NB | user_nb(nonblocking)
            } else {
                0
            },
        );
    }
}

/// The hooked `socketpair` (libc's semantics; see the module doc).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn socketpair(domain: c_int, ty: c_int, proto: c_int, sv: *mut c_int) -> c_int {
    crate::boundary(-1, || {
        let act = active();
        let extra = if act { libc::SOCK_NONBLOCK } else { 0 };
        // SAFETY: the caller's array of two.
        let r = unsafe { real::socketpair(domain, ty | extra, proto, sv) };
        if r == 0 {
            adopt_pair(sv, SOCKET, ty & libc::SOCK_NONBLOCK != 0, act);
        }
        r
    })
}

/// The hooked `pipe2` (libc's semantics; see the module doc).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pipe2(fds: *mut c_int, flags: c_int) -> c_int {
    crate::boundary(-1, || {
        let act = active();
        let extra = if act { libc::O_NONBLOCK } else { 0 };
        // SAFETY: the caller's array of two.
        let r = unsafe { real::pipe2(fds, flags | extra) };
        if r == 0 {
            adopt_pair(fds, 0, flags & libc::O_NONBLOCK != 0, act);
        }
        r
    })
}

/// The hooked `pipe` (libc's semantics; see the module doc).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pipe(fds: *mut c_int) -> c_int {
    crate::boundary(-1, || {
        // SAFETY: the caller's array of two.
        unsafe { pipe2(fds, 0) }
    })
}

/// The hooked `accept4` (libc's semantics; see the module doc).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn accept4(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t, flags: c_int) -> c_int {
    crate::boundary(-1, || {
        let nb = flags & libc::SOCK_NONBLOCK != 0;
        let r = match route(fd, Dir::In, false) {
            Route::Photon(t) => {
                // The kernel ignores the length when there is no address buffer;
                // photon_accept wants both or neither.
                let len = if addr.is_null() { core::ptr::null_mut() } else { len };
                // SAFETY: the caller's address buffer, as libc's accept takes it.
                let nfd = libc_result(
                    unsafe { photon::photon_accept(fd, addr, len, t) } as isize,
                    libc::EAGAIN,
                ) as c_int;
                if nfd >= 0 {
                    // photon_accept made it non-blocking (and forgot the number).
                    fdtab::set(nfd, SOCKET | UNDER_NB | user_nb(nb));
                    if flags & libc::SOCK_CLOEXEC != 0 {
                        // SAFETY: our new fd; raw syscall.
                        unsafe {
                            libc::syscall(
                                libc::SYS_fcntl,
                                nfd as libc::c_long,
                                libc::F_SETFD as libc::c_long,
                                libc::FD_CLOEXEC as libc::c_long,
                            )
                        };
                    }
                }
                return nfd;
            }
            Route::Fail(e) => {
                set_errno(e);
                return -1;
            }
            // SAFETY: as above.
            Route::Real => unsafe { real::accept4(fd, addr, len, flags) },
            Route::Emulate(deadline) => loop {
                // SAFETY: as above.
                let r = unsafe { real::accept4(fd, addr, len, flags) };
                if r >= 0 || errno() != libc::EAGAIN {
                    break r;
                }
                match poll_until(fd, Dir::In, deadline) {
                    Ok(true) => {}
                    Ok(false) => {
                        set_errno(libc::EAGAIN);
                        break -1;
                    }
                    Err(()) => break -1,
                }
            },
        };
        if r >= 0 {
            adopt(r, 0);
        }
        r
    })
}

/// The hooked `accept` (libc's semantics; see the module doc).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn accept(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t) -> c_int {
    crate::boundary(-1, || {
        // SAFETY: as accept4.
        unsafe { accept4(fd, addr, len, 0) }
    })
}

/// The hooked `connect` (libc's semantics; see the module doc).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn connect(fd: c_int, addr: *const sockaddr, len: socklen_t) -> c_int {
    crate::boundary(-1, || {
        match route(fd, Dir::Out, false) {
            Route::Photon(t) => {
                if addr.is_null() {
                    // SAFETY: libc reports EFAULT.
                    return unsafe { real::connect(fd, addr, len) };
                }
                // A blocking connect that times out (SO_SNDTIMEO) says EINPROGRESS.
                // SAFETY: the caller's address.
                libc_result(
                    unsafe { photon::photon_connect(fd, addr, len, t) } as isize,
                    libc::EINPROGRESS,
                ) as c_int
            }
            Route::Fail(e) => {
                set_errno(e);
                -1
            }
            // SAFETY: the caller's address.
            Route::Real => unsafe { real::connect(fd, addr, len) },
            Route::Emulate(deadline) => {
                // SAFETY: the caller's address.
                let r = unsafe { real::connect(fd, addr, len) };
                if r == 0 || errno() != libc::EINPROGRESS {
                    return r;
                }
                match poll_until(fd, Dir::Out, deadline) {
                    Ok(true) => {}
                    Ok(false) => {
                        set_errno(libc::EINPROGRESS);
                        return -1;
                    }
                    Err(()) => return -1,
                }
                let mut err: c_int = 0;
                let mut n = core::mem::size_of::<c_int>() as socklen_t;
                // SAFETY: reads SO_ERROR into a live int.
                let g =
                    unsafe { libc::getsockopt(fd, libc::SOL_SOCKET, libc::SO_ERROR, (&raw mut err).cast(), &mut n) };
                if g < 0 {
                    return -1;
                }
                if err != 0 {
                    set_errno(err);
                    return -1;
                }
                // Connected: one more connect moves the socket to "connected",
                // where a blocking connect leaves it (a later one says EISCONN).
                // SAFETY: the caller's address.
                if unsafe { real::connect(fd, addr, len) } < 0 && errno() != libc::EISCONN {
                    return -1;
                }
                0
            }
        }
    })
}

/// The hooked `close` (libc's semantics; see the module doc).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn close(fd: c_int) -> c_int {
    crate::boundary(-1, || {
        fdtab::reset(fd);
        // photon_close wakes this vcpu's threads waiting on fd, drops what
        // libphoton knew of it, then closes (on any thread).
        // SAFETY: no memory arguments.
        unsafe { photon::photon_close(fd) }
    })
}

/// After `to` became a duplicate of `from`.
fn duplicated(from: c_int, to: c_int) {
    // SAFETY: no memory arguments.
    unsafe { photon::photon_fd_forget(to) };
    fdtab::copy(from, to);
}

/// The hooked `dup` (libc's semantics; see the module doc).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dup(fd: c_int) -> c_int {
    crate::boundary(-1, || {
        // SAFETY: no memory arguments.
        let r = unsafe { real::dup(fd) };
        if r >= 0 {
            duplicated(fd, r);
        }
        r
    })
}

/// The hooked `dup2` (libc's semantics; see the module doc).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dup2(fd: c_int, to: c_int) -> c_int {
    crate::boundary(-1, || {
        // SAFETY: no memory arguments.
        let r = unsafe { real::dup2(fd, to) };
        if r >= 0 && fd != to {
            duplicated(fd, r);
        }
        r
    })
}

/// The hooked `dup3` (libc's semantics; see the module doc).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dup3(fd: c_int, to: c_int, flags: c_int) -> c_int {
    crate::boundary(-1, || {
        // SAFETY: no memory arguments.
        let r = unsafe { real::dup3(fd, to, flags) };
        if r >= 0 {
            duplicated(fd, r);
        }
        r
    })
}

/// `fcntl`: F_GETFL reports the program's O_NONBLOCK; F_SETFL records it
/// and keeps O_NONBLOCK underneath where the shim relies on it; F_DUPFD
/// copies the fd's entry. Declared with one word-sized argument: on the
/// x86-64 and aarch64 Linux ABIs a variadic caller passes it where this
/// reads it, and every fcntl command takes at most one.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fcntl(fd: c_int, cmd: c_int, arg: usize) -> c_int {
    crate::boundary(-1, || {
        match cmd {
            libc::F_GETFL => {
                // SAFETY: no memory arguments.
                let r = unsafe { real::fcntl(fd, cmd, 0) };
                let f = fdtab::known(fd);
                if r >= 0 && f & KNOWN != 0 {
                    let nb = if f & USER_NB != 0 { libc::O_NONBLOCK } else { 0 };
                    return (r & !libc::O_NONBLOCK) | nb;
                }
                r
            }
            libc::F_SETFL => {
                let f = fdtab::known(fd);
                let wants_nb = arg as c_int & libc::O_NONBLOCK != 0;
                let under = if f & (KNOWN | UNDER_NB) == KNOWN | UNDER_NB {
                    arg | libc::O_NONBLOCK as usize
                } else {
                    arg
                };
                // SAFETY: an integer argument.
                let r = unsafe { real::fcntl(fd, cmd, under) };
                if r == 0 && f & KNOWN != 0 {
                    // O_NONBLOCK underneath is now set if asked for, and kept if it was.
                    fdtab::set_nonblock(fd, wants_nb, wants_nb.then_some(true));
                }
                r
            }
            libc::F_DUPFD | libc::F_DUPFD_CLOEXEC => {
                // SAFETY: an integer argument.
                let r = unsafe { real::fcntl(fd, cmd, arg) };
                if r >= 0 {
                    duplicated(fd, r);
                }
                r
            }
            // SAFETY: the command's own argument, passed on as given.
            _ => unsafe { real::fcntl(fd, cmd, arg) },
        }
    })
}

/// The hooked `fcntl64` (libc's semantics; see the module doc).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fcntl64(fd: c_int, cmd: c_int, arg: usize) -> c_int {
    crate::boundary(-1, || {
        // SAFETY: as fcntl.
        unsafe { fcntl(fd, cmd, arg) }
    })
}

/// `ioctl`: FIONBIO on a tracked fd changes only the program's view when
/// the fd stays non-blocking underneath. Declared like [`fcntl`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ioctl(fd: c_int, req: c_ulong, arg: usize) -> c_int {
    crate::boundary(-1, || {
        if req == libc::FIONBIO as c_ulong && arg != 0 {
            let f = fdtab::known(fd);
            // SAFETY: FIONBIO's argument is an int pointer (checked non-NULL).
            let nb = unsafe { *(arg as *const c_int) } != 0;
            if f & (KNOWN | UNDER_NB) == KNOWN | UNDER_NB {
                let one: c_int = 1;
                // SAFETY: keeps it non-blocking underneath (and checks fd).
                let r = unsafe { real::ioctl(fd, req, (&raw const one) as usize) };
                if r == 0 {
                    fdtab::set_nonblock(fd, nb, None);
                }
                return r;
            }
            // SAFETY: the caller's int.
            let r = unsafe { real::ioctl(fd, req, arg) };
            if r == 0 && f & KNOWN != 0 {
                fdtab::set_nonblock(fd, nb, Some(nb));
            }
            return r;
        }
        // SAFETY: the request's own argument, passed on as given.
        unsafe { real::ioctl(fd, req, arg) }
    })
}

/// SO_RCVTIMEO_NEW / SO_SNDTIMEO_NEW (Linux 5.1): the same timeval layout
/// on 64-bit targets.
const SO_RCVTIMEO_NEW: c_int = 66;
const SO_SNDTIMEO_NEW: c_int = 67;

/// The hooked `setsockopt` (libc's semantics; see the module doc).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn setsockopt(fd: c_int, level: c_int, name: c_int, val: *const c_void, len: socklen_t) -> c_int {
    crate::boundary(-1, || {
        // SAFETY: the caller's option value.
        let r = unsafe { real::setsockopt(fd, level, name, val, len) };
        if r == 0
            && level == libc::SOL_SOCKET
            && !val.is_null()
            && len as usize >= core::mem::size_of::<libc::timeval>()
        {
            let dir = match name {
                libc::SO_RCVTIMEO | SO_RCVTIMEO_NEW => Some(Dir::In),
                libc::SO_SNDTIMEO | SO_SNDTIMEO_NEW => Some(Dir::Out),
                _ => None,
            };
            if let (Some(dir), Some(e)) = (dir, fdtab::entry(fd)) {
                // SAFETY: the kernel accepted it as a timeval.
                let tv = unsafe { val.cast::<libc::timeval>().read_unaligned() };
                let us = (tv.tv_sec as u64)
                    .saturating_mul(1_000_000)
                    .saturating_add(tv.tv_usec as u64);
                match dir {
                    Dir::In => e.rcv_us.store(us, Relaxed),
                    Dir::Out => e.snd_us.store(us, Relaxed),
                }
            }
        }
        r
    })
}
