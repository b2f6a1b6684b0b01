//! `photon_sem`: a counting semaphore, FIFO among its waiters: a large
//! request at the head is not overtaken by smaller ones queued behind it.
//!
//! Hand-offs as the mutex does them (see `mutex.rs`), so a semaphore used
//! as a lock across vcpus is not one cross-vcpu round trip per unit: a
//! signal wakes the head waiters whose requests fit to *compete* for the
//! units, and a running thread may take units meanwhile (keeping them busy
//! while the woken waiters' vcpus wake up). A waiter that has waited
//! [`STARVING_US`] or more is instead handed its units directly, and while
//! it waits nobody takes units past it, so no request waits much longer
//! than that behind newcomers. A woken waiter that loses the race goes
//! back to the front of the queue.

use std::collections::VecDeque;

use super::mutex::STARVING_US;
use super::{Waiter, guard, park};
use crate::errno::Errno;
use crate::sched::{self, Handle};
use crate::time::now_us;

struct Queued {
    w: Waiter,
    n: u64,
    since: u64,
}

#[derive(Default)]
struct State {
    count: u64,
    waiters: VecDeque<Queued>,
    /// Waiters handed their units (woken, not yet back on the CPU).
    handed: Vec<Handle>,
}

impl State {
    /// True if a newcomer asking for `n` may take units now.
    fn may_take(&self, n: u64) -> bool {
        self.count >= n
            && self
                .waiters
                .front()
                .is_none_or(|h| now_us().saturating_sub(h.since) < STARVING_US)
    }

    /// After units came back: hands them to a starving head, or wakes the
    /// head waiters whose requests fit to compete. Returns whom to wake.
    fn release(&mut self) -> Vec<Waiter> {
        let mut woken = Vec::new();
        let mut room = self.count;
        let now = now_us();
        while let Some(h) = self.waiters.front() {
            if h.n > room {
                break;
            }
            let h = self.waiters.pop_front().expect("a head");
            if now.saturating_sub(h.since) >= STARVING_US {
                self.count -= h.n;
                self.handed.push(h.w.h);
            }
            room -= h.n;
            woken.push(h.w);
        }
        woken
    }

    /// Takes back a hand-off to `me`, if there was one.
    fn was_handed(&mut self, me: Handle) -> bool {
        match self.handed.iter().position(|&h| h == me) {
            Some(i) => {
                self.handed.swap_remove(i);
                true
            }
            None => false,
        }
    }
}

/// A counting semaphore; signal is callable from any OS thread.
pub struct Semaphore {
    state: std::sync::Mutex<State>,
}

fn wake_all(ws: Vec<Waiter>) {
    for w in ws {
        w.grant();
    }
}

impl Semaphore {
    /// A semaphore holding `count`.
    pub fn new(count: u64) -> Semaphore {
        Semaphore {
            state: std::sync::Mutex::new(State {
                count,
                ..State::default()
            }),
        }
    }

    /// Takes `n` (> 0), waiting until `deadline` for it.
    pub fn wait(&self, n: u64, deadline: u64) -> Result<(), Errno> {
        if n == 0 {
            return Err(Errno::EINVAL);
        }
        let me = sched::self_handle().ok_or(Errno::EPERM)?;
        let since = now_us();
        let mut retry = false;
        loop {
            let mut granted = false;
            park(
                "semaphore",
                &self.state,
                deadline,
                |s, w| {
                    if s.may_take(n) || (retry && s.count >= n) {
                        s.count -= n;
                        granted = true;
                        return false;
                    }
                    let q = Queued { w, n, since };
                    if retry {
                        s.waiters.push_front(q);
                    } else {
                        s.waiters.push_back(q);
                    }
                    true
                },
                |s, h| match s.waiters.iter().position(|q| q.w.h == h) {
                    Some(i) => {
                        s.waiters.remove(i);
                        true
                    }
                    None => false, // woken meanwhile (handed or to compete): see below
                },
            )
            .inspect_err(|_| self.pass_on())?;
            if granted {
                return Ok(());
            }
            let mut s = guard(&self.state);
            if s.was_handed(me) {
                return Ok(());
            }
            if s.count >= n {
                s.count -= n; // woken to compete, and won
                return Ok(());
            }
            drop(s);
            // Lost the race. An interrupt or the deadline that came with
            // the wake-up ends the wait; others compete in our place.
            if let Err(e) = sched::check_interrupt() {
                self.pass_on();
                return Err(e);
            }
            if now_us() >= deadline {
                self.pass_on();
                return Err(Errno::ETIMEDOUT);
            }
            retry = true;
        }
    }

    /// A woken waiter leaves without its units: wakes whoever fits now.
    fn pass_on(&self) {
        let woken = guard(&self.state).release();
        wake_all(woken);
    }

    /// Adds `n`, waking the waiters whose requests now fit (or handing them
    /// their units if they have waited long). `EOVERFLOW` if the count
    /// would overflow.
    pub fn signal(&self, n: u64) -> Result<(), Errno> {
        let woken = {
            let mut s = guard(&self.state);
            s.count = s.count.checked_add(n).ok_or(Errno(libc::EOVERFLOW))?;
            if s.waiters.is_empty() {
                return Ok(());
            }
            s.release()
        };
        wake_all(woken);
        Ok(())
    }

    /// The count now (for tests and stats).
    pub fn count(&self) -> u64 {
        guard(&self.state).count
    }

    /// True if threads wait on it.
    pub fn in_use(&self) -> bool {
        let s = guard(&self.state);
        !s.waiters.is_empty() || !s.handed.is_empty()
    }
}
