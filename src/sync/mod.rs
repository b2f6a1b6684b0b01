//! Coroutine-blocking locks that work across vcpus: mutex, condition
//! variable, semaphore, reader-writer lock; and a futex ([`futex`]) for
//! locks that live in foreign memory (the preload shim's pthread objects).
//!
//! Each lock keeps its waiters, in arrival order, behind a short-held OS
//! mutex that is never held across a switch. A waiter is a (thread handle,
//! wait number) pair, so waking one is [`crate::sched::wake`], which works
//! from any OS thread and reaches a thread on another vcpu through that
//! vcpu's message queue. A release wakes the longest waiter (the semaphore:
//! those whose requests fit; the reader-writer lock: every waiting reader
//! enters at once, or the next writer), which competes with running threads
//! (keeping the lock busy while the waiter's vcpu wakes up); only a waiter
//! that has waited `mutex::STARVING_US` (1 ms) or more is handed what it
//! waits for directly, and nobody passes it meanwhile, so no waiter starves
//! (see `mutex.rs`). A waiter that times out or is interrupted withdraws itself;
//! if it was granted the lock in that very moment, it keeps it and reports
//! success (nothing is lost).

mod cond;
pub mod futex;
mod mutex;
mod rwlock;
mod sem;

pub use cond::Cond;
pub use mutex::Mutex;
pub use rwlock::RwLock;
pub use sem::Semaphore;

use std::collections::VecDeque;

use crate::errno::Errno;
use crate::sched::{self, Handle};

/// A parked thread: who, and which of its waits.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct Waiter {
    pub h: Handle,
    pub seq: u64,
}

impl Waiter {
    /// Wakes this waiter: it owns what it waited for.
    pub(crate) fn grant(self) {
        sched::wake(self.h, self.seq, 0);
    }
}

/// Locks a std mutex, ignoring poisoning (no user code runs under it).
pub(crate) fn guard<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Locks a std mutex if it is free, ignoring poisoning as [`guard`] does;
/// None if another thread holds it (or held it when a fork copied it).
pub(crate) fn try_guard<T>(m: &std::sync::Mutex<T>) -> Option<std::sync::MutexGuard<'_, T>> {
    match m.try_lock() {
        Ok(g) => Some(g),
        Err(std::sync::TryLockError::Poisoned(e)) => Some(e.into_inner()),
        Err(std::sync::TryLockError::WouldBlock) => None,
    }
}

/// Parks the calling photon thread on a lock.
///
/// `enqueue` runs under the lock's state: it either takes what is wanted at
/// once (returns false: no wait) or queues the waiter (returns true). After
/// a timeout or interrupt `withdraw` runs under the state: true if the
/// waiter was still queued (the wait failed), false if it had been granted
/// meanwhile (the wait succeeded after all, and an interrupt stays pending).
pub(crate) fn park<S>(
    what: &'static str,
    state: &std::sync::Mutex<S>,
    deadline: u64,
    enqueue: impl FnOnce(&mut S, Waiter) -> bool,
    withdraw: impl FnOnce(&mut S, Handle) -> bool,
) -> Result<(), Errno> {
    let (h, seq) = sched::next_wait_seq()?;
    if !enqueue(&mut guard(state), Waiter { h, seq }) {
        return Ok(());
    }
    match sched::block_on(deadline, sched::Wait::Lock(what)) {
        Ok(()) => Ok(()),
        Err(e) => {
            if withdraw(&mut guard(state), h) {
                Err(e)
            } else {
                // Granted in the same moment: succeed, but keep the interrupt
                // for the thread's next blocking call.
                sched::keep_interrupt(e);
                Ok(())
            }
        }
    }
}

/// Removes `h` from `q`; true if it was there.
pub(crate) fn remove(q: &mut VecDeque<Waiter>, h: Handle) -> bool {
    match q.iter().position(|w| w.h == h) {
        Some(i) => {
            q.remove(i);
            true
        }
        None => false,
    }
}
