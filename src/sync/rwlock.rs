//! `photon_rwlock`: a phase-fair reader-writer lock. A waiting writer stops
//! new readers from entering; when a writer leaves, every reader waiting
//! enters together, and when the last reader leaves the next writer is
//! woken. So neither readers nor writers can starve.
//!
//! Writers hand off as the mutex does (see `mutex.rs`): the woken writer
//! competes with running writers, which keeps the lock busy while its vcpu
//! wakes up, unless it has waited [`STARVING_US`] or more: then it is
//! handed the lock, and no newcomer takes it past such a writer.
//!
//! While nobody waits, the lock's state is one atomic word (a writer bit
//! and the number of readers), so an uncontended lock or unlock is one
//! compare-and-swap. While threads wait the word says [`SLOW`] and the
//! state lives under the lock's OS mutex instead, where every operation
//! then goes; the word holds the state again once no thread waits. The
//! writer's identity is a separate word only the writer itself writes
//! (set after it takes the lock, cleared before it lets go), which is all
//! `EDEADLK` and `unlock` need to know.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering::*};

use super::mutex::STARVING_US;
use super::{Waiter, guard, park, remove};
use crate::errno::Errno;
use crate::sched::{self, Handle};
use crate::time::now_us;

/// Set in [`RwLock::word`] while the state lives under the OS mutex.
const SLOW: u64 = 1 << 63;
/// Set in [`RwLock::word`] while a writer holds the lock.
const WRITER: u64 = 1 << 62;

#[derive(Default)]
struct State {
    readers: u64,
    /// A writer holds the lock.
    writer: bool,
    /// The starving writer the lock was handed to (woken, not yet running).
    handed: Option<Handle>,
    /// Queued writers and since when they wait.
    writers_waiting: VecDeque<(Waiter, u64)>,
    readers_waiting: VecDeque<Waiter>,
}

impl State {
    /// Admits the waiting readers, or wakes the next writer (handing it the
    /// lock if it starves); returns whom to wake.
    fn grant(&mut self, after_writer: bool) -> Vec<Waiter> {
        if self.writer {
            return Vec::new();
        }
        let readers_first = after_writer || self.writers_waiting.is_empty();
        if readers_first && !self.readers_waiting.is_empty() {
            let woken: Vec<Waiter> = self.readers_waiting.drain(..).collect();
            self.readers += woken.len() as u64;
            return woken;
        }
        if self.readers == 0
            && let Some((w, since)) = self.writers_waiting.pop_front()
        {
            if now_us().saturating_sub(since) >= STARVING_US {
                self.writer = true;
                self.handed = Some(w.h);
            }
            return vec![w];
        }
        Vec::new()
    }

    /// True if a writer that is not the head of the queue may take the lock.
    fn writer_may_barge(&self) -> bool {
        !self.writer
            && self.readers == 0
            && self.readers_waiting.is_empty()
            && self
                .writers_waiting
                .front()
                .is_none_or(|&(_, since)| now_us().saturating_sub(since) < STARVING_US)
    }
}

/// A reader-writer lock.
pub struct RwLock {
    /// [`WRITER`] | readers while nobody waits; [`SLOW`] otherwise.
    word: AtomicU64,
    /// The writer's handle while it holds the lock (0 otherwise); written
    /// only by the writer itself.
    writer: AtomicU64,
    state: std::sync::Mutex<State>,
}

impl Default for RwLock {
    fn default() -> Self {
        Self::new()
    }
}

fn wake_all(ws: Vec<Waiter>) {
    for w in ws {
        w.grant();
    }
}

fn me() -> Result<Handle, Errno> {
    sched::self_handle().ok_or(Errno::EPERM)
}

impl RwLock {
    /// An unlocked rwlock.
    pub fn new() -> RwLock {
        RwLock {
            word: AtomicU64::new(0),
            writer: AtomicU64::new(0),
            state: std::sync::Mutex::new(State::default()),
        }
    }

    /// Under the state's lock: moves the word's state into `s` (if it is
    /// not there already), so fast paths keep off.
    fn enter(&self, s: &mut State) {
        let w = self.word.swap(SLOW, AcqRel);
        if w & SLOW == 0 {
            s.writer = w & WRITER != 0;
            s.readers = w & !WRITER;
        }
    }

    /// Under the state's lock, last: gives the state back to the word if
    /// nobody waits.
    fn leave(&self, s: &mut State) {
        if s.writers_waiting.is_empty() && s.readers_waiting.is_empty() && s.readers < WRITER {
            let w = if s.writer { WRITER } else { 0 } | s.readers;
            self.word.store(w, Release);
        }
    }

    /// Runs `f` on the state with the word's state moved in, and the word
    /// updated after.
    fn with_state<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        let mut s = guard(&self.state);
        self.enter(&mut s);
        let r = f(&mut s);
        self.leave(&mut s);
        r
    }

    /// True if the caller (`me`) holds the write lock.
    fn is_writer(&self, me: Handle) -> bool {
        self.writer.load(Relaxed) == me.0
    }

    /// Shared lock if no writer holds it and nobody waits: one
    /// compare-and-swap. The caller must be a photon thread.
    #[inline(always)]
    pub fn read_fast(&self) -> bool {
        let w = self.word.load(Relaxed);
        w & (SLOW | WRITER) == 0 && self.word.compare_exchange(w, w + 1, Acquire, Relaxed).is_ok()
    }

    /// Exclusive lock if it is free and nobody waits: one compare-and-swap.
    #[inline(always)]
    pub fn write_fast(&self) -> bool {
        match sched::self_handle() {
            Some(me) if self.word.compare_exchange(0, WRITER, Acquire, Relaxed).is_ok() => {
                self.writer.store(me.0, Relaxed);
                true
            }
            _ => false,
        }
    }

    /// Releases the caller's lock if nobody waits: one compare-and-swap.
    #[inline(always)]
    pub fn unlock_fast(&self) -> bool {
        let Some(me) = sched::self_handle() else {
            return false;
        };
        if self.is_writer(me) {
            self.writer.store(0, Relaxed);
            if self.word.compare_exchange(WRITER, 0, Release, Relaxed).is_ok() {
                return true;
            }
            self.writer.store(me.0, Relaxed); // the slow path does it
            return false;
        }
        let w = self.word.load(Relaxed);
        w & (SLOW | WRITER) == 0 && w > 0 && self.word.compare_exchange(w, w - 1, Release, Relaxed).is_ok()
    }

    /// Shared lock, waiting until `deadline`; `EDEADLK` if the caller
    /// holds it for writing.
    pub fn read(&self, deadline: u64) -> Result<(), Errno> {
        let me = me()?;
        if self.is_writer(me) {
            return Err(Errno(libc::EDEADLK));
        }
        if self.read_fast() {
            return Ok(());
        }
        park(
            "rwlock (read)",
            &self.state,
            deadline,
            |s, w| {
                self.enter(s);
                if !s.writer && s.writers_waiting.is_empty() {
                    s.readers += 1;
                    self.leave(s);
                    return false;
                }
                s.readers_waiting.push_back(w);
                true
            },
            |s, h| {
                let queued = remove(&mut s.readers_waiting, h);
                if queued {
                    self.enter(s);
                    self.leave(s);
                }
                queued
            },
        )
    }

    /// Exclusive lock, waiting until `deadline`; `EDEADLK` if the caller
    /// holds it for writing already.
    pub fn write(&self, deadline: u64) -> Result<(), Errno> {
        let me = me()?;
        if self.is_writer(me) {
            return Err(Errno(libc::EDEADLK));
        }
        if self.write_fast() {
            return Ok(());
        }
        let since = now_us();
        let mut retry = false;
        loop {
            let mut woken = Vec::new();
            let mut granted = false;
            let r = park(
                "rwlock (write)",
                &self.state,
                deadline,
                |s, w| {
                    self.enter(s);
                    if s.writer_may_barge() || (retry && !s.writer && s.readers == 0) {
                        s.writer = true;
                        granted = true;
                        self.leave(s);
                        return false;
                    }
                    if retry {
                        s.writers_waiting.push_front((w, since));
                    } else {
                        s.writers_waiting.push_back((w, since));
                    }
                    true
                },
                |s, h| match s.writers_waiting.iter().position(|(w, _)| w.h == h) {
                    Some(i) => {
                        s.writers_waiting.remove(i);
                        self.enter(s);
                        woken = s.grant(false); // readers held back by us may enter
                        self.leave(s);
                        true
                    }
                    None => false, // woken meanwhile: see below
                },
            );
            wake_all(woken);
            r?;
            let won = granted
                || self.with_state(|s| {
                    if s.handed == Some(me) {
                        s.handed = None; // handed over
                        return true;
                    }
                    if !s.writer && s.readers == 0 {
                        s.writer = true; // woken to compete, and won
                        return true;
                    }
                    false
                });
            if won {
                self.writer.store(me.0, Relaxed);
                return Ok(());
            }
            // Lost the race: an interrupt or the deadline that came with the
            // wake-up ends the wait, and whoever may enter now is woken.
            let left = sched::check_interrupt().and_then(|()| {
                if now_us() >= deadline {
                    Err(Errno::ETIMEDOUT)
                } else {
                    Ok(())
                }
            });
            if let Err(e) = left {
                let woken = self.with_state(|s| s.grant(false));
                wake_all(woken);
                return Err(e);
            }
            retry = true;
        }
    }

    /// Shared lock if it can be had now (no writer holds it or waits for
    /// it), else `EBUSY`; never waits. `EDEADLK` if the caller holds it for
    /// writing.
    pub fn try_read(&self) -> Result<(), Errno> {
        let me = me()?;
        if self.is_writer(me) {
            return Err(Errno(libc::EDEADLK));
        }
        if self.read_fast() {
            return Ok(());
        }
        self.with_state(|s| {
            if s.writer || !s.writers_waiting.is_empty() {
                return Err(Errno(libc::EBUSY));
            }
            s.readers += 1;
            Ok(())
        })
    }

    /// Exclusive lock if it is free now, else `EBUSY`; never waits.
    /// `EDEADLK` if the caller holds it for writing already.
    pub fn try_write(&self) -> Result<(), Errno> {
        let me = me()?;
        if self.is_writer(me) {
            return Err(Errno(libc::EDEADLK));
        }
        if self.write_fast() {
            return Ok(());
        }
        self.with_state(|s| {
            if s.writer || s.readers > 0 {
                return Err(Errno(libc::EBUSY));
            }
            s.writer = true;
            Ok(())
        })?;
        self.writer.store(me.0, Relaxed);
        Ok(())
    }

    /// Releases the caller's lock (write if it is the writer, else one
    /// read lock). `EINVAL` if nothing is held.
    pub fn unlock(&self) -> Result<(), Errno> {
        if self.unlock_fast() {
            return Ok(());
        }
        self.unlock_slow()
    }

    #[inline(never)]
    fn unlock_slow(&self) -> Result<(), Errno> {
        let me = sched::self_handle().ok_or(Errno::EINVAL)?;
        let as_writer = self.is_writer(me);
        if as_writer {
            self.writer.store(0, Relaxed);
        }
        let woken = self.with_state(|s| {
            if as_writer {
                s.writer = false;
                Ok(s.grant(true))
            } else if s.readers > 0 && !s.writer {
                s.readers -= 1;
                Ok(s.grant(false))
            } else {
                Err(Errno::EINVAL)
            }
        })?;
        wake_all(woken);
        Ok(())
    }

    /// True if held or waited on.
    pub fn in_use(&self) -> bool {
        self.with_state(|s| s.readers > 0 || s.writer || !s.writers_waiting.is_empty() || !s.readers_waiting.is_empty())
    }
}
