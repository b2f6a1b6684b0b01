//! Files: calls that never stall the vcpu (io_uring ring operations, or
//! the offload pool of helper threads). Rules shared by this file's
//! functions: they need a vcpu (`EPERM`); they are interruptible with
//! `photon_thread_interrupt` (an operation the kernel already started in
//! the ring is waited for first: it writes into the caller's buffer); a
//! negative offset gives `EINVAL`; otherwise errno is the kernel's,
//! unchanged (O_DIRECT misalignment gives its `EINVAL`). `photon_read`,
//! `photon_write` and `photon_close` also work on files.

use core::ffi::{c_char, c_void};

use libc::{c_int, iovec, mode_t, off_t, ssize_t};

use super::guard;
use crate::errno::Errno;
use crate::fs;
use crate::sched::Cached;

fn path_ok(p: *const c_char) -> Result<(), Errno> {
    if p.is_null() { Err(Errno::EINVAL) } else { Ok(()) }
}

fn buf_ok<T>(p: *const T, len: usize) -> Result<(), Errno> {
    if p.is_null() && len > 0 {
        Err(Errno::EINVAL)
    } else {
        Ok(())
    }
}

/// `open(2)`: returns the fd, or -1.
#[unsafe(no_mangle)]
pub extern "C" fn photon_open(path: *const c_char, flags: c_int, mode: mode_t) -> c_int {
    guard(|| {
        path_ok(path)?;
        // SAFETY: non-NULL, NUL-terminated per the C contract.
        unsafe { fs::open(path, flags, mode) }
    })
}

/// `pread(2)`: may return fewer bytes than asked (0 at EOF).
#[unsafe(no_mangle)]
pub extern "C" fn photon_pread(fd: c_int, buf: *mut c_void, count: usize, offset: off_t) -> ssize_t {
    // The common case (a page-cache hit) first, outside the panic guard,
    // which it does not need (nothing in it can panic or call out): it
    // then keeps no frame, and every other way is a tail call.
    let cached = if buf.is_null() {
        Cached::General
    } else {
        // SAFETY: the caller passes a buffer of count bytes.
        unsafe { fs::pread_cached(fd, buf.cast(), count, offset) }
    };
    cached.answer(
        |buf, len| pread_engine(fd, buf, len, offset),
        || pread(fd, buf, count, offset),
    )
}

/// [`photon_pread`] in general.
#[inline(never)]
fn pread(fd: c_int, buf: *mut c_void, count: usize, offset: off_t) -> ssize_t {
    guard(|| {
        buf_ok(buf, count)?;
        // SAFETY: the caller passes a buffer of count bytes.
        unsafe { fs::pread(fd, buf.cast(), count, offset) }.map(|n| n as ssize_t)
    })
}

/// [`photon_pread`] of a checked read that missed the page cache.
#[inline(never)]
fn pread_engine(fd: c_int, buf: *mut u8, count: usize, offset: off_t) -> ssize_t {
    // SAFETY: the caller passes a buffer of count bytes.
    guard(|| unsafe { fs::pread_engine(fd, buf, count, offset) }.map(|n| n as ssize_t))
}

/// `pwrite(2)`.
#[unsafe(no_mangle)]
pub extern "C" fn photon_pwrite(fd: c_int, buf: *const c_void, count: usize, offset: off_t) -> ssize_t {
    guard(|| {
        buf_ok(buf, count)?;
        // SAFETY: the caller passes a buffer of count bytes.
        unsafe { fs::pwrite(fd, buf.cast(), count, offset) }.map(|n| n as ssize_t)
    })
}

/// `preadv(2)`.
#[unsafe(no_mangle)]
pub extern "C" fn photon_preadv(fd: c_int, iov: *const iovec, iovcnt: c_int, offset: off_t) -> ssize_t {
    // The common case (a page-cache hit) first, outside the panic guard, as
    // photon_pread's.
    if !iov.is_null() {
        // SAFETY: the caller passes iovcnt valid iovecs.
        match unsafe { fs::preadv_cached(fd, iov, iovcnt, offset) } {
            Some(n) if n >= 0 => return n,
            Some(_) => return preadv_engine(fd, iov, iovcnt, offset),
            None => {}
        }
    }
    preadv(fd, iov, iovcnt, offset)
}

/// [`photon_preadv`] in general.
#[inline(never)]
fn preadv(fd: c_int, iov: *const iovec, iovcnt: c_int, offset: off_t) -> ssize_t {
    guard(|| {
        buf_ok(iov, iovcnt.max(0) as usize)?;
        // SAFETY: the caller passes iovcnt valid iovecs.
        unsafe { fs::preadv(fd, iov, iovcnt, offset) }.map(|n| n as ssize_t)
    })
}

/// [`photon_preadv`] of checked iovecs (1 to IOV_MAX of them) that missed
/// the page cache.
#[inline(never)]
fn preadv_engine(fd: c_int, iov: *const iovec, iovcnt: c_int, offset: off_t) -> ssize_t {
    // SAFETY: the caller passes iovcnt valid iovecs.
    guard(|| unsafe { fs::preadv_engine(fd, iov, iovcnt as u32, offset) }.map(|n| n as ssize_t))
}

/// `pwritev(2)`.
#[unsafe(no_mangle)]
pub extern "C" fn photon_pwritev(fd: c_int, iov: *const iovec, iovcnt: c_int, offset: off_t) -> ssize_t {
    guard(|| {
        buf_ok(iov, iovcnt.max(0) as usize)?;
        // SAFETY: the caller passes iovcnt valid iovecs.
        unsafe { fs::pwritev(fd, iov, iovcnt, offset) }.map(|n| n as ssize_t)
    })
}

/// `fsync(2)`.
#[unsafe(no_mangle)]
pub extern "C" fn photon_fsync(fd: c_int) -> c_int {
    guard(|| fs::fsync(fd, false).map(|()| 0))
}

/// `fdatasync(2)`.
#[unsafe(no_mangle)]
pub extern "C" fn photon_fdatasync(fd: c_int) -> c_int {
    guard(|| fs::fsync(fd, true).map(|()| 0))
}

/// `fallocate(2)` (`mode` 0 allocates and extends the file).
#[unsafe(no_mangle)]
pub extern "C" fn photon_fallocate(fd: c_int, mode: c_int, offset: off_t, len: off_t) -> c_int {
    guard(|| fs::fallocate(fd, mode, offset, len).map(|()| 0))
}

/// `ftruncate(2)`.
#[unsafe(no_mangle)]
pub extern "C" fn photon_ftruncate(fd: c_int, length: off_t) -> c_int {
    guard(|| fs::ftruncate(fd, length).map(|()| 0))
}

/// `fstat(2)` into `*st`. An fd whose attributes are in memory (a socket,
/// a pipe, a file on a local file system) is stat'ed on the vcpu, a
/// system call that never waits (`PHOTON_IO_OFF=inline_fstat`: never);
/// a file on a file system whose getattr may wait for a server or daemon
/// (NFS, FUSE, ...) through the engine, as a `statx`. -1 with EINVAL for a
/// NULL `st`, EBADF for a bad fd, EFAULT where the kernel cannot write
/// `*st`.
#[unsafe(no_mangle)]
pub extern "C" fn photon_fstat(fd: c_int, st: *mut libc::stat) -> c_int {
    guard(|| {
        if st.is_null() {
            return Err(Errno::EINVAL);
        }
        // SAFETY: non-NULL; the caller passes a writable struct stat.
        unsafe { fs::fstat_into(fd, st) }.map(|()| 0)
    })
}

/// `unlink(2)`.
#[unsafe(no_mangle)]
pub extern "C" fn photon_unlink(path: *const c_char) -> c_int {
    guard(|| {
        path_ok(path)?;
        // SAFETY: non-NULL, NUL-terminated per the C contract.
        unsafe { fs::unlink(path, 0) }.map(|()| 0)
    })
}

/// `rename(2)`.
#[unsafe(no_mangle)]
pub extern "C" fn photon_rename(oldpath: *const c_char, newpath: *const c_char) -> c_int {
    guard(|| {
        path_ok(oldpath)?;
        path_ok(newpath)?;
        // SAFETY: non-NULL, NUL-terminated per the C contract.
        unsafe { fs::rename(oldpath, newpath) }.map(|()| 0)
    })
}

/// `mkdir(2)`.
#[unsafe(no_mangle)]
pub extern "C" fn photon_mkdir(path: *const c_char, mode: mode_t) -> c_int {
    guard(|| {
        path_ok(path)?;
        // SAFETY: non-NULL, NUL-terminated per the C contract.
        unsafe { fs::mkdir(path, mode) }.map(|()| 0)
    })
}
