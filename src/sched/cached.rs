//! File reads served from the page cache on the vcpu itself: one
//! `preadv2(RWF_NOWAIT)`, which never blocks (it says EAGAIN instead),
//! where the engine would otherwise park the thread. Shared by the
//! positioned reads (`fs`: pread, preadv) and by read(2) of a buffered
//! file (`net`: at the file position, offset -1), in two forms: the
//! general path's attempt ([`read_cached`]), and the common case decided
//! from a few loads before any of the general path's checks
//! ([`read_cached_fast`]).

use crate::engine::features::{Feature, wanted, wanted_without};
use crate::sys::{FILE_CHUNK, user_range_ok};

/// A page-cache hit is served fastest by a `preadv2(RWF_NOWAIT)` on the
/// vcpu itself: under epoll the other way is a helper thread, under
/// io_uring a park, a ring round trip and a switch back (bench files, 4 KiB
/// buffered reads, one thread: 0.44M IOPS as ring reads against 0.78M this
/// way under epoll). Under io_uring `PHOTON_IO_OFF=cached_read` turns it
/// off. None: go the normal way. Not for an O_DIRECT fd: with RWF_NOWAIT
/// its read still waits for the device. `off` -1 reads at the file
/// position and advances it, as read(2) and readv(2) do.
///
/// With `PHOTON_IO_ON=batched_read`, under io_uring, a read made while the
/// vcpu's other threads are ready to run (or submissions are queued) goes
/// on the ring instead: the turn's reads then share one `io_uring_enter`,
/// each served from the page cache at submission. Whether that beats a
/// `preadv2` each depends on the host (bench files: 1-9% better on one,
/// 7-11% worse on another; see `Feature::BatchedRead`), so it is opt-in.
///
/// # Safety
/// `iov` holds `n` valid iovecs for writes.
#[inline]
pub(crate) unsafe fn read_cached(fd: i32, iov: *const libc::iovec, n: i32, off: i64) -> Option<usize> {
    // The switch first: on by default, it spares the engine query.
    if !wanted(Feature::CachedRead) && super::engine_runs(crate::engine::OpKind::Socket).unwrap_or(true) {
        return None;
    }
    if wanted(Feature::BatchedRead) && super::read_joins_batch() {
        return None;
    }
    // SAFETY: per the contract.
    let r = unsafe { crate::sys::preadv2(fd, iov, n, off, libc::RWF_NOWAIT) };
    if r > 0 || (r == 0 && n > 0) {
        super::io_budget();
        return Some(r as usize);
    }
    None
}

/// The common case of a read that the general path would serve by
/// [`read_cached`], decided from a few loads: on a vcpu with no interrupt
/// pending, arguments that pass every check of the caller's general path
/// (`args_ok`, asked only on a vcpu) and call for one transfer of at most
/// [`FILE_CHUNK`], `preadv2(RWF_NOWAIT)` first
/// (`cached_read` wanted, `batched_read` not), and a call that does not use
/// up the I/O budget. A page-cache hit costs one system call (made with
/// the `syscall` instruction) and no call out, and is counted against the
/// I/O budget as [`read_cached`] counts it. Nothing here changes state
/// before the system call. The caller has checked first (one load, and
/// the cheapest way out for the calls it does not serve: sockets, pipes)
/// that `fd` is already known to be of the kind its general path serves
/// so: `fdinfo::known_buffered_seekable` or `known_buffered_storage`.
///
/// None: not the common case (the caller goes its general way, which makes
/// every check in its own order). Some(r): the kernel's answer; negative
/// (EAGAIN, or an error the engine's read will report) means the read
/// passed every check but its pages are not all cached: the caller has the
/// engine make it, as the general path does after [`read_cached`].
///
/// # Safety
/// `iov` holds `n` (at least 1) valid iovecs for writes, if `args_ok`.
#[inline(always)]
pub(crate) unsafe fn read_cached_fast(
    fd: i32,
    iov: *const libc::iovec,
    n: i32,
    off: i64,
    args_ok: impl FnOnce() -> bool,
) -> Option<isize> {
    let run = super::running()?;
    if !args_ok() || !wanted_without(Feature::CachedRead, Feature::BatchedRead) {
        return None;
    }
    let budget = run.io_budget_left()?;
    // SAFETY: per the contract.
    let r = unsafe { crate::sys::preadv2_raw(fd, iov, n, off, libc::RWF_NOWAIT) };
    if r >= 0 {
        budget.count();
    }
    Some(r)
}

/// What [`read_cached_buf`] did.
pub(crate) enum Cached {
    /// Read this many bytes from the page cache (counted against the I/O
    /// budget, as [`read_cached`] counts it).
    Done(usize),
    /// The read passed every check but its pages are not all cached: the
    /// caller has the engine read `len` bytes into `buf`.
    Miss { buf: *mut u8, len: usize },
    /// Not the common case: the caller goes its general way.
    General,
}

impl Cached {
    /// The call's answer: the bytes read, else what `miss(buf, len)` (the
    /// engine's read) or `general()` (the general way) answers.
    #[inline(always)]
    pub(crate) fn answer(self, miss: impl FnOnce(*mut u8, usize) -> isize, general: impl FnOnce() -> isize) -> isize {
        match self {
            Cached::Done(n) => n as isize,
            Cached::Miss { buf, len } => miss(buf, len),
            Cached::General => general(),
        }
    }
}

/// [`read_cached_fast`] of one buffer of `len` bytes at `off` (-1: the
/// file position) if `off_ok` (the caller's check of the offset): a read of
/// at most [`FILE_CHUNK`] whose buffer lies in the user address space, the
/// checks that read(2) and pread(2) make of the buffer and their one-piece
/// length. The caller checks the C API's NULL buffer and the fd first.
///
/// # Safety
/// `buf` is valid for `len` bytes of writes.
#[inline(always)]
pub(crate) unsafe fn read_cached_buf(fd: i32, buf: *mut u8, len: usize, off: i64, off_ok: bool) -> Cached {
    let iov = libc::iovec {
        iov_base: buf.cast(),
        iov_len: len,
    };
    if !off_ok || len > FILE_CHUNK || user_range_ok(buf, len).is_err() {
        return Cached::General;
    }
    // SAFETY: per the contract.
    match unsafe { read_cached_fast(fd, &iov, 1, off, || true) } {
        None => Cached::General,
        Some(r) if r >= 0 => Cached::Done(r as usize),
        // The buffer is read back from the iovec (the same values: the
        // kernel does not write it), so they need no register kept across
        // the system call.
        Some(_) => Cached::Miss {
            buf: iov.iov_base.cast(),
            len: iov.iov_len,
        },
    }
}
