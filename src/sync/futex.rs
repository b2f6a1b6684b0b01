//! A futex for photon threads: wait while a 32-bit word holds a value, be
//! woken by address (`photon_futex_wait` / `photon_futex_wake`).
//!
//! Waiters are kept in a fixed table of buckets chosen by hashing the
//! address. Each bucket holds a short-held OS mutex over an intrusive list
//! of entries that live on the waiting photon threads' own stacks (a thread
//! stays blocked, its stack untouched, while its entry is listed, and takes
//! the entry out before returning), so waiting never allocates. A bucket's
//! atomic waiter count lets a wake with nobody waiting return after one
//! load.
//!
//! Ordering (the Dekker pair that makes wake-ups never lost): the waiter
//! increments the count (SeqCst) and then loads the word (SeqCst); a waker
//! changes the word (the caller's SeqCst store or read-modify-write) and
//! then loads the count (SeqCst). One of them sees the other: either the
//! waiter sees the new value (and does not block) or the waker sees the
//! waiter (and wakes it).

use core::ptr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering::*};

use super::guard;
use crate::errno::Errno;
use crate::sched::{self, Handle};

/// Number of buckets (a power of two).
const BUCKETS: usize = 512;

/// One waiting photon thread, on its own stack.
struct Entry {
    addr: usize,
    h: Handle,
    seq: u64,
    next: *mut Entry,
    prev: *mut Entry,
    /// True while listed; cleared (under the bucket lock) by the waker that
    /// takes it out.
    linked: AtomicBool,
}

/// A bucket's list: its first and last entries, or null.
struct List {
    head: *mut Entry,
    tail: *mut Entry,
}

// SAFETY: the entries are only reached under the bucket's mutex; each stays
// valid while listed (its thread is blocked and unlinks it before returning).
unsafe impl Send for List {}

#[repr(align(64))]
struct Bucket {
    /// Entries listed (all addresses of this bucket).
    count: AtomicUsize,
    list: std::sync::Mutex<List>,
}

#[allow(clippy::declare_interior_mutable_const)] // only used to initialise TABLE
const EMPTY: Bucket = Bucket {
    count: AtomicUsize::new(0),
    list: std::sync::Mutex::new(List {
        head: ptr::null_mut(),
        tail: ptr::null_mut(),
    }),
};

static TABLE: [Bucket; BUCKETS] = [EMPTY; BUCKETS];

fn bucket(addr: usize) -> &'static Bucket {
    let h = ((addr >> 2) as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    &TABLE[(h >> (64 - BUCKETS.trailing_zeros())) as usize]
}

impl List {
    /// Adds `e` at the tail (FIFO order of waking).
    ///
    /// # Safety
    /// `e` is valid and not listed; the caller holds the bucket lock.
    unsafe fn push(&mut self, e: *mut Entry) {
        // SAFETY: per the contract, every listed entry is valid.
        unsafe {
            (*e).next = ptr::null_mut();
            (*e).prev = self.tail;
            if self.tail.is_null() {
                self.head = e;
            } else {
                (*self.tail).next = e;
            }
            self.tail = e;
        }
    }

    /// Takes `e` out.
    ///
    /// # Safety
    /// `e` is listed here; the caller holds the bucket lock.
    unsafe fn unlink(&mut self, e: *mut Entry) {
        // SAFETY: per the contract, `e` and its neighbours are valid.
        unsafe {
            if (*e).prev.is_null() {
                self.head = (*e).next;
            } else {
                (*(*e).prev).next = (*e).next;
            }
            if (*e).next.is_null() {
                self.tail = (*e).prev;
            } else {
                (*(*e).next).prev = (*e).prev;
            }
            (*e).linked.store(false, Release);
        }
    }
}

/// Blocks the calling photon thread while `*word == expected`, until a
/// [`wake`] on the word, `deadline` (absolute `now_us`, or
/// [`sched::FOREVER`]), or an interrupt. Ok(()) when woken (maybe
/// spuriously: the caller re-checks its condition); EAGAIN when the word
/// did not hold `expected`; ETIMEDOUT; the interrupter's errno; EPERM off a
/// photon thread.
pub fn wait(word: &AtomicU32, expected: u32, deadline: u64) -> Result<(), Errno> {
    if !sched::in_thread() {
        return Err(Errno::EPERM);
    }
    let (h, seq) = sched::next_wait_seq()?;
    let addr = word as *const AtomicU32 as usize;
    let b = bucket(addr);
    let mut entry = Entry {
        addr,
        h,
        seq,
        next: ptr::null_mut(),
        prev: ptr::null_mut(),
        linked: AtomicBool::new(true),
    };
    let e: *mut Entry = &mut entry;
    {
        let mut list = guard(&b.list);
        // SAFETY: `entry` lives on this stack until it is unlinked below.
        unsafe { list.push(e) };
        b.count.fetch_add(1, SeqCst);
    }
    let result = if word.load(SeqCst) != expected {
        Err(Errno(libc::EAGAIN))
    } else {
        sched::block_on(deadline, sched::Wait::Lock("futex"))
    };
    // SAFETY: `e` points at `entry`, alive in this frame.
    if unsafe { (*e).linked.load(Acquire) } {
        let mut list = guard(&b.list);
        // SAFETY: as above; checked again under the lock.
        if unsafe { (*e).linked.load(Relaxed) } {
            // SAFETY: listed in this bucket; the lock is held.
            unsafe { list.unlink(e) };
            b.count.fetch_sub(1, SeqCst);
            // Ok here is a spurious wake-up: the caller re-checks.
            return result;
        }
    }
    // A waker took the entry out: this wait consumed its wake-up, so report
    // it even if the wait also timed out or was interrupted in that moment
    // (keeping the interrupt for the thread's next blocking call).
    if let Err(err) = result
        && err.0 != libc::EAGAIN
    {
        sched::keep_interrupt(err);
    }
    Ok(())
}

/// Wakes up to `n` photon threads waiting on `word`'s address (any vcpu),
/// in arrival order; returns how many. Callable from any OS thread. With no
/// waiter in the word's bucket this is one atomic load.
pub fn wake(addr: usize, n: usize) -> usize {
    let b = bucket(addr);
    if n == 0 || b.count.load(SeqCst) == 0 {
        return 0;
    }
    let mut woken = 0;
    let mut list = guard(&b.list);
    let mut cur = list.head;
    while !cur.is_null() && woken < n {
        // SAFETY: listed entries are valid while the lock is held.
        unsafe {
            let next = (*cur).next;
            if (*cur).addr == addr {
                let (h, seq) = ((*cur).h, (*cur).seq);
                list.unlink(cur);
                b.count.fetch_sub(1, SeqCst);
                // After unlink the entry may vanish once the lock is
                // released: only the copied handle and wait number are used.
                sched::wake(h, seq, 0);
                woken += 1;
            }
            cur = next;
        }
    }
    woken
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wake_with_no_waiter_is_zero() {
        let w = AtomicU32::new(0);
        assert_eq!(wake(&w as *const AtomicU32 as usize, 1), 0);
        assert_eq!(wake(&w as *const AtomicU32 as usize, usize::MAX), 0);
    }

    #[test]
    fn wait_off_a_photon_thread_is_eperm() {
        let w = AtomicU32::new(0);
        assert_eq!(wait(&w, 0, 0), Err(Errno::EPERM));
    }

    #[test]
    fn buckets_spread() {
        let mut seen = std::collections::HashSet::new();
        for i in 0..1024usize {
            seen.insert(bucket(0x1000 + 4 * i) as *const Bucket as usize);
        }
        assert!(seen.len() > BUCKETS / 2, "only {} buckets used", seen.len());
    }
}
