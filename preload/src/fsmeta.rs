//! File opening and metadata calls: `open`, `openat`, `fstat`, `unlink`,
//! `rename`, `fallocate`, `ftruncate` (and their `64` names).
//!
//! In a photon thread these become photon waits, so a slow file system
//! (network, FUSE, a cold disk) or an open that waits (a FIFO without its
//! peer) suspends only the calling photon thread, not its vcpu: `open` and
//! `openat` run libc's own call on libphoton's offload pool (exact
//! semantics, `dirfd` included; `photon_open`'s ring open of a FIFO is a
//! non-blocking open first, which pairs with a waiting peer and then
//! closes, so the peer reads a spurious end of file), the others are
//! libphoton's file calls (`photon_fstat`, ...: io_uring operations, or the
//! offload pool under the epoll engine; `photon_fstat` of an fd whose
//! attributes are in memory, a local file's, a socket's or a pipe's, is an
//! `fstat` on the vcpu). RocksDB makes these calls from the threads
//! that write (a new write-ahead log at each memtable switch, `fallocate`,
//! `fstat`) and that delete obsolete files (`unlink`). Elsewhere, and for
//! arguments libphoton's calls do not cover (NULL pointers, whose error
//! must stay libc's `EFAULT`), the call goes to libc unchanged.

use core::ffi::{c_char, c_int, c_uint};
use libc::off_t;

use crate::dns::offloaded;
use crate::{active, photon, real};

/// The hooked `open` (libc's semantics; see the module doc). Declared with
/// the mode as a fixed third argument: on the x86-64 and aarch64 Linux ABIs
/// a variadic caller passes it where this reads it.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn open(path: *const c_char, flags: c_int, mode: c_uint) -> c_int {
    crate::boundary(-1, || {
        // SAFETY: the caller's path, as libc's open takes it, used before this returns.
        let mut f = || unsafe { real::open(path, flags, mode) };
        if active() { offloaded(-1, &mut f) } else { f() }
    })
}

/// The hooked `open64` (as [`open`]: off_t is 64-bit).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn open64(path: *const c_char, flags: c_int, mode: c_uint) -> c_int {
    crate::boundary(-1, || {
        // SAFETY: as open.
        unsafe { open(path, flags, mode) }
    })
}

/// The hooked `openat` (libc's semantics; see the module doc).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn openat(dirfd: c_int, path: *const c_char, flags: c_int, mode: c_uint) -> c_int {
    crate::boundary(-1, || {
        // SAFETY: the caller's path, as libc's openat takes it, used before this returns.
        let mut f = || unsafe { real::openat(dirfd, path, flags, mode) };
        if active() { offloaded(-1, &mut f) } else { f() }
    })
}

/// The hooked `openat64` (as [`openat`]).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn openat64(dirfd: c_int, path: *const c_char, flags: c_int, mode: c_uint) -> c_int {
    crate::boundary(-1, || {
        // SAFETY: as openat.
        unsafe { openat(dirfd, path, flags, mode) }
    })
}

/// The hooked `fstat` (libc's semantics; see the module doc).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fstat(fd: c_int, st: *mut libc::stat) -> c_int {
    crate::boundary(-1, || {
        // SAFETY: the caller's struct stat, as libc's fstat takes it.
        unsafe {
            if active() && !st.is_null() {
                photon::photon_fstat(fd, st)
            } else {
                real::fstat(fd, st)
            }
        }
    })
}

/// The hooked `fstat64` (as [`fstat`]: the same struct on 64-bit Linux).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fstat64(fd: c_int, st: *mut libc::stat) -> c_int {
    crate::boundary(-1, || {
        // SAFETY: as fstat.
        unsafe { fstat(fd, st) }
    })
}

/// The hooked `unlink` (libc's semantics; see the module doc).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn unlink(path: *const c_char) -> c_int {
    crate::boundary(-1, || {
        // SAFETY: the caller's path, as libc's unlink takes it.
        unsafe {
            if active() && !path.is_null() {
                photon::photon_unlink(path)
            } else {
                real::unlink(path)
            }
        }
    })
}

/// The hooked `rename` (libc's semantics; see the module doc).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rename(old: *const c_char, new: *const c_char) -> c_int {
    crate::boundary(-1, || {
        // SAFETY: the caller's paths, as libc's rename takes them.
        unsafe {
            if active() && !old.is_null() && !new.is_null() {
                photon::photon_rename(old, new)
            } else {
                real::rename(old, new)
            }
        }
    })
}

/// The hooked `fallocate` (libc's semantics; see the module doc). Ranges
/// libphoton refuses (negative offset, empty length) go to libc for its
/// own error.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fallocate(fd: c_int, mode: c_int, off: off_t, len: off_t) -> c_int {
    crate::boundary(-1, || {
        // SAFETY: no memory arguments.
        unsafe {
            if active() && off >= 0 && len > 0 {
                photon::photon_fallocate(fd, mode, off, len)
            } else {
                real::fallocate(fd, mode, off, len)
            }
        }
    })
}

/// The hooked `fallocate64` (as [`fallocate`]).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fallocate64(fd: c_int, mode: c_int, off: off_t, len: off_t) -> c_int {
    crate::boundary(-1, || {
        // SAFETY: as fallocate.
        unsafe { fallocate(fd, mode, off, len) }
    })
}

/// The hooked `ftruncate` (libc's semantics; see the module doc).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ftruncate(fd: c_int, len: off_t) -> c_int {
    crate::boundary(-1, || {
        // SAFETY: no memory arguments.
        unsafe {
            if active() && len >= 0 {
                photon::photon_ftruncate(fd, len)
            } else {
                real::ftruncate(fd, len)
            }
        }
    })
}

/// The hooked `ftruncate64` (as [`ftruncate`]).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ftruncate64(fd: c_int, len: off_t) -> c_int {
    crate::boundary(-1, || {
        // SAFETY: as ftruncate.
        unsafe { ftruncate(fd, len) }
    })
}

/// Names hooked here beyond [`real::NAMES`] (for the debug log).
pub const EXTRA_NAMES: &[&str] = &[
    "open",
    "open64",
    "openat",
    "openat64",
    "fstat64",
    "fallocate64",
    "ftruncate64",
];
