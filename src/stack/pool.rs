//! Per-vcpu reuse of stacks: a thread's stack goes back to its vcpu's pool
//! when it ends, so creating a thread costs no system call in steady state.

use super::Stack;
use crate::errno::Errno;

/// Pooled stacks per size; at most `cap` kept for each size, the rest unmapped.
pub(crate) struct StackPool {
    by_size: Vec<(usize, Vec<Stack>)>,
    cap: usize,
}

impl StackPool {
    pub(crate) fn new(cap: usize) -> StackPool {
        StackPool {
            by_size: Vec::new(),
            cap,
        }
    }

    /// A stack with at least `size` usable bytes (exactly the rounded size).
    pub(crate) fn get(&mut self, size: usize) -> Result<Stack, Errno> {
        if let Some(st) = self
            .by_size
            .iter_mut()
            .find(|(s, _)| *s == size)
            .and_then(|(_, v)| v.pop())
        {
            return Ok(st);
        }
        Stack::new(size)
    }

    /// Returns a stack that was obtained with `get(size)`.
    pub(crate) fn put(&mut self, size: usize, stack: Stack) {
        let classes = self.by_size.len();
        match self.by_size.iter_mut().find(|(s, _)| *s == size) {
            Some((_, v)) if v.len() < self.cap => v.push(stack),
            None if classes < 8 => self.by_size.push((size, vec![stack])),
            _ => drop(stack), // pool full: unmap
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reuses_up_to_cap() {
        let mut p = StackPool::new(1);
        let a = p.get(64 << 10).unwrap();
        let b = p.get(64 << 10).unwrap();
        let a_top = a.top();
        p.put(64 << 10, a);
        p.put(64 << 10, b); // over the cap: unmapped
        let c = p.get(64 << 10).unwrap();
        assert_eq!(c.top(), a_top);
    }
}
