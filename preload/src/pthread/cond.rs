//! Condition variables, reimplemented for every thread on the
//! `pthread_cond_t`'s 48 bytes (glibc's `pthread_cond_wait` re-locks the
//! mutex through an internal function no hook sees, so a wrapper cannot
//! make it a photon wait).
//!
//! Words: 0 the sequence number waiters sleep on, 1 plain waiters inside
//! (signals make a futex syscall only when there are some), 2 the clock of
//! timed waits, 3 process-shared, 4 [`Refs`] (so `pthread_cond_destroy`
//! waits until woken waiters have left the memory). All zeros is
//! `PTHREAD_COND_INITIALIZER` (CLOCK_REALTIME, private).
//!
//! A wait reads the sequence number before it unlocks the mutex and sleeps
//! while it is unchanged; signal and broadcast increment it and wake one or
//! all waiters of each kind. Spurious wake-ups are possible (POSIX allows
//! them); a signal sent after a waiter unlocked the mutex always wakes a
//! waiter. Cancellation is not acted on.

use core::ffi::c_int;
use core::sync::atomic::{AtomicU32, Ordering::*};
use libc::{clockid_t, pthread_cond_t, pthread_condattr_t, pthread_mutex_t, timespec};

use super::{Abs, KeepErrno, Refs, Woke, clock_ok, enabled, lock_any, me, repend, unlock_any, wait, wake, word};
use crate::real;

const WORDS: usize = 12; // 48 bytes

struct C(*mut pthread_cond_t);

impl C {
    fn w(&self, i: usize) -> &AtomicU32 {
        // SAFETY: a pthread_cond_t has 12 aligned words.
        unsafe { word(self.0, i) }
    }
    fn seq(&self) -> &AtomicU32 {
        self.w(0)
    }
    fn plain(&self) -> &AtomicU32 {
        self.w(1)
    }
    fn clock(&self) -> clockid_t {
        self.w(2).load(Relaxed) as clockid_t
    }
    fn shared(&self) -> bool {
        self.w(3).load(Relaxed) != 0
    }
    fn refs(&self) -> &AtomicU32 {
        self.w(4)
    }
}

fn cond_wait(cv: *mut pthread_cond_t, m: *mut pthread_mutex_t, abs: Option<Abs>) -> c_int {
    let _e = KeepErrno::new();
    if abs.is_some_and(|a| !a.valid()) {
        return libc::EINVAL;
    }
    let c = C(cv);
    let photon = me().is_some();
    let shared = c.shared();
    Refs::enter(c.refs());
    if !photon {
        c.plain().fetch_add(1, SeqCst);
    }
    let seq = c.seq().load(SeqCst);
    let r = unlock_any(m);
    let mut interrupted = 0;
    let result = if r != 0 {
        r
    } else {
        match wait(c.seq(), seq, photon, shared, abs.as_ref()) {
            Woke::TimedOut => libc::ETIMEDOUT,
            Woke::Again => 0,
            Woke::Interrupted(e) => {
                if photon {
                    interrupted = e;
                }
                0 // a spurious wake-up
            }
        }
    };
    if !photon {
        c.plain().fetch_sub(1, SeqCst);
    }
    Refs::leave(c.refs(), shared); // the last touch of the cond's memory
    if r != 0 {
        return r;
    }
    let l = lock_any(m, None);
    if interrupted != 0 {
        repend(interrupted);
    }
    if l != 0 { l } else { result }
}

fn signal(cv: *mut pthread_cond_t, n: c_int) -> c_int {
    let c = C(cv);
    c.seq().fetch_add(1, SeqCst);
    let plain = c.plain().load(SeqCst) != 0;
    wake(c.seq(), n, c.shared(), plain);
    0
}

/// `pthread_cond_init`: the attribute's clock and process-shared setting.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pthread_cond_init(cv: *mut pthread_cond_t, attr: *const pthread_condattr_t) -> c_int {
    crate::boundary(libc::ENOTRECOVERABLE, || {
        if !enabled() {
            // SAFETY: the caller's objects.
            return unsafe { real::pthread_cond_init(cv, attr) };
        }
        let (mut clock, mut pshared) = (libc::CLOCK_REALTIME, libc::PTHREAD_PROCESS_PRIVATE);
        if !attr.is_null() {
            // SAFETY: the caller's attribute object.
            unsafe {
                libc::pthread_condattr_getclock(attr, &mut clock);
                libc::pthread_condattr_getpshared(attr, &mut pshared);
            }
        }
        let c = C(cv);
        for i in 0..WORDS {
            c.w(i).store(0, Relaxed);
        }
        c.w(2).store(clock as u32, Relaxed);
        c.w(3).store((pshared != libc::PTHREAD_PROCESS_PRIVATE) as u32, Relaxed);
        0
    })
}

/// `pthread_cond_destroy`: waits until woken waiters have left.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pthread_cond_destroy(cv: *mut pthread_cond_t) -> c_int {
    crate::boundary(libc::ENOTRECOVERABLE, || {
        if !enabled() {
            // SAFETY: the caller's object.
            return unsafe { real::pthread_cond_destroy(cv) };
        }
        let _e = KeepErrno::new();
        let c = C(cv);
        Refs::drain(c.refs(), c.shared());
        0
    })
}

/// `pthread_cond_wait`: a photon wait in a photon thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pthread_cond_wait(cv: *mut pthread_cond_t, m: *mut pthread_mutex_t) -> c_int {
    crate::boundary(libc::ENOTRECOVERABLE, || {
        if !enabled() {
            // SAFETY: the caller's objects.
            return unsafe { real::pthread_cond_wait(cv, m) };
        }
        cond_wait(cv, m, None)
    })
}

/// `pthread_cond_timedwait`: the deadline is on the cond's clock.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pthread_cond_timedwait(
    cv: *mut pthread_cond_t,
    m: *mut pthread_mutex_t,
    abstime: *const timespec,
) -> c_int {
    crate::boundary(libc::ENOTRECOVERABLE, || {
        if !enabled() {
            // SAFETY: the caller's objects.
            return unsafe { real::pthread_cond_timedwait(cv, m, abstime) };
        }
        let clock = C(cv).clock();
        // SAFETY: the caller's timespec.
        cond_wait(cv, m, unsafe { Abs::new(clock, abstime) })
    })
}

/// `pthread_cond_clockwait`: EINVAL for clocks other than CLOCK_REALTIME
/// and CLOCK_MONOTONIC.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pthread_cond_clockwait(
    cv: *mut pthread_cond_t,
    m: *mut pthread_mutex_t,
    clock: clockid_t,
    abstime: *const timespec,
) -> c_int {
    crate::boundary(libc::ENOTRECOVERABLE, || {
        if !enabled() {
            // SAFETY: the caller's objects.
            return unsafe { real::pthread_cond_clockwait(cv, m, clock, abstime) };
        }
        if !clock_ok(clock) {
            return libc::EINVAL;
        }
        // SAFETY: the caller's timespec.
        cond_wait(cv, m, unsafe { Abs::new(clock, abstime) })
    })
}

/// `pthread_cond_signal`: wakes a waiter (photon or plain).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pthread_cond_signal(cv: *mut pthread_cond_t) -> c_int {
    crate::boundary(libc::ENOTRECOVERABLE, || {
        if !enabled() {
            // SAFETY: the caller's object.
            return unsafe { real::pthread_cond_signal(cv) };
        }
        let _e = KeepErrno::new();
        signal(cv, 1)
    })
}

/// `pthread_cond_broadcast`: wakes every waiter.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pthread_cond_broadcast(cv: *mut pthread_cond_t) -> c_int {
    crate::boundary(libc::ENOTRECOVERABLE, || {
        if !enabled() {
            // SAFETY: the caller's object.
            return unsafe { real::pthread_cond_broadcast(cv) };
        }
        let _e = KeepErrno::new();
        signal(cv, c_int::MAX)
    })
}
