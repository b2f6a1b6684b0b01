//! Locks: coroutine-blocking, correct across vcpus, timed. A lock's
//! `_free` accepts NULL, and returns -1/`EBUSY` (freeing nothing) while
//! threads hold it or wait on it, as `pthread_mutex_destroy` does. Waits
//! need a photon thread (`EPERM` otherwise), fail with `ETIMEDOUT` at their
//! timeout and with the interrupter's errno when interrupted.

use super::guard;
use super::handle::{BoxOwned, Boxed, Castable};
use crate::errno::Errno;
use crate::sync::{Cond, Mutex, RwLock, Semaphore};
use crate::time::deadline;

/// A coroutine mutex (non-recursive). Waiters queue in arrival order; an
/// unlock wakes the longest waiter, which then competes for the lock (a
/// running thread may take it first); a waiter that has waited 1 ms or more
/// is handed the lock directly instead, so no waiter starves. Opaque.
pub struct photon_mutex {
    _private: [u8; 0],
}
/// A condition variable used with a `photon_mutex`. Opaque.
pub struct photon_cond {
    _private: [u8; 0],
}
/// A counting semaphore, FIFO among its waiters (a large request at the
/// head is not overtaken by smaller ones queued behind it). A signal wakes
/// the waiters whose requests fit, which then compete with running threads
/// for the units; a waiter that has waited 1 ms or more is handed its units
/// directly instead, and nobody takes units past it. Opaque.
pub struct photon_sem {
    _private: [u8; 0],
}
/// A reader-writer lock (phase-fair: neither side starves). A woken writer
/// competes with running writers, or is handed the lock once it has waited
/// 1 ms or more. Opaque.
pub struct photon_rwlock {
    _private: [u8; 0],
}

impl Castable for photon_mutex {
    type Ownership = BoxOwned;
    type RustType = Mutex;
}
impl Castable for photon_cond {
    type Ownership = BoxOwned;
    type RustType = Cond;
}
impl Castable for photon_sem {
    type Ownership = BoxOwned;
    type RustType = Semaphore;
}
impl Castable for photon_rwlock {
    type Ownership = BoxOwned;
    type RustType = RwLock;
}

/// A new unlocked mutex (needs no vcpu).
#[unsafe(no_mangle)]
pub extern "C" fn photon_mutex_new() -> *mut photon_mutex {
    guard(|| Ok(photon_mutex::publish(Mutex::new())))
}

/// Frees `m` (NULL: no-op); -1/`EBUSY` while locked or waited on.
#[unsafe(no_mangle)]
pub extern "C" fn photon_mutex_free(m: *mut photon_mutex) -> libc::c_int {
    guard(|| photon_mutex::free(m, Mutex::in_use))
}

/// Locks `m`, waiting up to `timeout_us`. `EDEADLK` if the caller holds it.
#[unsafe(no_mangle)]
pub extern "C" fn photon_mutex_lock(m: *mut photon_mutex, timeout_us: u64) -> libc::c_int {
    // The uncontended path: one compare-and-swap, no frame, nothing that
    // can panic; everything else under the panic boundary, out of line.
    if let Ok(mx) = photon_mutex::borrow(m)
        && mx.lock_fast()
    {
        return 0;
    }
    mutex_lock_slow(m, timeout_us)
}

#[inline(never)]
fn mutex_lock_slow(m: *mut photon_mutex, timeout_us: u64) -> libc::c_int {
    guard(|| photon_mutex::borrow(m)?.lock_for(timeout_us).map(|()| 0))
}

/// Locks `m` if it is free, else -1/`EBUSY`.
#[unsafe(no_mangle)]
pub extern "C" fn photon_mutex_trylock(m: *mut photon_mutex) -> libc::c_int {
    guard(|| photon_mutex::borrow(m)?.try_lock().map(|()| 0))
}

/// Unlocks `m` and wakes its longest waiter (on any vcpu), which competes
/// for the lock, or is handed it if it has waited 1 ms or more. -1/`EINVAL`
/// if the caller does not hold it.
#[unsafe(no_mangle)]
pub extern "C" fn photon_mutex_unlock(m: *mut photon_mutex) -> libc::c_int {
    // As in photon_mutex_lock: the path without waiters is one CAS.
    if let Ok(mx) = photon_mutex::borrow(m)
        && mx.unlock_fast()
    {
        return 0;
    }
    mutex_unlock_slow(m)
}

#[inline(never)]
fn mutex_unlock_slow(m: *mut photon_mutex) -> libc::c_int {
    guard(|| photon_mutex::borrow(m)?.unlock().map(|()| 0))
}

/// A new condition variable (needs no vcpu).
#[unsafe(no_mangle)]
pub extern "C" fn photon_cond_new() -> *mut photon_cond {
    guard(|| Ok(photon_cond::publish(Cond::new())))
}

/// Frees `c` (NULL: no-op); -1/`EBUSY` while waited on.
#[unsafe(no_mangle)]
pub extern "C" fn photon_cond_free(c: *mut photon_cond) -> libc::c_int {
    guard(|| photon_cond::free(c, Cond::in_use))
}

/// Releases `m` (held by the caller, else `EINVAL`) and waits for a notify
/// up to `timeout_us`; `m` is held again on return, whatever the result.
#[unsafe(no_mangle)]
pub extern "C" fn photon_cond_wait(c: *mut photon_cond, m: *mut photon_mutex, timeout_us: u64) -> libc::c_int {
    guard(|| {
        photon_cond::borrow(c)?
            .wait(photon_mutex::borrow(m)?, deadline(timeout_us))
            .map(|()| 0)
    })
}

/// Wakes the longest waiter of `c`, if any. Callable from any OS thread.
/// Returns 0 (`photon_cond_wake_one` also says whether it woke one).
#[unsafe(no_mangle)]
pub extern "C" fn photon_cond_notify_one(c: *mut photon_cond) -> libc::c_int {
    guard(|| {
        photon_cond::borrow(c)?.notify_one();
        Ok(0)
    })
}

/// `photon_cond_notify_one` that says whether it woke a thread: returns 1
/// if a waiter was woken (its wait reports the notify, even if its timeout
/// or an interrupt raced with it), 0 if none was waiting, or -1/`EINVAL`.
/// Callable from any OS thread.
#[unsafe(no_mangle)]
pub extern "C" fn photon_cond_wake_one(c: *mut photon_cond) -> libc::c_int {
    guard(|| Ok(libc::c_int::from(photon_cond::borrow(c)?.notify_one())))
}

/// Wakes every waiter of `c`. Callable from any OS thread.
#[unsafe(no_mangle)]
pub extern "C" fn photon_cond_notify_all(c: *mut photon_cond) -> libc::c_int {
    guard(|| {
        photon_cond::borrow(c)?.notify_all();
        Ok(0)
    })
}

/// A new semaphore holding `count` (needs no vcpu).
#[unsafe(no_mangle)]
pub extern "C" fn photon_sem_new(count: u64) -> *mut photon_sem {
    guard(|| Ok(photon_sem::publish(Semaphore::new(count))))
}

/// Frees `s` (NULL: no-op); -1/`EBUSY` while waited on.
#[unsafe(no_mangle)]
pub extern "C" fn photon_sem_free(s: *mut photon_sem) -> libc::c_int {
    guard(|| photon_sem::free(s, Semaphore::in_use))
}

/// Takes `count` (> 0, else `EINVAL`) from `s`, waiting up to `timeout_us`.
/// Requests are served in arrival order.
#[unsafe(no_mangle)]
pub extern "C" fn photon_sem_wait(s: *mut photon_sem, count: u64, timeout_us: u64) -> libc::c_int {
    // The path where nobody waits and the count has it: one
    // compare-and-swap, nothing that can panic; the rest out of line.
    if count != 0
        && let Ok(sem) = photon_sem::borrow(s)
        && crate::sched::in_thread()
        && sem.wait_fast(count)
    {
        return 0;
    }
    sem_wait_slow(s, count, timeout_us)
}

#[inline(never)]
fn sem_wait_slow(s: *mut photon_sem, count: u64, timeout_us: u64) -> libc::c_int {
    guard(|| photon_sem::borrow(s)?.wait(count, deadline(timeout_us)).map(|()| 0))
}

/// Adds `count` to `s`, waking waiters whose requests now fit. Callable from
/// any OS thread. -1/`EOVERFLOW` if the count would overflow.
#[unsafe(no_mangle)]
pub extern "C" fn photon_sem_signal(s: *mut photon_sem, count: u64) -> libc::c_int {
    // As in photon_sem_wait: the path where nobody waits is one CAS.
    if let Ok(sem) = photon_sem::borrow(s)
        && sem.signal_fast(count)
    {
        return 0;
    }
    sem_signal_slow(s, count)
}

#[inline(never)]
fn sem_signal_slow(s: *mut photon_sem, count: u64) -> libc::c_int {
    guard(|| photon_sem::borrow(s)?.signal(count).map(|()| 0))
}

/// Stores the count `s` holds now in `*count` (a snapshot: other threads
/// may change it at once). Returns 0, or -1/`EINVAL` (`s` or `count`
/// NULL). Callable from any OS thread.
#[unsafe(no_mangle)]
pub extern "C" fn photon_sem_count(s: *mut photon_sem, count: *mut u64) -> libc::c_int {
    guard(|| {
        let n = photon_sem::borrow(s)?.count();
        if count.is_null() {
            return Err(Errno::EINVAL);
        }
        // SAFETY: non-NULL; the caller passes a writable uint64_t.
        unsafe { count.write(n) };
        Ok(0)
    })
}

/// A new unlocked reader-writer lock (needs no vcpu).
#[unsafe(no_mangle)]
pub extern "C" fn photon_rwlock_new() -> *mut photon_rwlock {
    guard(|| Ok(photon_rwlock::publish(RwLock::new())))
}

/// Frees `l` (NULL: no-op); -1/`EBUSY` while held or waited on.
#[unsafe(no_mangle)]
pub extern "C" fn photon_rwlock_free(l: *mut photon_rwlock) -> libc::c_int {
    guard(|| photon_rwlock::free(l, RwLock::in_use))
}

/// Takes a shared lock, waiting up to `timeout_us`; `EDEADLK` if the caller
/// holds the write lock.
#[unsafe(no_mangle)]
pub extern "C" fn photon_rwlock_rdlock(l: *mut photon_rwlock, timeout_us: u64) -> libc::c_int {
    // The path where no writer holds it and nobody waits: one
    // compare-and-swap, nothing that can panic; the rest out of line.
    if let Ok(rw) = photon_rwlock::borrow(l)
        && crate::sched::self_handle().is_some()
        && rw.read_fast()
    {
        return 0;
    }
    rwlock_rdlock_slow(l, timeout_us)
}

#[inline(never)]
fn rwlock_rdlock_slow(l: *mut photon_rwlock, timeout_us: u64) -> libc::c_int {
    guard(|| photon_rwlock::borrow(l)?.read(deadline(timeout_us)).map(|()| 0))
}

/// Takes the exclusive lock, waiting up to `timeout_us`; `EDEADLK` if the
/// caller holds it already.
#[unsafe(no_mangle)]
pub extern "C" fn photon_rwlock_wrlock(l: *mut photon_rwlock, timeout_us: u64) -> libc::c_int {
    // As in photon_rwlock_rdlock: a free lock nobody waits for is one CAS.
    if let Ok(rw) = photon_rwlock::borrow(l)
        && rw.write_fast()
    {
        return 0;
    }
    rwlock_wrlock_slow(l, timeout_us)
}

#[inline(never)]
fn rwlock_wrlock_slow(l: *mut photon_rwlock, timeout_us: u64) -> libc::c_int {
    guard(|| photon_rwlock::borrow(l)?.write(deadline(timeout_us)).map(|()| 0))
}

/// Takes a shared lock if that needs no wait (no writer holds or awaits
/// it), else -1/`EBUSY`; never blocks. `EDEADLK` if the caller holds the
/// write lock; `EPERM` if it is not a photon thread.
#[unsafe(no_mangle)]
pub extern "C" fn photon_rwlock_tryrdlock(l: *mut photon_rwlock) -> libc::c_int {
    guard(|| photon_rwlock::borrow(l)?.try_read().map(|()| 0))
}

/// Takes the exclusive lock if it is free, else -1/`EBUSY`; never blocks.
/// `EDEADLK` if the caller holds it already; `EPERM` if it is not a photon
/// thread.
#[unsafe(no_mangle)]
pub extern "C" fn photon_rwlock_trywrlock(l: *mut photon_rwlock) -> libc::c_int {
    guard(|| photon_rwlock::borrow(l)?.try_write().map(|()| 0))
}

/// Releases the caller's write lock, or one read lock. -1/`EINVAL` if the
/// lock is not held at all. Readers are counted, not named: a thread that
/// holds no read lock but calls this while others do releases one of theirs.
#[unsafe(no_mangle)]
pub extern "C" fn photon_rwlock_unlock(l: *mut photon_rwlock) -> libc::c_int {
    // As in photon_rwlock_rdlock: nobody waiting, one CAS.
    if let Ok(rw) = photon_rwlock::borrow(l)
        && rw.unlock_fast()
    {
        return 0;
    }
    rwlock_unlock_slow(l)
}

#[inline(never)]
fn rwlock_unlock_slow(l: *mut photon_rwlock) -> libc::c_int {
    guard(|| photon_rwlock::borrow(l)?.unlock().map(|()| 0))
}
