//! Creating threads and switching between them: a thread that yields or
//! blocks picks the next runnable thread and switches straight to it (the
//! idle thread when nothing is runnable); a thread that ends puts its own
//! TCB, still initialised, with its stack in the vcpu's cache for the next
//! creation (`TcbCache`), and hands the CPU straight to a joiner of its
//! vcpu when nothing else is runnable; when the cache is full it leaves its
//! stack to be recycled by the next thread (`after_switch`).

use core::ffi::c_void;
use core::ptr;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::handle::{self, Handle};
use super::idle::poll;
use super::remote::{self, Msg};
use super::thread::{Entry, State, ThreadCtl};
use super::vcpu::*;
use crate::arch;
use crate::errno::Errno;
use crate::stack::{DEFAULT_STACK_SIZE, Stack, sanitize};

/// Scheduling decisions after the last poll of timers and events (idle or
/// not) at which a vcpu that threads keep busy polls again without sleeping.
pub(super) const POLL_EVERY: u32 = 64;

/// Puts a TCB at the top of `stack` (below it, a rotating offset so stack
/// tops do not alias in the L1 cache) and prepares the stack to run `start`.
pub(super) fn place_tcb(
    stack: Stack,
    class: usize,
    h: Handle,
    entry: Option<Entry>,
    arg: *mut c_void,
    start: arch::EntryFn,
    offset: usize,
) -> *mut ThreadCtl {
    let tcb = ((stack.top() as usize - core::mem::size_of::<ThreadCtl>()) & !63) as *mut ThreadCtl;
    let sp_top = ((tcb as usize - offset) & !15) as *mut u8;
    // The initial frame sits at most 32 bytes below sp_top.
    sanitize::make_undefined((sp_top as usize - 64) as *const u8, stack.top());
    let mut t = ThreadCtl::new(h, entry, arg);
    t.stack = Some(stack);
    t.stack_class = class;
    // SAFETY: `tcb` and everything below it down to the guard page is our fresh stack.
    unsafe {
        tcb.write(t);
        (*tcb).sp = arch::init_stack(sp_top, start, tcb.cast());
    }
    tcb
}

/// `photon_thread_create`: a new thread, runnable, that runs when its
/// creator yields or blocks.
pub(crate) fn spawn(entry: Entry, arg: *mut c_void, stack_size: usize) -> Result<Handle, Errno> {
    let v = on_vcpu()?;
    let class = if stack_size == 0 {
        DEFAULT_STACK_SIZE
    } else {
        stack_size
    };
    // SAFETY: `v` is this OS thread's live vcpu; no switch happens here.
    let v = unsafe { &mut *v };
    v.stack_offset = (v.stack_offset + 720) & 4095; // 45 * 16: visits all 256 16-byte offsets
    let tcb = match v.tcbs.pop(class) {
        Some(tcb) => {
            // A dead thread's TCB, clean but for the per-thread fields set below.
            v.pool.note_use();
            let sp_top = ((tcb as usize - v.stack_offset) & !15) as *mut u8;
            sanitize::make_undefined((sp_top as usize - 64) as *const u8, tcb.cast::<u8>());
            // SAFETY: the cache owns `tcb` and its stack, which nothing runs on.
            unsafe {
                (*tcb).state = State::Runnable;
                (*tcb).entry = Some(entry);
                (*tcb).arg = arg;
                (*tcb).sp = arch::init_stack(sp_top, thread_main, tcb.cast());
            }
            tcb
        }
        None => {
            let stack = v.pool.get(class)?;
            place_tcb(
                stack,
                class,
                Handle::NULL,
                Some(entry),
                arg,
                thread_main,
                v.stack_offset,
            )
        }
    };
    let h = match handle::alloc(&mut v.slots, tcb, v.id) {
        Ok(h) => h,
        Err(e) => {
            // SAFETY: the TCB was never published: a clean one for later, or
            // its stack back to the pool.
            unsafe { discard(v, tcb) };
            return Err(e);
        }
    };
    // SAFETY: `tcb` is live and ours.
    unsafe {
        (*tcb).handle = h;
        v.threads.push(tcb);
    }
    v.run_queue.push(tcb);
    Ok(h)
}

/// Switches from `cur` (rotated past, blocked or dead) to `next`.
///
/// # Safety
/// `v` is the calling OS thread's vcpu; `cur` is its running thread.
#[inline(always)]
pub(super) unsafe fn switch_to(v: *mut Vcpu, cur: *mut ThreadCtl, next: *mut ThreadCtl) {
    // SAFETY: per the contract, all three are live and owned by this vcpu.
    unsafe {
        if cur == next {
            return; // woken while choosing (its timer fired in the poll)
        }
        super::tls::on_switch(v, next);
        (*v).current = next;
        let deferred = switch_stacks(v, cur, &raw mut (*cur).sp, next, 0, false);
        if deferred != 0 {
            after_switch(deferred as *mut ThreadCtl);
        }
    }
}

/// `arch::switch` from `cur` (its stack pointer saved in `*save_sp`) to
/// `next`, announced to AddressSanitizer when the process has it. `ending`:
/// `cur` never runs again.
///
/// # Safety
/// As `arch::switch`; `v` is the calling OS thread's vcpu, `cur` its
/// running thread and `next` one of its threads.
#[inline(always)]
pub(super) unsafe fn switch_stacks(
    v: *mut Vcpu,
    cur: *mut ThreadCtl,
    save_sp: *mut arch::StackPointer,
    next: *mut ThreadCtl,
    arg: usize,
    ending: bool,
) -> usize {
    // SAFETY: per the contract.
    unsafe {
        // For the stall monitor: which thread this vcpu runs now (every
        // switch passes here: a yield or block, a thread's end, a
        // migration; a TCB left behind would be read after it was freed).
        Arc::as_ref(&(*v).remote).running.store(next as u64, Ordering::Relaxed);
        if sanitize::asan() {
            let (bottom, size) = match &(*next).stack {
                Some(st) => (st.bottom().cast_const(), st.size()),
                None => (*v).main_stack, // only main has no stack of ours
            };
            let save = if ending {
                ptr::null_mut()
            } else {
                &raw mut (*cur).asan_fake_stack
            };
            sanitize::start_switch(save, bottom, size);
        }
        if ending {
            arch::switch_final((*next).sp, arg);
        }
        let r = arch::switch(&mut *save_sp, (*next).sp, arg);
        if sanitize::asan() {
            sanitize::finish_switch((*cur).asan_fake_stack);
        }
        r
    }
}

/// Finishes what a thread that switched away for good left to do, once it
/// is off its stack: recycle a dead thread's TCB and stack (when the cache
/// was full at its end), or hand a migrating
/// thread to its new vcpu. Runs on the next thread's stack.
///
/// # Safety
/// `left` is a TCB in state Dead or Migrating that no CPU runs any more.
#[cold]
#[inline(never)]
pub(super) unsafe fn after_switch(left: *mut ThreadCtl) {
    let v = current();
    // SAFETY: per the contract; a dead TCB is read out before its stack
    // (which holds it) is reused; a migrating one is handed over whole.
    unsafe {
        if (*left).state == State::Migrating {
            let to = (*left).migrate_to;
            handle::set_vcpu((*left).handle, to);
            if remote::post(to, Msg::Adopt { tcb: left as usize }).is_err() {
                adopt(v, left); // the target ended meanwhile: stay here
            }
            return;
        }
        (*left).recycle();
        discard(v, left);
    }
}

/// Keeps a clean TCB (a dead thread's after [`ThreadCtl::recycle`], or a
/// fresh one never published) for the next thread, or, when the cache is
/// full, drops it and returns its stack to the pool.
///
/// # Safety
/// `v` is the calling OS thread's vcpu; `t` is a TCB on its own stack,
/// which no CPU runs on, referred to by nobody.
#[inline(always)]
unsafe fn discard(v: *mut Vcpu, t: *mut ThreadCtl) {
    // SAFETY: per the contract.
    unsafe {
        if (*v).tcbs.has_room() {
            (*v).pool.note_use();
            (*v).tcbs.push(t);
            return;
        }
        // Take the stack out, drop the rest of the TCB where it lies (no
        // copy of the whole block), then recycle the stack that held it.
        let stack = (*t).stack.take();
        let class = (*t).stack_class;
        ptr::drop_in_place(t);
        if let Some(st) = stack {
            (*v).pool.put(class, st);
        }
    }
}

/// Picks the thread to run after the current one left the run queue: the
/// queue's head, or the idle thread.
/// [`POLL_EVERY`] decisions after the last poll it first polls timers and
/// events without sleeping, so busy threads cannot starve sleepers.
///
/// # Safety
/// `v` is the calling OS thread's vcpu.
#[inline]
pub(super) unsafe fn next_to_run(v: *mut Vcpu) -> *mut ThreadCtl {
    // SAFETY: per the contract.
    unsafe {
        tick(v);
        (*v).run_queue.head().unwrap_or((*v).idle)
    }
}

/// Counts a scheduling decision; [`POLL_EVERY`] decisions after the last
/// poll (the idle thread's included: a vcpu whose run queue drains often
/// polls only there, once per turn, as State Threads does) it polls out of
/// line.
///
/// # Safety
/// `v` is the calling OS thread's vcpu.
#[inline(always)]
pub(super) unsafe fn tick(v: *mut Vcpu) {
    #[cold]
    #[inline(never)]
    unsafe fn poll_now(v: *mut Vcpu, n: u64) {
        // SAFETY: per tick's contract.
        unsafe {
            // I/O-completed threads may again jump the run queue (a bounded
            // number per POLL_EVERY decisions, see RunQueue::push_io).
            (*v).run_queue.refill_front();
            if n / LOADS_EVERY != (*v).polled_at / LOADS_EVERY {
                super::tls::watch_loads(); // a busy vcpu never sleeps: look for dlopen'ed modules here
            }
            poll(v, false)
        }
    }
    /// Scheduling decisions between two looks for dlopen'ed modules on a
    /// vcpu that never sleeps.
    const LOADS_EVERY: u64 = 64 * POLL_EVERY as u64;
    // SAFETY: per the contract.
    unsafe {
        // A plain load and store (one writer): the stall monitor reads it.
        let sw = &Arc::as_ref(&(*v).remote).switches;
        let n = sw.load(Ordering::Relaxed).wrapping_add(1);
        sw.store(n, Ordering::Relaxed);
        if n.wrapping_sub((*v).polled_at) >= POLL_EVERY as u64 {
            poll_now(v, n);
        }
    }
}

/// I/O calls that may complete without waiting after the last poll of
/// timers and events before the vcpu polls again, and calls one thread may
/// make in a row before it yields (see [`io_budget`]).
pub(super) const IO_BUDGET: u32 = 64;

/// Called by I/O paths that completed without waiting. [`IO_BUDGET`] such
/// calls after the last poll, it polls timers and events; when the calling
/// thread made [`IO_BUDGET`] of them in a row (no scheduling decision in
/// between) it also yields, so a thread whose I/O never blocks (a sender
/// on a fast socket) cannot starve the other threads of its vcpu, whose
/// wake-ups come from those events. Threads that block between their calls
/// (a request or two, then a wait) cost nothing more here: their vcpu
/// polls when its run queue drains or every [`POLL_EVERY`] decisions.
#[inline]
pub(crate) fn io_budget() {
    let v = current();
    if v.is_null() {
        return;
    }
    // SAFETY: this OS thread's live vcpu.
    unsafe { io_budget_on(v) }
}

impl Running {
    /// [`io_budget`] on the vcpu already in hand, in two steps for a fast
    /// path that must not call out: this asks first, before the fast path
    /// does anything, and returns the [`BudgetCount`] to make once the call
    /// completed, or None if counting it would use the budget up (the
    /// caller then takes its general path, whose [`io_budget`] polls and
    /// maybe yields).
    #[inline(always)]
    pub(crate) fn io_budget_left(self) -> Option<BudgetCount> {
        // SAFETY: `running` gave out this OS thread's live vcpu, and the
        // caller has not switched since (a Running is not kept across one).
        let c = unsafe { BudgetCount::next(self.0) };
        (!c.spends()).then_some(c)
    }
}

/// One call to count against the I/O budget: the rule [`io_budget`] and
/// the fast paths' [`Running::io_budget_left`] share.
#[must_use]
pub(crate) struct BudgetCount {
    v: *mut Vcpu,
    /// The vcpu's scheduling decisions so far (a new run after any).
    n: u64,
    /// The calling thread's run of calls, this one included.
    run: u32,
}

impl BudgetCount {
    /// The count the next call on `v` makes.
    ///
    /// # Safety
    /// `v` is the calling OS thread's live vcpu; no switch until [`BudgetCount::count`].
    #[inline(always)]
    unsafe fn next(v: *mut Vcpu) -> BudgetCount {
        // SAFETY: per the contract.
        unsafe {
            let n = Arc::as_ref(&(*v).remote).switches.load(Ordering::Relaxed);
            // A decision since this run's last call: another run.
            let run = if n != (*v).io_run_from { 1 } else { (*v).io_run + 1 };
            BudgetCount { v, n, run }
        }
    }

    /// True if counting this call uses the budget up: the vcpu polls
    /// (its budget's last call), and the thread yields after a run of
    /// [`IO_BUDGET`].
    #[inline(always)]
    fn spends(&self) -> bool {
        // SAFETY: as in `next`.
        unsafe { (*self.v).io_budget <= 1 || self.run >= IO_BUDGET }
    }

    /// Counts the call.
    #[inline(always)]
    pub(crate) fn count(self) {
        let v = self.v;
        // SAFETY: as in `next`, with no switch since.
        unsafe {
            (*v).io_run_from = self.n;
            (*v).io_run = self.run;
            (*v).io_budget -= 1;
        }
    }
}

/// [`io_budget`] on `v`.
///
/// # Safety
/// `v` is the calling OS thread's live vcpu.
#[inline(always)]
unsafe fn io_budget_on(v: *mut Vcpu) {
    // SAFETY: per the contract; the poll runs after the count.
    unsafe {
        let c = BudgetCount::next(v);
        let spent = c.spends();
        c.count();
        if spent {
            io_budget_spent(v);
        }
    }
}

/// The end of an I/O budget: polls, and yields after a run of
/// [`IO_BUDGET`] calls.
///
/// # Safety
/// As [`io_budget_on`]; the poll runs before the switch.
#[cold]
#[inline(never)]
unsafe fn io_budget_spent(v: *mut Vcpu) {
    // SAFETY: per the contract.
    unsafe {
        poll(v, false);
        if (*v).io_run >= IO_BUDGET {
            (*v).io_run = 0;
            yield_now();
        }
    }
}

/// Polls timers and events and lets every other runnable thread run once
/// (what [`io_budget`] does when the budget runs out).
pub(crate) fn io_yield() {
    let v = current();
    if v.is_null() {
        return;
    }
    // SAFETY: this OS thread's live vcpu; the poll runs before the switch.
    unsafe { poll(v, false) };
    yield_now();
}

/// `photon_thread_yield`: lets every other runnable thread run once.
#[inline(always)]
pub(crate) fn yield_now() {
    let v = current();
    if v.is_null() {
        return;
    }
    // SAFETY: `v` is this OS thread's live vcpu.
    unsafe {
        let cur = (*v).current;
        tick(v);
        let Some(next) = (*v).run_queue.rotate() else {
            return;
        };
        switch_to(v, cur, next);
    }
}

/// Entry of every photon thread, on its own stack.
unsafe extern "C" fn thread_main(deferred: usize, data: *mut u8) -> ! {
    // SAFETY: `deferred` is a dead TCB or 0; `data` is this thread's TCB.
    unsafe {
        if sanitize::asan() {
            sanitize::finish_switch(ptr::null_mut()); // a fresh stack
        }
        if deferred != 0 {
            after_switch(deferred as *mut ThreadCtl);
        }
        let th = data.cast::<ThreadCtl>();
        let entry = (*th).entry.expect("a photon thread has an entry");
        let arg = (*th).arg;
        let rv = match catch_unwind(AssertUnwindSafe(|| entry(arg))) {
            Ok(rv) => rv,
            Err(_) => {
                log::error!(
                    "photon: thread {} panicked; it ends with a NULL result",
                    (*th).handle.id()
                );
                ptr::null_mut()
            }
        };
        thread_exit(th, rv)
    }
}

/// `photon_thread_exit`: ends the calling photon thread (not a vcpu's main
/// thread, not the idle thread) with result `rv`; frames are not unwound.
pub(crate) fn exit_current(rv: *mut c_void) -> Result<core::convert::Infallible, Errno> {
    if !super::vcpu::in_thread() {
        return Err(Errno::EPERM);
    }
    let v = current();
    // SAFETY: `in_thread` found this OS thread's live vcpu; its current TCB is live.
    unsafe {
        let cur = (*v).current;
        if cur == (*v).main || cur == (*v).idle {
            return Err(Errno::EPERM);
        }
        thread_exit(cur, rv)
    }
}

/// `photon_thread_on_end`: registers `f(arg)` to run when the calling
/// photon thread ends, after its destructors.
pub(crate) fn on_end(f: unsafe extern "C" fn(*mut c_void), arg: *mut c_void) -> Result<(), Errno> {
    if !super::vcpu::in_thread() {
        return Err(Errno::EPERM);
    }
    let v = current();
    // SAFETY: `in_thread` found this OS thread's live vcpu; its current TCB is live.
    unsafe {
        let cur = (*v).current;
        if cur == (*v).main || cur == (*v).idle {
            return Err(Errno::EPERM);
        }
        (*cur).on_end = Some((f, arg));
    }
    Ok(())
}

/// Ends the calling thread: destructors, wake the joiner, switch away for good.
///
/// # Safety
/// `th` is the calling photon thread (not main, not idle).
pub(super) unsafe fn thread_exit(th: *mut ThreadCtl, rv: *mut c_void) -> ! {
    // SAFETY: per the contract; the vcpu is re-fetched after user code ran.
    unsafe {
        // Most threads have neither thread_local objects with destructors
        // nor key values: both checks are a load here, the work out of line.
        if (*th).tls.has_dtors() && catch_unwind(AssertUnwindSafe(|| super::tls::run_dtors(th))).is_err() {
            log::error!(
                "photon: a thread_local destructor panicked in thread {}",
                (*th).handle.id()
            );
        }
        if !(*th).keys.is_empty() && catch_unwind(AssertUnwindSafe(|| run_key_destructors(th))).is_err() {
            log::error!("photon: a key destructor panicked in thread {}", (*th).handle.id());
        }
        if let Some((f, arg)) = (*th).on_end.take()
            && catch_unwind(AssertUnwindSafe(|| f(arg))).is_err()
        {
            log::error!("photon: an end callback panicked in thread {}", (*th).handle.id());
        }
        let v = current();
        (*v).threads.remove(th);
        // The next thread: the joiner itself when it sleeps on this vcpu and
        // nothing else is runnable (it takes this thread's place in the run
        // queue), else whatever the run queue says once the joiner is in it.
        let mut next: *mut ThreadCtl = ptr::null_mut();
        if let Some(j) = handle::end((*th).handle, rv, &mut (*v).slots, (*v).id) {
            if j.local.is_null() {
                wake(j.handle, j.seq, 0);
            } else if (*j.local).wait_seq == j.seq {
                if (*j.local).state == State::Blocked && !(*v).fini_waiting && (*v).run_queue.replace_alone(th, j.local)
                {
                    make_runnable(v, j.local, 0);
                    next = j.local;
                } else {
                    wake_local(v, j.local, 0);
                }
            }
        }
        if (*v).fini_waiting && (*v).threads.len() == 0 {
            wake_local(v, (*v).main, 0);
        }
        (*th).state = State::Dead;
        if next.is_null() {
            (*v).run_queue.remove(th);
            next = next_to_run(v);
        } else {
            tick(v); // a scheduling decision all the same (polls every POLL_EVERY)
        }
        super::tls::on_end(v, th);
        super::tls::on_switch(v, next);
        (*v).current = next;
        // A clean TCB goes to the cache from here (nothing runs on this vcpu
        // before the switch, so nobody takes it while its stack is in use):
        // the next thread has nothing left to do for this one.
        let deferred = if (*v).tcbs.has_room() {
            (*th).recycle();
            (*v).pool.note_use();
            (*v).tcbs.push(th);
            0
        } else {
            th as usize
        };
        let mut unused: arch::StackPointer = ptr::null_mut();
        switch_stacks(v, th, &raw mut unused, next, deferred, true);
        unreachable!("a dead photon thread was resumed");
    }
}
