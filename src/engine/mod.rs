//! Event engines: what a vcpu waits on, behind one trait.
//!
//! Contract every engine keeps:
//! - [`Engine::submit`] starts an operation on behalf of a waiting thread
//!   (identified by an opaque [`Waiter`]). The engine reports it exactly
//!   once as a [`Completion`] from [`Engine::wait`] or [`Engine::cancel_fd`],
//!   unless [`Engine::cancel`] returned [`Cancel::Gone`] for it.
//! - Memory an operation points to (buffers, addresses, iovecs) stays
//!   valid until its completion is reported: the kernel may own it until
//!   then (io_uring). The scheduler upholds this by keeping the waiting
//!   thread parked until the completion arrives, on every path.
//! - [`Engine::wait`] sleeps until a completion, a [`Notify::notify`] from
//!   any OS thread, or the timeout, whichever comes first. A notify sent
//!   before `wait` is entered is not lost.
//! - The engine makes no scheduling decisions; the vcpu does.

mod epoll;
pub(crate) mod features;
mod offload;
pub(crate) use offload::{after_fork_in_child, run_task};
mod slab;
mod uring;

use std::sync::Arc;
use std::time::Duration;

use crate::errno::Errno;

pub(crate) use epoll::EpollEngine;
pub(crate) use uring::UringEngine;

/// The `photon_init` engine codes.
pub const EVENT_DEFAULT: u64 = 0;
/// epoll, through mio.
pub const EVENT_EPOLL: u64 = 1;
/// io_uring.
pub const EVENT_IOURING: u64 = 2;

/// `photon_init` flag: an io_uring submission queue polled by a kernel
/// thread (the C `PHOTON_INIT_IOURING_SQPOLL`).
pub const INIT_SQPOLL: u64 = 1;

/// Readiness bits (the C `PHOTON_READABLE` / `PHOTON_WRITABLE`).
pub const READABLE: u32 = 1;
/// See [`READABLE`].
pub const WRITABLE: u32 = 2;

/// The `poll(2)` event bits asked for to wait for `events`
/// ([`READABLE`]/[`WRITABLE`]): `POLLRDHUP` with `POLLIN`, so a peer's
/// half-close wakes a reader as data would.
pub(crate) fn poll_mask(events: u32) -> i16 {
    let mut mask = 0;
    if events & READABLE != 0 {
        mask |= libc::POLLIN | libc::POLLRDHUP;
    }
    if events & WRITABLE != 0 {
        mask |= libc::POLLOUT;
    }
    mask
}

/// The one rule turning `poll(2)`-style revents (the same bits as epoll's)
/// into [`READABLE`]/[`WRITABLE`]: data or a peer's half-close
/// (`POLLRDHUP`) is readable; an error or a hang-up is both (the next call
/// reports it).
pub(crate) fn ready_bits(revents: i16) -> u32 {
    let mut bits = 0;
    if revents & (libc::POLLIN | libc::POLLRDHUP | libc::POLLERR | libc::POLLHUP) != 0 {
        bits |= READABLE;
    }
    if revents & (libc::POLLOUT | libc::POLLERR | libc::POLLHUP) != 0 {
        bits |= WRITABLE;
    }
    bits
}

/// Who waits for an operation: opaque to the engine (a TCB pointer).
pub(crate) type Waiter = *mut u8;

/// Identifies an operation in flight, unique among those in flight.
pub(crate) type OpId = u32;

/// A finished operation: `result` is what the syscall would return, or
/// `-errno` (for `Poll`, the ready [`READABLE`]/[`WRITABLE`] bits).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Completion {
    pub waiter: Waiter,
    pub id: OpId,
    pub result: i64,
}

/// An operation. Pointers follow the engine contract above. Offsets of
/// `u64::MAX` mean "at the file position" (read/write semantics).
#[derive(Clone, Copy, Debug)]
pub(crate) enum Op {
    /// Wait until `fd` is ready for `events` (level-triggered).
    Poll {
        fd: i32,
        events: u32,
    },
    Read {
        fd: i32,
        buf: *mut u8,
        len: u32,
    },
    Write {
        fd: i32,
        buf: *const u8,
        len: u32,
    },
    Readv {
        fd: i32,
        iov: *const libc::iovec,
        n: u32,
    },
    Writev {
        fd: i32,
        iov: *const libc::iovec,
        n: u32,
    },
    Recv {
        fd: i32,
        buf: *mut u8,
        len: u32,
        flags: i32,
    },
    Send {
        fd: i32,
        buf: *const u8,
        len: u32,
        flags: i32,
    },
    RecvMsg {
        fd: i32,
        msg: *mut libc::msghdr,
        flags: u32,
    },
    SendMsg {
        fd: i32,
        msg: *const libc::msghdr,
        flags: u32,
    },
    Accept {
        fd: i32,
        addr: *mut libc::sockaddr,
        len: *mut libc::socklen_t,
        flags: i32,
    },
    Pread {
        fd: i32,
        buf: *mut u8,
        len: u32,
        off: u64,
    },
    Pwrite {
        fd: i32,
        buf: *const u8,
        len: u32,
        off: u64,
    },
    Preadv {
        fd: i32,
        iov: *const libc::iovec,
        n: u32,
        off: u64,
    },
    Pwritev {
        fd: i32,
        iov: *const libc::iovec,
        n: u32,
        off: u64,
    },
    Fsync {
        fd: i32,
        datasync: bool,
    },
    Fallocate {
        fd: i32,
        mode: i32,
        off: i64,
        len: i64,
    },
    Ftruncate {
        fd: i32,
        len: i64,
    },
    /// `blocking`: run as a plain blocking open(2) in the offload pool
    /// (a FIFO's open waits for its peer, which a ring open does not).
    Open {
        dirfd: i32,
        path: *const libc::c_char,
        flags: i32,
        mode: u32,
        blocking: bool,
    },
    Statx {
        dirfd: i32,
        path: *const libc::c_char,
        flags: i32,
        mask: u32,
        buf: *mut libc::statx,
    },
    Unlink {
        dirfd: i32,
        path: *const libc::c_char,
        flags: i32,
    },
    Rename {
        olddir: i32,
        old: *const libc::c_char,
        newdir: i32,
        new: *const libc::c_char,
    },
    Mkdir {
        dirfd: i32,
        path: *const libc::c_char,
        mode: u32,
    },
}

impl Op {
    /// What the operation is, and on which fd (or directory fd), for the
    /// thread dump.
    pub(crate) fn describe(&self) -> (&'static str, i32) {
        match *self {
            Op::Poll { fd, events } => (
                match events & (READABLE | WRITABLE) {
                    READABLE => "wait readable",
                    WRITABLE => "wait writable",
                    _ => "wait ready",
                },
                fd,
            ),
            Op::Read { fd, .. } | Op::Readv { fd, .. } => ("read", fd),
            Op::Write { fd, .. } | Op::Writev { fd, .. } => ("write", fd),
            Op::Recv { fd, .. } | Op::RecvMsg { fd, .. } => ("recv", fd),
            Op::Send { fd, .. } | Op::SendMsg { fd, .. } => ("send", fd),
            Op::Accept { fd, .. } => ("accept", fd),
            Op::Pread { fd, .. } | Op::Preadv { fd, .. } => ("pread", fd),
            Op::Pwrite { fd, .. } | Op::Pwritev { fd, .. } => ("pwrite", fd),
            Op::Fsync { fd, .. } => ("fsync", fd),
            Op::Fallocate { fd, .. } => ("fallocate", fd),
            Op::Ftruncate { fd, .. } => ("ftruncate", fd),
            Op::Open { dirfd, .. } => ("open", dirfd),
            Op::Statx { dirfd, .. } => ("stat", dirfd),
            Op::Unlink { dirfd, .. } => ("unlink", dirfd),
            Op::Rename { olddir, .. } => ("rename", olddir),
            Op::Mkdir { dirfd, .. } => ("mkdir", dirfd),
        }
    }
}

/// True if the pending operation `id` runs in the offload pool.
pub(crate) fn is_offloaded(id: OpId) -> bool {
    offload::Offload::owns(id)
}

/// Which [`Op`] kinds an engine runs itself (others are done as a
/// non-blocking syscall plus a `Poll` wait).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum OpKind {
    /// Readiness waits.
    Poll,
    /// Transfers on pollable fds (sockets, pipes).
    Socket,
    /// Accepting connections.
    Accept,
    /// Operations that may block on storage (every engine runs these:
    /// io_uring in the ring, epoll through the offload pool).
    File,
}

impl OpKind {
    pub(crate) const ALL: [OpKind; 4] = [OpKind::Poll, OpKind::Socket, OpKind::Accept, OpKind::File];
}

/// What [`Engine::submit`] did.
pub(crate) enum Submitted {
    /// In flight; reported later.
    Pending(OpId),
    /// Already complete (nothing in flight): the result.
    Done(i64),
}

/// What [`Engine::cancel`] did.
#[derive(PartialEq, Eq, Debug)]
pub(crate) enum Cancel {
    /// Removed; no completion will be reported.
    Gone,
    /// Cancellation requested; the completion (maybe a success) is still to come.
    Requested,
}

/// Wakes a sleeping engine from any OS thread.
pub(crate) trait Notify: Send + Sync {
    fn notify(&self);

    /// The eventfd [`Notify::notify`] writes, if that is how it wakes: a
    /// thread with its own fd table (the monitor, see sched's
    /// private_fds) writes a copy of it instead.
    fn eventfd(&self) -> Option<i32> {
        None
    }
}

/// A non-blocking eventfd that both engines sleep on for cross-thread
/// wake-ups; written with a raw syscall (see [`crate::sys`]).
pub(crate) struct EventFd(pub(crate) i32);

impl EventFd {
    pub(crate) fn new() -> Result<EventFd, Errno> {
        // SAFETY: creating an eventfd has no preconditions.
        let efd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if efd < 0 {
            return Err(Errno::last_os_error());
        }
        Ok(EventFd(efd))
    }
}

impl Notify for EventFd {
    fn notify(&self) {
        notify_eventfd(self.0);
    }

    fn eventfd(&self) -> Option<i32> {
        Some(self.0)
    }
}

/// Wakes whoever sleeps on eventfd `fd` (an [`EventFd`]'s, or a copy).
pub(crate) fn notify_eventfd(fd: i32) {
    let one: u64 = 1;
    // SAFETY: writes 8 bytes from a live u64 to an eventfd. EAGAIN (a
    // counter near overflow) still leaves it readable: the wake stands.
    unsafe { crate::sys::write(fd, (&raw const one).cast(), 8) };
}

impl Drop for EventFd {
    fn drop(&mut self) {
        // SAFETY: we own this fd.
        unsafe { crate::sys::close(self.0) };
    }
}

/// How a receive (no flags) on a stream socket should go, from what the
/// engine saw of the socket's last receives ([`Engine::recv_hint`]).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum RecvHint {
    /// The usual way: an engine receive, or the syscall and its waits.
    Usual,
    /// Bytes are queued: a non-blocking receive on the vcpu finds them now
    /// (`direct_recv`).
    Queued,
    /// The socket streams: its last receive drained a bulk amount (several
    /// of the peer's writes had piled up). Wait for readiness, then receive
    /// on the vcpu when the thread runs, which finds what arrived
    /// meanwhile too (`readiness_recv`).
    Ready,
}

/// An event engine owned by one vcpu.
pub(crate) trait Engine {
    /// "epoll" or "io_uring".
    fn name(&self) -> &'static str;
    /// True if [`Engine::submit`] runs ops of this kind itself.
    fn runs(&self, kind: OpKind) -> bool;
    /// True if submissions wait, queued, for the kernel (io_uring's
    /// submission queue before the turn's `io_uring_enter`): an operation
    /// submitted now goes to the kernel with them, in one call.
    fn has_queued(&self) -> bool {
        false
    }
    /// Starts `op` for `waiter`.
    ///
    /// # Safety
    /// Every pointer in `op` stays valid until the completion is reported
    /// (or `cancel` returns `Gone`).
    unsafe fn submit(&mut self, op: Op, waiter: Waiter) -> Result<Submitted, Errno>;
    /// Cancels an operation in flight.
    fn cancel(&mut self, id: OpId) -> Cancel;
    /// `fd` is about to be closed: every operation on it completes with
    /// `-ECANCELED` (appended to `out`, or reported later by `wait`), and
    /// the engine forgets the fd.
    fn cancel_fd(&mut self, fd: i32, out: &mut Vec<Completion>);
    /// `fd` was just created (its number may be a reused one): forget any
    /// state kept for an older file with that number.
    fn forget_fd(&mut self, fd: i32);
    /// The directions ([`READABLE`]/[`WRITABLE`]) in which `fd` may be
    /// ready as far as the engine knows: a direction left out was seen
    /// drained with no event since, so a syscall there would say EAGAIN.
    /// Engines that keep no readiness say both.
    fn readiness(&self, fd: i32) -> u32 {
        let _ = fd;
        READABLE | WRITABLE
    }
    /// The caller saw `fd` drained in the directions `bits` (a short read
    /// of a stream, which returned `n` bytes): the engine may skip the next
    /// attempt there until an event says otherwise.
    fn drained(&mut self, fd: i32, bits: u32, n: usize) {
        let _ = (fd, bits, n);
    }
    /// True if [`Engine::recv_hint`] may ever say anything but
    /// [`RecvHint::Usual`] (the vcpu asks only then: a flag read instead of
    /// a call per receive).
    fn gives_recv_hints(&self) -> bool {
        false
    }
    /// How the next receive (no flags) on stream socket `fd` goes, from
    /// what its last receives returned: [`RecvHint::Queued`] (said once)
    /// if the last one came back with bytes still queued in the socket
    /// (io_uring: `IORING_CQE_F_SOCK_NONEMPTY`); [`RecvHint::Ready`] while
    /// its receives drain bulk amounts. Engines that cannot tell say
    /// [`RecvHint::Usual`].
    fn recv_hint(&mut self, fd: i32) -> RecvHint {
        let _ = fd;
        RecvHint::Usual
    }
    /// A receive on the vcpu filled its buffer: `fd` may hold more.
    fn set_nonempty(&mut self, fd: i32) {
        let _ = fd;
    }
    /// Another vcpu reads `fd`: bytes of its stream this engine holds
    /// (io_uring multishot receive) go to the fdinfo spill, now or once
    /// the kernel gave the last of them; completions of this engine's own
    /// waiting receives that this produces are appended to `out`.
    fn release_held(&mut self, fd: i32, out: &mut Vec<Completion>) {
        let _ = (fd, out);
        crate::fdinfo::release_held(fd, crate::sched::current_id());
    }
    /// Sleeps until completions, a notify, or `timeout` (None: no limit;
    /// zero: just collect what is ready); appends completions to `out`.
    fn wait(&mut self, timeout: Option<Duration>, out: &mut Vec<Completion>) -> Result<(), Errno>;
    /// How many waits are in flight or queued (operations, multishot arms,
    /// offloaded calls): the idle I/O spin runs only when there are few.
    fn waits_in_flight(&self) -> usize;
    /// True if operations are in flight or queued (a non-blocking poll may
    /// find completions).
    fn has_pending(&self) -> bool {
        self.waits_in_flight() > 0
    }
    /// A handle that wakes this engine's `wait` from any OS thread.
    fn notifier(&self) -> Arc<dyn Notify>;
    /// Gives back to the kernel the pages of memory the engine keeps for
    /// reuse and no operation uses now (io_uring: the buffers of idle
    /// multishot receive rings), with the vcpu's stacks (`photon_trim`, and
    /// a vcpu's own trim when idle). Returns the bytes given back.
    fn trim(&mut self) -> usize {
        0
    }
}

/// Creates the engine `photon_init` asked for, with its `flags`
/// ([`INIT_SQPOLL`], also set by `PHOTON_IO_SQPOLL=1`). `PHOTON_ENGINE=io_uring|epoll`
/// overrides [`EVENT_DEFAULT`] only. The default (and the variable) fall
/// back to epoll, with one logged warning naming the reason, when io_uring
/// cannot be set up; an explicit [`EVENT_IOURING`] fails instead.
pub(crate) fn create(kind: u64, flags: u64) -> Result<Box<dyn Engine>, Errno> {
    let sqpoll = flags & INIT_SQPOLL != 0 || std::env::var("PHOTON_IO_SQPOLL").is_ok_and(|v| v == "1");
    let explicit = match kind {
        EVENT_DEFAULT => match std::env::var("PHOTON_ENGINE").as_deref() {
            Ok("epoll") => Some(EVENT_EPOLL),
            Ok("io_uring") => None,
            Ok(other) if !other.is_empty() => {
                log::warn!("photon: PHOTON_ENGINE={other:?} is not io_uring or epoll; using the default");
                None
            }
            _ => None,
        },
        EVENT_EPOLL | EVENT_IOURING => Some(kind),
        _ => return Err(Errno::EINVAL),
    };
    // Valgrind cannot see what the kernel writes through io_uring's shared
    // rings (memcheck would call received data uninitialised).
    let explicit = if explicit.is_none() && crate::stack::sanitize::on_valgrind() {
        log::info!("photon: running under Valgrind: the default engine is epoll");
        Some(EVENT_EPOLL)
    } else {
        explicit
    };
    match explicit {
        Some(EVENT_EPOLL) => Ok(Box::new(EpollEngine::new()?)),
        Some(_) => match UringEngine::new(sqpoll) {
            Ok(e) => Ok(Box::new(e)),
            Err(e) => {
                log::warn!("photon: io_uring requested but unavailable: {}", uring::explain(&e));
                Err(if e.errno == Errno::EINVAL {
                    Errno::ENOSYS
                } else {
                    e.errno
                })
            }
        },
        None => match UringEngine::new(sqpoll) {
            Ok(e) => Ok(Box::new(e)),
            Err(e) => {
                warn_fallback_once(&uring::explain(&e));
                Ok(Box::new(EpollEngine::new()?))
            }
        },
    }
}

fn warn_fallback_once(why: &str) {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| log::warn!("photon: io_uring unavailable, using epoll: {why}"));
}

/// For tests of O_DIRECT paths: a file of 16 blocks of 4 KiB, block `i`
/// filled with byte `i`, opened O_DIRECT in the first of the temporary
/// directory and `target` whose file system takes O_DIRECT; None (the test
/// skips) where none does. The caller removes the file.
#[cfg(test)]
pub(crate) fn direct_test_file(tag: &str) -> Option<(i32, std::path::PathBuf)> {
    use std::io::Write;
    for dir in [std::env::temp_dir(), std::path::PathBuf::from("target")] {
        let path = dir.join(format!("photon-{tag}-{}.dat", std::process::id()));
        let mut f = std::fs::File::create(&path).ok()?;
        for i in 0..16u8 {
            f.write_all(&[i; 4096]).ok()?;
        }
        f.sync_all().ok()?;
        let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).ok()?;
        // SAFETY: a NUL-terminated path.
        let fd = unsafe { libc::open(c.as_ptr(), libc::O_RDONLY | libc::O_DIRECT | libc::O_CLOEXEC) };
        if fd >= 0 {
            crate::fdinfo::forget(fd); // facts of an earlier file with this number go
            return Some((fd, path));
        }
        let _ = std::fs::remove_file(&path);
    }
    None
}

/// Serves the read-side operation `op` on `fd` from bytes another vcpu
/// handed over (the fdinfo spill, see engine/uring/recv.rs): the result
/// as the operation's, or None when nothing is spilled (or `op` is one
/// the spill does not answer: out-of-band data, the error queue).
///
/// # Safety
/// `op`'s pointers are valid for the call.
pub(crate) unsafe fn serve_spill(op: Op, fd: i32) -> Option<i64> {
    let ok = |flags: i32| flags & (libc::MSG_OOB | libc::MSG_ERRQUEUE) == 0;
    match op {
        Op::Poll { .. } => crate::fdinfo::spill_has_data(fd).and_then(|d| d.then_some(READABLE as i64)),
        Op::Recv { buf, len, flags, .. } if ok(flags) => {
            crate::fdinfo::spill_take(fd, flags & libc::MSG_PEEK == 0, |src| {
                let n = src.len().min(len as usize);
                if flags & libc::MSG_TRUNC == 0 {
                    // SAFETY: per the contract.
                    unsafe { core::ptr::copy_nonoverlapping(src.as_ptr(), buf, n) };
                }
                n
            })
        }
        Op::Read { buf, len, .. } => crate::fdinfo::spill_take(fd, true, |src| {
            let n = src.len().min(len as usize);
            // SAFETY: per the contract.
            unsafe { core::ptr::copy_nonoverlapping(src.as_ptr(), buf, n) };
            n
        }),
        Op::Readv { iov, n, .. } => crate::fdinfo::spill_take(fd, true, |src| {
            // SAFETY: per the contract.
            unsafe { copy_iov(iov, n as usize, src, false) }
        }),
        Op::RecvMsg { msg, flags, .. } if ok(flags as i32) => {
            crate::fdinfo::spill_take(fd, flags as i32 & libc::MSG_PEEK == 0, |src| {
                // SAFETY: per the contract.
                unsafe {
                    (*msg).msg_controllen = 0;
                    (*msg).msg_flags = 0;
                    (*msg).msg_namelen = 0;
                    copy_iov(
                        (*msg).msg_iov,
                        (*msg).msg_iovlen,
                        src,
                        flags as i32 & libc::MSG_TRUNC != 0,
                    )
                }
            })
        }
        _ => None,
    }
}

/// Copies `src` into the `n` iovecs at `iov` in order, as far as they
/// reach (with `trunc`, counts without copying: MSG_TRUNC); returns the
/// bytes taken.
///
/// # Safety
/// `iov` holds `n` iovecs valid for writes.
pub(crate) unsafe fn copy_iov(iov: *const libc::iovec, n: usize, src: &[u8], trunc: bool) -> usize {
    let mut done = 0;
    for i in 0..n {
        if done >= src.len() {
            break;
        }
        // SAFETY: per the contract.
        let v = unsafe { *iov.add(i) };
        let k = v.iov_len.min(src.len() - done);
        if !trunc && k > 0 {
            // SAFETY: per the contract; k <= iov_len.
            unsafe { core::ptr::copy_nonoverlapping(src.as_ptr().add(done), v.iov_base.cast::<u8>(), k) };
        }
        done += k;
    }
    done
}
