//! The run queue: an intrusive circular list of the runnable threads,
//! through `ThreadCtl::{prev, next}`. The running thread (unless it is the
//! idle thread) is the head, so a yield is "the head moves to the next
//! thread": the old head becomes the tail without any relinking. A woken
//! thread is inserted before the head (at the tail). No allocation, no
//! atomics: only its vcpu touches it.

use core::ptr;

use super::thread::ThreadCtl;

pub(crate) struct RunQueue {
    head: *mut ThreadCtl,
}

// Every method relies on: linked TCBs are live and owned by this vcpu, and
// a TCB is in the ring iff its state is Runnable.
impl RunQueue {
    pub(crate) const fn new() -> RunQueue {
        RunQueue { head: ptr::null_mut() }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.head.is_null()
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
}
