//! The thread control block (TCB) of a photon thread.
//!
//! A TCB lives at the top of its thread's own stack (one allocation, one
//! cache line from the stack pointer), except the vcpu's main thread, whose
//! TCB is on the heap. It is owned by its vcpu and touched only from that
//! vcpu's OS thread; other OS threads reach a thread through its handle
//! ([`super::handle`]) and the vcpu's remote queue.

use core::ffi::c_void;
use core::ptr;

use super::handle::Handle;
use super::keys::KeyValues;
use crate::arch::StackPointer;
use crate::errno::Errno;
use crate::stack::Stack;

/// A photon thread's entry: the C `photon_entry`.
pub type Entry = unsafe extern "C" fn(arg: *mut c_void) -> *mut c_void;

/// Where a thread is in its life.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum State {
    /// In the run queue (running, or ready to run).
    Runnable,
    /// Waiting for a wake-up, a timer, or an interrupt.
    Blocked,
    /// Ended; its stack is recycled by the next thread to run.
    Dead,
    /// Leaving for another vcpu (`migrate_to`), handed over once off the CPU.
    Migrating,
}

/// No timer armed (`ThreadCtl::timer_pos`).
pub(crate) const NO_TIMER: usize = usize::MAX;

/// What a blocked thread waits for (shown by `photon_dump_threads`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Wait {
    /// A sleep (`photon_thread_usleep`).
    Sleep,
    /// An engine operation (`what`: read, recv, accept, poll, fsync...) on `fd`.
    Io { what: &'static str, fd: i32 },
    /// A socket of a userspace network stack (`crate::unet`).
    Unet { what: &'static str, fd: i32 },
    /// A lock: mutex, cond, sem or rwlock.
    Lock(&'static str),
    /// Another thread's end (`photon_thread_join`).
    Join,
    /// A function running on another OS thread (work pool, offload).
    Call,
    /// Anything else.
    Other,
}

/// The clock of `ThreadCtl::wait_since`: CLOCK_MONOTONIC_COARSE in
/// microseconds (as fine as the kernel's tick, a few ms at most). Every
/// block stamps the thread with it, and the precise clock costs ~50 ns
/// on a virtual machine (four times the coarse one): too much for a path
/// that is a few hundred instructions; the dump shows waits in ms anyway.
#[inline]
pub(crate) fn wait_clock_us() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: a valid out pointer; CLOCK_MONOTONIC_COARSE exists since Linux 2.6.32.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1_000
}

/// Longest thread name kept (`photon_thread_set_name`), without the NUL.
pub(crate) const NAME_MAX: usize = 31;

/// The per-thread state the scheduler keeps.
///
/// `repr(C)`, in this order, on a 64-byte boundary (a thread's TCB sits at
/// the top of its stack, placed so): everything a wake-up and the switch
/// into the thread touch (the completion's result, the timer check, the
/// run queue links, the saved stack pointer) shares the first cache line,
/// and the rest of what a block writes the second. A thread parked while
/// many others ran is cold in the cache; waking it costs one miss here,
/// not one per field scattered over the four lines Rust's own layout used
/// (bench echo, 64 connections, callgrind's cache model: 3.5 fewer D1
/// misses per request).
#[repr(C, align(64))]
pub(crate) struct ThreadCtl {
    /// Saved stack pointer while not running.
    pub sp: StackPointer,
    /// Links in the run queue ring (null when not runnable).
    pub prev: *mut ThreadCtl,
    pub next: *mut ThreadCtl,
    /// Absolute deadline (photon_now_us) of the current wait, or u64::MAX.
    pub deadline: u64,
    /// The operation's result, once `io_done`.
    pub io_result: i64,
    /// Position in the vcpu's timer heap, or [`NO_TIMER`].
    pub timer_pos: usize,
    /// Set by whoever wakes a blocked thread: 0, or the errno its wait fails with.
    pub wake_result: i32,
    /// An interrupt that arrived while the thread was not blocked: the next
    /// blocking call fails with it at once.
    pub pending_interrupt: i32,
    /// The engine operation this thread waits for, or [`NO_OP`].
    pub io_op: u32,
    pub state: State,
    /// Set when that operation's completion arrived, with its result.
    pub io_done: bool,
    /// While true (waiting for a cancelled operation to let go of its
    /// buffers) interrupts stay pending instead of waking the thread.
    pub uninterruptible: bool,
    // ---- the second cache line: the wait's record ----
    /// Bumped at every block, so a late wake-up for an older wait is ignored.
    pub wait_seq: u64,
    /// What the thread waits for while Blocked, and since when
    /// ([`wait_clock_us`]).
    pub wait: Wait,
    pub wait_since: u64,
    // ---- the rest: spawn, end, names, keys, dumps ----
    /// Links in the vcpu's list of all its threads.
    pub all_prev: *mut ThreadCtl,
    pub all_next: *mut ThreadCtl,
    pub handle: Handle,
    pub entry: Option<Entry>,
    pub arg: *mut c_void,
    /// The stack this TCB sits on (None for a vcpu's main thread).
    pub stack: Option<Stack>,
    /// The size class the stack was taken from (for returning it to the pool).
    pub stack_class: usize,
    /// Per-thread key values (allocated on first `photon_setspecific`).
    pub keys: KeyValues,
    /// Target vcpu id while Migrating.
    pub migrate_to: u32,
    /// `photon_thread_set_name`, NUL-terminated; empty if unnamed.
    pub name: [u8; NAME_MAX + 1],
    /// AddressSanitizer's fake stack of this context while it is switched
    /// out (see `stack::sanitize`).
    pub asan_fake_stack: *mut c_void,
    /// This thread's copies of the isolated thread-locals (see `tls`).
    pub tls: super::tls::ThreadTls,
    /// `photon_thread_on_end`: called with its argument when the thread
    /// ends, after its thread_local and key destructors.
    pub on_end: Option<(unsafe extern "C" fn(*mut c_void), *mut c_void)>,
}

// The hot fields stay in the first line and the wait's in the second
// (see [`ThreadCtl`]).
const _: () = {
    use core::mem::offset_of;
    assert!(offset_of!(ThreadCtl, uninterruptible) < 64 && offset_of!(ThreadCtl, timer_pos) < 64);
    assert!(offset_of!(ThreadCtl, io_done) < 64 && offset_of!(ThreadCtl, state) < 64);
    assert!(offset_of!(ThreadCtl, wait_since) + 8 <= 128);
};

/// A vcpu's threads (not main, not idle): an intrusive doubly linked list
/// through `ThreadCtl::all_prev`/`all_next`, with its length.
pub(crate) struct ThreadList {
    head: *mut ThreadCtl,
    len: usize,
}

impl ThreadList {
    pub(crate) const fn new() -> ThreadList {
        ThreadList {
            head: ptr::null_mut(),
            len: 0,
        }
    }

    /// The first thread, or null; follow `all_next` for the rest.
    pub(crate) fn head(&self) -> *mut ThreadCtl {
        self.head
    }

    /// How many threads are linked.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Links `th` at the front.
    ///
    /// # Safety
    /// `th` is a live TCB of the list's vcpu, in no list.
    pub(crate) unsafe fn push(&mut self, th: *mut ThreadCtl) {
        // SAFETY: per the contract; the head is a live TCB of this list.
        unsafe {
            (*th).all_prev = ptr::null_mut();
            (*th).all_next = self.head;
            if !self.head.is_null() {
                (*self.head).all_prev = th;
            }
        }
        self.head = th;
        self.len += 1;
    }

    /// Unlinks `th`.
    ///
    /// # Safety
    /// `th` is in this list.
    pub(crate) unsafe fn remove(&mut self, th: *mut ThreadCtl) {
        // SAFETY: per the contract; its neighbours are live TCBs of this list.
        unsafe {
            if (*th).all_prev.is_null() {
                self.head = (*th).all_next;
            } else {
                (*(*th).all_prev).all_next = (*th).all_next;
            }
            if !(*th).all_next.is_null() {
                (*(*th).all_next).all_prev = (*th).all_prev;
            }
            (*th).all_prev = ptr::null_mut();
            (*th).all_next = ptr::null_mut();
        }
        self.len -= 1;
    }
}

/// Dead threads' TCBs kept on their stacks, still initialised, for the
/// vcpu's next threads of the same stack size: creating a thread from one
/// rewrites only the fields that differ between threads (see
/// [`ThreadCtl::recycle`]) instead of the whole block, and a thread's end
/// neither drops the block nor returns the stack to the pool. Last in,
/// first out; at most [`TcbCache::CAP`] (the rest go the pool's way).
/// Each entry owns its TCB and, through it, the stack.
pub(crate) struct TcbCache(Vec<*mut ThreadCtl>);

impl TcbCache {
    /// TCBs (and stacks) kept at most.
    pub(crate) const CAP: usize = 64;

    pub(crate) fn new() -> TcbCache {
        TcbCache(Vec::with_capacity(Self::CAP))
    }

    /// The most recently cached TCB if its stack is of size class `class`.
    #[inline(always)]
    pub(crate) fn pop(&mut self, class: usize) -> Option<*mut ThreadCtl> {
        match self.0.last() {
            // SAFETY: cached TCBs are live blocks owned by the cache.
            Some(&t) if unsafe { (*t).stack_class } == class => self.0.pop(),
            _ => None,
        }
    }

    /// True if [`push`](Self::push) has room.
    #[inline(always)]
    pub(crate) fn has_room(&self) -> bool {
        self.0.len() < Self::CAP
    }

    /// Keeps `t`, a TCB that [`ThreadCtl::recycle`] left clean (or a fresh
    /// one never published), with its stack.
    ///
    /// # Safety
    /// `t` sits on its own stack, no CPU runs on that stack, nobody else
    /// refers to it; [`has_room`](Self::has_room) said so.
    #[inline(always)]
    pub(crate) unsafe fn push(&mut self, t: *mut ThreadCtl) {
        debug_assert!(self.has_room());
        self.0.push(t);
    }

    /// Drops every cached TCB and gives its stack back (to its chunk or
    /// the kernel). Returns how many.
    pub(crate) fn clear(&mut self) -> usize {
        let n = self.0.len();
        for t in self.0.drain(..) {
            // SAFETY: owned by the cache; the stack is read out before the
            // block that lies on it is dropped, and dropped last.
            unsafe {
                let stack = (*t).stack.take();
                ptr::drop_in_place(t);
                drop(stack);
            }
        }
        n
    }
}

impl Drop for TcbCache {
    fn drop(&mut self) {
        self.clear();
    }
}

/// No engine operation (`ThreadCtl::io_op`).
pub(crate) const NO_OP: u32 = u32::MAX;

impl ThreadCtl {
    /// Consumes the thread's pending interrupt, if any and if it may be
    /// interrupted now: every call that may block starts with this, so an
    /// interrupt sent while the thread was running fails its next such call.
    #[inline]
    pub(crate) fn take_interrupt(&mut self) -> Result<(), Errno> {
        if self.pending_interrupt != 0 && !self.uninterruptible {
            return Err(Errno(core::mem::take(&mut self.pending_interrupt)));
        }
        Ok(())
    }

    /// Makes the TCB of a thread that ended (called by the thread itself
    /// just before it switches away for good, or once it is off its stack) what
    /// [`ThreadCtl::new`] would make it, except for the fields every
    /// creation sets anyway (`sp`, `state`, `handle`, `entry`, `arg`) and
    /// those that stay valid from one thread to the next: `stack` and
    /// `stack_class` (the same stack), `wait_seq` (it keeps counting, so a
    /// wake-up for the previous thread's waits can never match), the links
    /// (unlinked from the run queue and the thread list at the end),
    /// `timer_pos`/`deadline` (no timer once the thread is not blocked),
    /// `wake_result` (set by every block), `wait`/`wait_since` (shown only
    /// while blocked), `asan_fake_stack` (saved at every switch away),
    /// `migrate_to` (read only while migrating) and `on_end` (taken by the
    /// end). Heap parts (key values, isolated thread-locals) are freed.
    #[inline(always)]
    pub(crate) fn recycle(&mut self) {
        debug_assert!(self.timer_pos == NO_TIMER && self.on_end.is_none());
        debug_assert!(self.prev.is_null() && self.all_prev.is_null() && self.all_next.is_null());
        if !self.keys.is_empty_alloc() {
            self.keys = KeyValues::default();
        }
        if !self.tls.is_pristine() {
            self.tls = super::tls::ThreadTls::new();
        }
        self.pending_interrupt = 0;
        self.io_op = NO_OP;
        self.io_done = false;
        self.uninterruptible = false;
        self.name[0] = 0;
    }

    pub(crate) fn new(handle: Handle, entry: Option<Entry>, arg: *mut c_void) -> ThreadCtl {
        ThreadCtl {
            sp: ptr::null_mut(),
            prev: ptr::null_mut(),
            next: ptr::null_mut(),
            all_prev: ptr::null_mut(),
            all_next: ptr::null_mut(),
            state: State::Runnable,
            wait_seq: 0,
            wake_result: 0,
            pending_interrupt: 0,
            deadline: u64::MAX,
            timer_pos: NO_TIMER,
            handle,
            entry,
            arg,
            stack: None,
            stack_class: 0,
            keys: KeyValues::default(),
            io_op: NO_OP,
            io_done: false,
            io_result: 0,
            uninterruptible: false,
            migrate_to: 0,
            wait: Wait::Other,
            wait_since: 0,
            name: [0; NAME_MAX + 1],
            asan_fake_stack: ptr::null_mut(),
            tls: super::tls::ThreadTls::new(),
            on_end: None,
        }
    }
}
