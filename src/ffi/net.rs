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
use crate::sched::Cached;
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
/// partial count is normal), 0 at EOF. On a buffered file it reads at the
/// file position and advances it; bytes in the page cache come at once,
/// whatever `timeout_us`.
#[unsafe(no_mangle)]
pub extern "C" fn photon_read(fd: c_int, buf: *mut c_void, count_: usize, timeout_us: u64) -> ssize_t {
    // A buffered file already known goes to its common case (a page-cache
    // hit) first; every other fd (a socket's read: the hot one) pays only
    // this one load (about 10 instructions) and goes on in general. Both
    // are tail calls (the callees are extern "C", so nothing can unwind
    // into this frame): no frame here.
    if crate::fdinfo::known_buffered_storage(fd) {
        return read_file(fd, buf, count_, timeout_us);
    }
    read(fd, buf, count_, timeout_us)
}

/// [`photon_read`] of a buffered file already known: the common case,
/// outside the panic guard, as photon_pread's.
#[inline(never)]
extern "C" fn read_file(fd: c_int, buf: *mut c_void, count_: usize, timeout_us: u64) -> ssize_t {
    let cached = if buf.is_null() {
        Cached::General
    } else {
        // SAFETY: the caller passes a buffer of count_ bytes.
        unsafe { net::read_cached(fd, buf.cast(), count_) }
    };
    cached.answer(
        |buf, len| read_engine(fd, buf, len, timeout_us),
        || read(fd, buf, count_, timeout_us),
    )
}

/// [`photon_read`] in general.
#[inline(never)]
extern "C" fn read(fd: c_int, buf: *mut c_void, count_: usize, timeout_us: u64) -> ssize_t {
    guard(|| {
        buf_ok(buf, count_)?;
        // SAFETY: the caller passes a buffer of count_ bytes.
        count(unsafe { net::read(fd, buf.cast(), count_, deadline(timeout_us)) })
    })
}

/// [`photon_read`] of a checked read of a buffered file that missed the
/// page cache.
#[inline(never)]
extern "C" fn read_engine(fd: c_int, buf: *mut u8, len: usize, timeout_us: u64) -> ssize_t {
    // SAFETY: the caller passes a buffer of len bytes (at most FILE_CHUNK).
    guard(|| count(unsafe { net::read_one(fd, buf, len as u32, deadline(timeout_us)) }))
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

/// `bind(2)` for kernel sockets and userspace-stack descriptors alike
/// (there: the stack's own address or `INADDR_ANY`, else
/// `EADDRNOTAVAIL`; port 0 picks a free one; `EADDRINUSE`). Needs no vcpu
/// for a kernel fd.
#[unsafe(no_mangle)]
pub extern "C" fn photon_bind(fd: c_int, addr: *const sockaddr, addrlen: socklen_t) -> c_int {
    guard(|| {
        if addr.is_null() {
            return Err(Errno::EINVAL);
        }
        // SAFETY: non-NULL; the caller passes addrlen valid bytes.
        unsafe { net::bind(fd, addr, addrlen) }.map(|()| 0)
    })
}

/// `listen(2)` for both kinds of descriptor (userspace: `backlog` <= 0
/// means 128, at most 4096; a connection arriving while the accept queue
/// is full is reset).
#[unsafe(no_mangle)]
pub extern "C" fn photon_listen(fd: c_int, backlog: c_int) -> c_int {
    guard(|| net::listen(fd, backlog).map(|()| 0))
}

/// `shutdown(2)` for both kinds of descriptor (`SHUT_RD`, `SHUT_WR`: a
/// FIN, `SHUT_RDWR`). `ENOTCONN` on an unconnected socket.
#[unsafe(no_mangle)]
pub extern "C" fn photon_shutdown(fd: c_int, how: c_int) -> c_int {
    guard(|| net::shutdown(fd, how).map(|()| 0))
}

/// `getsockname(2)` for both kinds of descriptor.
#[unsafe(no_mangle)]
pub extern "C" fn photon_getsockname(fd: c_int, addr: *mut sockaddr, addrlen: *mut socklen_t) -> c_int {
    guard(|| {
        if addr.is_null() || addrlen.is_null() {
            return Err(Errno::EINVAL);
        }
        // SAFETY: non-NULL; the caller passes *addrlen valid bytes.
        unsafe { net::sockname(fd, addr, addrlen, false) }.map(|()| 0)
    })
}

/// `getpeername(2)` for both kinds of descriptor (`ENOTCONN` before a
/// connection).
#[unsafe(no_mangle)]
pub extern "C" fn photon_getpeername(fd: c_int, addr: *mut sockaddr, addrlen: *mut socklen_t) -> c_int {
    guard(|| {
        if addr.is_null() || addrlen.is_null() {
            return Err(Errno::EINVAL);
        }
        // SAFETY: non-NULL; the caller passes *addrlen valid bytes.
        unsafe { net::sockname(fd, addr, addrlen, true) }.map(|()| 0)
    })
}

/// `setsockopt(2)` for both kinds of descriptor. A userspace-stack
/// descriptor takes `SO_REUSEADDR` (nothing to do), `SO_RCVBUF` and
/// `SO_SNDBUF` (before connect or listen: the buffers are sized then;
/// default 64 KiB), `SO_KEEPALIVE`, `SO_LINGER` (a zero timeout makes
/// close reset the connection) and `TCP_NODELAY`; others give
/// `ENOPROTOOPT`.
#[unsafe(no_mangle)]
pub extern "C" fn photon_setsockopt(
    fd: c_int,
    level: c_int,
    optname: c_int,
    optval: *const c_void,
    optlen: socklen_t,
) -> c_int {
    guard(|| {
        buf_ok(optval, optlen as usize)?;
        // SAFETY: the caller passes optlen valid bytes.
        unsafe { net::setsockopt(fd, level, optname, optval, optlen) }.map(|()| 0)
    })
}

/// `getsockopt(2)` for both kinds of descriptor. A userspace-stack
/// descriptor answers `SO_ERROR`, `SO_TYPE`, `SO_DOMAIN`, `SO_PROTOCOL`,
/// `SO_ACCEPTCONN`, `SO_RCVBUF`, `SO_SNDBUF`, `SO_KEEPALIVE`,
/// `SO_REUSEADDR` and `TCP_NODELAY`; others give `ENOPROTOOPT`.
#[unsafe(no_mangle)]
pub extern "C" fn photon_getsockopt(
    fd: c_int,
    level: c_int,
    optname: c_int,
    optval: *mut c_void,
    optlen: *mut socklen_t,
) -> c_int {
    guard(|| {
        if optval.is_null() || optlen.is_null() {
            return Err(Errno::EINVAL);
        }
        // SAFETY: non-NULL; the caller passes *optlen valid bytes.
        unsafe { net::getsockopt(fd, level, optname, optval, optlen) }.map(|()| 0)
    })
}
