//! The run queue: an intrusive circular list of the runnable threads,
//! through `ThreadCtl::{prev, next}`. The running thread (unless it is the
//! idle thread) is the head, so a yield is "the head moves to the next
//! thread": the old head becomes the tail without any relinking. A woken
//! thread is inserted before the head (at the tail). No allocation, no
//! atomics: only its vcpu touches it.
//!
//! Threads whose I/O just completed are the exception ([`RunQueue::push_io`]):
//! they go to the front, in the order the engine reported them, so a
//! request's handler runs before the mass of threads already runnable
//! (with a thousand connection threads a woken thread at the tail waited
//! for every other one to run first, and found its stack and TCB cold in
//! the cache). A budget bounds how far the front may jump the queue:
//! [`FRONT_PER_TICK`] such insertions per refill, and the scheduler
//! refills it every `POLL_EVERY` decisions, so threads already in the
//! queue keep at least half of those decisions (a fronted thread runs once
//! ahead of them; if it yields it goes to the tail like any other).

use core::ptr;

use super::thread::ThreadCtl;

/// I/O-completed threads that may go to the front between two refills
/// (see the module doc; at most half of `POLL_EVERY`).
pub(crate) const FRONT_PER_TICK: u32 = 16;

pub(crate) struct RunQueue {
    head: *mut ThreadCtl,
    /// Front insertions left until the next [`RunQueue::refill_front`].
    front_budget: u32,
    /// The last thread put at the front by the current batch (null: none
    /// yet), so a batch keeps its order.
    front_last: *mut ThreadCtl,
    /// The current batch found the queue empty: it all goes to the tail,
    /// in order, using no budget.
    batch_at_tail: bool,
}

// Every method relies on: linked TCBs are live and owned by this vcpu, and
// a TCB is in the ring iff its state is Runnable.
impl RunQueue {
    pub(crate) const fn new() -> RunQueue {
        RunQueue {
            head: ptr::null_mut(),
            front_budget: FRONT_PER_TICK,
            front_last: ptr::null_mut(),
            batch_at_tail: false,
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.head.is_null()
    }

    /// True if the ring holds a thread besides the head (the running
    /// thread, when a photon thread asks).
    #[inline]
    pub(crate) fn has_others(&self) -> bool {
        // SAFETY: see the impl comment.
        !self.head.is_null() && unsafe { (*self.head).next } != self.head
    }

    /// Threads in the ring (the running one included): a walk, for stats.
    pub(crate) fn len(&self) -> usize {
        let mut n = 0;
        let mut th = self.head;
        while !th.is_null() {
            n += 1;
            // SAFETY: see the impl comment.
            th = unsafe { (*th).next };
            if th == self.head {
                break;
            }
        }
        n
    }

    /// The thread at the head (the one running, or to run next).
    #[inline]
    pub(crate) fn head(&self) -> Option<*mut ThreadCtl> {
        (!self.head.is_null()).then_some(self.head)
    }

    /// Inserts `th` (not in the ring) at the tail.
    #[inline]
    pub(crate) fn push(&mut self, th: *mut ThreadCtl) {
        // SAFETY: see the impl comment.
        unsafe {
            if self.head.is_null() {
                (*th).prev = th;
                (*th).next = th;
                self.head = th;
            } else {
                let tail = (*self.head).prev;
                (*th).prev = tail;
                (*th).next = self.head;
                (*tail).next = th;
                (*self.head).prev = th;
            }
        }
    }

    /// If `th` is the head and alone in the ring, puts `by` (not linked)
    /// in its place and returns true: a thread that ends handing the CPU
    /// to the one it wakes (its joiner) relinks two TCBs instead of three
    /// plus a removal.
    #[inline(always)]
    pub(crate) fn replace_alone(&mut self, th: *mut ThreadCtl, by: *mut ThreadCtl) -> bool {
        // SAFETY: see the impl comment.
        unsafe {
            if self.head != th || (*th).next != th {
                return false;
            }
            (*by).prev = by;
            (*by).next = by;
            self.head = by;
            (*th).next = ptr::null_mut();
            (*th).prev = ptr::null_mut();
        }
        true
    }

    /// Inserts `th` (not in the ring), a thread whose I/O completed, at
    /// the front while the budget lasts: after the threads of the same
    /// batch already put there, else right after the head when the head is
    /// `running` (the thread on the CPU, first until it leaves or yields),
    /// else as the new head. At the tail once the budget is spent. Call
    /// [`RunQueue::end_batch`] after the batch.
    #[inline]
    pub(crate) fn push_io(&mut self, th: *mut ThreadCtl, running: *mut ThreadCtl) {
        if self.head.is_null() || self.batch_at_tail {
            // Nothing else was runnable: the front is the tail, no budget used.
            self.push(th);
            self.batch_at_tail = true;
            return;
        }
        if self.front_budget == 0 {
            self.push(th);
            return;
        }
        self.front_budget -= 1;
        // SAFETY: see the impl comment; front_last is in the ring (it was
        // inserted during this batch and nothing left the ring since).
        unsafe {
            if !self.front_last.is_null() {
                self.insert_after(self.front_last, th);
            } else if self.head == running {
                self.insert_after(self.head, th);
            } else {
                self.push(th);
                self.head = th;
            }
        }
        self.front_last = th;
    }

    /// Ends a batch of [`RunQueue::push_io`] calls.
    #[inline]
    pub(crate) fn end_batch(&mut self) {
        self.front_last = ptr::null_mut();
        self.batch_at_tail = false;
    }

    /// Gives the front its budget back (every `POLL_EVERY` decisions).
    #[inline]
    pub(crate) fn refill_front(&mut self) {
        self.front_budget = FRONT_PER_TICK;
    }

    /// Inserts `th` (not in the ring) right after `at` (in the ring).
    ///
    /// # Safety
    /// `at` is in the ring.
    #[inline]
    unsafe fn insert_after(&mut self, at: *mut ThreadCtl, th: *mut ThreadCtl) {
        // SAFETY: see the impl comment; `at` is linked.
        unsafe {
            let next = (*at).next;
            (*th).prev = at;
            (*th).next = next;
            (*next).prev = th;
            (*at).next = th;
        }
    }

    /// Unlinks `th` (in the ring); the head moves on if it was `th`.
    #[inline]
    pub(crate) fn remove(&mut self, th: *mut ThreadCtl) {
        // SAFETY: see the impl comment.
        unsafe {
            let next = (*th).next;
            if next == th {
                self.head = ptr::null_mut();
            } else {
                let prev = (*th).prev;
                (*prev).next = next;
                (*next).prev = prev;
                if self.head == th {
                    self.head = next;
                }
            }
            (*th).next = ptr::null_mut();
            (*th).prev = ptr::null_mut();
        }
    }

    /// Moves the head to the next thread and returns it; None if the head
    /// is alone (or the ring is empty).
    #[inline]
    pub(crate) fn rotate(&mut self) -> Option<*mut ThreadCtl> {
        if self.head.is_null() {
            return None;
        }
        // SAFETY: see the impl comment.
        let next = unsafe { (*self.head).next };
        if next == self.head {
            return None;
        }
        self.head = next;
        Some(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sched::handle::Handle;

    #[test]
    fn ring_order_rotation_and_removal() {
        let mut t: Vec<Box<ThreadCtl>> = (0..4)
            .map(|_| Box::new(ThreadCtl::new(Handle::NULL, None, ptr::null_mut())))
            .collect();
        let p: Vec<*mut ThreadCtl> = t.iter_mut().map(|b| &mut **b as *mut ThreadCtl).collect();
        let mut q = RunQueue::new();
        assert!(q.rotate().is_none() && q.is_empty());
        for &x in &p {
            q.push(x);
        }
        assert_eq!(q.head(), Some(p[0]));
        assert_eq!(q.rotate(), Some(p[1]));
        assert_eq!(q.rotate(), Some(p[2]));
        q.remove(p[2]); // the running head blocks
        assert_eq!(q.head(), Some(p[3]));
        q.push(p[2]); // woken: goes to the tail, before the head
        assert_eq!(q.rotate(), Some(p[0]));
        assert_eq!(q.rotate(), Some(p[1]));
        assert_eq!(q.rotate(), Some(p[2]));
        for &x in &p {
            q.remove(x);
        }
        assert!(q.is_empty());
        q.push(p[1]);
        assert!(q.rotate().is_none());
    }

    fn order(q: &mut RunQueue, n: usize) -> Vec<*mut ThreadCtl> {
        let mut v = vec![q.head().unwrap()];
        for _ in 1..n {
            v.push(q.rotate().unwrap());
        }
        q.rotate();
        v
    }

    #[test]
    fn io_wakes_go_to_the_front_in_order_within_the_budget() {
        let n = FRONT_PER_TICK as usize + 4;
        let mut t: Vec<Box<ThreadCtl>> = (0..n + 2)
            .map(|_| Box::new(ThreadCtl::new(Handle::NULL, None, ptr::null_mut())))
            .collect();
        let p: Vec<*mut ThreadCtl> = t.iter_mut().map(|b| &mut **b as *mut ThreadCtl).collect();
        let (a, b) = (p[n], p[n + 1]);
        let mut q = RunQueue::new();
        // An empty queue: the batch keeps its order and uses no budget.
        q.push_io(p[0], ptr::null_mut());
        q.push_io(p[1], ptr::null_mut());
        q.end_batch();
        assert_eq!(order(&mut q, 2), vec![p[0], p[1]]);
        q.remove(p[0]);
        q.remove(p[1]);
        // `a` runs (the head), `b` waits: the batch goes between them, in order.
        q.push(a);
        q.push(b);
        q.push_io(p[0], a);
        q.push_io(p[1], a);
        q.end_batch();
        assert_eq!(order(&mut q, 4), vec![a, p[0], p[1], b]);
        q.remove(p[0]);
        q.remove(p[1]);
        // The running thread left the ring (it blocked): the batch is first.
        q.push_io(p[0], ptr::null_mut());
        q.end_batch();
        assert_eq!(order(&mut q, 3), vec![p[0], a, b]);
        q.remove(p[0]);
        // The budget spent, the rest of a batch goes to the tail.
        q.refill_front();
        for &x in &p[..n] {
            q.push_io(x, a);
        }
        q.end_batch();
        let k = FRONT_PER_TICK as usize;
        let mut want = vec![a];
        want.extend_from_slice(&p[..k]);
        want.push(b);
        want.extend_from_slice(&p[k..n]);
        assert_eq!(order(&mut q, n + 2), want);
        // Until the refill, every wake goes to the tail.
        for &x in &p[..n] {
            q.remove(x);
        }
        q.push_io(p[0], a);
        q.end_batch();
        assert_eq!(order(&mut q, 3), vec![a, b, p[0]]);
        q.remove(p[0]);
        q.refill_front();
        q.push_io(p[0], a);
        q.end_batch();
        assert_eq!(order(&mut q, 3), vec![a, p[0], b]);
    }
}
