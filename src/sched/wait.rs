//! Blocking, waking and interrupting photon threads; join, sleep and the
//! calling thread's keys.

use core::ffi::c_void;

use super::handle::{self, Handle};
use super::keys;
use super::remote::{self, Msg};
use super::thread::{State, ThreadCtl, Wait};
use super::vcpu::*;
use crate::errno::Errno;
use crate::time::now_us;

/// The wait number the calling thread's next [`block`] will use (to
/// register with a waker before blocking).
pub(crate) fn next_wait_seq() -> Result<(Handle, u64), Errno> {
    let v = on_vcpu()?;
    // SAFETY: live vcpu and current TCB.
    unsafe {
        let cur = (*v).current;
        Ok(((*cur).handle, (*cur).wait_seq + 1))
    }
}

/// Fails with the calling thread's pending interrupt, if any (consuming
/// it): every call that may block starts with this, so an interrupt sent
/// while the thread was running fails its next such call even when that
/// call would not have had to wait. EPERM off a vcpu.
#[inline]
pub(crate) fn check_interrupt() -> Result<(), Errno> {
    let v = on_vcpu()?;
    // SAFETY: live vcpu and current TCB; no switch here.
    unsafe {
        let cur = (*v).current;
        (*cur).take_interrupt()?;
    }
    Ok(())
}

/// The calling thread's vcpu, given out by [`running`] only where
/// [`check_interrupt`] would pass without consuming anything: the fast
/// path of a call that can complete without waiting starts with it and
/// keeps it for its I/O budget ([`Running::io_budget_left`]), so the call
/// reads the vcpu (an opaque TLS read) once. Not kept across a switch.
#[derive(Clone, Copy)]
pub(crate) struct Running(pub(super) *mut Vcpu);

/// [`Running`] when on a vcpu with no interrupt pending; None otherwise
/// (off a vcpu, or an interrupt to deliver: the general path, which starts
/// with [`check_interrupt`], then says EPERM or takes the interrupt).
#[inline]
pub(crate) fn running() -> Option<Running> {
    let v = current();
    if v.is_null() {
        return None;
    }
    // SAFETY: live vcpu and current TCB; no switch here.
    (unsafe { (*(*v).current).pending_interrupt } == 0).then_some(Running(v))
}

/// Makes `e` the calling thread's pending interrupt again: a wait that was
/// interrupted but succeeded anyway (granted in the same moment) must not
/// lose the interrupt; the thread's next blocking call fails with it.
pub(crate) fn keep_interrupt(e: Errno) {
    let v = current();
    if v.is_null() || e == Errno::ETIMEDOUT {
        return;
    }
    // SAFETY: this OS thread's live vcpu and current TCB.
    unsafe { (*(*v).current).pending_interrupt = e.0 };
}

/// Blocks the calling thread until [`wake`], an interrupt, or `deadline`
/// (absolute `now_us`; [`FOREVER`] for none). Ok(()) when woken with 0;
/// Err(ETIMEDOUT) at the deadline; Err(errno) when interrupted, also at once
/// if an interrupt was pending.
pub(crate) fn block(deadline: u64) -> Result<(), Errno> {
    block_on(deadline, Wait::Other)
}

/// [`block`], recording what the thread waits for (`photon_dump_threads`).
pub(crate) fn block_on(deadline: u64, wait: Wait) -> Result<(), Errno> {
    block_inline(deadline, wait)
}

/// [`block_on`] inlined into the caller: one frame less on the stack of
/// a thread that blocks (the join's, and every engine wait's in
/// `io_wait`: that stack's lines are cold again by the time a busy
/// server's thread runs next, so each frame's lines cost cache misses per
/// request).
#[inline(always)]
pub(crate) fn block_inline(deadline: u64, wait: Wait) -> Result<(), Errno> {
    let v = on_vcpu()?;
    // SAFETY: live vcpu; its fields are re-read after the switch.
    unsafe {
        let cur = (*v).current;
        if cur == (*v).idle {
            return Err(Errno::EPERM);
        }
        (*cur).take_interrupt()?;
        (*cur).state = State::Blocked;
        (*cur).wait = wait;
        (*cur).wait_since = super::thread::wait_clock_us();
        (*v).run_queue.remove(cur);
        (*cur).wait_seq += 1;
        (*cur).wake_result = 0;
        (*cur).deadline = deadline;
        if deadline != FOREVER {
            (*v).timers.insert(cur);
        }
        let mut next = next_to_run(v);
        if next == (*v).idle {
            // In place only for the thread that left the vcpu idle last
            // time too (one busy connection): when many threads take turns
            // at it, the poll's frames would land on a different stack each
            // time instead of the idle thread's one warm stack (bench echo,
            // 64 connections: 6-15% more CPU per request in place).
            let again = core::mem::replace(&mut (*v).last_lone_blocker, cur) == cur;
            if again && may_poll_in_place(cur) {
                next = super::idle::poll_in_place(v, cur);
            }
        }
        switch_to(v, cur, next);
        match core::mem::take(&mut (*cur).wake_result) {
            0 => Ok(()),
            e => Err(Errno(e)),
        }
    }
}

/// Stack a blocking thread must have left for the vcpu's poll to run on
/// it ([`super::idle::poll_in_place`]); the idle thread's own stack is
/// `IDLE_STACK`.
const POLL_IN_PLACE_HEADROOM: usize = 64 << 10;

/// True when blocking thread `cur`, with nothing else runnable, may poll
/// and sleep on its own stack instead of switching to the idle thread:
/// the feature is on (`PHOTON_IO_OFF=poll_in_place` turns it off) and the
/// stack has [`POLL_IN_PLACE_HEADROOM`] left below the caller's frame (a
/// vcpu's main thread runs on its OS thread's stack: always).
///
/// # Safety
/// `cur` is the calling OS thread's running thread.
#[inline(always)]
unsafe fn may_poll_in_place(cur: *mut ThreadCtl) -> bool {
    use crate::engine::features::{Feature, wanted};
    if !wanted(Feature::PollInPlace) {
        return false;
    }
    let here = 0u8;
    let sp = core::ptr::addr_of!(here) as usize;
    // SAFETY: per the contract.
    match unsafe { &(*cur).stack } {
        Some(st) => sp.saturating_sub(st.bottom() as usize) >= POLL_IN_PLACE_HEADROOM,
        None => true,
    }
}

/// Makes a blocked thread of vcpu `v` runnable with `result`.
///
/// # Safety
/// `v` is the calling OS thread's vcpu and `th` one of its live threads.
pub(super) unsafe fn wake_local(v: *mut Vcpu, th: *mut ThreadCtl, result: i32) {
    // SAFETY: per the contract.
    unsafe {
        if make_runnable(v, th, result) {
            (*v).run_queue.push(th);
        }
    }
}

/// [`wake_local`] with 0 for a thread whose I/O completed: it goes to the
/// front of the run queue within the queue's budget
/// ([`super::run_queue::RunQueue::push_io`]).
///
/// # Safety
/// As [`wake_local`].
pub(super) unsafe fn wake_io(v: *mut Vcpu, th: *mut ThreadCtl) {
    // SAFETY: per the contract.
    unsafe {
        if make_runnable(v, th, 0) {
            (*v).run_queue.push_io(th, (*v).current);
        }
    }
}

/// Marks blocked thread `th` runnable with `result` (false if it was not
/// blocked); the caller links it into the run queue.
///
/// # Safety
/// As [`wake_local`].
#[inline(always)]
pub(super) unsafe fn make_runnable(v: *mut Vcpu, th: *mut ThreadCtl, result: i32) -> bool {
    // SAFETY: per the contract.
    unsafe {
        if (*th).state != State::Blocked {
            return false;
        }
        (*v).timers.remove(th);
        (*th).deadline = FOREVER;
        (*th).wake_result = result;
        (*th).state = State::Runnable;
        true
    }
}

/// Wakes thread `h` from its wait number `seq` with `result`, from any OS
/// thread. A wake-up for a wait that already ended is ignored.
pub(crate) fn wake(h: Handle, seq: u64, result: i32) {
    let Ok((vid, th)) = handle::resolve(h) else {
        return;
    };
    let v = current();
    // SAFETY: the TCB is dereferenced only on its own vcpu.
    unsafe {
        if !v.is_null() && (*v).id == vid {
            if !th.is_null() && (*th).wait_seq == seq {
                wake_local(v, th, result);
            }
            return;
        }
    }
    let _ = remote::post(vid, Msg::Wake { h, seq, result });
}

/// `photon_thread_interrupt`: wakes `h` from its current wait with `errno`;
/// if it is not waiting, its next blocking call fails with `errno` at once.
/// Callable from any OS thread.
pub(crate) fn interrupt(h: Handle, errno: i32) -> Result<(), Errno> {
    let (vid, th) = handle::resolve(h)?;
    if th.is_null() {
        return Err(Errno::ESRCH); // ended, waiting to be joined
    }
    let v = current();
    // SAFETY: the TCB is dereferenced only on its own vcpu.
    unsafe {
        if !v.is_null() && (*v).id == vid {
            interrupt_local(v, th, errno);
            return Ok(());
        }
    }
    remote::post(vid, Msg::Interrupt { h, errno })
}

/// # Safety
/// `v` is the calling OS thread's vcpu and `th` one of its live threads.
pub(super) unsafe fn interrupt_local(v: *mut Vcpu, th: *mut ThreadCtl, errno: i32) {
    // SAFETY: per the contract.
    unsafe {
        match (*th).state {
            State::Blocked if !(*th).uninterruptible => wake_local(v, th, errno),
            // A migrating thread is off every CPU and touched only by the vcpu
            // its handle names: it finds the interrupt pending where it lands.
            State::Blocked | State::Runnable | State::Migrating => (*th).pending_interrupt = errno,
            State::Dead => {}
        }
    }
}

/// `photon_thread_join`.
pub(crate) fn join(h: Handle) -> Result<*mut c_void, Errno> {
    let v = on_vcpu()?;
    let (me, seq) = next_wait_seq()?;
    if me == h {
        return Err(Errno::EINVAL); // joining oneself
    }
    // SAFETY: live vcpu; no reference is held across the block.
    match handle::join_start(h, me, seq, unsafe { &mut (*v).slots })? {
        handle::JoinStep::Done(rv) => Ok(rv),
        handle::JoinStep::Wait(jw) => {
            let r = block_inline(FOREVER, Wait::Join);
            // SAFETY: re-fetched after the switch.
            let slots = unsafe { &mut (*current()).slots };
            match handle::join_finish(jw, slots) {
                Some(rv) => Ok(rv), // ended (even if an interrupt raced with the end)
                // Interrupted before the end: the join is withdrawn.
                None => Err(r.err().unwrap_or(Errno(libc::EINTR))),
            }
        }
    }
}

/// `photon_thread_usleep`: Ok after sleeping `us` microseconds (`FOREVER`:
/// until interrupted); 0 just yields.
pub(crate) fn sleep_us(us: u64) -> Result<(), Errno> {
    on_vcpu()?;
    if us == 0 {
        yield_now();
        return Ok(());
    }
    let deadline = if us == FOREVER {
        FOREVER
    } else {
        now_us().saturating_add(us)
    };
    // SAFETY: the live vcpu checked above; no switch before this.
    unsafe { (*current()).stats.sleeps += 1 };
    match block_on(deadline, Wait::Sleep) {
        Err(Errno::ETIMEDOUT) if deadline != FOREVER => Ok(()),
        Ok(()) => Ok(()), // a plain wake-up ends a sleep early without error
        Err(e) => Err(e),
    }
}

/// The calling thread's value for `key`.
pub(crate) fn key_get(key: u32) -> Result<*mut c_void, Errno> {
    let v = on_vcpu()?;
    // SAFETY: live vcpu and current TCB.
    unsafe { (*(*v).current).keys.get(key) }
}

/// Sets the calling thread's value for `key`.
pub(crate) fn key_set(key: u32, value: *const c_void) -> Result<(), Errno> {
    let v = on_vcpu()?;
    // SAFETY: live vcpu and current TCB.
    unsafe { (*(*v).current).keys.set(key, value) }
}

/// Runs `th`'s key destructors (pthread order, up to 4 rounds).
///
/// # Safety
/// `th` is the calling photon thread.
pub(super) unsafe fn run_key_destructors(th: *mut ThreadCtl) {
    for _ in 0..keys::destructor_rounds() {
        // SAFETY: `th` is the live calling thread.
        let values = unsafe {
            if (*th).keys.is_empty() {
                return;
            }
            (*th).keys.take_for_destructors()
        };
        keys::run_destructors(values);
    }
}
