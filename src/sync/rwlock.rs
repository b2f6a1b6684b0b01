//! `photon_rwlock`: a phase-fair reader-writer lock. A waiting writer stops
//! new readers from entering; when a writer leaves, every reader waiting
//! enters together, and when the last reader leaves the next writer
//! enters. So neither readers nor writers can starve.

use std::collections::VecDeque;

use super::{Waiter, guard, park, remove};
use crate::errno::Errno;
use crate::sched::{self, Handle};

#[derive(Default)]
struct State {
    readers: u64,
    writer: Option<Handle>,
    writers_waiting: VecDeque<Waiter>,
    readers_waiting: VecDeque<Waiter>,
}

impl State {
    /// Admits whoever may enter now; returns whom to wake.
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
            && let Some(w) = self.writers_waiting.pop_front()
        {
            self.writer = Some(w.h);
            return vec![w];
        }
        Vec::new()
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
        let mut woken = Vec::new();
        let r = park(
            "rwlock (write)",
            &self.state,
            deadline,
            |s, w| {
                if s.writer.is_none() && s.readers == 0 {
                    s.writer = Some(w.h);
                    return false;
                }
                s.writers_waiting.push_back(w);
                true
            },
            |s, h| {
                let was = remove(&mut s.writers_waiting, h);
                if was {
                    woken = s.grant(false); // readers held back by us may enter
                }
                was
            },
        );
        wake_all(woken);
        r
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
