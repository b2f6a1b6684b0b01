//! Per-vcpu reuse of stacks: a thread's stack goes back to its vcpu's pool
//! when it ends, so creating a thread costs no system call and takes no
//! lock in steady state. A pool that has seen no demand for a while is
//! trimmed ([`StackPool::trim`]) so an idle process gives its memory back.

use super::Stack;
use crate::errno::Errno;

/// Pooled stacks per size; at most `cap` kept for each size, the rest go
/// back to their chunks.
pub(crate) struct StackPool {
    by_size: Vec<(usize, Vec<Stack>)>,
    cap: usize,
    /// Gets and puts so far (to tell an idle pool from a busy one cheaply).
    uses: u64,
}

/// A pool miss: a new stack from a chunk (out of line, so the pooled path
/// of a thread's creation stays a short function).
#[cold]
#[inline(never)]
fn carve(size: usize) -> Result<Stack, Errno> {
    Stack::carve(size)
}

impl StackPool {
    pub(crate) fn new(cap: usize) -> StackPool {
        StackPool {
            by_size: Vec::new(),
            cap,
            uses: 0,
        }
    }

    /// A stack with at least `size` usable bytes (exactly the rounded size).
    #[inline]
    pub(crate) fn get(&mut self, size: usize) -> Result<Stack, Errno> {
        self.uses += 1;
        if let Some(st) = self
            .by_size
            .iter_mut()
            .find(|(s, _)| *s == size)
            .and_then(|(_, v)| v.pop())
        {
            return Ok(st);
        }
        carve(size)
    }

    /// Returns a stack that was obtained with `get(size)`. Inlined into
    /// its callers (a thread's end): a call would save and restore more
    /// registers than the push itself takes.
    #[inline(always)]
    pub(crate) fn put(&mut self, size: usize, stack: Stack) {
        self.uses += 1;
        let classes = self.by_size.len();
        match self.by_size.iter_mut().find(|(s, _)| *s == size) {
            Some((_, v)) if v.len() < self.cap => v.push(stack),
            None if classes < 8 => self.by_size.push((size, vec![stack])),
            _ => drop(stack), // pool full: back to its chunk
        }
    }

    /// Counts a use of a stack kept elsewhere (a cached TCB's), so the
    /// idle trim sees the demand.
    #[inline(always)]
    pub(crate) fn note_use(&mut self) {
        self.uses += 1;
    }

    /// Gets and puts so far.
    pub(crate) fn uses(&self) -> u64 {
        self.uses
    }

    /// Stacks pooled, all sizes.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.by_size.iter().map(|(_, v)| v.len()).sum()
    }

    /// Keeps at most `keep` stacks of each size (the most recently used)
    /// and returns the others (and their pages) to their chunks. Returns
    /// the stacks released.
    pub(crate) fn trim(&mut self, keep: usize) -> usize {
        let mut n = 0;
        for (_, v) in &mut self.by_size {
            if v.len() > keep {
                let extra = v.len() - keep;
                n += extra;
                v.drain(..extra); // the oldest sit at the bottom
            }
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reuses_up_to_cap_and_trims() {
        let mut p = StackPool::new(2);
        let a = p.get(64 << 10).unwrap();
        let b = p.get(64 << 10).unwrap();
        let c = p.get(64 << 10).unwrap();
        let a_top = a.top();
        p.put(64 << 10, c);
        p.put(64 << 10, a);
        p.put(64 << 10, b); // over the cap: back to its chunk
        assert_eq!(p.len(), 2);
        assert_eq!(p.get(64 << 10).unwrap().top(), a_top, "last in, first out");
        assert_eq!(p.trim(0), 1);
        assert_eq!(p.len(), 0);
        assert_eq!(p.uses(), 7);
    }
}
