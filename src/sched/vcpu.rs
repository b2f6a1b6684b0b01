//! The vcpu: one OS thread's scheduler.
//!
//! Threads switch directly to each other (no trip through a scheduler
//! context): a thread that yields or blocks picks the next runnable thread
//! and switches to it. When nothing is runnable it switches to the vcpu's
//! idle thread, which sleeps in the event engine until the next timer, an
//! I/O event or a message from another OS thread.
//!
//! All state here is owned by the vcpu's OS thread and reached through
//! [`current`], an opaque TLS read (inline assembly) that the compiler
//! cannot hoist across a switch, so no caller keeps a vcpu pointer from
//! before a switch (a thread may resume on another vcpu after a migration).

use core::ffi::c_void;
use core::ptr;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use super::handle::{self, Handle, SlotCache};
use super::idle::{idle_main, poll};
use super::keys;
use super::remote::{self, Msg, Remote};
use super::run_queue::RunQueue;
use super::thread::{Entry, State, ThreadCtl, Wait};
use super::timer::TimerHeap;
use crate::arch;
use crate::engine::{self, Completion, Engine};
use crate::errno::Errno;
use crate::stack::{self, AltStack, DEFAULT_STACK_SIZE, Stack, StackPool, sanitize};
use crate::time::now_us;

/// Deadline meaning "no timeout".
pub(crate) const FOREVER: u64 = u64::MAX;
/// Scheduling decisions between two non-blocking polls of timers and events
/// while threads keep the vcpu busy.
const POLL_EVERY: u32 = 64;
/// Stack of the idle thread (address space; committed lazily).
const IDLE_STACK: usize = 256 << 10;
/// Stacks kept per size class for reuse.
const POOL_CAP: usize = 1024;

pub(crate) struct Vcpu {
    pub(crate) id: u32,
    /// The thread on the CPU.
    pub(crate) current: *mut ThreadCtl,
    pub(super) main: *mut ThreadCtl,
    pub(super) idle: *mut ThreadCtl,
    pub(super) run_queue: RunQueue,
    pub(super) timers: TimerHeap,
    pub(super) engine: Box<dyn Engine>,
    /// Scratch for completions collected from the engine.
    pub(super) completions: Vec<Completion>,
    pool: StackPool,
    pub(crate) slots: SlotCache,
    pub(super) remote: Arc<Remote>,
    pub(super) inbox: Vec<Msg>,
    /// Head of the list of this vcpu's threads (not main, not idle).
    pub(super) all: *mut ThreadCtl,
    pub(super) alive: usize,
    io_budget: u32,
    /// Counters for `photon_stats_get` (switches live in `remote`, where the
    /// stall monitor reads them).
    pub(super) stats: super::stats::Counters,
    stack_offset: usize,
    fini_waiting: bool,
    /// The OS thread's own stack (main's), for AddressSanitizer.
    main_stack: (*const u8, usize),
    /// Set while the engine waits: the runtime's own libc calls there
    /// (epoll_wait in mio) must pass through the preload shim.
    pub(super) in_runtime: bool,
    /// Thread-local isolation: live blocks and whose copy is in them.
    pub(super) tls: super::tls::VcpuTls,
    _alt_stack: AltStack,
}

/// The calling OS thread's vcpu, or null. Reads the TLS slot afresh at
/// every call (never cached across a switch: see the module doc).
#[inline(always)]
pub(crate) fn current() -> *mut Vcpu {
    arch::tls_get().cast()
}

fn set_current(v: *mut Vcpu) {
    arch::tls_set(v.cast());
}

/// True when the caller is a photon thread on a vcpu (main or spawned),
/// outside the scheduler's idle thread and the engine's wait: where a
/// blocking libc call should become a photon wait (`photon_in_thread`).
#[inline]
pub(crate) fn in_thread() -> bool {
    let v = current();
    // SAFETY: this OS thread's live vcpu.
    !v.is_null() && unsafe { (*v).current != (*v).idle && !(*v).in_runtime }
}

/// `photon_thread_number`: the calling photon thread's number (its handle's
/// slot, 1-based) and whether it is the vcpu's main thread; `(0, false)`
/// where [`in_thread`] is false.
#[inline]
pub(crate) fn thread_number() -> (u32, bool) {
    if !in_thread() {
        return (0, false);
    }
    let v = current();
    // SAFETY: `in_thread` found this OS thread's live vcpu; its current TCB is live.
    unsafe {
        let cur = (*v).current;
        ((*cur).handle.id() as u32, cur == (*v).main)
    }
}

pub(super) fn on_vcpu() -> Result<*mut Vcpu, Errno> {
    let v = current();
    if v.is_null() { Err(Errno::EPERM) } else { Ok(v) }
}

/// A child forked by a vcpu's OS thread inherits a copy of that vcpu (its
/// ring or epoll instance shared with the parent, threads whose stacks are
/// copies) but none of the other OS threads. The child handler detaches the
/// forking thread from that copy, so in the child it is a plain OS thread:
/// photon calls fail with EPERM (or `photon_init` starts afresh), the
/// preload shim passes everything through, and the offload pool starts new
/// helper threads. The copied vcpu is left alone (leaked), never torn down:
/// its engine belongs to the parent. A child forked from a photon thread
/// other than main must exec or `_exit` before that thread returns.
fn register_fork_handler() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    extern "C" fn child() {
        set_current(ptr::null_mut());
        crate::engine::after_fork_in_child();
    }
    ONCE.call_once(|| {
        // SAFETY: registers a handler that only writes this crate's state.
        let r = unsafe { libc::pthread_atfork(None, None, Some(child)) };
        if r != 0 {
            log::warn!("photon: pthread_atfork failed ({r}); a forked child keeps a copy of its vcpu");
        }
    });
}

static NEXT_ID: AtomicU32 = AtomicU32::new(1);

/// Makes the calling OS thread a vcpu (`photon_init`).
pub(crate) fn init(engine_kind: u64) -> Result<(), Errno> {
    if !current().is_null() {
        return Err(Errno::EALREADY);
    }
    crate::init_logging();
    stack::install_overflow_handler(guard_lookup);
    register_fork_handler();
    sanitize::detect();
    super::stats::start_monitor();
    super::tls::on_init();
    let engine = engine::create(engine_kind)?;
    log::debug!("photon: vcpu starting on the {} engine", engine.name());
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let remote = Arc::new(Remote::new(engine.notifier()));
    let mut slots = SlotCache::new();
    let main = Box::into_raw(Box::new(ThreadCtl::new(Handle::NULL, None, ptr::null_mut())));
    let h = handle::alloc(&mut slots, main, id).inspect_err(|_| {
        // SAFETY: `main` was just leaked from a Box and is not shared.
        drop(unsafe { Box::from_raw(main) });
    })?;
    // SAFETY: `main` is a live, exclusively owned TCB.
    unsafe {
        (*main).handle = h;
        (*main).state = State::Runnable;
    }
    let idle_stack = match Stack::new(IDLE_STACK) {
        Ok(s) => s,
        Err(e) => {
            handle::release(h, &mut slots);
            // SAFETY: as above.
            drop(unsafe { Box::from_raw(main) });
            return Err(e);
        }
    };
    let idle = place_tcb(idle_stack, 0, Handle::NULL, None, ptr::null_mut(), idle_main, 0);
    let vcpu = Box::new(Vcpu {
        id,
        current: main,
        main,
        idle,
        run_queue: RunQueue::new(),
        timers: TimerHeap::new(),
        engine,
        completions: Vec::new(),
        pool: StackPool::new(POOL_CAP),
        slots,
        remote: remote.clone(),
        inbox: Vec::new(),
        all: ptr::null_mut(),
        alive: 0,
        stats: Default::default(),
        io_budget: IO_BUDGET,
        stack_offset: 0,
        fini_waiting: false,
        main_stack: if sanitize::asan() {
            os_thread_stack()
        } else {
            (ptr::null(), 0)
        },
        in_runtime: false,
        tls: super::tls::VcpuTls::new(),
        _alt_stack: AltStack::install(),
    });
    let mut vcpu = vcpu;
    vcpu.run_queue.push(main);
    vcpu.remote.running.store(main as u64, Ordering::Relaxed);
    remote::register(id, remote);
    set_current(Box::into_raw(vcpu));
    Ok(())
}

/// Ends the calling vcpu (`photon_fini`): waits for its other threads,
/// interrupting those blocked without a timeout with ECANCELED (again every
/// 10 ms, for threads that block again), then frees everything.
pub(crate) fn fini() -> Result<(), Errno> {
    let v = on_vcpu()?;
    // SAFETY: `v` is this OS thread's live vcpu; no reference outlives a switch.
    unsafe {
        if (*v).current != (*v).main {
            return Err(Errno::EPERM);
        }
        loop {
            let v = current();
            if (*v).alive == 0 {
                break;
            }
            let mut th = (*v).all;
            while !th.is_null() {
                if (*th).state == State::Blocked && (*th).deadline == FOREVER {
                    interrupt_local(v, th, libc::ECANCELED);
                }
                th = (*th).all_next;
            }
            (*v).fini_waiting = true;
            (*(*v).main).pending_interrupt = 0;
            let _ = block(now_us().saturating_add(10_000));
            (*current()).fini_waiting = false;
        }
        let v = current();
        let main = (*v).main;
        super::tls::on_fini(v);
        run_key_destructors(main);
        let v = current();
        handle::release((*main).handle, &mut (*v).slots);
        set_current(ptr::null_mut());
        Arc::as_ref(&(*v).remote).running.store(0, Ordering::Relaxed); // the stall monitor must not read it any more
        remote::unregister((*v).id);
        let vcpu = Box::from_raw(v);
        // The idle thread is suspended in its loop and owns nothing but its stack.
        let idle = ptr::read(vcpu.idle);
        drop(Box::from_raw(vcpu.main));
        drop(vcpu);
        drop(idle);
    }
    Ok(())
}

/// Puts a TCB at the top of `stack` (below it, a rotating offset so stack
/// tops do not alias in the L1 cache) and prepares the stack to run `start`.
fn place_tcb(
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
    let stack = v.pool.get(class)?;
    v.stack_offset = (v.stack_offset + 720) & 4095; // 45 * 16: visits all 256 16-byte offsets
    let tcb = place_tcb(
        stack,
        class,
        Handle::NULL,
        Some(entry),
        arg,
        thread_main,
        v.stack_offset,
    );
    let h = match handle::alloc(&mut v.slots, tcb, v.id) {
        Ok(h) => h,
        Err(e) => {
            // SAFETY: the TCB was never published; take its stack back.
            let st = unsafe { ptr::read(tcb) }.stack.take();
            if let Some(st) = st {
                v.pool.put(class, st);
            }
            return Err(e);
        }
    };
    // SAFETY: `tcb` is live and ours.
    unsafe {
        (*tcb).handle = h;
        (*tcb).all_next = v.all;
        if !v.all.is_null() {
            (*v.all).all_prev = tcb;
        }
    }
    v.all = tcb;
    v.alive += 1;
    v.run_queue.push(tcb);
    Ok(h)
}

/// The handle of the calling photon thread.
pub(crate) fn self_handle() -> Option<Handle> {
    let v = current();
    // SAFETY: a non-null vcpu is live; its current TCB is live.
    (!v.is_null()).then(|| unsafe { (*(*v).current).handle })
}

/// The calling OS thread's vcpu id (0 off a vcpu; ids start at 1).
pub(crate) fn current_id() -> u32 {
    let v = current();
    // SAFETY: a non-null vcpu is live.
    if v.is_null() { 0 } else { unsafe { (*v).id } }
}

/// The engine's name, if the caller is on a vcpu.
pub(crate) fn engine_name() -> Option<&'static str> {
    let v = current();
    // SAFETY: a non-null vcpu is live.
    (!v.is_null()).then(|| unsafe { (*v).engine.name() })
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
        super::tls::on_switch(v, cur, next);
        (*v).current = next;
        // For the stall monitor: which thread this vcpu runs now.
        Arc::as_ref(&(*v).remote).running.store(next as u64, Ordering::Relaxed);
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
unsafe fn switch_stacks(
    v: *mut Vcpu,
    cur: *mut ThreadCtl,
    save_sp: *mut arch::StackPointer,
    next: *mut ThreadCtl,
    arg: usize,
    ending: bool,
) -> usize {
    // SAFETY: per the contract.
    unsafe {
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
        let r = arch::switch(&mut *save_sp, (*next).sp, arg);
        if sanitize::asan() {
            sanitize::finish_switch((*cur).asan_fake_stack);
        }
        r
    }
}

/// The calling OS thread's own stack, `(lowest address, size)`, for
/// AddressSanitizer (only asked when it is present).
fn os_thread_stack() -> (*const u8, usize) {
    // SAFETY: pthread_getattr_np on the calling thread into a zeroed attr,
    // destroyed after use.
    unsafe {
        let mut attr: libc::pthread_attr_t = core::mem::zeroed();
        if libc::pthread_getattr_np(libc::pthread_self(), &mut attr) != 0 {
            return (ptr::null(), 0);
        }
        let mut addr: *mut c_void = ptr::null_mut();
        let mut size = 0usize;
        libc::pthread_attr_getstack(&attr, &mut addr, &mut size);
        libc::pthread_attr_destroy(&mut attr);
        (addr.cast_const().cast(), size)
    }
}

/// Finishes what a thread that switched away for good left to do, once it
/// is off its stack: recycle a dead thread's stack, or hand a migrating
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
        // Take the stack out, drop the rest of the TCB where it lies (no
        // copy of the whole block), then recycle the stack that held it.
        let stack = (*left).stack.take();
        let class = (*left).stack_class;
        ptr::drop_in_place(left);
        if let Some(st) = stack {
            (*v).pool.put(class, st);
        }
    }
}

/// Takes in a thread that migrated here.
///
/// # Safety
/// `v` is the calling OS thread's vcpu; `th` a Migrating TCB no CPU runs.
pub(super) unsafe fn adopt(v: *mut Vcpu, th: *mut ThreadCtl) {
    // SAFETY: per the contract.
    unsafe {
        handle::set_vcpu((*th).handle, (*v).id);
        (*th).all_prev = ptr::null_mut();
        (*th).all_next = (*v).all;
        if !(*v).all.is_null() {
            (*(*v).all).all_prev = th;
        }
        (*v).all = th;
        (*v).alive += 1;
        (*th).state = State::Runnable;
        (*v).run_queue.push(th);
    }
}

/// Unlinks `th` from its vcpu's list of threads.
///
/// # Safety
/// `v` is the calling OS thread's vcpu and `th` one of its threads.
unsafe fn unlink_all(v: *mut Vcpu, th: *mut ThreadCtl) {
    // SAFETY: per the contract.
    unsafe {
        if (*th).all_prev.is_null() {
            (*v).all = (*th).all_next;
        } else {
            (*(*th).all_prev).all_next = (*th).all_next;
        }
        if !(*th).all_next.is_null() {
            (*(*th).all_next).all_prev = (*th).all_prev;
        }
        (*v).alive -= 1;
    }
}

/// `photon_thread_migrate`: moves `h` (the caller, or a runnable thread of
/// the caller's vcpu) to vcpu `to`. The caller returns running on `to`.
pub(crate) fn migrate(h: Handle, to: u32) -> Result<(), Errno> {
    let v = on_vcpu()?;
    let (vid, th) = handle::resolve(h)?;
    // SAFETY: `v` is live; `th` is dereferenced only after checking it is ours.
    unsafe {
        if vid != (*v).id || th.is_null() || th == (*v).main {
            return Err(Errno::EINVAL); // another vcpu's thread, ended, or a vcpu's main thread
        }
        if to == (*v).id {
            return Ok(());
        }
        if !remote::exists(to) {
            return Err(Errno::EINVAL);
        }
        let cur = (*v).current;
        if th != cur && (*th).state != State::Runnable {
            return Err(Errno(libc::EBUSY)); // blocked: its wait belongs to this vcpu
        }
        (*v).run_queue.remove(th);
        unlink_all(v, th);
        (*th).state = State::Migrating;
        (*th).migrate_to = to;
        super::tls::on_leave(v, th);
        if th != cur {
            after_switch(th); // not running: hand it over now
            return Ok(());
        }
        let next = next_to_run(v);
        super::tls::on_switch(v, cur, next);
        (*v).current = next;
        let deferred = switch_stacks(v, cur, &raw mut (*cur).sp, next, cur as usize, false);
        // Resumed on the new vcpu.
        if deferred != 0 {
            after_switch(deferred as *mut ThreadCtl);
        }
    }
    Ok(())
}

/// Picks the thread to run after the current one left the run queue: the
/// queue's head, or the idle thread.
/// Every [`POLL_EVERY`] decisions it first polls timers and events without
/// sleeping, so busy threads cannot starve sleepers.
///
/// # Safety
/// `v` is the calling OS thread's vcpu.
#[inline]
unsafe fn next_to_run(v: *mut Vcpu) -> *mut ThreadCtl {
    // SAFETY: per the contract.
    unsafe {
        tick(v);
        (*v).run_queue.head().unwrap_or((*v).idle)
    }
}

/// Counts a scheduling decision; every [`POLL_EVERY`]th polls out of line.
///
/// # Safety
/// `v` is the calling OS thread's vcpu.
#[inline(always)]
unsafe fn tick(v: *mut Vcpu) {
    #[cold]
    #[inline(never)]
    unsafe fn poll_now(v: *mut Vcpu) {
        // SAFETY: per tick's contract.
        unsafe { poll(v, false) }
    }
    // SAFETY: per the contract.
    unsafe {
        // A plain load and store (one writer): the stall monitor reads it.
        let sw = &Arc::as_ref(&(*v).remote).switches;
        let n = sw.load(Ordering::Relaxed).wrapping_add(1);
        sw.store(n, Ordering::Relaxed);
        if n.is_multiple_of(POLL_EVERY as u64) {
            poll_now(v);
            if n.is_multiple_of(64 * POLL_EVERY as u64) {
                super::tls::watch_loads(); // a busy vcpu never sleeps: look for dlopen'ed modules here
            }
        }
    }
}

/// I/O calls that may complete without waiting before the vcpu polls for
/// events and rotates to the next thread (see [`io_budget`]).
const IO_BUDGET: u32 = 64;

/// Called by I/O paths that completed without waiting. Every
/// [`IO_BUDGET`]th such call polls timers and events and yields, so a thread
/// whose I/O never blocks (a sender on a fast socket) cannot starve the
/// other threads of its vcpu, whose wake-ups come from those events.
pub(crate) fn io_budget() {
    let v = current();
    if v.is_null() {
        return;
    }
    // SAFETY: this OS thread's live vcpu; the poll runs before the switch.
    unsafe {
        (*v).io_budget -= 1;
        if (*v).io_budget == 0 {
            (*v).io_budget = IO_BUDGET;
            poll(v, false);
            yield_now();
        }
    }
}

/// `photon_thread_yield`: lets every other runnable thread run once.
#[inline]
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
        if (*cur).pending_interrupt != 0 && !(*cur).uninterruptible {
            return Err(Errno(core::mem::take(&mut (*cur).pending_interrupt)));
        }
    }
    Ok(())
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
    let v = on_vcpu()?;
    // SAFETY: live vcpu; its fields are re-read after the switch.
    unsafe {
        let cur = (*v).current;
        if cur == (*v).idle {
            return Err(Errno::EPERM);
        }
        if (*cur).pending_interrupt != 0 && !(*cur).uninterruptible {
            return Err(Errno(core::mem::take(&mut (*cur).pending_interrupt)));
        }
        (*cur).state = State::Blocked;
        (*cur).wait = wait;
        (*cur).wait_since = now_us();
        (*v).run_queue.remove(cur);
        (*cur).wait_seq += 1;
        (*cur).wake_result = 0;
        (*cur).deadline = deadline;
        if deadline != FOREVER {
            (*v).timers.insert(cur);
        }
        let next = next_to_run(v);
        switch_to(v, cur, next);
        match core::mem::take(&mut (*cur).wake_result) {
            0 => Ok(()),
            e => Err(Errno(e)),
        }
    }
}

/// Makes a blocked thread of vcpu `v` runnable with `result`.
///
/// # Safety
/// `v` is the calling OS thread's vcpu and `th` one of its live threads.
pub(super) unsafe fn wake_local(v: *mut Vcpu, th: *mut ThreadCtl, result: i32) {
    // SAFETY: per the contract.
    unsafe {
        if (*th).state != State::Blocked {
            return;
        }
        (*v).timers.remove(th);
        (*th).deadline = FOREVER;
        (*th).wake_result = result;
        (*th).state = State::Runnable;
        (*v).run_queue.push(th);
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
        handle::JoinStep::Wait => {
            let r = block_on(FOREVER, Wait::Join);
            // SAFETY: re-fetched after the switch.
            let slots = unsafe { &mut (*current()).slots };
            match handle::join_finish(h, slots) {
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
unsafe fn run_key_destructors(th: *mut ThreadCtl) {
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

/// Ends the calling thread: destructors, wake the joiner, switch away for good.
///
/// # Safety
/// `th` is the calling photon thread (not main, not idle).
unsafe fn thread_exit(th: *mut ThreadCtl, rv: *mut c_void) -> ! {
    // SAFETY: per the contract; the vcpu is re-fetched after user code ran.
    unsafe {
        if catch_unwind(AssertUnwindSafe(|| super::tls::run_dtors(th))).is_err() {
            log::error!(
                "photon: a thread_local destructor panicked in thread {}",
                (*th).handle.id()
            );
        }
        if catch_unwind(AssertUnwindSafe(|| run_key_destructors(th))).is_err() {
            log::error!("photon: a key destructor panicked in thread {}", (*th).handle.id());
        }
        let v = current();
        unlink_all(v, th);
        if let Some(j) = handle::end((*th).handle, rv, &mut (*v).slots) {
            wake(j.handle, j.seq, 0);
        }
        if (*v).fini_waiting && (*v).alive == 0 {
            wake_local(v, (*v).main, 0);
        }
        (*th).state = State::Dead;
        (*v).run_queue.remove(th);
        super::tls::on_end(v, th);
        let next = next_to_run(v);
        super::tls::on_switch(v, th, next);
        (*v).current = next;
        let mut unused: arch::StackPointer = ptr::null_mut();
        switch_stacks(v, th, &raw mut unused, next, th as usize, true);
        unreachable!("a dead photon thread was resumed");
    }
}

/// For the overflow handler (signal context: reads only).
fn guard_lookup(addr: usize) -> Option<(u64, usize)> {
    let v = current();
    if v.is_null() {
        return None;
    }
    // SAFETY: the vcpu and its current TCB are live while it runs.
    unsafe {
        let th = (*v).current;
        let st = (*th).stack.as_ref()?;
        let (lo, hi) = st.guard();
        // A frame larger than a page can skip past the guard: count faults just below it too.
        (addr >= lo.saturating_sub(64 << 10) && addr < hi).then(|| ((*th).handle.id(), st.size()))
    }
}
