//! Files from photon threads without stalling the vcpu: io_uring ring
//! operations where the kernel has them, the offload pool otherwise (and
//! always under epoll, where O_DIRECT positioned reads go to kernel AIO
//! instead: engine/offload/aio.rs). Calls are interruptible; a ring or AIO
//! operation the kernel already started is waited for (its buffer is the
//! caller's), one on a helper thread is abandoned at once (it works on its
//! own copy).

use core::ffi::c_char;

use crate::engine::Op;
use crate::engine::features::{Feature, wanted};
use crate::errno::Errno;
use crate::fdinfo;
use crate::sched::{self, FOREVER};
use crate::sched::{Cached, chunked};
use crate::sys::{FILE_CHUNK, clamp_io, iov_count, iov_total, iov_window};

fn int(r: i64) -> i32 {
    r as i32
}

/// A positioned transfer's fd and offset: EINVAL for a negative offset,
/// ESPIPE for an fd that cannot seek (a ring op would ignore the offset).
/// Returns the offset and the fd's facts (one lookup serves the call).
#[inline]
fn positioned(fd: i32, off: i64) -> Result<(u64, fdinfo::FileFacts), Errno> {
    sched::check_interrupt()?; // EPERM off a vcpu, or a pending interrupt
    if fd < 0 {
        return Err(Errno(libc::EBADF));
    }
    if crate::unet::is_unet(fd) {
        return Err(crate::unet::refuse(fd, libc::ESPIPE)); // a userspace-stack socket: never the kernel's
    }
    let off = u64::try_from(off).map_err(|_| Errno::EINVAL)?;
    let facts = fdinfo::file_facts(fd);
    if facts.unseekable() {
        return Err(Errno(libc::ESPIPE));
    }
    Ok((off, facts))
}

/// Runs a file operation and waits for it.
///
/// # Safety
/// The memory `op` points to is valid for the call.
unsafe fn run(op: Op) -> Result<i64, Errno> {
    // SAFETY: per the contract.
    unsafe { sched::io_wait(op, FOREVER) }
}

/// `openat(AT_FDCWD, path, flags, mode)`. A FIFO opened without
/// O_NONBLOCK waits for its peer, as open(2) does.
///
/// # Safety
/// `path` is a NUL-terminated string.
pub unsafe fn open(path: *const c_char, flags: i32, mode: u32) -> Result<i32, Errno> {
    let op = |blocking| Op::Open {
        dirfd: libc::AT_FDCWD,
        path,
        flags,
        mode,
        blocking,
    };
    // SAFETY: per the contract.
    let mut fd = int(unsafe { run(op(false))? });
    fdinfo::forget(fd);
    if flags & libc::O_NONBLOCK == 0 && fdinfo::is_fifo(fd) {
        // A ring open does not wait for a FIFO's peer: redo it as a plain
        // blocking open on a helper thread.
        fdinfo::forget(fd);
        // SAFETY: our own fresh fd.
        unsafe { crate::sys::close(fd) };
        // SAFETY: per the contract.
        fd = int(unsafe { run(op(true))? });
        fdinfo::forget(fd);
    }
    sched::forget_fd(fd);
    Ok(fd)
}

/// The common case of [`pread`], decided from a few loads
/// ([`sched::read_cached_fast`]): a read of at most [`FILE_CHUNK`] at a
/// valid offset from a buffered file already known, on a vcpu with no
/// interrupt pending, where `preadv2(RWF_NOWAIT)` comes first and that does
/// not use up the I/O budget. A page-cache hit costs one system call and
/// about 70 instructions of our own, with no call out. Any call that is not
/// the common case, including any that would fail a check, is left to
/// [`pread`], which makes every check in its own order. The caller checks
/// the C API's NULL buffer first; on a miss it has [`pread_engine`] make
/// the read.
///
/// # Safety
/// `buf` is valid for `len` bytes of writes.
#[inline(always)]
pub(crate) unsafe fn pread_cached(fd: i32, buf: *mut u8, len: usize, off: i64) -> Cached {
    if !fdinfo::known_buffered_seekable(fd) {
        return Cached::General;
    }
    // SAFETY: per the contract.
    unsafe { sched::read_cached_buf(fd, buf, len, off, off >= 0) }
}

/// `pread(2)`. A buffered read bigger than [`crate::sys::FILE_CHUNK`]
/// goes in pieces, so the vcpu runs its other threads in between.
///
/// # Safety
/// `buf` is valid for `len` bytes of writes.
pub unsafe fn pread(fd: i32, buf: *mut u8, len: usize, off: i64) -> Result<usize, Errno> {
    let (_, facts) = positioned(fd, off)?;
    crate::sys::user_range_ok(buf, len)?; // pread(2) checks the whole length first
    let len = clamp_io(len) as usize;
    // A transfer of one piece needs no chunking (the same as chunked()
    // would do with it, without the closure): the common 4 KiB read.
    if facts.direct() || len <= FILE_CHUNK {
        // SAFETY: per the contract.
        return unsafe { pread_one(fd, buf, len, off, facts.direct()) };
    }
    // SAFETY: per the contract; each piece lies within the buffer.
    chunked(len, |done, n| unsafe {
        pread_one(fd, buf.add(done), n, off + done as i64, false)
    })
}

/// One `pread` (`off` checked, `len` capped); `direct`: `fd` is O_DIRECT.
///
/// # Safety
/// `buf` is valid for `len` bytes of writes.
#[inline]
unsafe fn pread_one(fd: i32, buf: *mut u8, len: usize, off: i64, direct: bool) -> Result<usize, Errno> {
    let iov = libc::iovec {
        iov_base: buf.cast(),
        iov_len: len,
    };
    // SAFETY: per the contract.
    if !direct && let Some(n) = unsafe { sched::read_cached(fd, &iov, 1, off) } {
        return Ok(n);
    }
    // SAFETY: per the contract.
    unsafe { pread_engine(fd, buf, len, off) }
}

/// One `pread` by the engine (`off` checked, `len` capped).
///
/// # Safety
/// `buf` is valid for `len` bytes of writes.
pub(crate) unsafe fn pread_engine(fd: i32, buf: *mut u8, len: usize, off: i64) -> Result<usize, Errno> {
    let op = Op::Pread {
        fd,
        buf,
        len: len as u32,
        off: off as u64,
    };
    // SAFETY: per the contract.
    unsafe { run(op) }.map(|n| n as usize)
}

/// `pwrite(2)`. A buffered write bigger than [`crate::sys::FILE_CHUNK`]
/// goes in pieces, as [`pread`].
///
/// # Safety
/// `buf` is valid for `len` bytes of reads.
pub unsafe fn pwrite(fd: i32, buf: *const u8, len: usize, off: i64) -> Result<usize, Errno> {
    let (uoff, facts) = positioned(fd, off)?;
    crate::sys::user_range_ok(buf, len)?; // pwrite(2) checks the whole length first
    let len = clamp_io(len) as usize;
    let one = |done: usize, n: usize| {
        let op = Op::Pwrite {
            // SAFETY: per the contract; the piece lies within the buffer.
            buf: unsafe { buf.add(done) },
            fd,
            len: n as u32,
            off: uoff + done as u64,
        };
        // SAFETY: per the contract.
        unsafe { run(op) }.map(|n| n as usize)
    };
    if facts.direct() {
        return one(0, len);
    }
    chunked(len, one)
}

/// `preadv(2)`.
///
/// # Safety
/// `iov` holds `n` iovecs valid for writes.
pub unsafe fn preadv(fd: i32, iov: *const libc::iovec, n: i32, off: i64) -> Result<usize, Errno> {
    let (_, facts) = positioned(fd, off)?;
    let n = iov_count(n)?;
    // SAFETY: per the contract.
    unsafe { crate::sys::iovecs_ok(iov, n as usize)? };
    // SAFETY: per the contract.
    let total = unsafe { iov_total(iov, n as usize) }.min(crate::sys::MAX_IO);
    if facts.direct() || total <= FILE_CHUNK {
        // SAFETY: per the contract.
        return unsafe { preadv_one(fd, iov, n, off, facts.direct()) };
    }
    // SAFETY: per the contract (n iovecs).
    let all = unsafe { core::slice::from_raw_parts(iov, n as usize) };
    chunked(total, |done, k| {
        let w = iov_window(all, done, k);
        // SAFETY: w covers part of the caller's iovecs and lives across the call.
        unsafe { preadv_one(fd, w.as_ptr(), w.len() as u32, off + done as i64, false) }
    })
}

/// The common case of [`preadv`], as [`pread_cached`] is [`pread`]'s:
/// `n` iovecs (at least one) that pass [`preadv`]'s checks and call for one
/// transfer of at most [`FILE_CHUNK`], at a valid offset of a buffered file
/// already known. None: the caller goes the general way ([`preadv`]);
/// Some(r): the kernel's answer, negative for a read the caller has
/// [`preadv_engine`] make.
///
/// # Safety
/// `iov` holds `n` iovecs valid for writes (the caller checks the C API's
/// NULL array first).
#[inline(always)]
pub(crate) unsafe fn preadv_cached(fd: i32, iov: *const libc::iovec, n: i32, off: i64) -> Option<isize> {
    if !fdinfo::known_buffered_seekable(fd) || off < 0 || n < 1 {
        return None;
    }
    // iovecs that pass preadv's checks and call for one piece (asked on a
    // vcpu only; a count past IOV_MAX is not looked at).
    let args_ok = || {
        // SAFETY: per the contract.
        iov_count(n).is_ok() && unsafe { crate::sys::iovecs_total_within(iov, n as usize, FILE_CHUNK) }.is_some()
    };
    // SAFETY: per the contract.
    unsafe { sched::read_cached_fast(fd, iov, n, off, args_ok) }
}

/// One `preadv` (`off` and the iovecs checked); `direct`: `fd` is O_DIRECT.
///
/// # Safety
/// `iov` holds `n` iovecs valid for writes.
unsafe fn preadv_one(fd: i32, iov: *const libc::iovec, n: u32, off: i64, direct: bool) -> Result<usize, Errno> {
    // SAFETY: per the contract.
    if !direct && let Some(r) = unsafe { sched::read_cached(fd, iov, n as i32, off) } {
        return Ok(r);
    }
    // SAFETY: per the contract.
    unsafe { preadv_engine(fd, iov, n, off) }
}

/// One `preadv` by the engine (`off` and the iovecs checked).
///
/// # Safety
/// `iov` holds `n` iovecs valid for writes.
pub(crate) unsafe fn preadv_engine(fd: i32, iov: *const libc::iovec, n: u32, off: i64) -> Result<usize, Errno> {
    let uoff = off as u64;
    // SAFETY: per the contract.
    unsafe { run(Op::Preadv { fd, iov, n, off: uoff }) }.map(|n| n as usize)
}

/// `pwritev(2)`.
///
/// # Safety
/// `iov` holds `n` iovecs valid for reads.
pub unsafe fn pwritev(fd: i32, iov: *const libc::iovec, n: i32, off: i64) -> Result<usize, Errno> {
    let (off, facts) = positioned(fd, off)?;
    let n = iov_count(n)?;
    // SAFETY: per the contract.
    unsafe { crate::sys::iovecs_ok(iov, n as usize)? };
    // SAFETY: per the contract.
    let total = unsafe { iov_total(iov, n as usize) }.min(crate::sys::MAX_IO);
    if facts.direct() || total <= FILE_CHUNK {
        // SAFETY: per the contract.
        return unsafe { run(Op::Pwritev { fd, iov, n, off }) }.map(|n| n as usize);
    }
    // SAFETY: per the contract (n iovecs).
    let all = unsafe { core::slice::from_raw_parts(iov, n as usize) };
    chunked(total, |done, k| {
        let w = iov_window(all, done, k);
        let op = Op::Pwritev {
            fd,
            iov: w.as_ptr(),
            n: w.len() as u32,
            off: off + done as u64,
        };
        // SAFETY: w covers part of the caller's iovecs and lives across the call.
        unsafe { run(op) }.map(|n| n as usize)
    })
}

/// `fsync(2)` or `fdatasync(2)`.
pub fn fsync(fd: i32, datasync: bool) -> Result<(), Errno> {
    if crate::unet::is_unet(fd) {
        return Err(crate::unet::refuse(fd, libc::EINVAL)); // as fsync(2) on a socket
    }
    // SAFETY: no memory involved.
    unsafe { run(Op::Fsync { fd, datasync }) }.map(|_| ())
}

/// `fallocate(2)`.
pub fn fallocate(fd: i32, mode: i32, off: i64, len: i64) -> Result<(), Errno> {
    if crate::unet::is_unet(fd) {
        return Err(crate::unet::refuse(fd, libc::ENODEV)); // as fallocate(2) on a socket
    }
    if off < 0 || len <= 0 {
        return Err(Errno::EINVAL);
    }
    // SAFETY: no memory involved.
    unsafe { run(Op::Fallocate { fd, mode, off, len }) }.map(|_| ())
}

/// `ftruncate(2)`.
pub fn ftruncate(fd: i32, len: i64) -> Result<(), Errno> {
    if crate::unet::is_unet(fd) {
        return Err(crate::unet::refuse(fd, libc::EINVAL)); // as ftruncate(2) on a socket
    }
    if len < 0 {
        return Err(Errno::EINVAL);
    }
    // SAFETY: no memory involved.
    unsafe { run(Op::Ftruncate { fd, len }) }.map(|_| ())
}

/// `fstat(2)` into `*st`: on the vcpu where `fd`'s attributes are in
/// memory (a socket, a pipe, a file on a local file system:
/// `fdinfo::attrs_local`), straight into `*st`; else through the
/// engine's statx (a file system whose getattr may wait for a server or
/// daemon, an fd photon cannot classify, and every fd with
/// `PHOTON_IO_OFF=inline_fstat`). bench/c/fstat_calls.c, ns per call
/// (pinned, median of 5 interleaved runs; libc's fstat 116-147): a regular
/// file 1,758 -> 129 under io_uring, 1,933 -> 136 under epoll; a socket or
/// pipe about 1,777 -> 105 and 1,910 -> 118; an fstat and a cached 4 KiB
/// pread, a static-file server's request, 2,126 -> 340 and 3,377 -> 354
/// (bench/README.md, "`photon_fstat` on the vcpu").
///
/// `st` is the caller's: the kernel writes it either way (the result of
/// the engine's statx goes there through `sys::copy_user`), so memory it
/// cannot write gives EFAULT, as fstat(2) does, not a fault here.
///
/// # Safety
/// `st` is the caller's claimed `struct stat`.
pub unsafe fn fstat_into(fd: i32, st: *mut libc::stat) -> Result<(), Errno> {
    if crate::unet::is_unet(fd) {
        return Err(crate::unet::refuse(fd, libc::EOPNOTSUPP)); // no kernel file behind it
    }
    if fd < 0 {
        return Err(Errno(libc::EBADF)); // statx would take AT_FDCWD as the cwd
    }
    if wanted(Feature::InlineFstat) && fdinfo::attrs_local(fd) {
        sched::check_interrupt()?; // as the engine's way: EPERM off a vcpu, a pending interrupt
        // SAFETY: per the contract.
        let r = unsafe { crate::sys::fstat_raw(fd, st) };
        if r < 0 {
            return Err(Errno(-r as i32));
        }
        sched::io_budget(); // a loop of them still lets the vcpu's other threads run
        return Ok(());
    }
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
    let mut out = stat_of(&stx);
    let size = core::mem::size_of::<libc::stat>();
    // SAFETY: `out` is ours for `size` bytes; `st` is only written through
    // the kernel, which checks it.
    if unsafe { crate::sys::copy_user((&raw mut out).cast(), st.cast(), size, true) } != size {
        return Err(Errno(libc::EFAULT));
    }
    Ok(())
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
