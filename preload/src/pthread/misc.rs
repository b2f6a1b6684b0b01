//! POSIX semaphores, spinlocks and `sched_yield`.
//!
//! A glibc `sem_t` on x86-64 is a 64-bit word: the value in the low half,
//! plain waiters in the high half (glibc's `sem_post` makes a futex
//! syscall only when that is non-zero). `sem_post` from any thread is
//! glibc's, followed by a photon wake on the value word (one atomic load
//! in libphoton when no photon thread waits). A photon thread's
//! `sem_wait` takes a unit by compare-and-swap and otherwise waits as a
//! photon wait on the value word; it does not count itself in glibc's
//! waiter half (no futex syscalls are needed to wake it). Plain threads use
//! glibc's functions unchanged; `sem_trywait` is never hooked.

use core::ffi::c_int;
use core::sync::atomic::{AtomicU64, Ordering::*};
use libc::{clockid_t, sem_t, timespec};

use super::{Abs, Woke, clock_ok, me, photon_wake, wait, word};
use crate::{photon, real, set_errno};

fn value(s: *mut sem_t) -> &'static AtomicU64 {
    // SAFETY: a sem_t is 32 bytes, 8-aligned, its first 8 the data word.
    unsafe { &*s.cast::<AtomicU64>() }
}

/// A photon thread's wait; -1 with errno as glibc's sem_* do.
fn photon_sem_wait(s: *mut sem_t, abs: Option<Abs>) -> c_int {
    if let Some(a) = abs
        && !a.valid()
    {
        set_errno(libc::EINVAL);
        return -1;
    }
    let d = value(s);
    loop {
        let v = d.load(Relaxed);
        if v as u32 != 0 {
            if d.compare_exchange_weak(v, v - 1, Acquire, Relaxed).is_ok() {
                return 0;
            }
            continue;
        }
        // SAFETY: the value is the low word of the sem_t.
        let w = unsafe { word(s, 0) };
        match wait(w, 0, true, false, abs.as_ref()) {
            Woke::Again => {}
            Woke::TimedOut => {
                set_errno(libc::ETIMEDOUT);
                return -1;
            }
            Woke::Interrupted(e) => {
                set_errno(e);
                return -1;
            }
        }
    }
}

/// `sem_post`: glibc's, then wakes a photon waiter.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sem_post(s: *mut sem_t) -> c_int {
    crate::boundary(-1, || {
        // SAFETY: the caller's semaphore.
        let r = unsafe { real::sem_post(s) };
        if r == 0 && super::enabled() {
            photon_wake(s.cast::<u32>(), 1);
        }
        r
    })
}

/// `sem_wait`: a photon wait in a photon thread; -1/the interrupter's errno
/// (EINTR for `photon_thread_interrupt(th, EINTR)`) when interrupted.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sem_wait(s: *mut sem_t) -> c_int {
    crate::boundary(-1, || {
        if me().is_some() {
            return photon_sem_wait(s, None);
        }
        // SAFETY: the caller's semaphore.
        unsafe { real::sem_wait(s) }
    })
}

/// `sem_timedwait` (CLOCK_REALTIME deadline).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sem_timedwait(s: *mut sem_t, abstime: *const timespec) -> c_int {
    crate::boundary(-1, || {
        if me().is_some() {
            // SAFETY: the caller's timespec.
            return photon_sem_wait(s, unsafe { Abs::new(libc::CLOCK_REALTIME, abstime) });
        }
        // SAFETY: the caller's semaphore and timespec.
        unsafe { real::sem_timedwait(s, abstime) }
    })
}

/// `sem_clockwait`: EINVAL for clocks other than CLOCK_REALTIME and
/// CLOCK_MONOTONIC.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sem_clockwait(s: *mut sem_t, clock: clockid_t, abstime: *const timespec) -> c_int {
    crate::boundary(-1, || {
        if me().is_some() {
            if !clock_ok(clock) {
                set_errno(libc::EINVAL);
                return -1;
            }
            // SAFETY: the caller's timespec.
            return photon_sem_wait(s, unsafe { Abs::new(clock, abstime) });
        }
        // SAFETY: the caller's semaphore and timespec.
        unsafe { real::sem_clockwait(s, clock, abstime) }
    })
}

/// `pthread_spin_lock`: in a photon thread, tries and yields to the vcpu's
/// other photon threads between tries (the holder may be one of them),
/// with an OS `sched_yield` every 64 tries.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pthread_spin_lock(l: *mut libc::pthread_spinlock_t) -> c_int {
    crate::boundary(libc::ENOTRECOVERABLE, || {
        if me().is_none() {
            // SAFETY: the caller's spinlock.
            return unsafe { real::pthread_spin_lock(l) };
        }
        let mut tries: u32 = 0;
        loop {
            // SAFETY: the caller's spinlock.
            if unsafe { real::pthread_spin_trylock(l) } == 0 {
                return 0;
            }
            tries = tries.wrapping_add(1);
            // SAFETY: libphoton's yield and libc's sched_yield take no arguments.
            unsafe {
                photon::photon_thread_yield();
                if tries.is_multiple_of(64) {
                    real::sched_yield();
                }
            }
        }
    })
}

/// `sched_yield`: in a photon thread, lets the vcpu's other photon threads
/// run (`photon_thread_yield`); returns 0.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sched_yield() -> c_int {
    crate::boundary(-1, || {
        if me().is_some() {
            // SAFETY: takes no arguments.
            unsafe { photon::photon_thread_yield() };
            return 0;
        }
        // SAFETY: takes no arguments.
        unsafe { real::sched_yield() }
    })
}
