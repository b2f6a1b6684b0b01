//! `photon_rwlock`: a phase-fair reader-writer lock. A waiting writer stops
//! new readers from entering; when a writer leaves, every reader waiting
//! enters together, and when the last reader leaves the next writer is
//! woken. So neither readers nor writers can starve.
//!
//! Writers hand off as the mutex does (see `mutex.rs`): the woken writer
//! competes with running writers, which keeps the lock busy while its vcpu
//! wakes up, unless it has waited [`STARVING_US`] or more: then it is
//! handed the lock, and no newcomer takes it past such a writer.

use std::collections::VecDeque;

use super::mutex::STARVING_US;
use super::{Waiter, guard, park, remove};
use crate::errno::Errno;
use crate::sched::{self, Handle};
use crate::time::now_us;

#[derive(Default)]
struct State {
    readers: u64,
    writer: Option<Handle>,
    /// Queued writers and since when they wait.
    writers_waiting: VecDeque<(Waiter, u64)>,
    readers_waiting: VecDeque<Waiter>,
}

impl State {
    /// Admits the waiting readers, or wakes the next writer (handing it the
    /// lock if it starves); returns whom to wake.
    fn grant(&mut self, after_writer: bool) -> Vec<Waiter> {
        if self.writer.is_some() {
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
                self.writer = Some(w.h);
            }
            return vec![w];
        }
        Vec::new()
    }

    /// True if a writer that is not the head of the queue may take the lock.
    fn writer_may_barge(&self) -> bool {
        self.writer.is_none()
            && self.readers == 0
            && self.readers_waiting.is_empty()
            && self
                .writers_waiting
                .front()
                .is_none_or(|&(_, since)| now_us().saturating_sub(since) < STARVING_US)
    }
}

/// A reader-writer lock.
#[derive(Default)]
pub struct RwLock {
    state: std::sync::Mutex<State>,
}

fn wake_all(ws: Vec<Waiter>) {
    for w in ws {
        w.grant();
    }
}

impl RwLock {
    /// An unlocked rwlock.
    pub fn new() -> RwLock {
        RwLock::default()
    }

    /// Shared lock, waiting until `deadline`; `EDEADLK` if the caller
    /// holds it for writing.
    pub fn read(&self, deadline: u64) -> Result<(), Errno> {
        let me = sched::self_handle().ok_or(Errno::EPERM)?;
        if guard(&self.state).writer == Some(me) {
            return Err(Errno(libc::EDEADLK));
        }
        park(
            "rwlock (read)",
            &self.state,
            deadline,
            |s, w| {
                if s.writer.is_none() && s.writers_waiting.is_empty() {
                    s.readers += 1;
                    return false;
                }
                s.readers_waiting.push_back(w);
                true
            },
            |s, h| remove(&mut s.readers_waiting, h),
        )
    }

    /// Exclusive lock, waiting until `deadline`; `EDEADLK` if the caller
    /// holds it for writing already.
    pub fn write(&self, deadline: u64) -> Result<(), Errno> {
        let me = sched::self_handle().ok_or(Errno::EPERM)?;
        if guard(&self.state).writer == Some(me) {
            return Err(Errno(libc::EDEADLK));
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
                    if s.writer_may_barge() || (retry && s.writer.is_none() && s.readers == 0) {
                        s.writer = Some(w.h);
                        granted = true;
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
                        woken = s.grant(false); // readers held back by us may enter
                        true
                    }
                    None => false, // woken meanwhile: see below
                },
            );
            wake_all(woken);
            r?;
            if granted {
                return Ok(());
            }
            let mut s = guard(&self.state);
            if s.writer == Some(me) {
                return Ok(()); // handed over
            }
            if s.writer.is_none() && s.readers == 0 {
                s.writer = Some(me); // woken to compete, and won
                return Ok(());
            }
            drop(s);
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
                let woken = guard(&self.state).grant(false);
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
        let me = sched::self_handle().ok_or(Errno::EPERM)?;
        let mut s = guard(&self.state);
        if s.writer == Some(me) {
            return Err(Errno(libc::EDEADLK));
        }
        if s.writer.is_some() || !s.writers_waiting.is_empty() {
            return Err(Errno(libc::EBUSY));
        }
        s.readers += 1;
        Ok(())
    }

    /// Exclusive lock if it is free now, else `EBUSY`; never waits.
    /// `EDEADLK` if the caller holds it for writing already.
    pub fn try_write(&self) -> Result<(), Errno> {
        let me = sched::self_handle().ok_or(Errno::EPERM)?;
        let mut s = guard(&self.state);
        if s.writer == Some(me) {
            return Err(Errno(libc::EDEADLK));
        }
        if s.writer.is_some() || s.readers > 0 {
            return Err(Errno(libc::EBUSY));
        }
        s.writer = Some(me);
        Ok(())
    }

    /// Releases the caller's lock (write if it is the writer, else one
    /// read lock). `EINVAL` if nothing is held.
    pub fn unlock(&self) -> Result<(), Errno> {
        let me = sched::self_handle().ok_or(Errno::EINVAL)?;
        let woken = {
            let mut s = guard(&self.state);
            if s.writer == Some(me) {
                s.writer = None;
                s.grant(true)
            } else if s.readers > 0 && s.writer.is_none() {
                s.readers -= 1;
                s.grant(false)
            } else {
                return Err(Errno::EINVAL);
            }
        };
        wake_all(woken);
        Ok(())
    }

    /// True if held or waited on.
    pub fn in_use(&self) -> bool {
        let s = guard(&self.state);
        s.readers > 0 || s.writer.is_some() || !s.writers_waiting.is_empty() || !s.readers_waiting.is_empty()
    }
}
