//! `photon_sem`: a counting semaphore, FIFO: a large request at the head is
//! not overtaken by smaller ones behind it.

use std::collections::VecDeque;

use super::{Waiter, guard, park};
use crate::errno::Errno;

#[derive(Default)]
struct State {
    count: u64,
    waiters: VecDeque<(Waiter, u64)>,
}

impl State {
    /// Grants queued requests that now fit; returns whom to wake.
    fn grant(&mut self) -> Vec<Waiter> {
        let mut woken = Vec::new();
        while let Some(&(w, want)) = self.waiters.front() {
            if self.count < want {
                break;
            }
            self.count -= want;
            self.waiters.pop_front();
            woken.push(w);
        }
        woken
    }
}

/// A counting semaphore; signal is callable from any OS thread.
pub struct Semaphore {
    state: std::sync::Mutex<State>,
}

impl Semaphore {
    /// A semaphore holding `count`.
    pub fn new(count: u64) -> Semaphore {
        Semaphore {
            state: std::sync::Mutex::new(State {
                count,
                waiters: VecDeque::new(),
            }),
        }
    }

    /// Takes `n` (> 0), waiting until `deadline` for it.
    pub fn wait(&self, n: u64, deadline: u64) -> Result<(), Errno> {
        if n == 0 {
            return Err(Errno::EINVAL);
        }
        let mut woken = Vec::new();
        let r = park(
            "semaphore",
            &self.state,
            deadline,
            |s, w| {
                if s.waiters.is_empty() && s.count >= n {
                    s.count -= n;
                    return false;
                }
                s.waiters.push_back((w, n));
                true
            },
            |s, h| match s.waiters.iter().position(|(w, _)| w.h == h) {
                Some(i) => {
                    s.waiters.remove(i);
                    woken = s.grant(); // smaller requests behind us may fit now
                    true
                }
                None => false,
            },
        );
        for w in woken {
            w.grant();
        }
        r
    }

    /// Adds `n`, waking the waiters whose requests now fit. `EOVERFLOW` if
    /// the count would overflow.
    pub fn signal(&self, n: u64) -> Result<(), Errno> {
        let woken = {
            let mut s = guard(&self.state);
            s.count = s.count.checked_add(n).ok_or(Errno(libc::EOVERFLOW))?;
            s.grant()
        };
        for w in woken {
            w.grant();
        }
        Ok(())
    }

    /// The count now (for tests and stats).
    pub fn count(&self) -> u64 {
        guard(&self.state).count
    }

    /// True if threads wait on it.
    pub fn in_use(&self) -> bool {
        !guard(&self.state).waiters.is_empty()
    }
}
