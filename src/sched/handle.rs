//! Thread handles: what C holds as `photon_thread*`.
//!
//! A handle is `generation << 32 | (slot index + 1)`, never a pointer to the
//! TCB, so a handle kept after its thread ended (a detached thread, or one
//! already joined) is detected as stale (`ESRCH`) instead of touching freed
//! memory. Slots live in a global table that only grows (chunks are never
//! freed), so looking one up from any OS thread is always memory-safe.
//!
//! Each slot's `ctl` word packs the generation with the join state, so
//! every transition is one compare-and-swap that also re-checks the
//! generation (no ABA when a slot is reused):
//!
//! ```text
//!   create ──> [live] ──enable_join──> [JOINABLE] ──join──> [JOINABLE|WAITING]
//!                 │                         │                      │
//!               end: free                 end                     end: wake the joiner
//!                                           v                      v
//!                                  [JOINABLE|ENDED] ──join──> free (generation+1, WAS_JOINED)
//! ```

use core::ffi::c_void;
use core::ptr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicPtr, AtomicU32, AtomicU64, Ordering::*};

use super::thread::ThreadCtl;
use crate::errno::Errno;

/// An encoded thread handle; 0 is "no thread".
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub struct Handle(pub u64);

impl Handle {
    /// No thread.
    pub const NULL: Handle = Handle(0);

    fn new(index: u32, generation: u32) -> Handle {
        Handle(((generation as u64) << 32) | (index as u64 + 1))
    }
    fn index(self) -> Option<u32> {
        (self.0 as u32).checked_sub(1)
    }
    fn generation(self) -> u32 {
        (self.0 >> 32) as u32
    }
    /// A small number identifying the thread in messages.
    pub fn id(self) -> u64 {
        self.0 as u32 as u64
    }
}

const JOINABLE: u64 = 1;
const ENDED: u64 = 2;
const WAITING: u64 = 4;
const FREE: u64 = 8;
const WAS_JOINED: u64 = 16;
const FLAGS: u64 = 0xffff_ffff;

fn gen_of(w: u64) -> u32 {
    (w >> 32) as u32
}
fn next_gen(g: u32) -> u32 {
    g.wrapping_add(1).max(1) // generation 0 is never handed out
}

/// One thread's entry in the global table.
pub(crate) struct Slot {
    ctl: AtomicU64,
    /// The live TCB; dereferenced only on its own vcpu.
    pub thread: AtomicPtr<ThreadCtl>,
    /// Id of the vcpu that owns the thread.
    pub vcpu: AtomicU32,
    retval: AtomicPtr<c_void>,
    joiner: AtomicU64,
    joiner_seq: AtomicU64,
}

impl Slot {
    const fn new() -> Slot {
        Slot {
            ctl: AtomicU64::new((1 << 32) | FREE),
            thread: AtomicPtr::new(ptr::null_mut()),
            vcpu: AtomicU32::new(0),
            retval: AtomicPtr::new(ptr::null_mut()),
            joiner: AtomicU64::new(0),
            joiner_seq: AtomicU64::new(0),
        }
    }
}

const CHUNK_BITS: u32 = 12;
const CHUNK: usize = 1 << CHUNK_BITS;
const MAX_CHUNKS: usize = 1 << 12; // 16M thread slots

static CHUNKS: [AtomicPtr<Slot>; MAX_CHUNKS] = [const { AtomicPtr::new(ptr::null_mut()) }; MAX_CHUNKS];
static NEVER_USED: AtomicU32 = AtomicU32::new(0);
static GLOBAL_FREE: Mutex<Vec<u32>> = Mutex::new(Vec::new());

/// Slot indices freed on a vcpu, reused there first (no lock on the common path).
pub(crate) struct SlotCache(Vec<u32>);

impl SlotCache {
    pub(crate) const fn new() -> SlotCache {
        SlotCache(Vec::new())
    }
    #[inline(always)]
    fn put(&mut self, idx: u32) {
        #[cold]
        #[inline(never)]
        fn spill(c: &mut SlotCache) {
            GLOBAL_FREE
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend(c.0.drain(..2048));
        }
        self.0.push(idx);
        if self.0.len() > 4096 {
            spill(self);
        }
    }
}

impl Drop for SlotCache {
    fn drop(&mut self) {
        GLOBAL_FREE
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .append(&mut self.0);
    }
}

fn slot_at(idx: u32) -> Option<&'static Slot> {
    let chunk = CHUNKS.get((idx >> CHUNK_BITS) as usize)?.load(Acquire);
    if chunk.is_null() {
        return None;
    }
    // SAFETY: chunks are leaked arrays of CHUNK slots, never freed.
    Some(unsafe { &*chunk.add(idx as usize & (CHUNK - 1)) })
}

fn fresh_index() -> Result<u32, Errno> {
    let idx = NEVER_USED.fetch_add(1, Relaxed);
    let c = (idx >> CHUNK_BITS) as usize;
    if c >= MAX_CHUNKS {
        NEVER_USED.fetch_sub(1, Relaxed);
        return Err(Errno::EAGAIN);
    }
    if CHUNKS[c].load(Acquire).is_null() {
        let chunk: Box<[Slot]> = (0..CHUNK).map(|_| Slot::new()).collect();
        let p = Box::into_raw(chunk).cast::<Slot>();
        if CHUNKS[c].compare_exchange(ptr::null_mut(), p, AcqRel, Acquire).is_err() {
            // SAFETY: we lost the race; `p` is our own unpublished allocation.
            drop(unsafe { Box::from_raw(ptr::slice_from_raw_parts_mut(p, CHUNK)) });
        }
    }
    Ok(idx)
}

/// Allocates a slot for a new thread owned by vcpu `vcpu`. Inlined into
/// thread creation: the common case (a slot freed on this vcpu) is a pop
/// and four stores, the rest out of line.
#[inline(always)]
pub(crate) fn alloc(cache: &mut SlotCache, th: *mut ThreadCtl, vcpu: u32) -> Result<Handle, Errno> {
    #[cold]
    #[inline(never)]
    fn uncached() -> Result<u32, Errno> {
        let from_global = GLOBAL_FREE.lock().unwrap_or_else(|e| e.into_inner()).pop();
        match from_global {
            Some(i) => Ok(i),
            None => fresh_index(),
        }
    }
    let idx = match cache.0.pop() {
        Some(i) => i,
        None => uncached()?,
    };
    let slot = slot_at(idx).expect("allocated slot index has a chunk");
    let generation = gen_of(slot.ctl.load(Relaxed));
    slot.thread.store(th, Relaxed);
    slot.vcpu.store(vcpu, Relaxed);
    slot.retval.store(ptr::null_mut(), Relaxed);
    slot.ctl.store((generation as u64) << 32, Release);
    Ok(Handle::new(idx, generation))
}

#[inline(always)]
fn free(slot: &Slot, idx: u32, w: u64, extra: u64, cache: Option<&mut SlotCache>) {
    slot.thread.store(ptr::null_mut(), Relaxed);
    slot.ctl
        .store(((next_gen(gen_of(w)) as u64) << 32) | FREE | extra, Release);
    match cache {
        Some(c) => c.put(idx),
        None => GLOBAL_FREE.lock().unwrap_or_else(|e| e.into_inner()).push(idx),
    }
}

/// The slot of a live thread, with its current control word.
fn live(h: Handle) -> Result<(&'static Slot, u32, u64), Errno> {
    let idx = h.index().ok_or(Errno::EINVAL)?;
    let slot = slot_at(idx).ok_or(Errno::ESRCH)?;
    let w = slot.ctl.load(Acquire);
    if gen_of(w) != h.generation() || w & FREE != 0 {
        return Err(Errno::ESRCH);
    }
    Ok((slot, idx, w))
}

/// True if `h` was joined and its slot not reused since: a second join is
/// misuse (EINVAL) rather than a stale handle.
fn joined_just_now(h: Handle) -> bool {
    let Some(slot) = h.index().and_then(slot_at) else {
        return false;
    };
    let w = slot.ctl.load(Acquire);
    w & WAS_JOINED != 0 && next_gen(h.generation()) == gen_of(w)
}

/// The owning vcpu id and TCB of a live thread. The TCB may be
/// dereferenced only on that vcpu.
pub(crate) fn resolve(h: Handle) -> Result<(u32, *mut ThreadCtl), Errno> {
    let (slot, _, _) = live(h)?;
    Ok((slot.vcpu.load(Acquire), slot.thread.load(Acquire)))
}

/// Records which vcpu owns the thread now (migration).
pub(crate) fn set_vcpu(h: Handle, vcpu: u32) {
    if let Ok((slot, _, _)) = live(h) {
        slot.vcpu.store(vcpu, Release);
    }
}

/// `photon_thread_enable_join`.
pub(crate) fn enable_join(h: Handle) -> Result<(), Errno> {
    loop {
        let (slot, _, w) = live(h).map_err(|_| Errno::ESRCH)?;
        if w & JOINABLE != 0 {
            return Ok(());
        }
        if slot.ctl.compare_exchange(w, w | JOINABLE, AcqRel, Acquire).is_ok() {
            return Ok(());
        }
    }
}

/// `photon_thread_joinable`: whether `enable_join` was called and the
/// thread has been neither detached nor joined since (a join under way
/// counts: the thread is joinable until that join returns).
pub(crate) fn joinable(h: Handle) -> Result<bool, Errno> {
    let (_, _, w) = live(h)?;
    Ok(w & JOINABLE != 0)
}

/// `photon_thread_detach`: undoes enable_join; reclaims an ended thread.
pub(crate) fn detach(h: Handle, cache: Option<&mut SlotCache>) -> Result<(), Errno> {
    let mut cache = cache;
    loop {
        let (slot, idx, w) = live(h)?;
        if w & JOINABLE == 0 || w & WAITING != 0 {
            return Err(Errno::EINVAL);
        }
        if w & ENDED != 0 {
            if slot.ctl.compare_exchange(w, w & !FLAGS | FREE, AcqRel, Acquire).is_ok() {
                free(slot, idx, w, 0, cache.take());
                return Ok(());
            }
        } else if slot.ctl.compare_exchange(w, w & !JOINABLE, AcqRel, Acquire).is_ok() {
            return Ok(());
        }
    }
}

/// A joiner that `end` must wake: its handle and the wait it sleeps in;
/// `local`: its TCB when it sleeps on the ending thread's own vcpu (wake
/// it there directly), else null (wake it through its handle).
pub(crate) struct Joiner {
    pub handle: Handle,
    pub seq: u64,
    pub local: *mut ThreadCtl,
}

/// Called by a thread's own vcpu (id `vcpu`) when it ends. Frees the slot
/// of a detached thread; otherwise publishes `retval` and returns the
/// joiner to wake.
///
/// Same-vcpu join: once a joiner is registered (`WAITING`), only the thread's
/// end and the joiner's own `join_finish` write the control word (a second
/// join, a detach, an enable_join only read it and fail or return). When
/// the joiner lives on this vcpu it cannot be in `join_finish` now (this OS
/// thread runs the end), so `ENDED` is set with a plain store, without the
/// compare-and-swap the cross-vcpu case needs against a joiner withdrawing.
pub(crate) fn end(h: Handle, retval: *mut c_void, cache: &mut SlotCache, vcpu: u32) -> Option<Joiner> {
    let (slot, idx, _) = live(h).expect("a running thread's handle is live");
    slot.retval.store(retval, Relaxed);
    slot.thread.store(ptr::null_mut(), Relaxed);
    loop {
        let w = slot.ctl.load(Acquire);
        if w & JOINABLE == 0 {
            // Detached. Only a concurrent enable_join could race; the CAS settles it.
            if slot.ctl.compare_exchange(w, w | FREE, AcqRel, Acquire).is_ok() {
                free(slot, idx, w, 0, Some(cache));
                return None;
            }
            continue;
        }
        // Read the joiner before publishing ENDED: once it is set the joiner may free the slot.
        let mut joiner = Joiner {
            handle: Handle(slot.joiner.load(Relaxed)),
            seq: slot.joiner_seq.load(Relaxed),
            local: ptr::null_mut(),
        };
        if w & WAITING != 0
            && let Ok((js, _, _)) = live(joiner.handle)
            && js.vcpu.load(Relaxed) == vcpu
        {
            // The joiner sleeps on this vcpu: nobody else writes the word now.
            joiner.local = js.thread.load(Relaxed);
            slot.ctl.store(w | ENDED, Release);
            return Some(joiner);
        }
        if slot.ctl.compare_exchange(w, w | ENDED, AcqRel, Acquire).is_ok() {
            return (w & WAITING != 0).then_some(joiner);
        }
    }
}

/// First step of a join.
pub(crate) enum JoinStep {
    /// The thread had ended: here is its return value; the slot is freed.
    Done(*mut c_void),
    /// Registered as the joiner: block, then call [`join_finish`] with this
    /// (the slot stays the joined thread's while a join is registered).
    Wait(JoinWait),
}

/// A registered join: the joined thread's slot, found once by [`join_start`].
pub(crate) struct JoinWait {
    slot: &'static Slot,
    idx: u32,
}

/// Starts joining `h` as thread `me`, which will block in wait `seq`.
pub(crate) fn join_start(h: Handle, me: Handle, seq: u64, cache: &mut SlotCache) -> Result<JoinStep, Errno> {
    loop {
        let (slot, idx, w) = live(h).map_err(|e| if joined_just_now(h) { Errno::EINVAL } else { e })?;
        if w & JOINABLE == 0 || w & WAITING != 0 {
            return Err(Errno::EINVAL);
        }
        if w & ENDED != 0 {
            let rv = slot.retval.load(Relaxed);
            if slot.ctl.compare_exchange(w, w & !FLAGS | FREE, AcqRel, Acquire).is_ok() {
                free(slot, idx, w, WAS_JOINED, Some(cache));
                return Ok(JoinStep::Done(rv));
            }
            continue;
        }
        slot.joiner.store(me.0, Relaxed);
        slot.joiner_seq.store(seq, Relaxed);
        if slot.ctl.compare_exchange(w, w | WAITING, AcqRel, Acquire).is_ok() {
            return Ok(JoinStep::Wait(JoinWait { slot, idx }));
        }
    }
}

/// After the joiner was woken: if the thread ended, frees the slot and
/// returns its value; if not (the joiner was interrupted first), withdraws
/// the join and returns None, leaving the thread joinable.
pub(crate) fn join_finish(jw: JoinWait, cache: &mut SlotCache) -> Option<*mut c_void> {
    let JoinWait { slot, idx } = jw;
    loop {
        let w = slot.ctl.load(Acquire);
        if w & ENDED != 0 {
            // Nobody else writes the word of an ended thread with a join
            // registered: free's one store publishes FREE with the next generation.
            let rv = slot.retval.load(Relaxed);
            free(slot, idx, w, WAS_JOINED, Some(cache));
            return Some(rv);
        }
        if slot.ctl.compare_exchange(w, w & !WAITING, AcqRel, Acquire).is_ok() {
            return None;
        }
    }
}

/// True if `h` names a live thread.
#[cfg(test)]
fn is_live(h: Handle) -> bool {
    live(h).is_ok()
}

/// Frees the slot of a thread that will never be joined (photon_fini's sweep).
pub(crate) fn release(h: Handle, cache: &mut SlotCache) {
    if let Ok((slot, idx, w)) = live(h) {
        free(slot, idx, w, 0, Some(cache));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn waiting(step: Result<JoinStep, Errno>) -> JoinWait {
        match step {
            Ok(JoinStep::Wait(jw)) => jw,
            _ => panic!("the join should wait"),
        }
    }

    #[test]
    fn stale_and_forged_handles_are_rejected() {
        let mut c = SlotCache::new();
        let h = alloc(&mut c, ptr::null_mut(), 1).unwrap();
        assert!(is_live(h));
        assert!(end(h, ptr::null_mut(), &mut c, 1).is_none()); // detached: freed
        assert_eq!(resolve(h).unwrap_err(), Errno::ESRCH);
        assert_eq!(enable_join(h).unwrap_err(), Errno::ESRCH);
        assert_eq!(resolve(Handle(0x12345)).unwrap_err(), Errno::ESRCH);
        assert_eq!(resolve(Handle::NULL).unwrap_err(), Errno::EINVAL);
        // The slot is reused with a new generation; the old handle stays stale.
        let h2 = alloc(&mut c, ptr::null_mut(), 1).unwrap();
        assert_ne!(h, h2);
        assert!(!is_live(h) && is_live(h2));
    }

    #[test]
    fn join_protocol() {
        let mut c = SlotCache::new();
        let me = alloc(&mut c, ptr::null_mut(), 1).unwrap();
        // Ended before the join.
        let h = alloc(&mut c, ptr::null_mut(), 1).unwrap();
        assert!(matches!(join_start(h, me, 1, &mut c), Err(Errno::EINVAL))); // not joinable
        enable_join(h).unwrap();
        assert!(end(h, 7 as *mut c_void, &mut c, 1).is_none());
        assert!(matches!(join_start(h, me, 1, &mut c), Ok(JoinStep::Done(p)) if p as usize == 7));
        assert!(matches!(join_start(h, me, 1, &mut c), Err(Errno::EINVAL))); // twice
        // Joiner waits, then the thread ends.
        let h = alloc(&mut c, ptr::null_mut(), 1).unwrap();
        enable_join(h).unwrap();
        let jw = waiting(join_start(h, me, 5, &mut c));
        let j = end(h, 9 as *mut c_void, &mut c, 1).expect("joiner to wake");
        assert_eq!((j.handle, j.seq), (me, 5));
        assert_eq!(join_finish(jw, &mut c), Some(9 as *mut c_void));
        // Joiner interrupted before the end: the join is withdrawn, thread stays joinable.
        let h = alloc(&mut c, ptr::null_mut(), 1).unwrap();
        enable_join(h).unwrap();
        let jw = waiting(join_start(h, me, 6, &mut c));
        assert_eq!(join_finish(jw, &mut c), None);
        assert!(end(h, ptr::null_mut(), &mut c, 1).is_none());
        detach(h, Some(&mut c)).unwrap();
        assert!(!is_live(h));
    }

    #[test]
    fn same_vcpu_joiner_is_woken_directly() {
        let mut c = SlotCache::new();
        let fake_tcb = 0x1000 as *mut ThreadCtl; // never dereferenced here
        // The joiner sleeps on vcpu 1, the thread ends on vcpu 1: direct wake.
        let me = alloc(&mut c, fake_tcb, 1).unwrap();
        let h = alloc(&mut c, ptr::null_mut(), 1).unwrap();
        enable_join(h).unwrap();
        let jw = waiting(join_start(h, me, 3, &mut c));
        let j = end(h, 11 as *mut c_void, &mut c, 1).expect("joiner to wake");
        assert_eq!((j.handle, j.seq, j.local), (me, 3, fake_tcb));
        assert!(
            matches!(join_start(h, me, 4, &mut c), Err(Errno::EINVAL)),
            "join under way"
        );
        assert_eq!(join_finish(jw, &mut c), Some(11 as *mut c_void));
        assert!(!is_live(h));
        // The thread ends on vcpu 2: the joiner (vcpu 1) may be withdrawing at
        // this moment, so the end takes the compare-and-swap path and the
        // joiner is woken through its handle (no TCB of another vcpu handed out).
        let h = alloc(&mut c, ptr::null_mut(), 2).unwrap();
        enable_join(h).unwrap();
        let jw = waiting(join_start(h, me, 5, &mut c));
        let j = end(h, 12 as *mut c_void, &mut c, 2).expect("joiner to wake");
        assert_eq!((j.handle, j.seq), (me, 5));
        assert!(
            j.local.is_null(),
            "a joiner on another vcpu is woken through its handle"
        );
        assert_eq!(join_finish(jw, &mut c), Some(12 as *mut c_void));
        // A join withdrawn (interrupted) before a same-vcpu end: nobody to wake,
        // the thread stays joinable and a new join finds its value.
        let h = alloc(&mut c, ptr::null_mut(), 1).unwrap();
        enable_join(h).unwrap();
        let jw = waiting(join_start(h, me, 6, &mut c));
        assert_eq!(join_finish(jw, &mut c), None);
        assert!(end(h, 13 as *mut c_void, &mut c, 1).is_none());
        assert!(matches!(join_start(h, me, 7, &mut c), Ok(JoinStep::Done(p)) if p as usize == 13));
        // Detached: freed at its end whatever the vcpu.
        let h = alloc(&mut c, ptr::null_mut(), 1).unwrap();
        assert!(end(h, ptr::null_mut(), &mut c, 1).is_none());
        assert!(!is_live(h));
    }
}
