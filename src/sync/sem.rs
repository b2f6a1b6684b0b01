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
//!
//! The count lives in one atomic word while nobody waits, so an
//! uncontended wait or signal is one compare-and-swap. While threads wait
//! (or the count is too large for the word) the word says [`SLOW`] and the
//! count lives in the locked state instead: every operation then takes the
//! state's lock, which keeps the queue's order and wake-ups exact. The word
//! goes back to holding the count as soon as the queue is empty.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering::*};

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

/// Set in [`Semaphore::word`] while the count lives in the locked state.
const SLOW: u64 = 1 << 63;

/// A counting semaphore; signal is callable from any OS thread.
pub struct Semaphore {
    /// The count while nobody waits; [`SLOW`] otherwise.
    word: AtomicU64,
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
        let (word, count) = if count < SLOW { (count, 0) } else { (SLOW, count) };
        Semaphore {
            word: AtomicU64::new(word),
            state: std::sync::Mutex::new(State {
                count,
                ..State::default()
            }),
        }
    }

    /// Under the state's lock: moves the count from the word into the
    /// state (if it is not there already), so fast paths keep off.
    fn enter(&self, s: &mut State) {
        let w = self.word.swap(SLOW, AcqRel);
        if w & SLOW == 0 {
            s.count = w;
        }
    }

    /// Under the state's lock, last: gives the count back to the word if
    /// nobody waits and it fits.
    fn leave(&self, s: &mut State) {
        if s.waiters.is_empty() && s.count < SLOW {
            self.word.store(s.count, Release);
            s.count = 0;
        }
    }

    /// Takes `n` if nobody waits and the count has it: one
    /// compare-and-swap. The caller must be a photon thread.
    #[inline(always)]
    pub fn wait_fast(&self, n: u64) -> bool {
        let w = self.word.load(Relaxed);
        w >= n && w & SLOW == 0 && self.word.compare_exchange(w, w - n, Acquire, Relaxed).is_ok()
    }

    /// Adds `n` if nobody waits and the sum fits the word: one
    /// compare-and-swap.
    #[inline(always)]
    pub fn signal_fast(&self, n: u64) -> bool {
        let w = self.word.load(Relaxed);
        w & SLOW == 0
            && w.checked_add(n).is_some_and(|v| v < SLOW)
            && self.word.compare_exchange(w, w + n, Release, Relaxed).is_ok()
    }

    /// Takes `n` (> 0), waiting until `deadline` for it.
    pub fn wait(&self, n: u64, deadline: u64) -> Result<(), Errno> {
        if n == 0 {
            return Err(Errno::EINVAL);
        }
        if sched::in_thread() && self.wait_fast(n) {
            return Ok(());
        }
        self.wait_slow(n, deadline)
    }

    #[inline(never)]
    fn wait_slow(&self, n: u64, deadline: u64) -> Result<(), Errno> {
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
                    self.enter(s);
                    if s.may_take(n) || (retry && s.count >= n) {
                        s.count -= n;
                        granted = true;
                        self.leave(s);
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
                        self.enter(s);
                        self.leave(s);
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
            self.enter(&mut s);
            let won = s.count >= n;
            if won {
                s.count -= n; // woken to compete, and won
            }
            self.leave(&mut s);
            if won {
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
        let woken = {
            let mut s = guard(&self.state);
            self.enter(&mut s);
            let woken = s.release();
            self.leave(&mut s);
            woken
        };
        wake_all(woken);
    }

    /// Adds `n`, waking the waiters whose requests now fit (or handing them
    /// their units if they have waited long). `EOVERFLOW` if the count
    /// would overflow.
    pub fn signal(&self, n: u64) -> Result<(), Errno> {
        if self.signal_fast(n) {
            return Ok(());
        }
        self.signal_slow(n)
    }

    #[inline(never)]
    fn signal_slow(&self, n: u64) -> Result<(), Errno> {
        let woken = {
            let mut s = guard(&self.state);
            self.enter(&mut s);
            let Some(sum) = s.count.checked_add(n) else {
                self.leave(&mut s);
                return Err(Errno(libc::EOVERFLOW));
            };
            s.count = sum;
            let woken = s.release();
            self.leave(&mut s);
            woken
        };
        wake_all(woken);
        Ok(())
    }

    /// The count now (for tests and stats).
    pub fn count(&self) -> u64 {
        let mut s = guard(&self.state);
        self.enter(&mut s);
        let c = s.count;
        self.leave(&mut s);
        c
    }

    /// True if threads wait on it.
    pub fn in_use(&self) -> bool {
        let s = guard(&self.state);
        !s.waiters.is_empty() || !s.handed.is_empty()
    }
}
