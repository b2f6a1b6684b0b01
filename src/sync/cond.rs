//! `photon_cond`: a condition variable over a [`Mutex`].

use std::collections::VecDeque;

use super::{Mutex, Waiter, guard, remove};
use crate::errno::Errno;
use crate::sched::{self, FOREVER};

/// A condition variable; notify is callable from any OS thread.
#[derive(Default)]
pub struct Cond {
    waiters: std::sync::Mutex<VecDeque<Waiter>>,
}

impl Cond {
    /// A condition variable with no waiters.
    pub fn new() -> Cond {
        Cond::default()
    }

    /// Atomically releases `m` (which the caller must hold: else `EINVAL`)
    /// and waits for a notify, `deadline` (`ETIMEDOUT`) or an interrupt;
    /// holds `m` again on return, whatever the result. A notify that races
    /// with the timeout is not lost: the wait then reports success.
    pub fn wait(&self, m: &Mutex, deadline: u64) -> Result<(), Errno> {
        let (h, seq) = sched::next_wait_seq()?;
        if !m.held_by_caller() {
            return Err(Errno::EINVAL);
        }
        guard(&self.waiters).push_back(Waiter { h, seq });
        if let Err(e) = m.unlock() {
            remove(&mut guard(&self.waiters), h);
            return Err(e);
        }
        let woke = match sched::block_on(deadline, sched::Wait::Lock("condition variable")) {
            Ok(()) => Ok(()),
            Err(e) if remove(&mut guard(&self.waiters), h) => Err(e),
            Err(e) => {
                sched::keep_interrupt(e); // notified meanwhile: succeed, keep the interrupt
                Ok(())
            }
        };
        // Re-acquire, whatever happens. An interrupt meanwhile is not lost:
        // it becomes the result (or stays pending if the wait already failed).
        let mut late = None;
        while let Err(e) = m.lock(FOREVER) {
            late = Some(e);
        }
        match (woke, late) {
            (Ok(()), Some(e)) => Err(e),
            (Err(w), Some(e)) => {
                sched::keep_interrupt(e);
                Err(w)
            }
            (woke, None) => woke,
        }
    }

    /// Wakes the longest waiter, if any; true if there was one. A waiter
    /// taken off the queue here is woken for good: if its timeout or an
    /// interrupt races with this, its wait still reports the notify.
    pub fn notify_one(&self) -> bool {
        let w = guard(&self.waiters).pop_front();
        match w {
            Some(w) => {
                w.grant();
                true
            }
            None => false,
        }
    }

    /// Wakes every waiter.
    pub fn notify_all(&self) {
        let all = std::mem::take(&mut *guard(&self.waiters));
        for w in all {
            w.grant();
        }
    }

    /// True if threads wait on it.
    pub fn in_use(&self) -> bool {
        !guard(&self.waiters).is_empty()
    }
}
