//! `pthread_mutex_lock`, `trylock`, `timedlock`, `clocklock`, `unlock`.
//!
//! glibc 2.36 x86-64 layout: `__lock` (word 0: 0 free, 1 locked, 2 locked
//! and maybe waited on), `__count` (1), `__owner` (2), `__nusers` (3),
//! `__kind` (4). A photon thread follows glibc's protocol on the same
//! words with its own owner id ([`super::me`]) and waits as a photon wait;
//! a plain thread uses glibc's functions, and its unlocks also wake photon
//! waiters. Kinds handled: normal, recursive, errorcheck, adaptive (with or
//! without the process-shared bit); robust, PI, PP and elision kinds go to
//! glibc unchanged. errno is never changed (waits keep it).

use core::ffi::c_int;
use core::sync::atomic::{AtomicI32, AtomicU32, Ordering::*};
use libc::{clockid_t, pthread_mutex_t, timespec};

use super::{Abs, Woke, clock_ok, enabled, enabled_now, iword, kernel_wake, me, photon_wake, repend, wait, word};
use crate::real;

const NORMAL: c_int = 0;
const RECURSIVE: c_int = 1;
const ERRORCHECK: c_int = 2;
const ADAPTIVE: c_int = 3;
const KIND_MASK: c_int = 127;
const PSHARED: c_int = 128;
const ELISION: c_int = 256;

struct M(*mut pthread_mutex_t);

impl M {
    fn lock(&self) -> &AtomicI32 {
        // SAFETY: a pthread_mutex_t (40 bytes, 8-aligned) has word 0.
        unsafe { iword(self.0, 0) }
    }
    fn lock_u32(&self) -> &AtomicU32 {
        // SAFETY: as above.
        unsafe { word(self.0, 0) }
    }
    fn count(&self) -> &AtomicU32 {
        // SAFETY: as above, word 1.
        unsafe { word(self.0, 1) }
    }
    fn owner(&self) -> &AtomicI32 {
        // SAFETY: as above, word 2.
        unsafe { iword(self.0, 2) }
    }
    fn nusers(&self) -> &AtomicU32 {
        // SAFETY: as above, word 3.
        unsafe { word(self.0, 3) }
    }
    fn kind(&self) -> c_int {
        // SAFETY: as above, word 4.
        unsafe { iword(self.0, 4) }.load(Relaxed)
    }
}

/// The mutex type this module implements, or None (glibc's).
#[inline]
fn simple_type(kind: c_int) -> Option<c_int> {
    let t = kind & KIND_MASK;
    (kind & ELISION == 0 && t <= 3).then_some(t)
}

/// Takes the lock word as a photon thread: glibc's protocol, waiting as a
/// photon wait. Err(ETIMEDOUT/EINVAL) for timed locks.
fn acquire(m: &M, abs: Option<&Abs>) -> Result<(), c_int> {
    let w = m.lock();
    if w.compare_exchange(0, 1, Acquire, Relaxed).is_ok() {
        return Ok(());
    }
    if abs.is_some_and(|a| !a.valid()) {
        return Err(libc::EINVAL);
    }
    let mut interrupted = 0;
    let r = loop {
        // Mark "waited on" before sleeping (an unlock then wakes photon
        // waiters); photon_futex_wait registers before it re-checks the 2.
        if w.swap(2, SeqCst) == 0 {
            break Ok(());
        }
        match wait(m.lock_u32(), 2, true, false, abs) {
            Woke::Again => {}
            Woke::TimedOut => break Err(libc::ETIMEDOUT),
            // A lock never fails with EINTR: keep waiting, re-arm after.
            Woke::Interrupted(e) => interrupted = e,
        }
    };
    if interrupted != 0 {
        repend(interrupted);
    }
    r
}

/// Lock as photon thread `id`; None: not a kind handled here.
fn photon_lock(m: &M, id: i32, abs: Option<&Abs>) -> Option<c_int> {
    let t = simple_type(m.kind())?;
    if m.owner().load(Relaxed) == id {
        if t == RECURSIVE {
            let c = m.count().load(Relaxed);
            if c.wrapping_add(1) == 0 {
                return Some(libc::EAGAIN);
            }
            m.count().store(c + 1, Relaxed);
            return Some(0);
        }
        if t == ERRORCHECK {
            return Some(libc::EDEADLK);
        }
    }
    if let Err(e) = acquire(m, abs) {
        return Some(e);
    }
    taken(m, t, id);
    Some(0)
}

/// Records the new owner (as glibc does after taking the word).
fn taken(m: &M, t: c_int, id: i32) {
    m.owner().store(id, Relaxed);
    if t == RECURSIVE {
        m.count().store(1, Relaxed);
    }
    // Under the lock, as glibc (no atomic read-modify-write needed).
    let n = m.nusers();
    n.store(n.load(Relaxed).wrapping_add(1), Relaxed);
}

fn photon_trylock(m: &M, id: i32) -> Option<c_int> {
    let t = simple_type(m.kind())?;
    if t == RECURSIVE && m.owner().load(Relaxed) == id {
        let c = m.count().load(Relaxed);
        if c.wrapping_add(1) == 0 {
            return Some(libc::EAGAIN);
        }
        m.count().store(c + 1, Relaxed);
        return Some(0);
    }
    if m.lock().compare_exchange(0, 1, Acquire, Relaxed).is_err() {
        return Some(libc::EBUSY);
    }
    taken(m, t, id);
    Some(0)
}

/// Releases the word as glibc's unlock does, waking one waiter of each
/// kind when it was marked waited on.
#[inline]
fn release(m: &M, kind: c_int) {
    m.owner().store(0, Relaxed);
    let n = m.nusers();
    n.store(n.load(Relaxed).wrapping_sub(1), Relaxed);
    if m.lock().swap(0, SeqCst) > 1 {
        let w = m.lock_u32().as_ptr();
        kernel_wake(w, 1, kind & PSHARED != 0);
        photon_wake(w, 1);
    }
}

fn photon_unlock(m: &M, id: i32) -> Option<c_int> {
    let kind = m.kind();
    let t = simple_type(kind)?;
    if t == RECURSIVE {
        if m.owner().load(Relaxed) != id {
            return Some(libc::EPERM);
        }
        let c = m.count().load(Relaxed).wrapping_sub(1);
        m.count().store(c, Relaxed);
        if c != 0 {
            return Some(0);
        }
    } else if t == ERRORCHECK && (m.owner().load(Relaxed) != id || m.lock().load(Relaxed) == 0) {
        return Some(libc::EPERM);
    }
    release(m, kind);
    Some(0)
}

/// A plain thread's unlock: glibc's, then a wake for photon waiters (glibc
/// exchanges the word, a full barrier, before libphoton loads its waiter
/// count). Normal and adaptive mutexes (no owner check) are released here
/// directly, which tells whether anyone waits.
fn plain_unlock(mx: *mut pthread_mutex_t) -> c_int {
    let m = M(mx);
    let kind = m.kind();
    if ownerless(kind) {
        release(&m, kind);
        return 0;
    }
    // SAFETY: the caller's mutex, for glibc.
    let r = unsafe { real::pthread_mutex_unlock(mx) };
    if r == 0 {
        photon_wake(m.lock_u32().as_ptr(), 1);
    }
    r
}

/// Locks `m` as the calling thread, photon or plain (the condition
/// variables' re-lock). `abs`: a timed lock.
pub(crate) fn lock_any(mx: *mut pthread_mutex_t, abs: Option<&Abs>) -> c_int {
    let m = M(mx);
    if let Some(id) = me()
        && let Some(r) = photon_lock(&m, id, abs)
    {
        return r;
    }
    // SAFETY: the caller's mutex and timespec, for glibc.
    unsafe {
        match abs {
            None => real::pthread_mutex_lock(mx),
            Some(a) => real::pthread_mutex_clocklock(mx, a.clock, &a.ts),
        }
    }
}

/// Unlocks `m` as the calling thread, photon or plain.
pub(crate) fn unlock_any(mx: *mut pthread_mutex_t) -> c_int {
    if enabled() {
        let m = M(mx);
        let kind = m.kind();
        if ownerless(kind) {
            release(&m, kind);
            return 0;
        }
    }
    if let Some(id) = me() {
        let m = M(mx);
        if let Some(r) = photon_unlock(&m, id) {
            return r;
        }
        // SAFETY: the caller's mutex, for glibc.
        return unsafe { real::pthread_mutex_unlock(mx) };
    }
    plain_unlock(mx)
}

/// True for the kinds whose lock and unlock need no owner check (normal,
/// adaptive): their uncontended paths here do not ask who the caller is.
#[inline]
fn ownerless(kind: c_int) -> bool {
    simple_type(kind).is_some_and(|t| t == NORMAL || t == ADAPTIVE)
}

/// `pthread_mutex_lock`: in a photon thread, waits as a photon wait.
///
/// Normal and adaptive mutexes are taken here when free (one
/// compare-and-swap, whichever thread calls; `__owner` is then left 0, the
/// one field that differs from glibc's, and only while held uncontended);
/// on contention a photon thread waits as a photon wait and a plain thread
/// in glibc's lock.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pthread_mutex_lock(mx: *mut pthread_mutex_t) -> c_int {
    // The uncontended path of normal and adaptive mutexes, kept free of the
    // slow path's stack frame (it runs on every plain thread too).
    let m = M(mx);
    if enabled_now() && ownerless_fast(m.kind()) && m.lock().compare_exchange(0, 1, Acquire, Relaxed).is_ok() {
        let n = m.nusers();
        n.store(n.load(Relaxed).wrapping_add(1), Relaxed);
        return 0;
    }
    // SAFETY: the caller's mutex.
    unsafe { lock_slow(mx) }
}

/// `pthread_mutex_lock` past its uncontended path.
///
/// # Safety
/// `mx` is the caller's mutex.
#[cold]
#[inline(never)]
unsafe fn lock_slow(mx: *mut pthread_mutex_t) -> c_int {
    // The hook's panic boundary (kept off its uncontended path).
    crate::boundary(libc::ENOTRECOVERABLE, || {
        if enabled() {
            let m = M(mx);
            let kind = m.kind();
            if ownerless(kind) && m.lock().compare_exchange(0, 1, Acquire, Relaxed).is_ok() {
                let n = m.nusers();
                n.store(n.load(Relaxed).wrapping_add(1), Relaxed);
                return 0;
            }
            if let Some(id) = me()
                && let Some(r) = photon_lock(&m, id, None)
            {
                return r;
            }
        }
        // SAFETY: the caller's mutex.
        unsafe { real::pthread_mutex_lock(mx) }
    })
}

/// `pthread_mutex_trylock`: owner and recursion per photon thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pthread_mutex_trylock(mx: *mut pthread_mutex_t) -> c_int {
    crate::boundary(libc::ENOTRECOVERABLE, || {
        if let Some(id) = me()
            && let Some(r) = photon_trylock(&M(mx), id)
        {
            return r;
        }
        // SAFETY: the caller's mutex.
        unsafe { real::pthread_mutex_trylock(mx) }
    })
}

/// `pthread_mutex_timedlock` (CLOCK_REALTIME deadline).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pthread_mutex_timedlock(mx: *mut pthread_mutex_t, abstime: *const timespec) -> c_int {
    crate::boundary(libc::ENOTRECOVERABLE, || {
        if let Some(id) = me() {
            // SAFETY: the caller's timespec.
            let abs = unsafe { Abs::new(libc::CLOCK_REALTIME, abstime) };
            if let Some(r) = photon_lock(&M(mx), id, abs.as_ref()) {
                return r;
            }
        }
        // SAFETY: the caller's mutex and timespec.
        unsafe { real::pthread_mutex_timedlock(mx, abstime) }
    })
}

/// `pthread_mutex_clocklock`: EINVAL for clocks other than CLOCK_REALTIME
/// and CLOCK_MONOTONIC.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pthread_mutex_clocklock(
    mx: *mut pthread_mutex_t,
    clock: clockid_t,
    abstime: *const timespec,
) -> c_int {
    crate::boundary(libc::ENOTRECOVERABLE, || {
        if let Some(id) = me() {
            if !clock_ok(clock) {
                return libc::EINVAL;
            }
            // SAFETY: the caller's timespec.
            let abs = unsafe { Abs::new(clock, abstime) };
            if let Some(r) = photon_lock(&M(mx), id, abs.as_ref()) {
                return r;
            }
        }
        // SAFETY: the caller's mutex and timespec.
        unsafe { real::pthread_mutex_clocklock(mx, clock, abstime) }
    })
}

/// `pthread_mutex_unlock`: ownership checked per photon thread; wakes photon
/// and plain waiters.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pthread_mutex_unlock(mx: *mut pthread_mutex_t) -> c_int {
    let m = M(mx);
    let kind = m.kind();
    if enabled_now() && ownerless_fast(kind) {
        m.owner().store(0, Relaxed);
        let n = m.nusers();
        n.store(n.load(Relaxed).wrapping_sub(1), Relaxed);
        if m.lock().swap(0, SeqCst) > 1 {
            wake_one(&m, kind);
        }
        return 0;
    }
    unlock_slow(mx)
}

/// `pthread_mutex_unlock` past its uncontended path, under the hook's
/// panic boundary (kept off that path).
#[cold]
#[inline(never)]
fn unlock_slow(mx: *mut pthread_mutex_t) -> c_int {
    crate::boundary(libc::ENOTRECOVERABLE, || unlock_any(mx))
}

/// Normal or adaptive (the process-shared bit aside), tested in one step:
/// the kinds whose uncontended paths need no owner.
#[inline(always)]
fn ownerless_fast(kind: c_int) -> bool {
    let k = kind & (KIND_MASK | ELISION);
    k == NORMAL || k == ADAPTIVE
}

/// Wakes a waiter of an unlocked mutex that had some: one plain one in the
/// kernel, one photon one.
#[cold]
#[inline(never)]
fn wake_one(m: &M, kind: c_int) {
    // Under the unlock hook's panic boundary (its uncontended path has none).
    crate::boundary((), || {
        let w = m.lock_u32().as_ptr();
        kernel_wake(w, 1, kind & PSHARED != 0);
        photon_wake(w, 1);
    })
}
