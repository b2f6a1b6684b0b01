//! pthread synchronisation that waits as a photon wait.
//!
//! In a photon thread (`photon_thread_number() != 0`) contention on a
//! pthread mutex, rwlock, spinlock, condition variable, once control,
//! barrier or POSIX semaphore blocks only that photon thread: the vcpu
//! keeps running its other photon threads, whoever holds the object (a
//! photon thread of the same vcpu, suspended or not, one of another vcpu, or
//! a plain pthread). Ownership, recursion counts and errorcheck results
//! belong to the photon thread. Plain pthreads keep glibc's behaviour, and a
//! release or signal from any thread wakes photon waiters at once (through
//! libphoton's `photon_futex_wake`, never by polling).
//!
//! - **Mutexes** ([`mutex`]) keep glibc's lock word protocol (0 free, 1
//!   locked, 2 locked with possible waiters) so plain and photon threads
//!   share a mutex; a photon thread's owner id is the OS tid on a vcpu's
//!   main thread (which keeps the OS thread's identity) and minus its
//!   photon thread number elsewhere (never a tid, so glibc's own checks on
//!   plain threads behave as against another thread).
//! - **Condition variables, rwlocks, barriers and once controls** are
//!   reimplemented for every thread on the object's own memory (glibc's
//!   versions re-lock and wait through internal functions no hook sees).
//! - **Semaphores**: glibc's `sem_post` followed by a photon wake; photon
//!   threads wait on the value word.
//! - **Spinlocks** yield the photon thread between tries; `sched_yield` in
//!   a photon thread is `photon_thread_yield`.
//!
//! `PHOTON_PRELOAD_PTHREAD=0` (read once) makes every one of these hooks a
//! pure pass-through to glibc. Not covered (passed to glibc, so a photon
//! thread blocks its vcpu on contention): robust, priority-inheritance and
//! priority-protect mutexes, mutexes with lock elision; thread cancellation
//! is not acted on inside the reimplemented waits.

mod barrier;
mod cond;
mod misc;
mod mutex;
mod once;
mod rwlock;

pub(crate) use mutex::{lock_any, unlock_any};

use core::cell::Cell;
use core::ffi::c_int;
use core::sync::atomic::{AtomicI32, AtomicU8, AtomicU32, Ordering::*};
use libc::{clockid_t, timespec};

use crate::{errno, photon, set_errno};

/// `PHOTON_PRELOAD_PTHREAD`: 0 not read yet, 1 on, 2 off.
static STATE: AtomicU8 = AtomicU8::new(0);

/// True when the hooks are known to be on (the setting was read and says
/// so); false also before it is read ([`enabled`] reads it).
#[inline(always)]
pub(crate) fn enabled_now() -> bool {
    STATE.load(Relaxed) == 1
}

/// True unless `PHOTON_PRELOAD_PTHREAD=0`.
#[inline]
pub(crate) fn enabled() -> bool {
    match STATE.load(Relaxed) {
        1 => true,
        2 => false,
        _ => read_setting(),
    }
}

#[cold]
fn read_setting() -> bool {
    // SAFETY: getenv with a NUL-terminated name; the result is read at once.
    let v = unsafe { libc::getenv(c"PHOTON_PRELOAD_PTHREAD".as_ptr()) };
    // SAFETY: getenv returns NULL or a NUL-terminated string.
    let off = !v.is_null() && unsafe { core::ffi::CStr::from_ptr(v) }.to_bytes() == b"0";
    // The first reader decides; later readers agree with it.
    let _ = STATE.compare_exchange(0, if off { 2 } else { 1 }, Relaxed, Relaxed);
    STATE.load(Relaxed) == 1
}

/// Bumped in a fork's child: cached thread ids are stale there.
static FORK_GEN: AtomicU32 = AtomicU32::new(0);

thread_local! {
    /// (fork generation, tid) of this OS thread.
    static TID: Cell<(u32, i32)> = const { Cell::new((u32::MAX, 0)) };
}

/// The calling OS thread's id (cached).
#[inline]
pub(crate) fn tid() -> i32 {
    let generation = FORK_GEN.load(Relaxed);
    TID.with(|t| {
        let (g, id) = t.get();
        if g == generation {
            return id;
        }
        // SAFETY: gettid has no arguments and cannot fail.
        let id = unsafe { libc::gettid() };
        t.set((generation, id));
        id
    })
}

extern "C" fn forked_child() {
    crate::boundary((), || {
        FORK_GEN.fetch_add(1, Relaxed);
        once::forked_child();
    })
}

/// Reads the setting before the program runs and registers the fork
/// handler.
extern "C" fn setup() {
    crate::boundary((), || {
        enabled();
        // SAFETY: registers a handler that only touches atomics.
        unsafe { libc::pthread_atfork(None, None, Some(forked_child)) };
    })
}

#[used]
#[unsafe(link_section = ".init_array")]
static SETUP: extern "C" fn() = setup;

/// The calling photon thread's owner id for pthread objects, or None on a
/// plain thread (and when the feature is off): the OS tid on a vcpu's main
/// thread, else minus its photon thread number.
#[inline]
pub(crate) fn me() -> Option<i32> {
    if !enabled() {
        return None;
    }
    let mut main: c_int = 0;
    // SAFETY: a libphoton query writing one int.
    let n = unsafe { photon::photon_thread_number(&mut main) };
    if n == 0 {
        None
    } else if main != 0 {
        Some(tid())
    } else {
        Some(-(n as i32))
    }
}

/// Restores errno when dropped: pthread functions report errors by return
/// value and leave errno alone.
pub(crate) struct KeepErrno(c_int);

impl KeepErrno {
    pub(crate) fn new() -> KeepErrno {
        KeepErrno(errno())
    }
}

impl Drop for KeepErrno {
    fn drop(&mut self) {
        set_errno(self.0);
    }
}

/// An absolute timeout on a clock.
#[derive(Clone, Copy)]
pub(crate) struct Abs {
    pub clock: clockid_t,
    pub ts: timespec,
}

impl Abs {
    /// The caller's timespec on `clock`; None for no timeout (NULL).
    ///
    /// # Safety
    /// `ts` is NULL or readable.
    pub(crate) unsafe fn new(clock: clockid_t, ts: *const timespec) -> Option<Abs> {
        (!ts.is_null()).then(|| Abs {
            clock,
            // SAFETY: not NULL, so readable per the contract.
            ts: unsafe { *ts },
        })
    }

    /// Nanoseconds in range (glibc's EINVAL check).
    pub(crate) fn valid(&self) -> bool {
        (0..1_000_000_000).contains(&self.ts.tv_nsec)
    }

    /// Microseconds left (rounded up), None once passed.
    pub(crate) fn remaining_us(&self) -> Option<u64> {
        if self.ts.tv_sec < 0 {
            return None;
        }
        let mut now = timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: writes one timespec.
        unsafe { libc::clock_gettime(self.clock, &mut now) };
        let ns =
            (self.ts.tv_sec as i128 - now.tv_sec as i128) * 1_000_000_000 + (self.ts.tv_nsec - now.tv_nsec) as i128;
        (ns > 0).then(|| ((ns + 999) / 1000).min(u64::MAX as i128 - 1) as u64)
    }
}

/// The clocks glibc's timed waits accept.
pub(crate) fn clock_ok(clock: clockid_t) -> bool {
    clock == libc::CLOCK_REALTIME || clock == libc::CLOCK_MONOTONIC
}

/// A 32-bit word of a pthread object, `index` words from `base`.
///
/// # Safety
/// `base` points at the object, which has that word, 4-byte aligned.
pub(crate) unsafe fn word<'a, T>(base: *mut T, index: usize) -> &'a AtomicU32 {
    // SAFETY: per the contract; the word is only accessed atomically here.
    unsafe { &*base.cast::<AtomicU32>().add(index) }
}

/// The same word as a signed atomic.
///
/// # Safety
/// As [`word`].
pub(crate) unsafe fn iword<'a, T>(base: *mut T, index: usize) -> &'a AtomicI32 {
    // SAFETY: per the contract.
    unsafe { &*base.cast::<AtomicI32>().add(index) }
}

/// How a wait ended.
#[derive(PartialEq, Eq, Clone, Copy, Debug)]
pub(crate) enum Woke {
    /// Woken, or the word had changed, or spuriously: check again.
    Again,
    TimedOut,
    /// A photon thread was interrupted (photon_thread_interrupt) with this
    /// errno, or a plain thread's wait was interrupted by a signal (EINTR).
    Interrupted(c_int),
}

/// Waits while `w` holds `val`: a photon wait if `photon`, else the
/// kernel's futex (private unless `shared`). errno is left unchanged.
pub(crate) fn wait(w: &AtomicU32, val: u32, photon: bool, shared: bool, abs: Option<&Abs>) -> Woke {
    let saved = KeepErrno::new();
    let r = if photon {
        photon_wait(w, val, abs)
    } else {
        kernel_wait(w, val, shared, abs)
    };
    drop(saved);
    r
}

fn photon_wait(w: &AtomicU32, val: u32, abs: Option<&Abs>) -> Woke {
    let us = match abs {
        None => photon::FOREVER,
        Some(a) => match a.remaining_us() {
            None => return Woke::TimedOut,
            Some(us) => us,
        },
    };
    // SAFETY: a live, aligned word.
    if unsafe { photon::photon_futex_wait(w.as_ptr(), val, us) } == 0 {
        return Woke::Again;
    }
    match errno() {
        libc::EAGAIN => Woke::Again,
        libc::ETIMEDOUT => Woke::TimedOut,
        e => Woke::Interrupted(e),
    }
}

fn kernel_wait(w: &AtomicU32, val: u32, shared: bool, abs: Option<&Abs>) -> Woke {
    let mut op = libc::FUTEX_WAIT_BITSET;
    if !shared {
        op |= libc::FUTEX_PRIVATE_FLAG;
    }
    let ts = match abs {
        None => core::ptr::null(),
        Some(a) => {
            if a.ts.tv_sec < 0 {
                return Woke::TimedOut;
            }
            if a.clock == libc::CLOCK_REALTIME {
                op |= libc::FUTEX_CLOCK_REALTIME;
            }
            &a.ts as *const timespec
        }
    };
    // SAFETY: FUTEX_WAIT_BITSET on a live word with an absolute timeout or none.
    let r = unsafe {
        libc::syscall(
            libc::SYS_futex,
            w.as_ptr(),
            op,
            val,
            ts,
            core::ptr::null::<u32>(),
            libc::FUTEX_BITSET_MATCH_ANY,
        )
    };
    if r == 0 {
        return Woke::Again;
    }
    match errno() {
        libc::ETIMEDOUT => Woke::TimedOut,
        libc::EINTR => Woke::Interrupted(libc::EINTR),
        _ => Woke::Again,
    }
}

/// Wakes up to `n` waiters of `w` of both kinds: plain threads in the
/// kernel's futex (only if `plain`) and photon threads.
pub(crate) fn wake(w: &AtomicU32, n: c_int, shared: bool, plain: bool) {
    if plain {
        kernel_wake(w.as_ptr(), n, shared);
    }
    photon_wake(w.as_ptr(), n);
}

/// Wakes up to `n` plain threads waiting in the kernel on `w`.
pub(crate) fn kernel_wake(w: *const u32, n: c_int, shared: bool) {
    let op = if shared {
        libc::FUTEX_WAKE
    } else {
        libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG
    };
    let saved = KeepErrno::new();
    // SAFETY: FUTEX_WAKE only uses the address as a key.
    unsafe { libc::syscall(libc::SYS_futex, w, op, n) };
    drop(saved);
}

/// Wakes up to `n` photon threads waiting on `w` (one atomic load in
/// libphoton when none waits).
#[inline]
pub(crate) fn photon_wake(w: *const u32, n: c_int) {
    // SAFETY: the address is only used as a key; it is non-NULL and aligned.
    unsafe { photon::photon_futex_wake(w, n) };
}

/// Makes `e` the calling photon thread's pending interrupt again (a wait
/// that must not fail, like a mutex lock, consumed it): its next blocking
/// call fails with it.
pub(crate) fn repend(e: c_int) {
    let _e = KeepErrno::new();
    // SAFETY: libphoton calls on the calling photon thread's own handle.
    unsafe {
        let me = photon::photon_thread_self();
        if !me.is_null() && e > 0 {
            photon::photon_thread_interrupt(me, e);
        }
    }
}

/// Counts a waiter in and out of an object whose memory may be destroyed
/// (and freed) once every waiter has left: `refs` holds 2 per waiter inside
/// plus bit 0 set while a destroyer waits for them to leave.
pub(crate) struct Refs;

impl Refs {
    pub(crate) fn enter(refs: &AtomicU32) {
        refs.fetch_add(2, SeqCst);
    }

    /// The waiter's last touch of the object's memory.
    pub(crate) fn leave(refs: &AtomicU32, shared: bool) {
        let old = refs.fetch_sub(2, SeqCst);
        if old & 1 != 0 && old >> 1 == 1 {
            // The destroyer waits for this: the memory is still there.
            wake(refs, c_int::MAX, shared, true);
        }
    }

    /// Waits until every waiter has left (destroy).
    pub(crate) fn drain(refs: &AtomicU32, shared: bool) {
        let photon = me().is_some();
        refs.fetch_or(1, SeqCst);
        loop {
            let v = refs.load(SeqCst);
            if v >> 1 == 0 {
                break;
            }
            let _ = wait(refs, v, photon, shared, None);
        }
    }
}
