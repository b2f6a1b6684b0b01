//! Coroutine-blocking fd I/O: sockets, pipes, and any pollable fd.
//!
//! Each call either runs as an engine operation (io_uring: the kernel works
//! on the caller's buffer while the thread is parked) or as a non-blocking
//! syscall retried when the engine reports readiness (epoll, and io_uring
//! kernels lacking an opcode). Only the calling photon thread waits; its
//! vcpu runs other threads meanwhile. Every call has a deadline and is
//! interruptible ([`crate::sched::io_wait`]).

mod control;
pub mod server;
mod stop_signal;

pub use control::*;

use crate::engine::{Op, OpKind, READABLE, RecvHint, WRITABLE, poll_mask, ready_bits};
use crate::errno::{Errno, syscall};
use crate::fdinfo;
use crate::sched;
use crate::time::now_us;
use crate::unet;

use crate::sched::chunked;
use crate::sys::{clamp_io as clamp, iov_count};

/// Waits until `fd` is ready for `events`; returns the ready bits.
fn ready_wait(fd: i32, events: u32, deadline: u64) -> Result<u32, Errno> {
    // SAFETY: a Poll op points to no memory.
    unsafe { sched::io_wait(Op::Poll { fd, events }, deadline) }.map(|b| b as u32)
}

/// Which reads tell that their fd drained: a count shorter than asked
/// means nothing more is queued (see [`transfer`]).
#[derive(Clone, Copy)]
enum Drains {
    /// Not such a read (writes, vectored and message reads, MSG_PEEK).
    Never,
    /// A read of this many bytes, if the fd is a stream socket.
    IfStream(usize),
    /// A read of this many bytes, if the fd is a pipe or FIFO.
    IfFifo(usize),
}

/// Runs one transfer: as the engine operation `op` when the engine runs
/// `kind`, else as the non-blocking syscall `sys` (returning -1 + errno),
/// waiting for readiness in direction `dir` while it says EAGAIN, or at
/// once when the engine knows the fd drained there.
///
/// `drains`: for reads where a shorter count than asked means the fd was
/// drained (a stream socket or pipe read without MSG_PEEK), the bytes
/// asked. The engine is told, so the next such read waits for an event
/// first instead of calling into an EAGAIN; other transfers always try
/// their syscall first. What the fd is comes from one lookup of its facts.
///
/// # Safety
/// The pointers in `op` (and those `sys` uses) are valid for the call.
#[inline]
unsafe fn transfer(
    kind: OpKind,
    op: Op,
    fd: i32,
    dir: u32,
    drains: Drains,
    deadline: u64,
    sys: impl FnMut() -> isize,
) -> Result<usize, Errno> {
    if fd < 0 {
        return Err(Errno(libc::EBADF));
    }
    let facts = fdinfo::file_facts(fd);
    let drains = match drains {
        Drains::IfStream(n) if facts.stream() => n,
        Drains::IfFifo(n) if facts.fifo() => n,
        _ => 0,
    };
    // Regular files never report EAGAIN: they go to the engine (ring or
    // offload pool), never to a syscall on the vcpu.
    let kind = if facts.storage() { OpKind::File } else { kind };
    if sched::engine_runs(kind)? {
        loop {
            // SAFETY: the caller keeps op's memory valid.
            if let Some(n) = unsafe { on_engine(op, fd, dir, drains, deadline)? } {
                return Ok(n);
            }
            // A kernel that does not poll-arm O_NONBLOCK files: wait, retry.
            if now_us() >= deadline {
                return Err(Errno::ETIMEDOUT);
            }
            ready_wait(fd, dir, deadline)?;
        }
    }
    if dir == READABLE
        && fdinfo::held(fd) != 0
        // SAFETY: the caller keeps op's memory valid.
        && let Some(r) = unsafe { sched::held_first(op, deadline)? }
    {
        return if r < 0 { Err(Errno(-r as i32)) } else { Ok(r as usize) };
    }
    sched::check_interrupt()?;
    fdinfo::ensure_nonblocking_with(fd, facts)?;
    sys_when_ready(fd, dir, drains, deadline, sys)
}

/// The syscall side of [`transfer`] once the fd passed its checks: waits
/// first where the syscall would say EAGAIN (a read of `drains` bytes of a
/// stream seen drained, no event since; only such reads: one of 0 bytes,
/// for one, returns at once whatever the socket holds), then
/// [`sys_until_done`].
#[inline]
fn sys_when_ready(fd: i32, dir: u32, drains: usize, deadline: u64, sys: impl FnMut() -> isize) -> Result<usize, Errno> {
    let mut waited = false;
    if drains > 0 && sched::fd_readiness(fd) & dir == 0 {
        ready_wait(fd, dir, deadline)?;
        waited = true;
    }
    sys_until_done(fd, dir, drains, deadline, waited, sys)
}

/// One operation of [`transfer`] on the vcpu's engine (which runs `op`'s
/// kind): its byte count, telling the engine of a read that drained the fd
/// (`drains`, as in [`transfer`]); None for EAGAIN (a kernel that does not
/// poll-arm O_NONBLOCK files), which the caller waits out.
///
/// # Safety
/// The pointers in `op` are valid for the call.
#[inline(always)]
unsafe fn on_engine(op: Op, fd: i32, dir: u32, drains: usize, deadline: u64) -> Result<Option<usize>, Errno> {
    // SAFETY: per the contract.
    match unsafe { sched::io_wait(op, deadline) } {
        Err(Errno(libc::EAGAIN)) => Ok(None),
        r => {
            let n = r? as usize;
            if n > 0 && n < drains {
                sched::fd_drained(fd, dir, n);
            }
            Ok(Some(n))
        }
    }
}

/// The syscall side of [`transfer`]: `sys` (non-blocking, -1 + errno)
/// until it says something but EAGAIN, waiting for readiness in `dir`
/// after each EAGAIN (`waited`: a wait came first), and telling the engine
/// of a read that drained the fd (`drains`, as in [`transfer`]).
#[inline]
fn sys_until_done(
    fd: i32,
    dir: u32,
    drains: usize,
    deadline: u64,
    mut waited: bool,
    mut sys: impl FnMut() -> isize,
) -> Result<usize, Errno> {
    loop {
        let n = sys();
        if n >= 0 {
            let n = n as usize;
            if n > 0 && n < drains {
                sched::fd_drained(fd, dir, n);
            }
            sched::io_budget();
            return Ok(n);
        }
        match Errno::last_os_error() {
            Errno(libc::EAGAIN) => {
                // An fd that keeps polling ready while its syscall says
                // EAGAIN must not spin past the deadline.
                if waited && now_us() >= deadline {
                    return Err(Errno::ETIMEDOUT);
                }
                ready_wait(fd, dir, deadline)?;
                waited = true;
            }
            Errno(libc::EINTR) => {}
            e => return Err(e),
        }
    }
}

/// A send of at least this many bytes tries a direct send first even when
/// it could batch (`direct_big_send` in engine/features.rs).
const BIG_SEND: usize = 8 << 10;

/// Which sends try a direct `MSG_DONTWAIT` send before a ring send: all of
/// them (`PHOTON_IO_OFF=batched_send`), and those of at least [`BIG_SEND`]
/// bytes (unless `PHOTON_IO_OFF=direct_big_send`).
#[inline]
fn send_rules() -> (bool, bool) {
    use crate::engine::features::{Feature, wanted};
    (!wanted(Feature::BatchedSend), wanted(Feature::DirectBigSend))
}

/// True if a send of `len` bytes (0: not known) on a vcpu whose engine runs
/// socket operations goes as a ring send, batched with the turn's others,
/// with no direct send first: see [`send_now`].
#[inline]
fn send_batches(len: usize) -> bool {
    let (first, big) = send_rules();
    !first && (!big || len < BIG_SEND) && sched::turn_has_batch()
}

/// Where the engine would park the thread for a ring send (io_uring),
/// `attempt` (a send with MSG_DONTWAIT) runs once first when the send
/// would have nothing to batch with (no other thread ready, nothing
/// queued: [`sched::turn_has_batch`]), when it sends at least
/// [`BIG_SEND`] bytes (`len`; 0: not known), or always with
/// `PHOTON_IO_OFF=batched_send`: one syscall instead of a park, an
/// `io_uring_enter` of its own and a wake-up. Otherwise sends are ring
/// operations: the turn's sends go to the kernel in one `io_uring_enter`
/// with its receives, fewer syscalls per request than a `sendto` each (a
/// big send's syscall costs little beside its copy, and its thread goes on
/// at once instead of a turn later).
/// Ok(None): go the normal way.
#[inline]
fn send_now(len: usize, attempt: impl FnOnce() -> isize) -> Result<Option<usize>, Errno> {
    if !sched::engine_runs(OpKind::Socket)? {
        return Ok(None); // the syscall path tries first anyway
    }
    if send_batches(len) {
        return Ok(None); // the default with company: a ring send, batched
    }
    sched::check_interrupt()?;
    let n = attempt();
    if n >= 0 {
        sched::io_budget();
        return Ok(Some(n as usize));
    }
    match Errno::last_os_error() {
        Errno(libc::EAGAIN | libc::EINTR) => Ok(None),
        e => Err(e),
    }
}

/// `read(2)` that waits as a photon thread. A stream socket already known
/// goes straight to [`recv`]'s common case, in the caller's frame.
///
/// # Safety
/// `buf` is valid for `len` bytes of writes.
#[inline(always)]
pub unsafe fn read(fd: i32, buf: *mut u8, len: usize, deadline: u64) -> Result<usize, Errno> {
    if len > 0 && fdinfo::known_stream(fd) {
        crate::sys::user_range_ok(buf, len)?; // read(2) checks the whole length first
        // SAFETY: per the contract.
        return unsafe { recv_stream(fd, buf, len, 0, deadline) };
    }
    // SAFETY: per the contract.
    unsafe { read_general(fd, buf, len, deadline) }
}

/// [`read`] of anything but a stream socket already known.
///
/// # Safety
/// `buf` is valid for `len` bytes of writes.
#[inline(never)]
unsafe fn read_general(fd: i32, buf: *mut u8, len: usize, deadline: u64) -> Result<usize, Errno> {
    if unet::is_unet(fd) {
        // SAFETY: per the contract.
        return unsafe { unet::read(fd, buf, len, 0, deadline) };
    }
    if fd >= 0 {
        crate::sys::user_range_ok(buf, len)?; // read(2) checks the whole length first
    }
    if len > 0 && fdinfo::is_socket(fd) {
        // The same call on a socket, and the engine's receive path (a ring
        // receive may arm its poll first; a ring read may not). Not for 0
        // bytes: read(2) returns 0 at once there, recv(2) may wait.
        // SAFETY: per the contract.
        return unsafe { recv(fd, buf, len, 0, deadline) };
    }
    let len = clamp(len);
    if buffered_file(fd) {
        // A pending interrupt fails the call (EPERM off a vcpu) before a
        // piece could come from the page cache without asking, as in pread.
        sched::check_interrupt()?;
        // SAFETY: per the contract; each piece lies within the buffer.
        return chunked(len as usize, |done, n| unsafe {
            file_read_one(fd, buf.add(done), n as u32, deadline)
        });
    }
    // SAFETY: per the contract.
    unsafe { read_one(fd, buf, len, deadline) }
}

/// The common case of [`read`], decided from a few loads
/// ([`sched::read_cached_fast`]): a read of at most
/// [`FILE_CHUNK`](crate::sys::FILE_CHUNK) from a buffered file already
/// known (regular or block device, not O_DIRECT: the caller has checked
/// [`fdinfo::known_buffered_storage`] first, the one check a socket's read
/// pays for this), at its position, on a vcpu with no interrupt pending,
/// where `preadv2(RWF_NOWAIT)` comes first and that does not use up the
/// I/O budget: what [`file_read_one`] reads from the page cache, without
/// [`read`]'s checks and lookups. Any other call is left to [`read`]. The
/// caller checks the C API's NULL buffer first; on a miss it has
/// [`read_one`] make the read (no deadline is needed before that: a hit
/// never waits).
///
/// # Safety
/// `buf` is valid for `len` bytes of writes.
#[inline(always)]
pub(crate) unsafe fn read_cached(fd: i32, buf: *mut u8, len: usize) -> sched::Cached {
    debug_assert!(fdinfo::known_buffered_storage(fd));
    // SAFETY: per the contract.
    unsafe { sched::read_cached_buf(fd, buf, len, -1, true) }
}

/// One piece of a read of a buffered file, at the file position: from the
/// page cache on the vcpu where it can be ([`sched::read_cached`], offset
/// -1: the kernel reads at the position and advances it, as read(2)), else
/// by the engine ([`read_one`]).
///
/// # Safety
/// `buf` is valid for `len` bytes of writes.
unsafe fn file_read_one(fd: i32, buf: *mut u8, len: u32, deadline: u64) -> Result<usize, Errno> {
    let iov = libc::iovec {
        iov_base: buf.cast(),
        iov_len: len as usize,
    };
    // SAFETY: per the contract.
    if let Some(n) = unsafe { sched::read_cached(fd, &iov, 1, -1) } {
        return Ok(n);
    }
    // SAFETY: per the contract.
    unsafe { read_one(fd, buf, len, deadline) }
}

/// True if `fd` is a file read and written through the page cache: a big
/// transfer goes in pieces ([`chunked`]) so the vcpu is never stalled long.
fn buffered_file(fd: i32) -> bool {
    fdinfo::is_storage(fd) && !fdinfo::is_direct(fd)
}

/// One `read` (`len` capped) by the engine, or by the system call when
/// the fd is ready.
///
/// # Safety
/// `buf` is valid for `len` bytes of writes.
pub(crate) unsafe fn read_one(fd: i32, buf: *mut u8, len: u32, deadline: u64) -> Result<usize, Errno> {
    // SAFETY: per the contract.
    unsafe {
        transfer(
            OpKind::Socket,
            Op::Read { fd, buf, len },
            fd,
            READABLE,
            Drains::IfFifo(len as usize),
            deadline,
            || crate::sys::read(fd, buf.cast(), len as usize),
        )
    }
}

/// `write(2)` that waits as a photon thread; on a socket it never raises
/// SIGPIPE (EPIPE is returned instead). A stream socket already known goes
/// straight to [`send`]'s common case, in the caller's frame.
///
/// # Safety
/// `buf` is valid for `len` bytes of reads.
#[inline(always)]
pub unsafe fn write(fd: i32, buf: *const u8, len: usize, deadline: u64) -> Result<usize, Errno> {
    if fdinfo::known_stream(fd) {
        crate::sys::user_range_ok(buf, len)?; // write(2) checks the whole length first
        // SAFETY: per the contract.
        return unsafe { send_stream(fd, buf, len, 0, deadline) };
    }
    // SAFETY: per the contract.
    unsafe { write_general(fd, buf, len, deadline) }
}

/// [`write`] of anything but a stream socket already known.
///
/// # Safety
/// `buf` is valid for `len` bytes of reads.
#[inline(never)]
unsafe fn write_general(fd: i32, buf: *const u8, len: usize, deadline: u64) -> Result<usize, Errno> {
    if unet::is_unet(fd) {
        // SAFETY: per the contract.
        return unsafe { unet::write(fd, buf, len, 0, deadline) };
    }
    if fd >= 0 {
        crate::sys::user_range_ok(buf, len)?; // write(2) checks the whole length first
    }
    if fdinfo::is_socket(fd) {
        // SAFETY: per the contract.
        return unsafe { send(fd, buf, len, 0, deadline) };
    }
    let len = clamp(len);
    if buffered_file(fd) {
        // SAFETY: per the contract; each piece lies within the buffer.
        return chunked(len as usize, |done, n| unsafe {
            write_one(fd, buf.add(done), n as u32, deadline)
        });
    }
    // SAFETY: per the contract.
    unsafe { write_one(fd, buf, len, deadline) }
}

/// One `write` (`len` capped).
///
/// # Safety
/// `buf` is valid for `len` bytes of reads.
unsafe fn write_one(fd: i32, buf: *const u8, len: u32, deadline: u64) -> Result<usize, Errno> {
    // SAFETY: per the contract.
    unsafe {
        transfer(
            OpKind::Socket,
            Op::Write { fd, buf, len },
            fd,
            WRITABLE,
            Drains::Never,
            deadline,
            || crate::sys::write(fd, buf.cast(), len as usize),
        )
    }
}

/// `readv(2)` that waits as a photon thread.
///
/// # Safety
/// `iov` holds `n` valid iovecs, each valid for writes.
pub unsafe fn readv(fd: i32, iov: *const libc::iovec, n: i32, deadline: u64) -> Result<usize, Errno> {
    let n = iov_count(n)?;
    // SAFETY: per the contract; lengths and ranges checked as the kernel does.
    unsafe { crate::sys::iovecs_ok(iov, n as usize)? };
    if unet::is_unet(fd) {
        // SAFETY: per the contract (validated above).
        return unsafe {
            unet::recv(
                fd,
                unet::segs(iov, n as usize),
                0,
                (core::ptr::null_mut(), core::ptr::null_mut()),
                deadline,
            )
        };
    }
    if buffered_file(fd) {
        // As in read: a pending interrupt fails the call before a piece
        // could come from the page cache without asking.
        sched::check_interrupt()?;
        // SAFETY: per the contract (validated above).
        return unsafe { vectored(fd, iov, n, deadline, file_readv_one) };
    }
    // SAFETY: per the contract (validated above).
    unsafe { vectored(fd, iov, n, deadline, readv_one) }
}

/// One piece of a `readv` of a buffered file, at the file position: from
/// the page cache on the vcpu where it can be ([`sched::read_cached`],
/// offset -1, as [`file_read_one`]), else by the engine ([`readv_one`]).
///
/// # Safety
/// `iov` holds `n` valid iovecs, each valid for writes.
unsafe fn file_readv_one(fd: i32, iov: *const libc::iovec, n: u32, deadline: u64) -> Result<usize, Errno> {
    // SAFETY: per the contract.
    if let Some(k) = unsafe { sched::read_cached(fd, iov, n as i32, -1) } {
        return Ok(k);
    }
    // SAFETY: per the contract.
    unsafe { readv_one(fd, iov, n, deadline) }
}

/// One vectored transfer, `one`, over checked iovecs; on a buffered file a
/// big one goes in 1 MiB pieces, as photon_read's and photon_write's do.
///
/// # Safety
/// `iov` holds `n` valid iovecs, each valid for what `one` does with it.
unsafe fn vectored(
    fd: i32,
    iov: *const libc::iovec,
    n: u32,
    deadline: u64,
    one: unsafe fn(i32, *const libc::iovec, u32, u64) -> Result<usize, Errno>,
) -> Result<usize, Errno> {
    if buffered_file(fd) {
        // SAFETY: per the contract.
        let total = unsafe { crate::sys::iov_total(iov, n as usize) }.min(crate::sys::MAX_IO);
        if total > crate::sys::FILE_CHUNK {
            // SAFETY: per the contract (n iovecs).
            let all = unsafe { core::slice::from_raw_parts(iov, n as usize) };
            return chunked(total, |done, k| {
                let w = crate::sys::iov_window(all, done, k);
                // SAFETY: w covers part of the caller's iovecs and lives across the call.
                unsafe { one(fd, w.as_ptr(), w.len() as u32, deadline) }
            });
        }
    }
    // SAFETY: per the contract.
    unsafe { one(fd, iov, n, deadline) }
}

/// One `readv` (the iovecs checked).
///
/// # Safety
/// `iov` holds `n` valid iovecs, each valid for writes.
unsafe fn readv_one(fd: i32, iov: *const libc::iovec, n: u32, deadline: u64) -> Result<usize, Errno> {
    // SAFETY: per the contract.
    unsafe {
        transfer(
            OpKind::Socket,
            Op::Readv { fd, iov, n },
            fd,
            READABLE,
            Drains::Never,
            deadline,
            || crate::sys::readv(fd, iov, n as i32),
        )
    }
}

/// `writev(2)` that waits as a photon thread (no SIGPIPE on sockets).
///
/// # Safety
/// `iov` holds `n` valid iovecs, each valid for reads.
pub unsafe fn writev(fd: i32, iov: *const libc::iovec, n: i32, deadline: u64) -> Result<usize, Errno> {
    let n = iov_count(n)?;
    // SAFETY: per the contract; lengths and ranges checked as the kernel does.
    unsafe { crate::sys::iovecs_ok(iov, n as usize)? };
    if unet::is_unet(fd) {
        // SAFETY: per the contract (validated above).
        return unsafe { unet::send(fd, unet::segs(iov, n as usize), 0, (core::ptr::null(), 0), deadline) };
    }
    if fdinfo::is_socket(fd) {
        // SAFETY: a zeroed msghdr is valid; it points at the caller's iovecs.
        let mut msg: libc::msghdr = unsafe { core::mem::zeroed() };
        msg.msg_iov = iov.cast_mut();
        msg.msg_iovlen = n as usize;
        // SAFETY: per the contract (validated above).
        let len = unsafe { crate::sys::iov_total(iov, n as usize) };
        // SAFETY: per the contract; msg lives across the call.
        return unsafe { sendmsg_sized(fd, &msg, 0, deadline, len) };
    }
    // SAFETY: per the contract (validated above).
    unsafe { vectored(fd, iov, n, deadline, writev_one) }
}

/// One `writev` (the iovecs checked).
///
/// # Safety
/// `iov` holds `n` valid iovecs, each valid for reads.
unsafe fn writev_one(fd: i32, iov: *const libc::iovec, n: u32, deadline: u64) -> Result<usize, Errno> {
    // SAFETY: per the contract.
    unsafe {
        transfer(
            OpKind::Socket,
            Op::Writev { fd, iov, n },
            fd,
            WRITABLE,
            Drains::Never,
            deadline,
            || crate::sys::writev(fd, iov, n as i32),
        )
    }
}

/// `recv(2)` that waits as a photon thread (once: returns what arrived).
/// With `MSG_DONTWAIT` in `flags` it does not wait (EAGAIN).
///
/// The common receive is made here, in the caller's frame: no flags, a
/// stream socket already known, the vcpu's engine running socket
/// operations (io_uring), no receive hint, no held bytes. It goes straight
/// to [`sched::io_wait`], as [`transfer`] would, but without
/// [`recv_general`]'s frame, which holds every other case's state: a thread
/// parked in a receive keeps its frames on its stack, and at many
/// connections each of their cache lines misses when it resumes (bench
/// echo, 256 connections). Under epoll the same receive goes to
/// [`recv_ready`], which skips the general path's checks as well.
///
/// # Safety
/// `buf` is valid for `len` bytes of writes.
#[inline(always)]
pub unsafe fn recv(fd: i32, buf: *mut u8, len: usize, flags: i32, deadline: u64) -> Result<usize, Errno> {
    if fdinfo::known_stream(fd) {
        // SAFETY: per the contract.
        return unsafe { recv_stream(fd, buf, len, flags, deadline) };
    }
    // SAFETY: per the contract.
    unsafe { recv_general(fd, buf, len, flags, deadline) }
}

/// [`recv`] on `fd`, a stream socket already known.
///
/// # Safety
/// `buf` is valid for `len` bytes of writes.
#[inline(always)]
unsafe fn recv_stream(fd: i32, buf: *mut u8, len: usize, flags: i32, deadline: u64) -> Result<usize, Errno> {
    if flags == 0 && len > 0 {
        match sched::engine_runs(OpKind::Socket) {
            Ok(true) if fdinfo::held(fd) == 0 => {
                let hint = sched::fd_recv_hint(fd);
                if hint != RecvHint::Usual {
                    // SAFETY: per the contract.
                    if let Some(n) = unsafe { recv_now(fd, buf, len, deadline, hint)? } {
                        return Ok(n);
                    }
                } else {
                    let len = clamp(len);
                    let op = Op::Recv { fd, buf, len, flags };
                    // SAFETY: per the contract.
                    if let Some(n) = unsafe { on_engine(op, fd, READABLE, len as usize, deadline)? } {
                        return Ok(n);
                    }
                }
            }
            // SAFETY: per the contract.
            Ok(false) => return unsafe { recv_ready(fd, buf, len, deadline) },
            _ => {}
        }
    }
    // SAFETY: per the contract.
    unsafe { recv_general(fd, buf, len, flags, deadline) }
}

/// [`recv`]'s common case on an engine that waits for readiness and leaves
/// the transfer to the thread (epoll; `len` > 0, no flags): [`transfer`]'s
/// syscall side ([`sys_when_ready`]) without the checks that a known stream
/// socket with no flags already passed, and with `MSG_DONTWAIT` instead of
/// the fd's own O_NONBLOCK. Bytes held for the fd by another vcpu's engine
/// (a thread that moved off an io_uring vcpu with a multishot receive
/// armed) go the general way. Out of line: the thread parks in
/// [`ready_wait`] below this small frame, not below [`recv_general`]'s.
///
/// # Safety
/// `buf` is valid for `len` bytes of writes.
#[inline(never)]
unsafe fn recv_ready(fd: i32, buf: *mut u8, len: usize, deadline: u64) -> Result<usize, Errno> {
    if fdinfo::held(fd) != 0 {
        // SAFETY: per the contract.
        return unsafe { recv_general(fd, buf, len, 0, deadline) };
    }
    sched::check_interrupt()?;
    let len = clamp(len) as usize;
    // SAFETY: per the contract.
    let sys = || unsafe { crate::sys::recv(fd, buf.cast(), len, libc::MSG_DONTWAIT) };
    sys_when_ready(fd, READABLE, len, deadline, sys)
}

/// [`recv`] of every case but its common one (which may also end here: a
/// receive hint the socket no longer bears out, EAGAIN from the engine).
///
/// # Safety
/// `buf` is valid for `len` bytes of writes.
#[inline(never)]
unsafe fn recv_general(fd: i32, buf: *mut u8, len: usize, flags: i32, deadline: u64) -> Result<usize, Errno> {
    if unet::is_unet(fd) {
        // SAFETY: per the contract.
        return unsafe { unet::read(fd, buf, len, flags, deadline) };
    }
    let len = clamp(len);
    if flags & libc::MSG_DONTWAIT != 0 {
        // SAFETY: per the contract.
        if let Some(r) = unsafe { held_nowait(Op::Recv { fd, buf, len, flags }, fd)? } {
            return Ok(r);
        }
        return syscall!(recv(fd, buf.cast(), len as usize, flags)).map(|n| n as usize);
    }
    if flags == 0 {
        let hint = sched::fd_recv_hint(fd);
        if hint != RecvHint::Usual
            // SAFETY: per the contract.
            && let Some(n) = unsafe { recv_now(fd, buf, len as usize, deadline, hint)? }
        {
            return Ok(n);
        }
    }
    // SAFETY: per the contract.
    unsafe {
        transfer(
            OpKind::Socket,
            Op::Recv { fd, buf, len, flags },
            fd,
            READABLE,
            if flags & libc::MSG_PEEK == 0 {
                Drains::IfStream(len as usize)
            } else {
                Drains::Never
            },
            deadline,
            || crate::sys::recv(fd, buf.cast(), len as usize, flags),
        )
    }
}

/// A receive (no flags; `photon_read` on a socket is one) on stream socket
/// `fd` that the vcpu's engine says to make on the vcpu (`hint`, from
/// [`sched::fd_recv_hint`], which the caller asked), with a non-blocking
/// `recv`, instead of as an engine receive:
/// - [`RecvHint::Queued`]: the last receive left bytes queued (io_uring:
///   the ring receive's `IORING_CQE_F_SOCK_NONEMPTY`;
///   `PHOTON_IO_OFF=direct_recv`): the `recv` takes them now, one syscall
///   and no park, instead of a ring receive and a wake-up. A receive that
///   fills `buf` leaves the hint set for the next one.
/// - [`RecvHint::Ready`]: the socket streams (its last receive drained a
///   bulk amount; `PHOTON_IO_OFF=readiness_recv`): wait for readiness (a
///   ring poll), then `recv` when the thread runs, later in the turn than a
///   ring receive would have copied, so it finds more. EAGAIN (another
///   reader took the bytes) waits again; the `recv`'s errors are returned.
///
/// None: no hint, bytes held by a multishot receive, or the `recv` failed
/// where a hint said bytes were queued (EAGAIN; or an error, which the
/// usual way reports as well, and which is also what a stale hint gives:
/// an fd number closed and reused behind the library's back): go the usual
/// way.
///
/// Out of line, so that the frame of [`recv`]'s common case (which parks
/// in its caller's frame) stays small.
///
/// # Safety
/// `buf` is valid for `len` bytes of writes.
#[inline(never)]
unsafe fn recv_now(fd: i32, buf: *mut u8, len: usize, deadline: u64, hint: RecvHint) -> Result<Option<usize>, Errno> {
    if hint == RecvHint::Usual || fdinfo::held(fd) != 0 || len == 0 {
        return Ok(None);
    }
    // SAFETY: per the contract; MSG_DONTWAIT whatever the fd's flags.
    let sys = || unsafe { crate::sys::recv(fd, buf.cast(), len, libc::MSG_DONTWAIT) };
    if hint == RecvHint::Ready {
        ready_wait(fd, READABLE, deadline)?;
        let n = sys_until_done(fd, READABLE, len, deadline, true, sys)?;
        if n == len {
            sched::fd_nonempty(fd);
        }
        return Ok(Some(n));
    }
    sched::check_interrupt()?;
    let n = sys();
    if n < 0 {
        return Ok(None);
    }
    let n = n as usize;
    if n == len {
        sched::fd_nonempty(fd);
    } else if n > 0 {
        sched::fd_drained(fd, READABLE, n);
    }
    sched::io_budget();
    Ok(Some(n))
}

/// A receive with MSG_DONTWAIT on a socket whose bytes an engine may hold
/// (io_uring multishot receive): those bytes first, through the engine
/// (which answers at once: held bytes, or EAGAIN while its multishot is
/// armed). None: no bytes held anywhere, the syscall is right.
///
/// # Safety
/// `op`'s pointers are valid for the call.
unsafe fn held_nowait(op: Op, fd: i32) -> Result<Option<usize>, Errno> {
    if fdinfo::held(fd) == 0 {
        return Ok(None);
    }
    // SAFETY: per the contract.
    if let Some(r) = unsafe { sched::held_first(op, sched::FOREVER)? } {
        return if r < 0 {
            Err(Errno(-r as i32))
        } else {
            Ok(Some(r as usize))
        };
    }
    if fdinfo::held_owner(fdinfo::held(fd)) == Some(sched::current_id()) && sched::engine_runs(OpKind::Socket)? {
        // SAFETY: per the contract.
        return unsafe { sched::io_wait(op, sched::FOREVER) }.map(|n| Some(n as usize));
    }
    Ok(None)
}

/// `send(2)` that waits as a photon thread; never raises SIGPIPE.
///
/// As [`recv`], the common send is made here, in the caller's frame: no
/// flags, a stream socket already known, the vcpu's engine running socket
/// operations, and a ring send batched with the turn's others
/// ([`send_batches`]). Under epoll a send with no flags on a known stream
/// socket goes to [`send_ready`]; every other case goes to
/// [`send_general`].
///
/// # Safety
/// `buf` is valid for `len` bytes of reads.
#[inline(always)]
pub unsafe fn send(fd: i32, buf: *const u8, len: usize, flags: i32, deadline: u64) -> Result<usize, Errno> {
    if fdinfo::known_stream(fd) {
        // SAFETY: per the contract.
        return unsafe { send_stream(fd, buf, len, flags, deadline) };
    }
    // SAFETY: per the contract.
    unsafe { send_general(fd, buf, len, flags, deadline) }
}

/// [`send`] on `fd`, a stream socket already known.
///
/// # Safety
/// `buf` is valid for `len` bytes of reads.
#[inline(always)]
unsafe fn send_stream(fd: i32, buf: *const u8, len: usize, flags: i32, deadline: u64) -> Result<usize, Errno> {
    if flags == 0 {
        match sched::engine_runs(OpKind::Socket) {
            Ok(true) if send_batches(len) => {
                let len = clamp(len);
                let flags = libc::MSG_NOSIGNAL;
                let op = Op::Send { fd, buf, len, flags };
                // SAFETY: per the contract.
                if let Some(n) = unsafe { on_engine(op, fd, WRITABLE, 0, deadline)? } {
                    return Ok(n);
                }
            }
            // SAFETY: per the contract.
            Ok(false) => return unsafe { send_ready(fd, buf, len, deadline) },
            _ => {}
        }
    }
    // SAFETY: per the contract.
    unsafe { send_general(fd, buf, len, flags, deadline) }
}

/// [`send`]'s common case on an engine that waits for readiness (epoll), as
/// [`recv_ready`]: the send syscall at once (`MSG_DONTWAIT`), waiting for
/// the socket to become writable while it says EAGAIN.
///
/// # Safety
/// `buf` is valid for `len` bytes of reads.
#[inline(never)]
unsafe fn send_ready(fd: i32, buf: *const u8, len: usize, deadline: u64) -> Result<usize, Errno> {
    sched::check_interrupt()?;
    let len = clamp(len) as usize;
    // SAFETY: per the contract.
    let sys = || unsafe { crate::sys::send(fd, buf.cast(), len, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) };
    sys_until_done(fd, WRITABLE, 0, deadline, false, sys)
}

/// [`send`] of every case but its common one (which may also end here:
/// EAGAIN from the engine).
///
/// # Safety
/// `buf` is valid for `len` bytes of reads.
#[inline(never)]
unsafe fn send_general(fd: i32, buf: *const u8, len: usize, flags: i32, deadline: u64) -> Result<usize, Errno> {
    if unet::is_unet(fd) {
        // SAFETY: per the contract.
        return unsafe { unet::write(fd, buf, len, flags, deadline) };
    }
    let len = clamp(len);
    let flags = flags | libc::MSG_NOSIGNAL;
    if flags & libc::MSG_DONTWAIT != 0 {
        return syscall!(send(fd, buf.cast(), len as usize, flags)).map(|n| n as usize);
    }
    // SAFETY: per the contract.
    if let Some(n) = send_now(len as usize, || unsafe {
        crate::sys::send(fd, buf.cast(), len as usize, flags | libc::MSG_DONTWAIT)
    })? {
        return Ok(n);
    }
    // SAFETY: per the contract.
    unsafe {
        transfer(
            OpKind::Socket,
            Op::Send { fd, buf, len, flags },
            fd,
            WRITABLE,
            Drains::Never,
            deadline,
            || crate::sys::send(fd, buf.cast(), len as usize, flags),
        )
    }
}

/// `recvmsg(2)` that waits as a photon thread.
///
/// # Safety
/// `msg` and everything it points to are valid for the call.
pub unsafe fn recvmsg(fd: i32, msg: *mut libc::msghdr, flags: i32, deadline: u64) -> Result<usize, Errno> {
    if unet::is_unet(fd) {
        // SAFETY: per the contract.
        return unsafe { unet::recvmsg(fd, msg, flags, deadline) };
    }
    if flags & libc::MSG_DONTWAIT != 0 {
        let op = Op::RecvMsg {
            fd,
            msg,
            flags: flags as u32,
        };
        // SAFETY: per the contract.
        if let Some(r) = unsafe { held_nowait(op, fd)? } {
            return Ok(r);
        }
        return syscall!(recvmsg(fd, msg, flags)).map(|n| n as usize);
    }
    // SAFETY: per the contract.
    unsafe {
        transfer(
            OpKind::Socket,
            Op::RecvMsg {
                fd,
                msg,
                flags: flags as u32,
            },
            fd,
            READABLE,
            Drains::Never,
            deadline,
            || crate::sys::recvmsg(fd, msg, flags),
        )
    }
}

/// `sendmsg(2)` that waits as a photon thread; never raises SIGPIPE.
///
/// # Safety
/// `msg` and everything it points to are valid for the call.
pub unsafe fn sendmsg(fd: i32, msg: *const libc::msghdr, flags: i32, deadline: u64) -> Result<usize, Errno> {
    // SAFETY: per the contract. (The iovecs are the caller's, not looked
    // at here: their total is not known.)
    unsafe { sendmsg_sized(fd, msg, flags, deadline, 0) }
}

/// [`sendmsg`] of `len` bytes (0: not known; see [`send_now`]).
///
/// # Safety
/// As [`sendmsg`].
unsafe fn sendmsg_sized(
    fd: i32,
    msg: *const libc::msghdr,
    flags: i32,
    deadline: u64,
    len: usize,
) -> Result<usize, Errno> {
    if unet::is_unet(fd) {
        // SAFETY: per the contract.
        return unsafe { unet::sendmsg(fd, msg, flags, deadline) };
    }
    let flags = flags | libc::MSG_NOSIGNAL;
    if flags & libc::MSG_DONTWAIT != 0 {
        return syscall!(sendmsg(fd, msg, flags)).map(|n| n as usize);
    }
    // SAFETY: per the contract.
    if let Some(n) = send_now(len, || unsafe {
        crate::sys::sendmsg(fd, msg, flags | libc::MSG_DONTWAIT)
    })? {
        return Ok(n);
    }
    // SAFETY: per the contract.
    unsafe {
        transfer(
            OpKind::Socket,
            Op::SendMsg {
                fd,
                msg,
                flags: flags as u32,
            },
            fd,
            WRITABLE,
            Drains::Never,
            deadline,
            || crate::sys::sendmsg(fd, msg, flags),
        )
    }
}

/// `recvfrom(2)` that waits as a photon thread.
///
/// # Safety
/// `buf` is valid for `len` bytes; `addr`/`addrlen` are NULL or valid.
pub unsafe fn recvfrom(
    fd: i32,
    buf: *mut u8,
    len: usize,
    flags: i32,
    addr: *mut libc::sockaddr,
    addrlen: *mut libc::socklen_t,
    deadline: u64,
) -> Result<usize, Errno> {
    let mut iov = libc::iovec {
        iov_base: buf.cast(),
        iov_len: clamp(len) as usize,
    };
    // SAFETY: a zeroed msghdr is valid.
    let mut msg: libc::msghdr = unsafe { core::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if !addr.is_null() && !addrlen.is_null() {
        msg.msg_name = addr.cast();
        // SAFETY: checked non-NULL; the caller passes a valid pointer.
        msg.msg_namelen = unsafe { *addrlen };
    }
    // SAFETY: msg and iov live across the call; per the contract.
    let n = unsafe { recvmsg(fd, &mut msg, flags, deadline)? };
    if !addr.is_null() && !addrlen.is_null() {
        // SAFETY: as above.
        unsafe { *addrlen = msg.msg_namelen };
    }
    Ok(n)
}

/// `sendto(2)` that waits as a photon thread; never raises SIGPIPE.
///
/// # Safety
/// `buf` is valid for `len` bytes; `addr` is NULL or valid for `addrlen`.
pub unsafe fn sendto(
    fd: i32,
    buf: *const u8,
    len: usize,
    flags: i32,
    addr: *const libc::sockaddr,
    addrlen: libc::socklen_t,
    deadline: u64,
) -> Result<usize, Errno> {
    if unet::is_unet(fd) {
        let seg = [libc::iovec {
            iov_base: buf.cast_mut().cast(),
            iov_len: len,
        }];
        // SAFETY: per the contract.
        return unsafe { unet::send(fd, &seg, flags, (addr, addrlen), deadline) };
    }
    let mut iov = libc::iovec {
        iov_base: buf.cast_mut().cast(),
        iov_len: clamp(len) as usize,
    };
    // SAFETY: a zeroed msghdr is valid.
    let mut msg: libc::msghdr = unsafe { core::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if !addr.is_null() {
        if addrlen == 0 {
            // sendmsg(2) reads a zero-length name as "no address"; sendto(2)
            // hands it to the protocol (UDP says EINVAL). Ask sendto itself,
            // without waiting; only EAGAIN goes on to wait.
            sched::check_interrupt()?; // EPERM off a vcpu, as every photon send
            // SAFETY: per the contract.
            let r = unsafe {
                libc::syscall(
                    libc::SYS_sendto,
                    fd as libc::c_long,
                    buf,
                    clamp(len) as libc::c_long,
                    (flags | libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) as libc::c_long,
                    addr,
                    0 as libc::c_long,
                )
            };
            if r >= 0 {
                return Ok(r as usize);
            }
            match Errno::last_os_error() {
                Errno(libc::EAGAIN) => {}
                e => return Err(e),
            }
        }
        msg.msg_name = addr.cast_mut().cast();
        msg.msg_namelen = addrlen;
    }
    // SAFETY: msg and iov live across the call; per the contract.
    unsafe { sendmsg_sized(fd, &msg, flags, deadline, iov.iov_len) }
}

/// What a looping transfer did: the bytes moved, and the error that
/// stopped it early (None: it completed, or reached EOF).
pub struct Partial {
    /// Bytes transferred.
    pub done: usize,
    /// The error after `done` bytes, if one ended the loop.
    pub error: Option<Errno>,
}

/// Loops `read` until `len` bytes or EOF. An error after some bytes arrived
/// is returned with them (they are not lost); an error before any is Err.
///
/// # Safety
/// `buf` is valid for `len` bytes of writes.
pub unsafe fn read_full(fd: i32, buf: *mut u8, len: usize, deadline: u64) -> Result<Partial, Errno> {
    let mut done = 0;
    while done < len {
        // SAFETY: per the contract; done < len.
        match unsafe { read(fd, buf.add(done), len - done, deadline) } {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if done == 0 => return Err(e),
            Err(e) => {
                return Ok(Partial { done, error: Some(e) });
            }
        }
    }
    Ok(Partial { done, error: None })
}

/// Loops `write` until all `len` bytes are written; as [`read_full`].
///
/// # Safety
/// `buf` is valid for `len` bytes of reads.
pub unsafe fn write_full(fd: i32, buf: *const u8, len: usize, deadline: u64) -> Result<Partial, Errno> {
    let mut done = 0;
    while done < len {
        // SAFETY: per the contract; done < len.
        match unsafe { write(fd, buf.add(done), len - done, deadline) } {
            Ok(n) => done += n,
            Err(e) if done == 0 => return Err(e),
            Err(e) => {
                return Ok(Partial { done, error: Some(e) });
            }
        }
    }
    Ok(Partial { done, error: None })
}

/// A non-blocking socket, known to the engine as a new fd.
pub fn socket(domain: i32, ty: i32, protocol: i32) -> Result<i32, Errno> {
    let fd = syscall!(socket(domain, ty | libc::SOCK_NONBLOCK, protocol))?;
    adopt_new_socket(fd, ty & 0xf == libc::SOCK_STREAM);
    Ok(fd)
}

fn adopt_new_socket(fd: i32, stream: bool) {
    fdinfo::new_socket(fd, stream);
    sched::forget_fd(fd);
}

/// `accept4(2)` that waits as a photon thread; the new fd is non-blocking.
///
/// # Safety
/// `addr`/`addrlen` are NULL or valid.
pub unsafe fn accept(
    fd: i32,
    addr: *mut libc::sockaddr,
    addrlen: *mut libc::socklen_t,
    deadline: u64,
) -> Result<i32, Errno> {
    if unet::is_unet(fd) {
        // SAFETY: per the contract.
        return unsafe { unet::accept(fd, addr, addrlen, deadline) };
    }
    let flags = libc::SOCK_NONBLOCK;
    let op = Op::Accept {
        fd,
        addr,
        len: addrlen,
        flags,
    };
    // SAFETY: per the contract.
    let nfd = unsafe {
        transfer(OpKind::Accept, op, fd, READABLE, Drains::Never, deadline, || {
            crate::sys::accept4(fd, addr, addrlen, flags) as isize
        })?
    } as i32;
    adopt_new_socket(nfd, fdinfo::is_stream(fd));
    Ok(nfd)
}

/// `connect(2)` that waits as a photon thread. The fd is switched to
/// O_NONBLOCK if it was not.
///
/// # Safety
/// `addr` is valid for `len` bytes.
pub unsafe fn connect(fd: i32, addr: *const libc::sockaddr, len: libc::socklen_t, deadline: u64) -> Result<(), Errno> {
    if unet::is_unet(fd) {
        // SAFETY: per the contract.
        return unsafe { unet::connect(fd, addr, len, deadline) };
    }
    sched::engine_runs(OpKind::Poll)?; // EPERM off a vcpu, before any effect
    fdinfo::ensure_nonblocking(fd)?;
    let mut backoff_us = 500;
    loop {
        match syscall!(connect(fd, addr, len)) {
            Ok(_) => return Ok(()),
            Err(Errno(libc::EINTR)) => continue,
            // A full Unix-socket backlog. Room there raises no event on
            // this socket (a blocking connect sleeps on the listener's
            // queue), so poll by retrying with a backoff up to the deadline.
            Err(Errno(libc::EAGAIN)) => {
                let now = now_us();
                if now >= deadline {
                    return Err(Errno::ETIMEDOUT);
                }
                sched::sleep_us(backoff_us.min(deadline - now))?;
                backoff_us = (backoff_us * 2).min(50_000);
            }
            Err(Errno(libc::EINPROGRESS)) => loop {
                // A local peer (loopback, a Unix socket) has usually
                // completed the handshake by the time connect(2) returns.
                // connect(2) again says how it stands in one syscall: 0
                // once connected (moving the socket to "connected", where a
                // blocking connect leaves it), EALREADY while in progress,
                // or the connection's error (as SO_ERROR would give it).
                // So no trip through the engine and the run queue, which a
                // busy vcpu makes long, when the handshake is done.
                match syscall!(connect(fd, addr, len)) {
                    Ok(_) | Err(Errno(libc::EISCONN)) => return Ok(()),
                    Err(Errno(libc::EINTR)) => {}
                    Err(Errno(libc::EALREADY)) => {
                        ready_wait(fd, WRITABLE, deadline)?;
                    }
                    Err(e) => return Err(e),
                }
            },
            Err(e) => return Err(e),
        }
    }
}

/// Waits until `fd` is ready for `events` (READABLE/WRITABLE); returns the
/// ready subset (errors and hang-ups count as both).
pub fn wait_fd(fd: i32, events: u32, deadline: u64) -> Result<u32, Errno> {
    if events == 0 || events & !(READABLE | WRITABLE) != 0 {
        return Err(Errno::EINVAL);
    }
    if unet::is_unet(fd) {
        return unet::wait_fd(fd, events, deadline);
    }
    sched::engine_runs(OpKind::Poll)?;
    if events & READABLE != 0 && fdinfo::held(fd) != 0 {
        // Bytes an engine holds (io_uring multishot receive) are readable
        // though poll(2) cannot see them: the engine answers.
        return ready_wait(fd, events, deadline).map(|b| b & events);
    }
    let mut pfd = libc::pollfd {
        fd,
        events: poll_mask(events),
        revents: 0,
    };
    syscall!(poll(&mut pfd, 1, 0))?;
    if pfd.revents & libc::POLLNVAL != 0 {
        return Err(Errno(libc::EBADF));
    }
    let bits = ready_bits(pfd.revents);
    if bits & events != 0 {
        return Ok(bits & events);
    }
    // Engines report hang-ups as both directions: keep to what was asked.
    ready_wait(fd, events, deadline).map(|b| b & events)
}

/// Closes `fd`, first waking every photon thread of this vcpu blocked on
/// it (their calls fail with ECANCELED).
pub fn close(fd: i32) -> Result<(), Errno> {
    if unet::is_unet(fd) {
        return unet::close(fd);
    }
    forget(fd)?;
    syscall!(close(fd)).map(|_| ())
}

/// `photon_fd_forget`: drops what the vcpu's engine and the fd table know
/// of `fd`, waking this vcpu's threads blocked on it.
pub fn forget(fd: i32) -> Result<(), Errno> {
    if fd < 0 {
        return Err(Errno(libc::EBADF));
    }
    if unet::is_open(fd) {
        return Err(Errno::EINVAL); // photon owns these numbers: nothing can replace them
    }
    sched::cancel_fd(fd);
    fdinfo::forget(fd);
    Ok(())
}
