//! Sleep and timeout timers: a binary min-heap of threads keyed by their
//! deadline, each thread knowing its position (`ThreadCtl::timer_pos`), so
//! a thread woken early leaves the heap in O(log n) and no stale entry can
//! outlive the thread it names.

use super::thread::{NO_TIMER, ThreadCtl};

pub(crate) struct TimerHeap {
    heap: Vec<*mut ThreadCtl>,
}

// All methods rely on: every pointer in `heap` is a live TCB of this vcpu
// whose `timer_pos` is its index and whose `deadline` is its key.
impl TimerHeap {
    pub(crate) const fn new() -> TimerHeap {
        TimerHeap { heap: Vec::new() }
    }

    pub(crate) fn len(&self) -> usize {
        self.heap.len()
    }

    /// The earliest deadline.
    pub(crate) fn next_deadline(&self) -> Option<u64> {
        // SAFETY: heap entries are live TCBs.
        self.heap.first().map(|&t| unsafe { (*t).deadline })
    }

    /// Arms `th`'s timer at `th.deadline`.
    pub(crate) fn insert(&mut self, th: *mut ThreadCtl) {
        self.heap.push(th);
        self.sift_up(self.heap.len() - 1);
    }

    /// Disarms `th`'s timer if armed (the check inline: most wake-ups
    /// have no timer).
    #[inline]
    pub(crate) fn remove(&mut self, th: *mut ThreadCtl) {
        // SAFETY: `th` is a live TCB.
        let pos = unsafe { (*th).timer_pos };
        if pos != NO_TIMER {
            self.remove_at(th, pos);
        }
    }

    #[inline(never)]
    fn remove_at(&mut self, th: *mut ThreadCtl, pos: usize) {
        debug_assert_eq!(self.heap[pos], th);
        let last = self.heap.pop().expect("timer heap holds th");
        // SAFETY: as above.
        unsafe { (*th).timer_pos = NO_TIMER };
        if pos < self.heap.len() {
            self.set(pos, last);
            self.sift_down(pos);
            // SAFETY: `last` is live; its position after sifting down.
            let p = unsafe { (*last).timer_pos };
            self.sift_up(p);
        }
    }

    /// Takes the earliest timer if it expired at `now`.
    pub(crate) fn pop_expired(&mut self, now: u64) -> Option<*mut ThreadCtl> {
        let &first = self.heap.first()?;
        // SAFETY: heap entries are live TCBs.
        if unsafe { (*first).deadline } > now {
            return None;
        }
        self.remove(first);
        Some(first)
    }

    fn key(&self, i: usize) -> u64 {
        // SAFETY: heap entries are live TCBs.
        unsafe { (*self.heap[i]).deadline }
    }

    fn set(&mut self, i: usize, th: *mut ThreadCtl) {
        self.heap[i] = th;
        // SAFETY: heap entries are live TCBs.
        unsafe { (*th).timer_pos = i };
    }

    fn sift_up(&mut self, mut i: usize) {
        let th = self.heap[i];
        let key = self.key(i);
        while i > 0 {
            let parent = (i - 1) / 2;
            if self.key(parent) <= key {
                break;
            }
            self.set(i, self.heap[parent]);
            i = parent;
        }
        self.set(i, th);
    }

    fn sift_down(&mut self, mut i: usize) {
        let th = self.heap[i];
        let key = self.key(i);
        let n = self.heap.len();
        loop {
            let l = 2 * i + 1;
            if l >= n {
                break;
            }
            let r = l + 1;
            let c = if r < n && self.key(r) < self.key(l) { r } else { l };
            if self.key(c) >= key {
                break;
            }
            self.set(i, self.heap[c]);
            i = c;
        }
        self.set(i, th);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sched::handle::Handle;

    #[test]
    fn pops_in_deadline_order_and_removes_from_the_middle() {
        let mut ths: Vec<Box<ThreadCtl>> = (0..200)
            .map(|i| {
                let mut t = Box::new(ThreadCtl::new(Handle::NULL, None, core::ptr::null_mut()));
                t.deadline = (i * 7919) % 1000;
                t
            })
            .collect();
        let mut h = TimerHeap::new();
        for t in ths.iter_mut() {
            h.insert(&mut **t);
        }
        // Remove every third.
        for t in ths.iter_mut().step_by(3) {
            h.remove(&mut **t);
            assert_eq!(t.timer_pos, NO_TIMER);
        }
        let mut last = 0;
        let mut n = 0;
        while let Some(t) = h.pop_expired(u64::MAX) {
            // SAFETY: boxes outlive the heap.
            let d = unsafe { (*t).deadline };
            assert!(d >= last);
            last = d;
            n += 1;
        }
        assert_eq!(n, 200 - 67);
        assert_eq!(h.len(), 0);
    }
}
