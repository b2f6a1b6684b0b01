//! The run queue: an intrusive FIFO through `ThreadCtl::next`. No allocation
//! and no atomics: only its vcpu touches it.

use core::ptr;

use super::thread::ThreadCtl;

pub(crate) struct RunQueue {
    head: *mut ThreadCtl,
    tail: *mut ThreadCtl,
    len: usize,
}

impl RunQueue {
    pub(crate) const fn new() -> RunQueue {
        RunQueue {
            head: ptr::null_mut(),
            tail: ptr::null_mut(),
            len: 0,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Appends `th`, which must not be in any queue.
    #[inline]
    pub(crate) fn push(&mut self, th: *mut ThreadCtl) {
        // SAFETY: `th` and the queued TCBs are live and owned by this vcpu.
        unsafe {
            (*th).next = ptr::null_mut();
            if self.tail.is_null() {
                self.head = th;
            } else {
                (*self.tail).next = th;
            }
        }
        self.tail = th;
        self.len += 1;
    }

    /// Takes the oldest thread, if any.
    #[inline]
    pub(crate) fn pop(&mut self) -> Option<*mut ThreadCtl> {
        let th = self.head;
        if th.is_null() {
            return None;
        }
        // SAFETY: queued TCBs are live.
        unsafe {
            self.head = (*th).next;
            (*th).next = ptr::null_mut();
        }
        if self.head.is_null() {
            self.tail = ptr::null_mut();
        }
        self.len -= 1;
        Some(th)
    }
}
