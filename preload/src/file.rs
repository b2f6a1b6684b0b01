//! Positioned file I/O and syncs: in a photon thread they go through the
//! engine (io_uring, or the offload pool under epoll), so a slow disk
//! blocks only the calling photon thread.

use core::ffi::{c_int, c_void};
use libc::{iovec, off_t, size_t, ssize_t};

use crate::{active, photon, real};

/// The hooked `pread` (libc's semantics; see the module doc).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pread(fd: c_int, buf: *mut c_void, n: size_t, off: off_t) -> ssize_t {
    crate::boundary(-1, || {
        // SAFETY: the caller's buffer, as libc's pread takes it.
        unsafe {
            if active() {
                photon::photon_pread(fd, buf, n, off)
            } else {
                real::pread(fd, buf, n, off)
            }
        }
    })
}

/// The hooked `pwrite` (libc's semantics; see the module doc).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pwrite(fd: c_int, buf: *const c_void, n: size_t, off: off_t) -> ssize_t {
    crate::boundary(-1, || {
        // SAFETY: the caller's buffer, as libc's pwrite takes it.
        unsafe {
            if active() {
                photon::photon_pwrite(fd, buf, n, off)
            } else {
                real::pwrite(fd, buf, n, off)
            }
        }
    })
}

/// The hooked `preadv` (libc's semantics; see the module doc).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn preadv(fd: c_int, iov: *const iovec, n: c_int, off: off_t) -> ssize_t {
    crate::boundary(-1, || {
        // SAFETY: the caller's iovecs.
        unsafe {
            if active() {
                photon::photon_preadv(fd, iov, n, off)
            } else {
                real::preadv(fd, iov, n, off)
            }
        }
    })
}

/// The hooked `pwritev` (libc's semantics; see the module doc).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pwritev(fd: c_int, iov: *const iovec, n: c_int, off: off_t) -> ssize_t {
    crate::boundary(-1, || {
        // SAFETY: the caller's iovecs.
        unsafe {
            if active() {
                photon::photon_pwritev(fd, iov, n, off)
            } else {
                real::pwritev(fd, iov, n, off)
            }
        }
    })
}

// On 64-bit Linux off_t is 64 bits: the *64 names are the same functions.
/// The hooked `pread64` (libc's semantics; see the module doc).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pread64(fd: c_int, buf: *mut c_void, n: size_t, off: off_t) -> ssize_t {
    crate::boundary(-1, || {
        // SAFETY: as pread.
        unsafe { pread(fd, buf, n, off) }
    })
}

/// The hooked `pwrite64` (libc's semantics; see the module doc).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pwrite64(fd: c_int, buf: *const c_void, n: size_t, off: off_t) -> ssize_t {
    crate::boundary(-1, || {
        // SAFETY: as pwrite.
        unsafe { pwrite(fd, buf, n, off) }
    })
}

/// The hooked `preadv64` (libc's semantics; see the module doc).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn preadv64(fd: c_int, iov: *const iovec, n: c_int, off: off_t) -> ssize_t {
    crate::boundary(-1, || {
        // SAFETY: as preadv.
        unsafe { preadv(fd, iov, n, off) }
    })
}

/// The hooked `pwritev64` (libc's semantics; see the module doc).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pwritev64(fd: c_int, iov: *const iovec, n: c_int, off: off_t) -> ssize_t {
    crate::boundary(-1, || {
        // SAFETY: as pwritev.
        unsafe { pwritev(fd, iov, n, off) }
    })
}

/// The hooked `fsync` (libc's semantics; see the module doc).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fsync(fd: c_int) -> c_int {
    crate::boundary(-1, || {
        // SAFETY: no memory arguments.
        unsafe {
            if active() {
                photon::photon_fsync(fd)
            } else {
                real::fsync(fd)
            }
        }
    })
}

/// The hooked `fdatasync` (libc's semantics; see the module doc).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fdatasync(fd: c_int) -> c_int {
    crate::boundary(-1, || {
        // SAFETY: no memory arguments.
        unsafe {
            if active() {
                photon::photon_fdatasync(fd)
            } else {
                real::fdatasync(fd)
            }
        }
    })
}
