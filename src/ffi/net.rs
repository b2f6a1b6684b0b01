//! fd I/O: POSIX-shaped calls where only the calling photon thread waits.
//!
//! Shared rules for this file's functions: `timeout_us` is relative
//! (`PHOTON_FOREVER`: none) and expiry gives `ETIMEDOUT`;
//! `photon_thread_interrupt` makes a waiting call fail with the
//! interrupter's errno; off a vcpu they fail with `EPERM`; a NULL buffer
//! with a nonzero length gives `EINVAL`. They work on any fd whatever its
//! O_NONBLOCK flag: under the epoll engine (or an io_uring kernel lacking
//! an opcode) the fd is switched to O_NONBLOCK once, underneath. Sockets
//! never raise SIGPIPE (`EPIPE` is returned). Close such fds with
//! `photon_close`.

use core::ffi::c_void;

use libc::{c_int, iovec, msghdr, sockaddr, socklen_t, ssize_t};

use super::guard;
use crate::errno::Errno;
use crate::net;
use crate::time::deadline;

/// `events` bit for `photon_wait_fd`: readable.
pub const PHOTON_READABLE: u32 = 1;
/// `events` bit for `photon_wait_fd`: writable.
pub const PHOTON_WRITABLE: u32 = 2;

fn buf_ok<T>(p: *const T, len: usize) -> Result<(), Errno> {
    if p.is_null() && len > 0 {
        Err(Errno::EINVAL)
    } else {
        Ok(())
    }
}

fn count(r: Result<usize, Errno>) -> Result<ssize_t, Errno> {
    r.map(|n| n as ssize_t)
}

/// Waits until `fd` is ready for `events` (`PHOTON_READABLE` |
/// `PHOTON_WRITABLE`). Returns the ready subset of `events` (> 0; errors
/// and hang-ups count as ready), or -1: `EINVAL` (bad `events`), `EBADF`,
/// `ETIMEDOUT`, the interrupter's errno, `ECANCELED` (fd closed meanwhile).
#[unsafe(no_mangle)]
pub extern "C" fn photon_wait_fd(fd: c_int, events: u32, timeout_us: u64) -> c_int {
    guard(|| net::wait_fd(fd, events, deadline(timeout_us)).map(|b| b as c_int))
}

/// `socket(2)`, non-blocking underneath (`SOCK_NONBLOCK` is added), ready
/// for the other photon calls. Needs no vcpu.
#[unsafe(no_mangle)]
pub extern "C" fn photon_socket(domain: c_int, type_: c_int, protocol: c_int) -> c_int {
    guard(|| net::socket(domain, type_, protocol))
}

/// `connect(2)` waiting as a photon thread: 0 once connected, or -1 with the
/// connection's error (`ECONNREFUSED`, ...), `ETIMEDOUT`, or the interrupter's
/// errno (the socket is then left mid-connect: close it).
#[unsafe(no_mangle)]
pub extern "C" fn photon_connect(fd: c_int, addr: *const sockaddr, addrlen: socklen_t, timeout_us: u64) -> c_int {
    guard(|| {
        if addr.is_null() {
            return Err(Errno::EINVAL);
        }
        // SAFETY: non-NULL; the caller passes addrlen valid bytes.
        unsafe { net::connect(fd, addr, addrlen, deadline(timeout_us)) }.map(|()| 0)
    })
}

/// `accept(2)` waiting as a photon thread; the new fd is non-blocking
/// underneath. `addr` may be NULL (`addrlen` is then ignored, as accept(2)
/// does); `addrlen` NULL with an `addr` is `EINVAL`.
#[unsafe(no_mangle)]
pub extern "C" fn photon_accept(fd: c_int, addr: *mut sockaddr, addrlen: *mut socklen_t, timeout_us: u64) -> c_int {
    guard(|| {
        // As accept(2): no address buffer, the length is ignored.
        let addrlen = if addr.is_null() { core::ptr::null_mut() } else { addrlen };
        if addrlen.is_null() && !addr.is_null() {
            return Err(Errno::EINVAL);
        }
        // SAFETY: both NULL or both valid, as the caller promises.
        unsafe { net::accept(fd, addr, addrlen, deadline(timeout_us)) }
    })
}

/// `read(2)` waiting as a photon thread: returns once some bytes arrived (a
/// partial count is normal), 0 at EOF.
#[unsafe(no_mangle)]
pub extern "C" fn photon_read(fd: c_int, buf: *mut c_void, count_: usize, timeout_us: u64) -> ssize_t {
    guard(|| {
        buf_ok(buf, count_)?;
        // SAFETY: the caller passes a buffer of count_ bytes.
        count(unsafe { net::read(fd, buf.cast(), count_, deadline(timeout_us)) })
    })
}

/// `write(2)` waiting as a photon thread; may write fewer bytes than asked.
#[unsafe(no_mangle)]
pub extern "C" fn photon_write(fd: c_int, buf: *const c_void, count_: usize, timeout_us: u64) -> ssize_t {
    guard(|| {
        buf_ok(buf, count_)?;
        // SAFETY: the caller passes a buffer of count_ bytes.
        count(unsafe { net::write(fd, buf.cast(), count_, deadline(timeout_us)) })
    })
}

/// `readv(2)` waiting as a photon thread.
#[unsafe(no_mangle)]
pub extern "C" fn photon_readv(fd: c_int, iov: *const iovec, iovcnt: c_int, timeout_us: u64) -> ssize_t {
    guard(|| {
        buf_ok(iov, iovcnt.max(0) as usize)?;
        // SAFETY: the caller passes iovcnt valid iovecs.
        count(unsafe { net::readv(fd, iov, iovcnt, deadline(timeout_us)) })
    })
}

/// `writev(2)` waiting as a photon thread.
#[unsafe(no_mangle)]
pub extern "C" fn photon_writev(fd: c_int, iov: *const iovec, iovcnt: c_int, timeout_us: u64) -> ssize_t {
    guard(|| {
        buf_ok(iov, iovcnt.max(0) as usize)?;
        // SAFETY: the caller passes iovcnt valid iovecs.
        count(unsafe { net::writev(fd, iov, iovcnt, deadline(timeout_us)) })
    })
}

/// `recv(2)` waiting once as a photon thread (returns what arrived; 0 at
/// EOF). With `MSG_DONTWAIT` it does not wait.
#[unsafe(no_mangle)]
pub extern "C" fn photon_recv(fd: c_int, buf: *mut c_void, len: usize, flags: c_int, timeout_us: u64) -> ssize_t {
    guard(|| {
        buf_ok(buf, len)?;
        // SAFETY: the caller passes a buffer of len bytes.
        count(unsafe { net::recv(fd, buf.cast(), len, flags, deadline(timeout_us)) })
    })
}

/// `send(2)` waiting as a photon thread; `MSG_NOSIGNAL` is implied.
#[unsafe(no_mangle)]
pub extern "C" fn photon_send(fd: c_int, buf: *const c_void, len: usize, flags: c_int, timeout_us: u64) -> ssize_t {
    guard(|| {
        buf_ok(buf, len)?;
        // SAFETY: the caller passes a buffer of len bytes.
        count(unsafe { net::send(fd, buf.cast(), len, flags, deadline(timeout_us)) })
    })
}

/// `recvfrom(2)` waiting as a photon thread; `src_addr`/`addrlen` may be NULL.
#[unsafe(no_mangle)]
pub extern "C" fn photon_recvfrom(
    fd: c_int,
    buf: *mut c_void,
    len: usize,
    flags: c_int,
    src_addr: *mut sockaddr,
    addrlen: *mut socklen_t,
    timeout_us: u64,
) -> ssize_t {
    guard(|| {
        buf_ok(buf, len)?;
        // SAFETY: the caller passes valid (or NULL) pointers.
        count(unsafe { net::recvfrom(fd, buf.cast(), len, flags, src_addr, addrlen, deadline(timeout_us)) })
    })
}

/// `sendto(2)` waiting as a photon thread; `MSG_NOSIGNAL` is implied.
#[unsafe(no_mangle)]
pub extern "C" fn photon_sendto(
    fd: c_int,
    buf: *const c_void,
    len: usize,
    flags: c_int,
    dest_addr: *const sockaddr,
    addrlen: socklen_t,
    timeout_us: u64,
) -> ssize_t {
    guard(|| {
        buf_ok(buf, len)?;
        // SAFETY: the caller passes valid (or NULL) pointers.
        count(unsafe { net::sendto(fd, buf.cast(), len, flags, dest_addr, addrlen, deadline(timeout_us)) })
    })
}

/// `recvmsg(2)` waiting as a photon thread.
#[unsafe(no_mangle)]
pub extern "C" fn photon_recvmsg(fd: c_int, msg: *mut msghdr, flags: c_int, timeout_us: u64) -> ssize_t {
    guard(|| {
        if msg.is_null() {
            return Err(Errno::EINVAL);
        }
        // SAFETY: non-NULL; the caller passes a valid msghdr.
        count(unsafe { net::recvmsg(fd, msg, flags, deadline(timeout_us)) })
    })
}

/// `sendmsg(2)` waiting as a photon thread; `MSG_NOSIGNAL` is implied.
#[unsafe(no_mangle)]
pub extern "C" fn photon_sendmsg(fd: c_int, msg: *const msghdr, flags: c_int, timeout_us: u64) -> ssize_t {
    guard(|| {
        if msg.is_null() {
            return Err(Errno::EINVAL);
        }
        // SAFETY: non-NULL; the caller passes a valid msghdr.
        count(unsafe { net::sendmsg(fd, msg, flags, deadline(timeout_us)) })
    })
}

/// Reads until `count` bytes or EOF (one deadline for the whole call).
/// Returns the bytes read: fewer than `count` means EOF (errno unchanged),
/// or an error after some bytes arrived (errno says which; those bytes are
/// returned, not lost). -1 only when the error came before any byte.
#[unsafe(no_mangle)]
pub extern "C" fn photon_read_full(fd: c_int, buf: *mut c_void, count_: usize, timeout_us: u64) -> ssize_t {
    guard(|| {
        buf_ok(buf, count_)?;
        // SAFETY: the caller passes a buffer of count_ bytes.
        partial(unsafe { net::read_full(fd, buf.cast(), count_, deadline(timeout_us)) })
    })
}

/// Writes all `count` bytes (one deadline for the whole call). Returns
/// `count`; fewer after an error once some bytes went out (errno says
/// which); -1 when the error came before any byte.
#[unsafe(no_mangle)]
pub extern "C" fn photon_write_full(fd: c_int, buf: *const c_void, count_: usize, timeout_us: u64) -> ssize_t {
    guard(|| {
        buf_ok(buf, count_)?;
        // SAFETY: the caller passes a buffer of count_ bytes.
        partial(unsafe { net::write_full(fd, buf.cast(), count_, deadline(timeout_us)) })
    })
}

/// A short count still reports its error in errno.
fn partial(r: Result<net::Partial, Errno>) -> Result<ssize_t, Errno> {
    let p = r?;
    if let Some(e) = p.error {
        super::set_errno(e);
    }
    Ok(p.done as ssize_t)
}

/// `close(2)`, first waking the photon threads of this vcpu blocked on `fd`
/// (their calls fail with `ECANCELED`). Needs no vcpu.
#[unsafe(no_mangle)]
pub extern "C" fn photon_close(fd: c_int) -> c_int {
    guard(|| net::close(fd).map(|()| 0))
}

/// Tells photon that the number `fd` names another file now (it was closed
/// or replaced behind photon's back: `dup2` onto it, a library's own
/// `close`): what photon cached about it is dropped, and photon threads of
/// this vcpu blocked on it fail with `ECANCELED`. Does not close anything.
/// Needs no vcpu. Returns 0, or -1 with `EBADF` (negative fd).
#[unsafe(no_mangle)]
pub extern "C" fn photon_fd_forget(fd: c_int) -> c_int {
    guard(|| net::forget(fd).map(|()| 0))
}
