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
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use super::handle::{self, Handle, SlotCache};
use super::idle::idle_main;
use super::remote::{self, Msg, Remote};
use super::run_queue::RunQueue;
use super::thread::{State, ThreadCtl, ThreadList};
use super::timer::TimerHeap;
use crate::arch;
use crate::engine::{self, Completion, Engine};
use crate::errno::Errno;
use crate::stack::{self, AltStack, Stack, StackPool, sanitize};
use crate::time::now_us;

pub(crate) use super::migrate::*;
pub(crate) use super::switch::*;
pub(crate) use super::wait::*;

/// Deadline meaning "no timeout".
pub(crate) const FOREVER: u64 = u64::MAX;
/// Stack of the idle thread (address space; committed lazily).
pub(super) const IDLE_STACK: usize = 256 << 10;
/// Stacks kept per size class for reuse.
pub(super) const POOL_CAP: usize = 1024;
/// Stacks per size class a pool keeps after [`TRIM_AFTER_US`] without demand.
pub(super) const TRIM_KEEP: usize = 8;
/// How long a vcpu's stack pool must go unused before an idle vcpu trims it
/// (`PHOTON_STACK_TRIM_MS` overrides; 0 never trims when idle).
pub(super) const TRIM_AFTER_US: u64 = 1_000_000;

pub(crate) struct Vcpu {
    pub(crate) id: u32,
    /// The thread on the CPU.
    pub(crate) current: *mut ThreadCtl,
    pub(super) main: *mut ThreadCtl,
    pub(super) idle: *mut ThreadCtl,
    pub(super) run_queue: RunQueue,
    pub(super) timers: TimerHeap,
    pub(super) engine: Box<dyn Engine>,
    /// The [`OpKind`](crate::engine::OpKind)s the engine runs itself (bit
    /// `kind as u8`), asked once at creation: every I/O call asks.
    pub(super) engine_runs: u8,
    /// The engine's [`Engine::gives_recv_hints`], asked once.
    pub(super) engine_recv_hints: bool,
    /// Scratch for completions collected from the engine.
    pub(super) completions: Vec<Completion>,
    pub(super) pool: StackPool,
    /// Dead threads' TCBs, still initialised on their stacks, for the next
    /// threads (see [`super::thread::TcbCache`]).
    pub(super) tcbs: super::thread::TcbCache,
    /// Idle trimming: the pool's use count when last seen, since when it
    /// has not changed, and the count at the last trim.
    pub(super) trim_seen: u64,
    pub(super) trim_quiet_since: u64,
    pub(super) trim_done: u64,
    /// When a message from another OS thread last arrived (now_us; 0: never).
    pub(super) last_remote: u64,
    /// The I/O spin before an idle sleep (`super::idle::io_spin`): idle
    /// sleeps still to take without spinning; how many the next quiet
    /// period makes them skip (doubling, reset when a spin finds work);
    /// when the last spin that found nothing ended, and its length (us;
    /// 0: none since the last sleep).
    pub(super) io_spin_skip: u32,
    pub(super) io_spin_backoff: u32,
    pub(super) io_spin_missed: (u64, u64),
    /// Completions the last idle wait or spin brought.
    pub(super) io_last_batch: usize,
    /// The OS thread's timer slack before `photon_init` (restored at fini).
    timer_slack: libc::c_int,
    pub(crate) slots: SlotCache,
    pub(super) remote: Arc<Remote>,
    pub(super) inbox: Vec<Msg>,
    /// This vcpu's threads (not main, not idle).
    pub(super) threads: ThreadList,
    /// I/O calls left before the next poll ([`IO_BUDGET`] after each poll).
    pub(super) io_budget: u32,
    /// The scheduling decisions counter (`remote.switches`) at the last
    /// poll of timers and events: [`tick`] and [`io_budget`] count from it.
    pub(super) polled_at: u64,
    /// I/O calls that completed without waiting made in a row by the
    /// running thread, and the decisions counter when it made the first.
    pub(super) io_run: u32,
    pub(super) io_run_from: u64,
    /// Counters for `photon_stats_get` (switches live in `remote`, where the
    /// stall monitor reads them).
    pub(super) stats: super::stats::Counters,
    pub(super) stack_offset: usize,
    pub(super) fini_waiting: bool,
    /// The OS thread's own stack (main's), for AddressSanitizer.
    pub(super) main_stack: (*const u8, usize),
    /// Set while the engine waits: the runtime's own libc calls there
    /// (epoll_wait in mio) must pass through the preload shim.
    pub(super) in_runtime: bool,
    /// Blocks whose thread polled on its own stack instead of switching to
    /// the idle thread ([`super::idle::poll_in_place`]).
    pub(super) polled_in_place: u64,
    /// The thread that last blocked with nothing else runnable (compared,
    /// never dereferenced: it may have ended since).
    pub(super) last_lone_blocker: *mut ThreadCtl,
    /// Turns the idle thread has begun (it polls once per turn).
    pub(super) idle_turns: u64,
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

pub(super) fn set_current(v: *mut Vcpu) {
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
pub(super) fn register_fork_handler() {
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

pub(super) static NEXT_ID: AtomicU32 = AtomicU32::new(1);

/// Makes the calling OS thread a vcpu (`photon_init`).
pub(crate) fn init(engine_kind: u64, flags: u64) -> Result<(), Errno> {
    if !current().is_null() {
        return Err(Errno::EALREADY);
    }
    crate::init_logging();
    stack::install_overflow_handler(guard_lookup);
    register_fork_handler();
    sanitize::detect();
    super::stats::start_monitor();
    super::tls::on_init();
    let engine = engine::create(engine_kind, flags)?;
    let engine_runs = engine::OpKind::ALL
        .iter()
        .filter(|&&k| engine.runs(k))
        .fold(0u8, |m, &k| m | 1 << k as u8);
    let engine_recv_hints = engine.gives_recv_hints();
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
        engine_runs,
        engine_recv_hints,
        completions: Vec::new(),
        pool: StackPool::new(POOL_CAP),
        tcbs: super::thread::TcbCache::new(),
        trim_seen: 0,
        trim_quiet_since: 0,
        trim_done: 0,
        last_remote: 0,
        io_spin_skip: 0,
        io_spin_backoff: 0,
        io_spin_missed: (0, 0),
        io_last_batch: 0,
        timer_slack: set_timer_slack(),
        slots,
        remote: remote.clone(),
        inbox: Vec::new(),
        threads: ThreadList::new(),
        stats: Default::default(),
        io_budget: IO_BUDGET,
        polled_at: 0,
        io_run: 0,
        io_run_from: 0,
        stack_offset: 0,
        fini_waiting: false,
        main_stack: if sanitize::asan() {
            os_thread_stack()
        } else {
            (ptr::null(), 0)
        },
        in_runtime: false,
        polled_in_place: 0,
        last_lone_blocker: ptr::null_mut(),
        idle_turns: 0,
        tls: super::tls::VcpuTls::new(),
        _alt_stack: AltStack::install(),
    });
    let mut vcpu = vcpu;
    vcpu.run_queue.push(main);
    vcpu.remote.running.store(main as u64, Ordering::Relaxed);
    if let Err(e) = remote::register(id, remote) {
        handle::release(h, &mut vcpu.slots);
        // SAFETY: the idle TCB and main were never run or shared.
        unsafe {
            drop(ptr::read(vcpu.idle));
            drop(Box::from_raw(vcpu.main));
        }
        return Err(e);
    }
    set_current(Box::into_raw(vcpu));
    Ok(())
}

/// Timer slack of a vcpu's OS thread, in ns: the kernel may fire its
/// timers (the engine's sleep until the next photon timer) that much late.
/// The default, 50 us, would make a 100 us `photon_thread_usleep` last 150.
const VCPU_TIMER_SLACK_NS: libc::c_ulong = 1000;

/// Sets the calling OS thread's timer slack to [`VCPU_TIMER_SLACK_NS`];
/// returns the old one.
fn set_timer_slack() -> libc::c_int {
    // SAFETY: prctl with integer arguments, on the calling thread only.
    unsafe {
        let old = libc::prctl(libc::PR_GET_TIMERSLACK);
        libc::prctl(libc::PR_SET_TIMERSLACK, VCPU_TIMER_SLACK_NS);
        old
    }
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
            if (*v).threads.len() == 0 {
                break;
            }
            let mut th = (*v).threads.head();
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
        if vcpu.timer_slack > 0 {
            // SAFETY: restores the calling thread's own slack.
            libc::prctl(libc::PR_SET_TIMERSLACK, vcpu.timer_slack as libc::c_ulong);
        }
        // The idle thread is suspended in its loop and owns nothing but its stack.
        let idle = ptr::read(vcpu.idle);
        drop(Box::from_raw(vcpu.main));
        drop(vcpu);
        drop(idle);
    }
    Ok(())
}

/// True while `photon_fini` waits for the calling vcpu's threads to end
/// (a service loop such as a userspace stack's poller ends then).
pub(crate) fn fini_waiting() -> bool {
    let v = current();
    // SAFETY: a non-null vcpu is live.
    !v.is_null() && unsafe { (*v).fini_waiting }
}

/// The handle of the calling photon thread.
#[inline]
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

/// The calling OS thread's own stack, `(lowest address, size)`, for
/// AddressSanitizer (only asked when it is present).
pub(super) fn os_thread_stack() -> (*const u8, usize) {
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

/// For the overflow handler (signal context: reads only).
pub(super) fn guard_lookup(addr: usize) -> Option<(u64, usize)> {
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
