//! `pthread_once`, reimplemented for every thread with glibc's encoding of
//! `pthread_once_t` (0 not run, [`IN_PROGRESS`] plus the fork generation
//! while a thread runs the routine, [`DONE`]): a photon thread that finds
//! another thread (photon or plain) running the routine waits as a photon
//! wait, and the finisher wakes waiters of both kinds. A routine that
//! unwinds (a C++ exception through `std::call_once`) leaves the control
//! not run and wakes the waiters, as glibc's clean-up handler does.

use core::ffi::c_int;
use core::sync::atomic::{AtomicU32, Ordering::*};
use libc::pthread_once_t;

use super::{KeepErrno, Woke, enabled, me, repend, wait, wake, word};
use crate::real;

const IN_PROGRESS: u32 = 1;
const DONE: u32 = 2;
/// The fork generation (in steps of 4, as glibc's): a control left in
/// progress by a thread that did not survive a fork is run again.
static GENERATION: AtomicU32 = AtomicU32::new(0);

/// Called in a fork's child.
pub(super) fn forked_child() {
    GENERATION.fetch_add(4, Relaxed);
}

/// Resets the control if the routine unwinds.
struct Running<'a>(&'a AtomicU32);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.store(0, Release);
        wake(self.0, c_int::MAX, false, true);
    }
}

/// `pthread_once`: the routine runs once; other callers (photon threads as
/// photon waits) return after it has finished.
#[unsafe(no_mangle)]
pub unsafe extern "C-unwind" fn pthread_once(
    control: *mut pthread_once_t,
    routine: Option<unsafe extern "C-unwind" fn()>,
) -> c_int {
    // SAFETY: a pthread_once_t is one aligned int.
    let w = unsafe { word(control, 0) };
    if w.load(Acquire) & DONE != 0 {
        return 0;
    }
    if !enabled() {
        // SAFETY: the caller's control and routine.
        return unsafe { real::pthread_once(control, routine) };
    }
    let _e = KeepErrno::new();
    let photon = me().is_some();
    let mut interrupted = 0;
    loop {
        let mut val = w.load(Acquire);
        let new = GENERATION.load(Relaxed) | IN_PROGRESS;
        loop {
            if val & DONE != 0 {
                if interrupted != 0 {
                    repend(interrupted);
                }
                return 0;
            }
            match w.compare_exchange_weak(val, new, Acquire, Acquire) {
                Ok(_) => break,
                Err(now) => val = now,
            }
        }
        if val & IN_PROGRESS != 0 && val == new {
            // Another thread runs it (same fork generation): wait.
            if let Woke::Interrupted(e) = wait(w, new, photon, false, None)
                && photon
            {
                interrupted = e;
            }
            continue;
        }
        let running = Running(w);
        if let Some(f) = routine {
            // SAFETY: the caller's routine.
            unsafe { f() };
        }
        core::mem::forget(running);
        w.store(DONE, Release);
        wake(w, c_int::MAX, false, true);
        if interrupted != 0 {
            repend(interrupted);
        }
        return 0;
    }
}
