//! The runtime's own system calls, made without libc's wrappers.
//!
//! `libphoton_preload.so` interposes libc's `read`, `write`, `close`,
//! `poll`, `fcntl` and friends and routes them, inside photon threads, to
//! this library's C API. If the runtime called those same libc symbols it
//! would call back into the shim (and from there into itself). So every
//! function the shim hooks is made here with the `syscall` instruction
//! ([`direct`]), which no shim can hook. Each function has the signature
//! and the result convention of its libc namesake (-1 and `errno` on
//! failure), so call sites read the same, and [`crate::errno::syscall!`]
//! resolves names here first. Functions the shim does not hook are
//! re-exported from libc.

#![allow(clippy::missing_safety_doc)] // each function's contract is its libc namesake's

use core::ffi::{c_int, c_long, c_void};
use libc::{iovec, msghdr, size_t, sockaddr, socklen_t, ssize_t};

pub(crate) use libc::{bind, eventfd, getsockname, getsockopt, listen, memfd_create, mprotect};

macro_rules! raw {
    ($nr:ident $(, $arg:expr)*) => {
        // SAFETY: the caller upholds the contract of the libc namesake; the
        // kernel validates every pointer and reports EFAULT.
        unsafe { direct(libc::$nr, [$($arg as c_long as usize),*]) }
    };
}

/// System call `nr` with `args` (the rest 0), made with the `syscall`
/// instruction ([`crate::arch::syscall6`]) instead of libc's generic
/// `syscall()`, which cost a call and about 20 instructions of its own per
/// `recv` and `send` (callgrind, bench echo 64 x 512 on epoll): the
/// kernel's result, `-errno` on failure, errno untouched (for fast paths
/// that go another way on a failure: [`preadv2_raw`]).
#[inline(always)]
unsafe fn direct_raw<const N: usize>(nr: c_long, args: [usize; N]) -> isize {
    let mut a = [0usize; 6];
    a[..N].copy_from_slice(&args);
    // SAFETY: per the caller's contract.
    unsafe { crate::arch::syscall6(nr as usize, a) }
}

/// [`direct_raw`] with `syscall()`'s result convention: -1 with errno set
/// on failure.
#[inline(always)]
unsafe fn direct<const N: usize>(nr: c_long, args: [usize; N]) -> c_long {
    // SAFETY: per the caller's contract.
    let r = unsafe { direct_raw(nr, args) };
    if (-4095..0).contains(&r) {
        return failed(-r as c_int);
    }
    r as c_long
}

/// Sets errno to `e`; returns -1.
#[cold]
#[inline(never)]
fn failed(e: c_int) -> c_long {
    crate::ffi::set_errno(crate::errno::Errno(e));
    -1
}

pub(crate) unsafe fn read(fd: c_int, buf: *mut c_void, n: size_t) -> ssize_t {
    raw!(SYS_read, fd, buf, n) as ssize_t
}

pub(crate) unsafe fn write(fd: c_int, buf: *const c_void, n: size_t) -> ssize_t {
    raw!(SYS_write, fd, buf, n) as ssize_t
}

pub(crate) unsafe fn readv(fd: c_int, iov: *const iovec, n: c_int) -> ssize_t {
    raw!(SYS_readv, fd, iov, n) as ssize_t
}

pub(crate) unsafe fn writev(fd: c_int, iov: *const iovec, n: c_int) -> ssize_t {
    raw!(SYS_writev, fd, iov, n) as ssize_t
}

/// The kernel's offset convention for preadv/pwritev: low and high halves.
fn lo_hi(off: i64) -> (c_long, c_long) {
    (off as c_long, ((off as u64) >> 32 >> 32) as c_long)
}

pub(crate) unsafe fn preadv(fd: c_int, iov: *const iovec, n: c_int, off: i64) -> ssize_t {
    let (lo, hi) = lo_hi(off);
    raw!(SYS_preadv, fd, iov, n, lo, hi) as ssize_t
}

pub(crate) unsafe fn pwritev(fd: c_int, iov: *const iovec, n: c_int, off: i64) -> ssize_t {
    let (lo, hi) = lo_hi(off);
    raw!(SYS_pwritev, fd, iov, n, lo, hi) as ssize_t
}

pub(crate) unsafe fn preadv2(fd: c_int, iov: *const iovec, n: c_int, off: i64, flags: c_int) -> ssize_t {
    let (lo, hi) = lo_hi(off);
    raw!(SYS_preadv2, fd, iov, n, lo, hi, flags) as ssize_t
}

/// `preadv2(2)` as [`direct_raw`] makes it: `-errno` on failure, errno
/// untouched (the cached-read fast path goes to the engine on any failure).
#[inline(always)]
pub(crate) unsafe fn preadv2_raw(fd: c_int, iov: *const iovec, n: c_int, off: i64, flags: c_int) -> isize {
    let (lo, hi) = lo_hi(off);
    let a = [fd as c_long, iov as c_long, n as c_long, lo, hi, flags as c_long];
    // SAFETY: the caller upholds preadv2's contract; the kernel validates
    // every pointer and reports EFAULT.
    unsafe { direct_raw(libc::SYS_preadv2, a.map(|x| x as usize)) }
}

pub(crate) unsafe fn recv(fd: c_int, buf: *mut c_void, n: size_t, flags: c_int) -> ssize_t {
    raw!(SYS_recvfrom, fd, buf, n, flags, 0, 0) as ssize_t
}

pub(crate) unsafe fn send(fd: c_int, buf: *const c_void, n: size_t, flags: c_int) -> ssize_t {
    raw!(SYS_sendto, fd, buf, n, flags, 0, 0) as ssize_t
}

pub(crate) unsafe fn recvmsg(fd: c_int, msg: *mut msghdr, flags: c_int) -> ssize_t {
    raw!(SYS_recvmsg, fd, msg, flags) as ssize_t
}

pub(crate) unsafe fn sendmsg(fd: c_int, msg: *const msghdr, flags: c_int) -> ssize_t {
    raw!(SYS_sendmsg, fd, msg, flags) as ssize_t
}

pub(crate) unsafe fn accept4(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t, flags: c_int) -> c_int {
    raw!(SYS_accept4, fd, addr, len, flags) as c_int
}

pub(crate) unsafe fn connect(fd: c_int, addr: *const sockaddr, len: socklen_t) -> c_int {
    raw!(SYS_connect, fd, addr, len) as c_int
}

pub(crate) unsafe fn socket(domain: c_int, ty: c_int, protocol: c_int) -> c_int {
    raw!(SYS_socket, domain, ty, protocol) as c_int
}

pub(crate) unsafe fn setsockopt(fd: c_int, level: c_int, name: c_int, val: *const c_void, len: socklen_t) -> c_int {
    raw!(SYS_setsockopt, fd, level, name, val, len) as c_int
}

/// fcntl with an integer argument (pass 0 for commands that take none).
pub(crate) unsafe fn fcntl(fd: c_int, cmd: c_int, arg: c_int) -> c_int {
    raw!(SYS_fcntl, fd, cmd, arg) as c_int
}

/// fstat without libc's wrapper: the preload shim hooks `fstat` (in a photon
/// thread it would offload the call), and the runtime's own calls must not
/// reach the hooks.
pub(crate) unsafe fn fstat(fd: c_int, st: *mut libc::stat) -> c_int {
    raw!(SYS_fstat, fd, st) as c_int
}

/// [`fstat`] as [`direct_raw`] makes it: `-errno` on failure, errno
/// untouched (`photon_fstat` on the vcpu returns its error as a `Result`).
#[inline(always)]
pub(crate) unsafe fn fstat_raw(fd: c_int, st: *mut libc::stat) -> isize {
    // SAFETY: the caller upholds fstat's contract; the kernel validates
    // the pointer and reports EFAULT.
    unsafe { direct_raw(libc::SYS_fstat, [fd as c_long as usize, st as usize]) }
}

/// statx(2) as a system call: libc's wrapper is glibc 2.28+ only (the
/// preload shim does not hook it).
pub(crate) unsafe fn statx(
    dirfd: c_int,
    path: *const core::ffi::c_char,
    flags: c_int,
    mask: u32,
    buf: *mut libc::statx,
) -> c_int {
    raw!(SYS_statx, dirfd, path, flags, mask, buf) as c_int
}

/// openat without libc's wrapper, which the preload shim hooks.
pub(crate) unsafe fn openat(dirfd: c_int, path: *const core::ffi::c_char, flags: c_int, mode: u32) -> c_int {
    raw!(SYS_openat, dirfd, path, flags, mode) as c_int
}

/// pipe2 without libc's wrapper, which the preload shim hooks.
pub(crate) unsafe fn pipe2(fds: *mut c_int, flags: c_int) -> c_int {
    raw!(SYS_pipe2, fds, flags) as c_int
}

pub(crate) unsafe fn close(fd: c_int) -> c_int {
    raw!(SYS_close, fd) as c_int
}

pub(crate) unsafe fn fsync(fd: c_int) -> c_int {
    raw!(SYS_fsync, fd) as c_int
}

pub(crate) unsafe fn fdatasync(fd: c_int) -> c_int {
    raw!(SYS_fdatasync, fd) as c_int
}

/// poll(2) through ppoll(2), which every Linux port has.
pub(crate) unsafe fn poll(fds: *mut libc::pollfd, n: libc::nfds_t, timeout_ms: c_int) -> c_int {
    let ts = libc::timespec {
        tv_sec: (timeout_ms / 1000) as libc::time_t,
        tv_nsec: (timeout_ms % 1000) as c_long * 1_000_000,
    };
    let tsp: *const libc::timespec = if timeout_ms < 0 { core::ptr::null() } else { &ts };
    raw!(SYS_ppoll, fds, n, tsp, 0, 0) as c_int
}

/// Most bytes one read/write-family call moves: Linux caps every transfer
/// at this (`MAX_RW_COUNT`), so the runtime caps lengths the same way.
pub(crate) const MAX_IO: usize = 0x7fff_f000;

/// Most iovecs one readv-family call takes (`UIO_MAXIOV`).
pub(crate) const IOV_MAX: usize = 1024;

/// A transfer length capped as the kernel caps it ([`MAX_IO`]).
pub(crate) fn clamp_io(len: usize) -> u32 {
    len.min(MAX_IO) as u32
}

/// An iovec count as readv(2) and friends accept it: 0..=[`IOV_MAX`],
/// else EINVAL.
pub(crate) fn iov_count(n: i32) -> Result<u32, crate::Errno> {
    match usize::try_from(n) {
        Ok(k) if k <= IOV_MAX => Ok(n as u32),
        _ => Err(crate::Errno::EINVAL),
    }
}

/// Most bytes of a buffered file transfer done as one operation. The copy
/// between the page cache and the caller's memory runs on the vcpu (inside
/// `io_uring_enter`, in `preadv2(RWF_NOWAIT)`, or into a bounce buffer), at
/// roughly 0.1-0.5 ms per MiB here, so a bigger transfer is split into
/// pieces of this size and the vcpu runs its other threads in between: no
/// call stalls it for more than about 2 ms (a 64 MiB write in one piece
/// stalled it for 14-112 ms).
pub(crate) const FILE_CHUNK: usize = 1 << 20;

/// The iovecs covering bytes `skip..skip + max` of the array `iov`.
pub(crate) fn iov_window(iov: &[iovec], mut skip: usize, mut max: usize) -> Vec<iovec> {
    let mut out = Vec::new();
    for v in iov {
        if max == 0 {
            break;
        }
        if skip >= v.iov_len {
            skip -= v.iov_len;
            continue;
        }
        let len = (v.iov_len - skip).min(max);
        out.push(iovec {
            // SAFETY: skip < iov_len: within the caller's segment.
            iov_base: unsafe { v.iov_base.cast::<u8>().add(skip) }.cast(),
            iov_len: len,
        });
        max -= len;
        skip = 0;
    }
    out
}

/// The total length of `n` iovecs (already checked by [`iovecs_ok`]).
///
/// # Safety
/// `iov` holds `n` readable iovecs (or `n` is 0).
pub(crate) unsafe fn iov_total(iov: *const iovec, n: usize) -> usize {
    if n == 0 {
        return 0;
    }
    // SAFETY: per the contract.
    unsafe { core::slice::from_raw_parts(iov, n) }
        .iter()
        .map(|v| v.iov_len)
        .sum()
}

/// The end of the user address space: the kernel's `access_ok` fails a
/// buffer reaching past it (x86-64 with 4-level paging; aarch64 with 48-bit
/// virtual addresses).
#[cfg(target_arch = "x86_64")]
const USER_END: usize = 0x7fff_ffff_f000;
#[cfg(target_arch = "aarch64")]
const USER_END: usize = 1 << 48;

/// The kernel's first check of a user buffer: the whole range lies in the
/// user address space (EFAULT otherwise). read(2), write(2), pread(2) and
/// pwrite(2) make it with the full length, before capping it.
#[inline]
pub(crate) fn user_range_ok(buf: *const u8, len: usize) -> Result<(), crate::Errno> {
    // buf + len <= USER_END without overflow, written so that a caller that
    // knows len small drops the first comparison.
    if len <= USER_END && buf as usize <= USER_END - len {
        Ok(())
    } else {
        Err(crate::Errno(libc::EFAULT))
    }
}

/// The kernel's checks of an iovec array for readv(2) and friends: no
/// segment longer than `isize::MAX` and no total past it (EINVAL), each
/// segment in the user address space (EFAULT).
///
/// # Safety
/// `iov` holds `n` readable iovecs (or `n` is 0).
pub(crate) unsafe fn iovecs_ok(iov: *const iovec, n: usize) -> Result<(), crate::Errno> {
    if n == 0 {
        return Ok(());
    }
    // SAFETY: per the contract.
    let iovs = unsafe { core::slice::from_raw_parts(iov, n) };
    let mut total: usize = 0;
    for v in iovs {
        total = total.checked_add(v.iov_len).ok_or(crate::Errno::EINVAL)?;
        if total > isize::MAX as usize {
            return Err(crate::Errno::EINVAL);
        }
    }
    for v in iovs {
        user_range_ok(v.iov_base.cast_const().cast(), v.iov_len)?;
    }
    Ok(())
}

/// The total length of `n` iovecs if it is at most `max` and they would
/// pass [`iovecs_ok`], in one pass: each segment at most `max` bytes (so
/// that no sum of [`IOV_MAX`] of them overflows) and in the user address
/// space. None does not mean they fail [`iovecs_ok`]: the fast paths then
/// go the general way, which checks.
///
/// # Safety
/// `iov` holds `n` (at most [`IOV_MAX`]) readable iovecs.
#[inline(always)]
pub(crate) unsafe fn iovecs_total_within(iov: *const iovec, n: usize, max: usize) -> Option<usize> {
    // SAFETY: per the contract.
    let iovs = unsafe { core::slice::from_raw_parts(iov, n) };
    let mut total = 0;
    for v in iovs {
        if v.iov_len > max || user_range_ok(v.iov_base.cast_const().cast(), v.iov_len).is_err() {
            return None;
        }
        total += v.iov_len;
    }
    (total <= max).then_some(total)
}

/// Copies up to `len` bytes between the caller's memory and the runtime's
/// own through the kernel (`process_vm_readv`/`writev` on this process), so
/// a buffer shorter than its stated length gives a short count, as a
/// syscall would, instead of a crash. `to_user`: `user` is the
/// destination. Where those calls are not allowed (seccomp), a plain copy.
///
/// # Safety
/// `ours` is valid for `len` bytes; `user` is the caller's claimed buffer.
pub(crate) unsafe fn copy_user(ours: *mut u8, user: *mut u8, len: usize, to_user: bool) -> usize {
    if len == 0 {
        return 0;
    }
    let local = iovec {
        iov_base: ours.cast(),
        iov_len: len,
    };
    let remote = iovec {
        iov_base: user.cast(),
        iov_len: len,
    };
    // SAFETY: two live iovecs; the kernel checks the remote range.
    let n = unsafe {
        let pid = libc::getpid();
        if to_user {
            libc::process_vm_writev(pid, &local, 1, &remote, 1, 0)
        } else {
            libc::process_vm_readv(pid, &local, 1, &remote, 1, 0)
        }
    };
    if n >= 0 {
        // Memcheck does not see what these calls write.
        crate::stack::sanitize::make_defined(if to_user { user } else { ours }, n as usize);
        return n as usize;
    }
    match crate::Errno::last_os_error().0 {
        libc::EFAULT => 0,
        _ => {
            // SAFETY: the unchecked way, as the caller promised.
            unsafe {
                if to_user {
                    core::ptr::copy_nonoverlapping(ours.cast_const(), user, len);
                } else {
                    core::ptr::copy_nonoverlapping(user.cast_const(), ours, len);
                }
            }
            len
        }
    }
}

/// A /proc file's text, read with raw syscalls: std's file reading goes
/// through libc's `read`, which the preload shim turns into a photon read
/// (and, from inside the engine, into a recursion); its `openat` hook sends
/// the open to the offload pool, parking the thread, also from inside the
/// engine (`fdinfo` classifies an fd's file system on first use, which
/// reads /proc/self/mountinfo).
pub(crate) fn read_proc_file(path: &core::ffi::CStr) -> Option<String> {
    // SAFETY: a raw openat of a NUL-terminated path; raw reads into a live
    // buffer; the fd is ours and closed.
    unsafe {
        let fd = openat(libc::AT_FDCWD, path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC, 0);
        if fd < 0 {
            return None;
        }
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = read(fd, buf.as_mut_ptr().cast(), buf.len());
            if n <= 0 {
                break;
            }
            out.extend_from_slice(&buf[..n as usize]);
        }
        close(fd);
        String::from_utf8(out).ok()
    }
}

/// Starts one of the runtime's own OS threads (the monitor, offload
/// workers) with every signal blocked. Such a thread runs no program code,
/// so a process-directed signal must never be delivered to it: a program
/// that blocks its signals and reads them from a signalfd or `sigwait`
/// (PhotonLibOS's `block_all_signal` + `sync_signal`) would otherwise be
/// killed by the default action on a thread it never created. The caller's
/// mask is blocked only around the `clone`, which the new thread inherits,
/// and then restored.
pub(crate) fn spawn_service_thread<F>(name: &str, stack: usize, f: F) -> std::io::Result<()>
where
    F: FnOnce() + Send + 'static,
{
    // SAFETY: sigset_t values are plain data filled by sigfillset;
    // pthread_sigmask only reads `all` and writes `old`.
    let old = unsafe {
        let mut all: libc::sigset_t = core::mem::zeroed();
        let mut old: libc::sigset_t = core::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_BLOCK, &all, &mut old);
        old
    };
    let spawned = std::thread::Builder::new().name(name.into()).stack_size(stack).spawn(f);
    // SAFETY: restores the mask read above.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &old, core::ptr::null_mut()) };
    spawned.map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(base: usize, len: usize) -> iovec {
        iovec {
            iov_base: base as *mut libc::c_void,
            iov_len: len,
        }
    }

    /// The fast paths' one-pass check answers a total only where the
    /// general path's checks pass and the transfer is one piece.
    #[test]
    fn iovecs_total_within_answers_only_what_iovecs_ok_passes() {
        let max = FILE_CHUNK;
        let cases: &[(&[iovec], Option<usize>)] = &[
            (&[v(4096, 100), v(8192, 0), v(12288, 3996)], Some(4096)),
            (&[v(0, 0)], Some(0)),
            (&[v(4096, max)], Some(max)),
            (&[v(4096, max), v(4096, 1)], None),        // one piece too many
            (&[v(4096, max + 1)], None),                // a segment too long
            (&[v(4096, usize::MAX), v(4096, 2)], None), // iovecs_ok: EINVAL
            (&[v(4096, 4), v(USER_END - 2, 4)], None),  // iovecs_ok: EFAULT
        ];
        for (i, (iov, want)) in cases.iter().enumerate() {
            // SAFETY: a slice of iovecs, only read.
            let got = unsafe { iovecs_total_within(iov.as_ptr(), iov.len(), max) };
            assert_eq!(got, *want, "case {i}");
            if got.is_some() {
                // SAFETY: as above.
                assert!(unsafe { iovecs_ok(iov.as_ptr(), iov.len()) }.is_ok(), "case {i}");
            }
        }
    }
}
