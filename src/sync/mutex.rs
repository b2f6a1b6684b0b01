//! `photon_mutex`: one atomic word on the uncontended path; a FIFO of
//! parked waiters otherwise.
//!
//! Fairness without convoys: an unlock wakes the longest waiter, which then
//! competes for the lock (a running thread may take it first, which keeps
//! the lock busy instead of idle while the waiter's vcpu wakes up). A waiter
//! that has waited longer than [`STARVING_US`] is instead handed the lock
//! directly, so no waiter waits much longer than that behind newcomers.
//! A woken waiter that loses the race goes back to the front of the queue.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering::*};

use super::{Waiter, guard, park};
use crate::errno::Errno;
use crate::sched::{self, Handle};
use crate::time::now_us;

/// Set in `state` while threads wait: unlock must take the slow path.
/// (A handle's low half is a slot index + 1 < 2^24, so bit 31 is free.)
const WAITERS: u64 = 1 << 31;
/// A waiter parked this long gets the lock handed to it on the next unlock.
pub const STARVING_US: u64 = 1000;

struct Queued {
    w: Waiter,
    since: u64,
}

/// A coroutine-blocking, non-recursive mutex.
pub struct Mutex {
    /// The owner's handle (0: unlocked) | WAITERS.
    state: AtomicU64,
    waiters: std::sync::Mutex<VecDeque<Queued>>,
}

fn me() -> Result<Handle, Errno> {
    sched::self_handle().ok_or(Errno::EPERM)
}

fn owner(s: u64) -> u64 {
    s & !WAITERS
}

impl Default for Mutex {
    fn default() -> Self {
        Self::new()
    }
}

impl Mutex {
    /// An unlocked mutex.
    pub fn new() -> Mutex {
        Mutex {
            state: AtomicU64::new(0),
            waiters: std::sync::Mutex::new(VecDeque::new()),
        }
    }

    /// Takes the lock if it has no owner (waiters or not), keeping WAITERS.
    fn try_take(&self, me: Handle) -> bool {
        let mut s = self.state.load(Relaxed);
        while owner(s) == 0 {
            match self
                .state
                .compare_exchange_weak(s, me.0 | (s & WAITERS), Acquire, Relaxed)
            {
                Ok(_) => return true,
                Err(now) => s = now,
            }
        }
        false
    }

    /// Takes the lock if it is free and nobody waits: one compare-and-swap.
    #[inline(always)]
    pub fn lock_fast(&self) -> bool {
        sched::self_handle().is_some_and(|me| self.state.compare_exchange(0, me.0, Acquire, Relaxed).is_ok())
    }

    /// Releases the caller's lock if nobody waits: one compare-and-swap,
    /// which checks the owner too.
    #[inline(always)]
    pub fn unlock_fast(&self) -> bool {
        sched::self_handle().is_some_and(|me| self.state.compare_exchange(me.0, 0, Release, Relaxed).is_ok())
    }

    /// Locks, waiting up to `timeout_us` microseconds (`u64::MAX`: no
    /// limit). The uncontended path is one compare-and-swap; the clock is
    /// read only when the caller has to wait.
    #[inline]
    pub fn lock_for(&self, timeout_us: u64) -> Result<(), Errno> {
        if let Some(me) = sched::self_handle()
            && self.state.compare_exchange(0, me.0, Acquire, Relaxed).is_ok()
        {
            return Ok(());
        }
        self.lock(crate::time::deadline(timeout_us))
    }

    /// Locks, waiting until `deadline` (`ETIMEDOUT`); `EDEADLK` if the
    /// caller holds it already; the interrupter's errno if interrupted.
    #[inline(never)]
    pub fn lock(&self, deadline: u64) -> Result<(), Errno> {
        let me = me()?;
        if self.state.compare_exchange(0, me.0, Acquire, Relaxed).is_ok() {
            return Ok(());
        }
        if owner(self.state.load(Relaxed)) == me.0 {
            return Err(Errno(libc::EDEADLK));
        }
        let since = now_us();
        let mut retry = false;
        loop {
            let mut baton = None;
            park(
                "mutex",
                &self.waiters,
                deadline,
                |q, w| loop {
                    if self.try_take(me) {
                        return false;
                    }
                    let s = self.state.load(Relaxed);
                    if owner(s) != 0 && self.state.compare_exchange(s, s | WAITERS, AcqRel, Relaxed).is_ok() {
                        let entry = Queued { w, since };
                        if retry {
                            q.push_front(entry)
                        } else {
                            q.push_back(entry)
                        }
                        return true;
                    }
                },
                |q, h| {
                    let Some(i) = q.iter().position(|e| e.w.h == h) else {
                        return false;
                    };
                    q.remove(i);
                    if q.is_empty() {
                        self.state.fetch_and(!WAITERS, AcqRel);
                    } else if owner(self.state.load(Acquire)) == 0 {
                        // We were woken to compete and leave instead: pass it on.
                        baton = q.pop_front().map(|e| e.w);
                    }
                    true
                },
            )
            .inspect_err(|_| {
                if let Some(w) = baton.take() {
                    w.grant();
                }
            })?;
            if owner(self.state.load(Acquire)) == me.0 {
                return Ok(());
            }
            // Woken to compete, not granted. An interrupt that came with the
            // wake-up ends the wait; the next waiter competes in our place.
            if let Err(e) = sched::check_interrupt() {
                self.pass_baton();
                return Err(e);
            }
            retry = true; // lost the race: back to the front
        }
    }

    /// If the lock is free while threads wait, wakes the longest waiter to
    /// compete (a woken waiter that leaves instead calls this).
    fn pass_baton(&self) {
        let next = {
            let mut q = guard(&self.waiters);
            if owner(self.state.load(Acquire)) != 0 {
                return;
            }
            let next = q.pop_front();
            if q.is_empty() {
                self.state.fetch_and(!WAITERS, AcqRel);
            }
            next
        };
        if let Some(e) = next {
            e.w.grant();
        }
    }

    /// Locks if free, else `EBUSY`.
    pub fn try_lock(&self) -> Result<(), Errno> {
        let me = me()?;
        if self.try_take(me) {
            Ok(())
        } else {
            Err(Errno(libc::EBUSY))
        }
    }

    /// Unlocks, waking the longest waiter (or handing it the lock if it is
    /// starving). `EINVAL` if the caller does not hold it. The path without
    /// waiters is one compare-and-swap, which checks the owner too.
    #[inline]
    pub fn unlock(&self) -> Result<(), Errno> {
        if let Some(me) = sched::self_handle()
            && self.state.compare_exchange(me.0, 0, Release, Relaxed).is_ok()
        {
            return Ok(());
        }
        self.unlock_slow()
    }

    #[inline(never)]
    fn unlock_slow(&self) -> Result<(), Errno> {
        let me = me().map_err(|_| Errno::EINVAL)?;
        if self.state.compare_exchange(me.0, 0, Release, Relaxed).is_ok() {
            return Ok(());
        }
        if owner(self.state.load(Relaxed)) != me.0 {
            return Err(Errno::EINVAL);
        }
        let next = {
            let mut q = guard(&self.waiters);
            let next = q.pop_front();
            let waiters = if q.is_empty() { 0 } else { WAITERS };
            match &next {
                Some(e) if now_us().saturating_sub(e.since) >= STARVING_US => {
                    self.state.store(e.w.h.0 | waiters, Release) // hand-off
                }
                _ => self.state.store(waiters, Release),
            }
            next
        };
        if let Some(e) = next {
            e.w.grant();
        }
        Ok(())
    }

    /// True if the calling photon thread holds the mutex.
    pub fn held_by_caller(&self) -> bool {
        sched::self_handle().is_some_and(|me| owner(self.state.load(Acquire)) == me.0)
    }

    /// True if locked or waited on (a `free` would be `EBUSY`).
    pub fn in_use(&self) -> bool {
        self.state.load(Acquire) != 0 || !guard(&self.waiters).is_empty()
    }
}
