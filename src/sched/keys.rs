//! Per-thread keys (`photon_key_create` / `photon_setspecific`), with
//! pthread semantics: a value is per photon thread, a key's destructor runs
//! for each non-NULL value when its thread ends, and deleting a key makes
//! its values unreachable without running destructors.
//!
//! The key table is global and lock-free to read: each key has a sequence
//! number bumped on delete, and a thread's stored value counts only if it
//! was set under the key's current sequence.

use core::ffi::c_void;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::*};

use crate::errno::Errno;

/// A key's destructor: the C `void (*)(void*)`.
pub type Destructor = unsafe extern "C" fn(value: *mut c_void);

/// Most keys alive at once (as `PTHREAD_KEYS_MAX`).
pub const KEYS_MAX: usize = 1024;
/// Destructor rounds at thread end (as `PTHREAD_DESTRUCTOR_ITERATIONS`).
const DESTRUCTOR_ROUNDS: usize = 4;

/// Per key: `seq << 1 | in_use`.
static META: [AtomicU64; KEYS_MAX] = [const { AtomicU64::new(0) }; KEYS_MAX];
static DTOR: [AtomicUsize; KEYS_MAX] = [const { AtomicUsize::new(0) }; KEYS_MAX];
static CREATE_LOCK: Mutex<()> = Mutex::new(());

/// Creates a key.
pub fn create(dtor: Option<Destructor>) -> Result<u32, Errno> {
    let _g = CREATE_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    for (k, m) in META.iter().enumerate() {
        let v = m.load(Acquire);
        if v & 1 == 0 {
            DTOR[k].store(dtor.map_or(0, |d| d as usize), Relaxed);
            m.store((v + 2) | 1, Release); // new sequence, in use
            return Ok(k as u32);
        }
    }
    Err(Errno::EAGAIN)
}

/// Deletes a key; its values stay where they are, unreachable.
pub fn delete(key: u32) -> Result<(), Errno> {
    let _g = CREATE_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let m = META.get(key as usize).ok_or(Errno::EINVAL)?;
    let v = m.load(Acquire);
    if v & 1 == 0 {
        return Err(Errno::EINVAL);
    }
    m.store(v & !1, Release);
    Ok(())
}

fn live_seq(key: u32) -> Result<u64, Errno> {
    let v = META.get(key as usize).ok_or(Errno::EINVAL)?.load(Acquire);
    if v & 1 == 0 {
        return Err(Errno::EINVAL);
    }
    Ok(v >> 1)
}

/// One thread's values: `(sequence, value)` per key, allocated on first set.
#[derive(Default)]
pub(crate) struct KeyValues(Vec<(u64, usize)>);

impl KeyValues {
    pub(crate) fn get(&self, key: u32) -> Result<*mut c_void, Errno> {
        let seq = live_seq(key)?;
        Ok(match self.0.get(key as usize) {
            Some(&(s, v)) if s == seq => v as *mut c_void,
            _ => core::ptr::null_mut(),
        })
    }

    pub(crate) fn set(&mut self, key: u32, value: *const c_void) -> Result<(), Errno> {
        let seq = live_seq(key)?;
        let k = key as usize;
        if self.0.len() <= k {
            self.0.resize(k + 1, (0, 0));
        }
        self.0[k] = (seq, value as usize);
        Ok(())
    }

    /// Runs the destructors of this thread's non-NULL values (pthread order:
    /// each value is cleared before its destructor runs; up to 4 rounds while
    /// destructors set new values). `run` is called with the thread's
    /// values temporarily detached, so destructors may call set/get.
    pub(crate) fn take_for_destructors(&mut self) -> Vec<(u64, usize)> {
        core::mem::take(&mut self.0)
    }

    /// True if no value was ever set (nothing allocated).
    #[inline(always)]
    pub(crate) fn is_empty_alloc(&self) -> bool {
        self.0.capacity() == 0
    }

    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.0.iter().all(|&(_, v)| v == 0)
    }
}

/// Calls the destructors for values taken from a thread; returns true if
/// any ran (the caller then checks for values set by destructors, up to
/// [`DESTRUCTOR_ROUNDS`]).
pub(crate) fn run_destructors(values: Vec<(u64, usize)>) {
    for (k, (seq, v)) in values.into_iter().enumerate() {
        if v == 0 || live_seq(k as u32) != Ok(seq) {
            continue;
        }
        let d = DTOR[k].load(Relaxed);
        if d != 0 {
            // SAFETY: DTOR holds only Destructor values stored by `create`.
            let d: Destructor = unsafe { core::mem::transmute::<usize, Destructor>(d) };
            // SAFETY: calling the user's destructor with the value the user set.
            unsafe { d(v as *mut c_void) };
        }
    }
}

/// Number of destructor rounds at thread end.
pub(crate) const fn destructor_rounds() -> usize {
    DESTRUCTOR_ROUNDS
}
