//! Files from photon threads without stalling the vcpu: io_uring ring
//! operations where the kernel has them, the offload pool otherwise (and
//! always under epoll). Calls are interruptible; a ring operation the kernel
//! already started is waited for (its buffer is the caller's), an offloaded
//! one is abandoned at once (it works on its own copy).

use core::ffi::c_char;

use crate::engine::Op;
use crate::errno::Errno;
use crate::net::fdinfo;
use crate::sched::{self, FOREVER};

fn int(r: i64) -> i32 {
    r as i32
}

fn offset(off: i64) -> Result<u64, Errno> {
    u64::try_from(off).map_err(|_| Errno::EINVAL)
}

/// Runs a file operation and waits for it.
///
/// # Safety
/// The memory `op` points to is valid for the call.
unsafe fn run(op: Op) -> Result<i64, Errno> {
    // SAFETY: per the contract.
    unsafe { sched::io_wait(op, FOREVER) }
}

fn len32(len: usize) -> u32 {
    len.min(0x7fff_f000) as u32
}

/// `openat(AT_FDCWD, path, flags, mode)`.
///
/// # Safety
/// `path` is a NUL-terminated string.
pub unsafe fn open(path: *const c_char, flags: i32, mode: u32) -> Result<i32, Errno> {
    // SAFETY: per the contract.
    let fd = int(unsafe {
        run(Op::Open {
            dirfd: libc::AT_FDCWD,
            path,
            flags,
            mode,
        })?
    });
    fdinfo::forget(fd);
    sched::forget_fd(fd);
    Ok(fd)
}

/// `pread(2)`.
///
/// # Safety
/// `buf` is valid for `len` bytes of writes.
pub unsafe fn pread(fd: i32, buf: *mut u8, len: usize, off: i64) -> Result<usize, Errno> {
    let off = offset(off)?;
    // SAFETY: per the contract.
    unsafe {
        run(Op::Pread {
            fd,
            buf,
            len: len32(len),
            off,
        })
    }
    .map(|n| n as usize)
}

/// `pwrite(2)`.
///
/// # Safety
/// `buf` is valid for `len` bytes of reads.
pub unsafe fn pwrite(fd: i32, buf: *const u8, len: usize, off: i64) -> Result<usize, Errno> {
    let off = offset(off)?;
    // SAFETY: per the contract.
    unsafe {
        run(Op::Pwrite {
            fd,
            buf,
            len: len32(len),
            off,
        })
    }
    .map(|n| n as usize)
}

/// `preadv(2)`.
///
/// # Safety
/// `iov` holds `n` iovecs valid for writes.
pub unsafe fn preadv(fd: i32, iov: *const libc::iovec, n: i32, off: i64) -> Result<usize, Errno> {
    let off = offset(off)?;
    let n = u32::try_from(n).map_err(|_| Errno::EINVAL)?;
    // SAFETY: per the contract.
    unsafe { run(Op::Preadv { fd, iov, n, off }) }.map(|n| n as usize)
}

/// `pwritev(2)`.
///
/// # Safety
/// `iov` holds `n` iovecs valid for reads.
pub unsafe fn pwritev(fd: i32, iov: *const libc::iovec, n: i32, off: i64) -> Result<usize, Errno> {
    let off = offset(off)?;
    let n = u32::try_from(n).map_err(|_| Errno::EINVAL)?;
    // SAFETY: per the contract.
    unsafe { run(Op::Pwritev { fd, iov, n, off }) }.map(|n| n as usize)
}

/// `fsync(2)` or `fdatasync(2)`.
pub fn fsync(fd: i32, datasync: bool) -> Result<(), Errno> {
    // SAFETY: no memory involved.
    unsafe { run(Op::Fsync { fd, datasync }) }.map(|_| ())
}

/// `fallocate(2)`.
pub fn fallocate(fd: i32, mode: i32, off: i64, len: i64) -> Result<(), Errno> {
    if off < 0 || len <= 0 {
        return Err(Errno::EINVAL);
    }
    // SAFETY: no memory involved.
    unsafe { run(Op::Fallocate { fd, mode, off, len }) }.map(|_| ())
}

/// `ftruncate(2)`.
pub fn ftruncate(fd: i32, len: i64) -> Result<(), Errno> {
    if len < 0 {
        return Err(Errno::EINVAL);
    }
    // SAFETY: no memory involved.
    unsafe { run(Op::Ftruncate { fd, len }) }.map(|_| ())
}

/// `fstat(2)`, through statx.
pub fn fstat(fd: i32) -> Result<libc::stat, Errno> {
    // SAFETY: a zeroed statx is valid; it lives across the wait.
    let mut stx: libc::statx = unsafe { core::mem::zeroed() };
    let op = Op::Statx {
        dirfd: fd,
        path: c"".as_ptr(),
        flags: libc::AT_EMPTY_PATH,
        mask: libc::STATX_BASIC_STATS,
        buf: &mut stx,
    };
    // SAFETY: stx and the path outlive the call.
    unsafe { run(op)? };
    Ok(stat_of(&stx))
}

fn stat_of(x: &libc::statx) -> libc::stat {
    // SAFETY: a zeroed stat is valid.
    let mut st: libc::stat = unsafe { core::mem::zeroed() };
    st.st_dev = libc::makedev(x.stx_dev_major, x.stx_dev_minor);
    st.st_ino = x.stx_ino;
    st.st_mode = x.stx_mode as libc::mode_t;
    st.st_nlink = x.stx_nlink as libc::nlink_t;
    st.st_uid = x.stx_uid;
    st.st_gid = x.stx_gid;
    st.st_rdev = libc::makedev(x.stx_rdev_major, x.stx_rdev_minor);
    st.st_size = x.stx_size as libc::off_t;
    st.st_blksize = x.stx_blksize as libc::blksize_t;
    st.st_blocks = x.stx_blocks as libc::blkcnt_t;
    st.st_atime = x.stx_atime.tv_sec;
    st.st_atime_nsec = x.stx_atime.tv_nsec as i64;
    st.st_mtime = x.stx_mtime.tv_sec;
    st.st_mtime_nsec = x.stx_mtime.tv_nsec as i64;
    st.st_ctime = x.stx_ctime.tv_sec;
    st.st_ctime_nsec = x.stx_ctime.tv_nsec as i64;
    st
}

/// `unlink(2)` (or `rmdir(2)` with `AT_REMOVEDIR` in `flags`).
///
/// # Safety
/// `path` is a NUL-terminated string.
pub unsafe fn unlink(path: *const c_char, flags: i32) -> Result<(), Errno> {
    // SAFETY: per the contract.
    unsafe {
        run(Op::Unlink {
            dirfd: libc::AT_FDCWD,
            path,
            flags,
        })
    }
    .map(|_| ())
}

/// `rename(2)`.
///
/// # Safety
/// Both paths are NUL-terminated strings.
pub unsafe fn rename(old: *const c_char, new: *const c_char) -> Result<(), Errno> {
    let op = Op::Rename {
        olddir: libc::AT_FDCWD,
        old,
        newdir: libc::AT_FDCWD,
        new,
    };
    // SAFETY: per the contract.
    unsafe { run(op) }.map(|_| ())
}

/// `mkdir(2)`.
///
/// # Safety
/// `path` is a NUL-terminated string.
pub unsafe fn mkdir(path: *const c_char, mode: u32) -> Result<(), Errno> {
    // SAFETY: per the contract.
    unsafe {
        run(Op::Mkdir {
            dirfd: libc::AT_FDCWD,
            path,
            mode,
        })
    }
    .map(|_| ())
}
