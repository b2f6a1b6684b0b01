//! Messages to a vcpu from other OS threads (interrupts and wake-ups of its
//! threads), and the table that finds a vcpu's inbox by id.
//!
//! Lock-free and O(1) on the posting side: a vcpu id indexes a table of
//! inbox pointers (chunks that are never freed, as thread handles' slots),
//! and an inbox is a Treiber stack of messages that its vcpu takes whole
//! and reverses. A poster pins the inbox with a counter ([`Remote::refs`])
//! that `unregister` waits out before the inbox (and the engine notifier
//! it holds) can go away.
//!
//! No lost wake-ups: a vcpu about to sleep publishes `sleeping` and then
//! re-checks its inbox; a poster pushes and then checks `sleeping`. Both
//! sides use SeqCst, so at least one of them sees the other's store:
//! either the vcpu skips its sleep, or the poster notifies the engine.

use core::ptr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicU64, Ordering::*};

use super::handle::Handle;
use crate::engine::Notify;
use crate::errno::Errno;

/// Something another OS thread asks a vcpu to do to one of its threads.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Msg {
    /// Wake `h` from wait number `seq` with `result` (0 or an errno).
    Wake { h: Handle, seq: u64, result: i32 },
    /// `photon_thread_interrupt(h, errno)`.
    Interrupt { h: Handle, errno: i32 },
    /// Take over a migrating thread (its TCB, off every CPU).
    Adopt { tcb: usize },
    /// Start a photon thread running `entry(arg)` (work pools).
    Spawn { entry: super::thread::Entry, arg: usize },
    /// Write the vcpu's threads to stderr (`PHOTON_DUMP_SIGNAL`).
    Dump,
    /// Give pooled stacks back (`photon_trim`).
    Trim,
    /// `photon_close(fd)` on another vcpu: wake this vcpu's threads waiting
    /// on `fd` (ECANCELED), then acknowledge through `ack`, a raw
    /// `Arc<CloseAck>` this message owns one count of.
    CancelFd { fd: i32, ack: usize },
    /// A thread of another vcpu reads `fd`: hand the bytes of its stream
    /// this vcpu's engine holds to the fdinfo spill (see `io::held_first`).
    ReleaseHeld { fd: i32 },
}

struct Node {
    msg: Msg,
    next: *mut Node,
}

/// A vcpu's inbox.
pub(crate) struct Remote {
    /// Posted messages, newest first.
    head: AtomicPtr<Node>,
    sleeping: AtomicBool,
    notify: Arc<dyn Notify>,
    /// Posters using this inbox through the table right now.
    refs: AtomicU32,
    /// Scheduling decisions of the vcpu, written only by it (see `tick`);
    /// here so the stall monitor can read it from its own thread.
    pub(crate) switches: AtomicU64,
    /// The TCB the vcpu last switched to (for stall reports; 0 after fini).
    pub(crate) running: AtomicU64,
}

// SAFETY: the message list is handed between threads only through the
// atomic head; a Msg is plain data.
unsafe impl Send for Remote {}
// SAFETY: as above.
unsafe impl Sync for Remote {}

impl Remote {
    pub(crate) fn new(notify: Arc<dyn Notify>) -> Remote {
        Remote {
            head: AtomicPtr::new(ptr::null_mut()),
            sleeping: AtomicBool::new(false),
            notify,
            refs: AtomicU32::new(0),
            switches: AtomicU64::new(0),
            running: AtomicU64::new(0),
        }
    }

    /// Posts a message and wakes the vcpu if it sleeps.
    pub(crate) fn post(&self, m: Msg) {
        self.post_via(m, |n| n.notify());
    }

    /// [`Remote::post`], waking the vcpu with `wake` (given its notifier)
    /// if it sleeps.
    pub(crate) fn post_via(&self, m: Msg, wake: impl FnOnce(&dyn Notify)) {
        let n = Box::into_raw(Box::new(Node {
            msg: m,
            next: ptr::null_mut(),
        }));
        let mut head = self.head.load(Relaxed);
        loop {
            // SAFETY: `n` is ours until the exchange publishes it.
            unsafe { (*n).next = head };
            match self.head.compare_exchange_weak(head, n, SeqCst, Relaxed) {
                Ok(_) => break,
                Err(h) => head = h,
            }
        }
        if self.sleeping.load(SeqCst) {
            wake(&*self.notify);
        }
    }

    /// True if messages wait (cheap; checked by the owning vcpu).
    #[inline]
    pub(crate) fn has_pending(&self) -> bool {
        !self.head.load(Acquire).is_null()
    }

    /// Takes every posted message, oldest first.
    pub(crate) fn drain(&self, out: &mut Vec<Msg>) {
        let mut n = self.head.swap(ptr::null_mut(), SeqCst);
        let start = out.len();
        while !n.is_null() {
            // SAFETY: the swap made the whole list ours; each node came from a Box.
            let node = unsafe { Box::from_raw(n) };
            out.push(node.msg);
            n = node.next;
        }
        out[start..].reverse();
    }

    /// Marks the vcpu as going to sleep; false if a message arrived meanwhile
    /// (then the vcpu must not sleep).
    pub(crate) fn enter_sleep(&self) -> bool {
        self.sleeping.store(true, SeqCst);
        if !self.head.load(SeqCst).is_null() {
            self.sleeping.store(false, SeqCst);
            return false;
        }
        true
    }

    /// True while the vcpu sleeps in its engine.
    pub(crate) fn is_sleeping(&self) -> bool {
        self.sleeping.load(Relaxed)
    }

    pub(crate) fn leave_sleep(&self) {
        self.sleeping.store(false, SeqCst);
    }
}

impl Drop for Remote {
    fn drop(&mut self) {
        let mut left = Vec::new();
        self.drain(&mut left); // messages to an ended vcpu are dropped
    }
}

const CHUNK_BITS: u32 = 10;
const CHUNK: usize = 1 << CHUNK_BITS;
const MAX_CHUNKS: usize = 1 << 12; // 4M vcpus over the life of a process

type Table = [AtomicPtr<Remote>; CHUNK];
static CHUNKS: [AtomicPtr<Table>; MAX_CHUNKS] = [const { AtomicPtr::new(ptr::null_mut()) }; MAX_CHUNKS];
/// One more than the highest id registered so far.
static END: AtomicU32 = AtomicU32::new(1);

/// The table entry of vcpu `id`, if its chunk exists (`grow`: create it).
fn entry(id: u32, grow: bool) -> Option<&'static AtomicPtr<Remote>> {
    let c = CHUNKS.get((id >> CHUNK_BITS) as usize)?;
    let mut t = c.load(Acquire);
    if t.is_null() {
        if !grow {
            return None;
        }
        let fresh: Box<Table> = Box::new([const { AtomicPtr::new(ptr::null_mut()) }; CHUNK]);
        let fresh = Box::into_raw(fresh);
        t = match c.compare_exchange(ptr::null_mut(), fresh, AcqRel, Acquire) {
            Ok(_) => fresh,
            Err(other) => {
                // SAFETY: we lost the race; `fresh` was never published.
                drop(unsafe { Box::from_raw(fresh) });
                other
            }
        };
    }
    // SAFETY: chunks are never freed.
    Some(unsafe { &(*t)[id as usize & (CHUNK - 1)] })
}

/// Makes vcpu `id`'s inbox reachable; EAGAIN past the table's size.
pub(crate) fn register(id: u32, r: Arc<Remote>) -> Result<(), Errno> {
    let e = entry(id, true).ok_or(Errno::EAGAIN)?;
    e.store(Arc::into_raw(r).cast_mut(), SeqCst);
    END.fetch_max(id + 1, Relaxed);
    Ok(())
}

/// Removes vcpu `id`'s inbox; returns once no poster uses it any more.
pub(crate) fn unregister(id: u32) {
    let Some(e) = entry(id, false) else {
        return;
    };
    let r = e.swap(ptr::null_mut(), SeqCst);
    if r.is_null() {
        return;
    }
    // SAFETY: the table's reference, taken back; posters still inside hold
    // `refs`, which is waited out before the reference is dropped.
    let r = unsafe { Arc::from_raw(r) };
    while r.refs.load(SeqCst) != 0 {
        std::hint::spin_loop();
    }
    drop(r);
}

/// Runs `f` on vcpu `id`'s inbox, pinned; None if that vcpu has ended.
#[inline]
fn with<R>(id: u32, f: impl FnOnce(&Remote) -> R) -> Option<R> {
    let e = entry(id, false)?;
    let r = e.load(SeqCst);
    if r.is_null() {
        return None;
    }
    // SAFETY: a registered inbox is freed only after unregister saw `refs`
    // at zero following its removal from the table; the re-check below
    // tells whether the pin came in time.
    unsafe {
        (*r).refs.fetch_add(1, SeqCst);
        let out = if e.load(SeqCst) == r { Some(f(&*r)) } else { None };
        (*r).refs.fetch_sub(1, SeqCst);
        out
    }
}

/// True if vcpu `id` is alive.
pub(crate) fn exists(id: u32) -> bool {
    with(id, |_| ()).is_some()
}

/// Every live vcpu's id and inbox.
pub(crate) fn all() -> Vec<(u32, Arc<Remote>)> {
    let mut out = Vec::new();
    for id in 1..END.load(Relaxed) {
        let e = entry(id, false);
        let r = e.map_or(ptr::null_mut(), |e| e.load(SeqCst));
        if r.is_null() {
            continue;
        }
        if let Some(arc) = with(id, |_| {
            // SAFETY: pinned: the table's reference is alive.
            unsafe {
                Arc::increment_strong_count(r);
                Arc::from_raw(r)
            }
        }) {
            out.push((id, arc));
        }
    }
    out
}

/// Posts `m` to vcpu `id`; ESRCH if that vcpu has ended.
#[inline]
pub(crate) fn post(id: u32, m: Msg) -> Result<(), Errno> {
    with(id, |r| r.post(m)).ok_or(Errno::ESRCH)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Count(AtomicU32);
    impl Notify for Count {
        fn notify(&self) {
            self.0.fetch_add(1, SeqCst);
        }
    }

    #[test]
    fn order_sleep_protocol_and_unregister() {
        let n = Arc::new(Count(AtomicU32::new(0)));
        let r = Arc::new(Remote::new(n.clone()));
        let id = 40_000; // far above the ids the vcpus of other tests get
        register(id, r.clone()).unwrap();
        post(id, Msg::Dump).unwrap();
        post(id, Msg::Trim).unwrap();
        assert!(r.has_pending());
        assert!(!r.enter_sleep(), "a pending message forbids sleeping");
        let mut got = Vec::new();
        r.drain(&mut got);
        assert!(matches!(got[..], [Msg::Dump, Msg::Trim]));
        assert_eq!(n.0.load(SeqCst), 0, "an awake vcpu is not notified");
        assert!(r.enter_sleep());
        post(id, Msg::Dump).unwrap();
        assert_eq!(n.0.load(SeqCst), 1, "a sleeping vcpu is notified");
        r.leave_sleep();
        assert!(exists(id) && all().iter().any(|(i, _)| *i == id));
        unregister(id);
        assert!(!exists(id));
        assert_eq!(post(id, Msg::Dump), Err(Errno::ESRCH));
    }
}
