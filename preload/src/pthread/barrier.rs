//! Barriers, reimplemented for every thread on the `pthread_barrier_t`'s
//! 32 bytes. Words: 0 the count, 1 arrived in this round, 2 the round
//! number waiters sleep on, 3 process-shared, 4 [`Refs`] (destroy waits
//! for waiters still leaving). The last arrival of a round gets
//! `PTHREAD_BARRIER_SERIAL_THREAD` and wakes the others (one futex syscall
//! per round for plain waiters, plus photon wakes).

use core::ffi::c_int;
use core::sync::atomic::{AtomicU32, Ordering::*};
use libc::{pthread_barrier_t, pthread_barrierattr_t};

use super::{KeepErrno, Refs, Woke, enabled, me, repend, wait, wake, word};
use crate::real;

struct B(*mut pthread_barrier_t);

impl B {
    fn w(&self, i: usize) -> &AtomicU32 {
        // SAFETY: a pthread_barrier_t has 8 aligned words.
        unsafe { word(self.0, i) }
    }
}

/// `pthread_barrier_init`: EINVAL for a count of 0 (or above INT_MAX).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pthread_barrier_init(
    b: *mut pthread_barrier_t,
    attr: *const pthread_barrierattr_t,
    count: libc::c_uint,
) -> c_int {
    crate::boundary(libc::ENOTRECOVERABLE, || {
        if !enabled() {
            // SAFETY: the caller's objects.
            return unsafe { real::pthread_barrier_init(b, attr, count) };
        }
        if count == 0 || count > c_int::MAX as libc::c_uint {
            return libc::EINVAL;
        }
        let mut pshared = libc::PTHREAD_PROCESS_PRIVATE;
        if !attr.is_null() {
            // SAFETY: the caller's attribute object.
            unsafe { libc::pthread_barrierattr_getpshared(attr, &mut pshared) };
        }
        let bar = B(b);
        for i in 0..8 {
            bar.w(i).store(0, Relaxed);
        }
        bar.w(0).store(count, Relaxed);
        bar.w(3)
            .store((pshared != libc::PTHREAD_PROCESS_PRIVATE) as u32, Release);
        0
    })
}

/// `pthread_barrier_destroy`: waits for waiters still leaving.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pthread_barrier_destroy(b: *mut pthread_barrier_t) -> c_int {
    crate::boundary(libc::ENOTRECOVERABLE, || {
        if !enabled() {
            // SAFETY: the caller's object.
            return unsafe { real::pthread_barrier_destroy(b) };
        }
        let _e = KeepErrno::new();
        let bar = B(b);
        Refs::drain(bar.w(4), bar.w(3).load(Relaxed) != 0);
        0
    })
}

/// `pthread_barrier_wait`: a photon wait in a photon thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pthread_barrier_wait(b: *mut pthread_barrier_t) -> c_int {
    crate::boundary(libc::ENOTRECOVERABLE, || {
        if !enabled() {
            // SAFETY: the caller's object.
            return unsafe { real::pthread_barrier_wait(b) };
        }
        let _e = KeepErrno::new();
        let bar = B(b);
        let photon = me().is_some();
        let shared = bar.w(3).load(Relaxed) != 0;
        Refs::enter(bar.w(4));
        let round = bar.w(2).load(SeqCst);
        let arrived = bar.w(1).fetch_add(1, SeqCst) + 1;
        if arrived >= bar.w(0).load(Relaxed) {
            bar.w(1).store(0, SeqCst);
            bar.w(2).fetch_add(1, SeqCst);
            wake(bar.w(2), c_int::MAX, shared, true);
            Refs::leave(bar.w(4), shared);
            return libc::PTHREAD_BARRIER_SERIAL_THREAD;
        }
        let mut interrupted = 0;
        while bar.w(2).load(SeqCst) == round {
            if let Woke::Interrupted(e) = wait(bar.w(2), round, photon, shared, None)
                && photon
            {
                interrupted = e;
            }
        }
        Refs::leave(bar.w(4), shared);
        if interrupted != 0 {
            repend(interrupted);
        }
        0
    })
}
