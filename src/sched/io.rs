//! Waiting for engine operations: the one place where a photon thread hands
//! memory to the kernel and parks until the kernel gives it back.
//!
//! The rule that keeps buffers safe (the bug PhotonLibOS and tokio each had
//! once): a thread whose operation is in flight does not return from
//! [`io_wait`] until the engine reported that operation's completion, on
//! every path. A timeout or interrupt cancels the operation and then waits,
//! uninterruptibly, for its completion; if the operation succeeded in the
//! meantime its result is returned, so no received data is lost.

use super::thread::NO_OP;
use super::thread::Wait;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::*};

use super::handle::Handle;
use super::remote::Msg;
use super::vcpu::{
    FOREVER, block, block_inline, block_on, current, current_id, keep_interrupt, next_wait_seq, on_vcpu,
};
use crate::engine::{Cancel, Op, OpKind, RecvHint, Submitted};
use crate::errno::Errno;
use crate::time::now_us;

fn to_result(r: i64) -> Result<i64, Errno> {
    if r < 0 { Err(Errno(-r as i32)) } else { Ok(r) }
}

/// True if the calling vcpu's engine runs operations of `kind` itself.
#[inline]
pub(crate) fn engine_runs(kind: OpKind) -> Result<bool, Errno> {
    let v = on_vcpu()?;
    // SAFETY: this OS thread's live vcpu.
    Ok(unsafe { (*v).engine_runs } & 1 << kind as u8 != 0)
}

/// True if a file read by the calling thread, submitted to the engine now,
/// would reach the kernel in one call with other work of this scheduler
/// turn: the engine runs reads itself (io_uring with its read opcodes) and
/// [`turn_has_batch`]. False off a vcpu.
pub(crate) fn read_joins_batch() -> bool {
    turn_has_batch() && engine_runs(OpKind::Socket) == Ok(true)
}

/// True if an operation the calling thread queues for the engine now would
/// go to the kernel with others in one call: other threads are ready to
/// run (theirs join the queue too) or submissions wait queued already.
/// False off a vcpu.
#[inline]
pub(crate) fn turn_has_batch() -> bool {
    let v = super::vcpu::current();
    // SAFETY: this OS thread's live vcpu; no switch here.
    !v.is_null() && unsafe { (*v).run_queue.has_others() || (*v).engine.has_queued() }
}

/// Runs `op` on the calling vcpu's engine and parks the calling thread until
/// it completes, `deadline` passes (`ETIMEDOUT`), or the thread is
/// interrupted (the interrupter's errno). Returns the operation's result.
///
/// # Safety
/// Every pointer in `op` must stay valid until this returns (it does not
/// return while the kernel may still use them).
pub(crate) unsafe fn io_wait(op: Op, deadline: u64) -> Result<i64, Errno> {
    // SAFETY: per the contract.
    if let Some(r) = unsafe { held_first(op, deadline)? } {
        return to_result(r);
    }
    let v = on_vcpu()?;
    // SAFETY: live vcpu and current TCB; both re-read after each switch.
    unsafe {
        let cur = (*v).current;
        if cur == (*v).idle {
            return Err(Errno::EPERM);
        }
        (*cur).take_interrupt()?;
        let id = match (*v).engine.submit(op, cur.cast())? {
            Submitted::Done(r) => return to_result(r),
            Submitted::Pending(id) => id,
        };
        (*v).stats.io_submitted += 1;
        let (what, fd) = op.describe();
        if fd >= 0 {
            crate::fdinfo::note_vcpu(fd, (*v).id);
        }
        if crate::engine::is_offloaded(id) {
            (*v).stats.offloaded += 1;
        }
        (*cur).io_op = id;
        (*cur).io_done = false;
        let woke = block_inline(deadline, Wait::Io { what, fd });
        if !(*cur).io_done {
            return cancel_and_finish(cur, id, woke.err());
        }
        to_result((*cur).io_result)
    }
}

/// The rest of [`io_wait`] for a thread that woke before its operation
/// completed (timed out, interrupted): cancels operation `id` and, unless
/// the engine dropped it at once, parks uninterruptibly until its completion
/// is delivered. Out of line and cold: every parked thread keeps
/// [`io_wait`]'s frame on its stack, and at many connections each of that
/// frame's cache lines misses when the thread resumes.
///
/// # Safety
/// `cur` is the calling thread's TCB, and `id` its operation in flight.
#[cold]
#[inline(never)]
unsafe fn cancel_and_finish(
    cur: *mut super::thread::ThreadCtl,
    id: crate::engine::OpId,
    interrupted: Option<Errno>,
) -> Result<i64, Errno> {
    let why = interrupted.unwrap_or(Errno(libc::EINTR));
    // SAFETY: per the contract; the TCB is re-read after each switch.
    unsafe {
        match (*current()).engine.cancel(id) {
            Cancel::Gone => {
                (*cur).io_op = NO_OP;
                return Err(why);
            }
            Cancel::Requested => {
                (*cur).uninterruptible = true;
                // Not done yet (checked by the caller, no switch since):
                // park until the completion is delivered.
                loop {
                    let _ = block(FOREVER);
                    if (*cur).io_done {
                        break;
                    }
                }
                (*cur).uninterruptible = false;
            }
        }
        // Cancelled: ECANCELED, or EINTR from an io-wq worker that was
        // woken in the middle of a blocking call (a FUSE read).
        if (*cur).io_result == -(libc::ECANCELED as i64) || (*cur).io_result == -(libc::EINTR as i64) {
            return Err(why);
        }
        // The kernel finished it anyway (a file operation it had started
        // cannot be cancelled): succeed, and keep the interrupt for the
        // thread's next blocking call (a timeout is simply over).
        if let Some(e) = interrupted {
            keep_interrupt(e);
        }
        to_result((*cur).io_result)
    }
}

/// Runs a transfer of `len` bytes as pieces of at most [`FILE_CHUNK`](crate::sys::FILE_CHUNK):
/// `one(done, n)` moves up to `n` bytes starting `done` bytes in. It stops
/// at a short piece (end of file, a full disk) or an error; an error after
/// some bytes moved returns those bytes, as the kernel does (the next call
/// sees the error). A zero-length transfer is still made once (it checks
/// the fd as the syscall would). Between pieces the vcpu's other threads
/// run.
pub(crate) fn chunked(
    len: usize,
    mut one: impl FnMut(usize, usize) -> Result<usize, crate::Errno>,
) -> Result<usize, crate::Errno> {
    let mut done = 0;
    loop {
        if done > 0 {
            // A piece that completed without parking (a page-cache hit on
            // the vcpu) leaves the others no turn: give them one.
            super::switch::io_yield();
        }
        let n = (len - done).min(crate::sys::FILE_CHUNK);
        match one(done, n) {
            Ok(k) => {
                done += k;
                if k < n || done >= len {
                    return Ok(done);
                }
            }
            Err(e) if done == 0 => return Err(e),
            Err(_) => return Ok(done),
        }
    }
}

/// What a vcpu closing an fd waits for: the other vcpus that had threads
/// waiting on it have woken them.
pub(crate) struct CloseAck {
    left: AtomicUsize,
    /// The closing thread's wait (None: closed off a vcpu, nobody waits).
    waiter: Option<(Handle, u64)>,
}

/// How long `photon_close` waits for the other vcpus' acknowledgements (a
/// vcpu busy computing reads its messages only when it polls).
const CLOSE_ACK_WAIT_US: u64 = 1_000_000;

/// `photon_close(fd)`: every thread blocked on `fd`, on any vcpu, fails
/// with ECANCELED, and every engine forgets `fd`. Completions this vcpu's
/// engine produces at once are delivered here; vcpus that had threads
/// waiting on `fd` (noted by [`io_wait`]) get a message, and the caller
/// waits (up to a second) until they have acted on it, so the fd number
/// cannot be reused by a new file before they did.
pub(crate) fn cancel_fd(fd: i32) {
    let me = current_id();
    let mask = crate::fdinfo::take_vcpus(fd) & !(1u64 << (me % 64));
    if mask != 0 {
        let others: Vec<_> = super::remote::all()
            .into_iter()
            .filter(|(id, _)| *id != me && mask & (1u64 << (id % 64)) != 0)
            .collect();
        if !others.is_empty() {
            let waiter = next_wait_seq().ok();
            let ack = Arc::new(CloseAck {
                left: AtomicUsize::new(others.len()),
                waiter,
            });
            for (_, r) in &others {
                let p = Arc::into_raw(ack.clone()) as usize;
                r.post(Msg::CancelFd { fd, ack: p });
            }
            if waiter.is_some() {
                // Woken by the last acknowledgement; an interrupt or the
                // time limit ends the wait early (the messages still act).
                // Blocked even when all acknowledgements are in already:
                // the last one's wake-up is then in this vcpu's inbox and
                // carries this wait's number, so it must end this wait, not
                // the thread's next one (an accept or a read that woke with
                // nothing done).
                let _ = block_on(now_us() + CLOSE_ACK_WAIT_US, Wait::Other);
            }
        }
    }
    let Ok(v) = on_vcpu() else { return };
    // SAFETY: live vcpu; no switch here.
    unsafe { cancel_fd_here(v, fd, 0) };
}

/// Cancels the operations on `fd` of vcpu `v`'s engine, delivers what
/// completes at once, and acknowledges `ack` (a raw `Arc<CloseAck>` from
/// [`cancel_fd`] owning one count; 0 for none).
///
/// # Safety
/// `v` is the calling OS thread's vcpu.
pub(super) unsafe fn cancel_fd_here(v: *mut super::vcpu::Vcpu, fd: i32, ack: usize) {
    // SAFETY: per the contract; no switch here.
    unsafe {
        let mut done = Vec::new();
        (*v).engine.cancel_fd(fd, &mut done);
        super::idle::deliver(v, &mut done);
        if ack != 0 {
            let ack = Arc::from_raw(ack as *const CloseAck);
            if ack.left.fetch_sub(1, AcqRel) == 1
                && let Some((h, seq)) = ack.waiter
            {
                super::wait::wake(h, seq, 0);
            }
        }
    }
}

/// The directions in which `fd` may be ready, as the calling vcpu's engine
/// knows it ([`crate::engine::Engine::readiness`]); both off a vcpu.
#[inline]
pub(crate) fn fd_readiness(fd: i32) -> u32 {
    match on_vcpu() {
        // SAFETY: live vcpu; no switch here.
        Ok(v) => unsafe { (*v).engine.readiness(fd) },
        Err(_) => crate::engine::READABLE | crate::engine::WRITABLE,
    }
}

/// Tells the calling vcpu's engine that `fd` was seen drained in `bits`
/// by a read that returned `n` bytes.
#[inline]
pub(crate) fn fd_drained(fd: i32, bits: u32, n: usize) {
    if let Ok(v) = on_vcpu() {
        // SAFETY: live vcpu; no switch here.
        unsafe { (*v).engine.drained(fd, bits, n) };
    }
}

/// How the calling vcpu's engine says the next receive on stream socket
/// `fd` should go ([`crate::engine::Engine::recv_hint`]); the usual way off
/// a vcpu.
#[inline]
pub(crate) fn fd_recv_hint(fd: i32) -> RecvHint {
    match on_vcpu() {
        // SAFETY: live vcpu; no switch here.
        Ok(v) if unsafe { (*v).engine_recv_hints } => unsafe { (*v).engine.recv_hint(fd) },
        _ => RecvHint::Usual,
    }
}

/// Tells the calling vcpu's engine that a receive on `fd` filled its
/// buffer (more may be queued).
#[inline]
pub(crate) fn fd_nonempty(fd: i32) {
    if let Ok(v) = on_vcpu() {
        // SAFETY: live vcpu; no switch here.
        unsafe { (*v).engine.set_nonempty(fd) };
    }
}

/// Tells the calling vcpu's engine that `fd` is a new file.
pub(crate) fn forget_fd(fd: i32) {
    if let Ok(v) = on_vcpu() {
        // SAFETY: live vcpu; no switch here.
        unsafe { (*v).engine.forget_fd(fd) };
    }
}

/// Before a read-side operation `op` (a receive, read, readv, recvmsg or
/// readable-wait) on a socket whose bytes another vcpu's engine may hold
/// (io_uring multishot receive, engine/uring/recv.rs): asks that vcpu to
/// hand them over and waits (photon sleeps) until it did, then serves `op`
/// from the handed-over bytes (the fdinfo spill) while there are any.
/// Some(result): `op` was answered here; None: go on to the engine. One
/// atomic load when no fd ever had held bytes.
///
/// # Safety
/// `op`'s pointers are valid for the call.
#[inline]
pub(crate) unsafe fn held_first(op: Op, deadline: u64) -> Result<Option<i64>, Errno> {
    if !crate::fdinfo::held_used() {
        return Ok(None);
    }
    // SAFETY: per the contract.
    unsafe { held_first_slow(op, deadline) }
}

/// [`held_first`] once some fd had receive state.
///
/// # Safety
/// As [`held_first`].
#[inline(never)]
unsafe fn held_first_slow(op: Op, deadline: u64) -> Result<Option<i64>, Errno> {
    let Some(fd) = read_side_fd(&op) else { return Ok(None) };
    let mut word = crate::fdinfo::held(fd);
    if word == 0 {
        return Ok(None);
    }
    let me = current_id();
    let mut nap = 20;
    while let Some(owner) = crate::fdinfo::held_owner(word)
        && owner != me
    {
        on_vcpu()?;
        crate::fdinfo::note_vcpu(fd, me); // the owner will not arm it again
        if super::remote::post(owner, Msg::ReleaseHeld { fd }).is_err() {
            crate::fdinfo::drop_owner(fd, word); // its vcpu has ended
        } else {
            if now_us() >= deadline {
                return Err(Errno::ETIMEDOUT);
            }
            super::vcpu::sleep_us(nap.min(deadline.saturating_sub(now_us())))?;
            nap = (nap * 2).min(1000);
        }
        word = crate::fdinfo::held(fd);
    }
    if word & crate::fdinfo::SPILLED == 0 {
        return Ok(None);
    }
    // SAFETY: per the contract.
    Ok(unsafe { crate::engine::serve_spill(op, fd) })
}

/// The socket of a read-side operation.
fn read_side_fd(op: &Op) -> Option<i32> {
    match *op {
        Op::Recv { fd, .. } | Op::Read { fd, .. } | Op::Readv { fd, .. } | Op::RecvMsg { fd, .. } => Some(fd),
        Op::Poll { fd, events } if events & crate::engine::READABLE != 0 => Some(fd),
        _ => None,
    }
}
