//! Stacks carved from large shared mappings, so the kernel's mapping count
//! (`vm.max_map_count`, 65,530 by default) does not cap the number of
//! threads.
//!
//! A chunk is one anonymous `MAP_NORESERVE` mapping of about
//! [`CHUNK_BYTES`] cut into equal slots of one size class, each a guard
//! page below the usable stack:
//!
//! ```text
//!   chunk base                                                 chunk end
//!   | guard | usable 0 ...... | guard | usable 1 ...... | ... |
//! ```
//!
//! The guard page of a slot is installed when the slot is first handed out:
//! - with `madvise(MADV_GUARD_INSTALL)` (Linux 6.13+), which puts a marker
//!   in the page table and splits no mapping: a chunk stays one mapping
//!   however many stacks it holds, and the marker shares the page-table
//!   page of the stack below's top (no extra page-table memory);
//! - on older kernels with `mprotect(PROT_NONE)`, which splits the mapping
//!   (two more mappings a guard), while a budget of half the map count
//!   allows; past it, new slots get no guard, with one warning naming the
//!   sysctl to raise (`PHOTON_STACK_GUARD=mprotect|none` forces a mode).
//!
//! Either way a touched guard page is a SIGSEGV, which the overflow handler
//! reports with the thread's name.
//!
//! A released slot gives its pages back at once (`MADV_DONTNEED` of its
//! usable part; the guard stays), so resident memory follows the stacks in
//! use, as when each stack was unmapped; a chunk whose slots are all free
//! is unmapped instead.
//! All bookkeeping sits behind one process-wide lock that only pool misses,
//! pool overflows and trims take (each vcpu pools its stacks, see `pool`).

use core::ptr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU8, Ordering::Relaxed};

use super::page_size;
use crate::errno::Errno;

/// Address space per chunk (reserved, not committed).
pub(crate) const CHUNK_BYTES: usize = 1 << 30;
/// Linux's `MADV_GUARD_INSTALL` (6.13+), not yet in the libc crate.
const MADV_GUARD_INSTALL: libc::c_int = 102;

/// One mapping cut into `nslots` slots of `slot_len` bytes.
pub(crate) struct Chunk {
    base: *mut u8,
    slot_len: usize,
    nslots: u32,
    /// Slots ever handed out (they have their guard): `0..bump`.
    bump: u32,
    /// Slots handed out now.
    used: u32,
    /// Free slots below `bump`, most recently freed last.
    free: Vec<u32>,
    /// In its class's list of chunks with room.
    in_partial: bool,
}

impl Chunk {
    fn has_room(&self) -> bool {
        !self.free.is_empty() || self.bump < self.nslots
    }
}

/// The chunks of one usable size.
struct Class {
    usable: usize,
    /// Chunks with a free or never-used slot.
    partial: Vec<*mut Chunk>,
}

struct State {
    classes: Vec<Class>,
    /// Guards installed with mprotect (each costs two mappings).
    mprotect_guards: usize,
    /// Mappings this module holds (chunks).
    chunks: usize,
    /// Bytes of address space mapped for chunks.
    mapped: usize,
}

// SAFETY: the raw chunk pointers are owned by the state and only touched
// under its lock.
unsafe impl Send for State {}

static STATE: Mutex<State> = Mutex::new(State {
    classes: Vec::new(),
    mprotect_guards: 0,
    chunks: 0,
    mapped: 0,
});

fn lock() -> std::sync::MutexGuard<'static, State> {
    STATE.lock().unwrap_or_else(|e| e.into_inner())
}

/// How guard pages are made (decided once).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum GuardMode {
    Madvise = 1,
    Mprotect = 2,
    None = 3,
}

static MODE: AtomicU8 = AtomicU8::new(0);

fn mode() -> GuardMode {
    match MODE.load(Relaxed) {
        1 => GuardMode::Madvise,
        2 => GuardMode::Mprotect,
        3 => GuardMode::None,
        _ => {
            let m = match std::env::var("PHOTON_STACK_GUARD").as_deref() {
                Ok("mprotect") => GuardMode::Mprotect,
                Ok("none") => {
                    log::warn!("photon: PHOTON_STACK_GUARD=none: photon thread stacks have no guard pages");
                    GuardMode::None
                }
                _ => GuardMode::Madvise, // probed at the first guard
            };
            MODE.store(m as u8, Relaxed);
            m
        }
    }
}

/// The machine's `vm.max_map_count` (65,530 if unreadable).
pub(crate) fn max_map_count() -> usize {
    crate::sys::read_proc_file(c"/proc/sys/vm/max_map_count")
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(65_530)
}

/// Installs the guard page at `g`. Called under the lock.
fn install_guard(st: &mut State, g: *mut u8) {
    let page = page_size();
    loop {
        match mode() {
            GuardMode::Madvise => {
                // SAFETY: `g` is a page of one of our chunks, unused by anyone.
                if unsafe { libc::madvise(g.cast(), page, MADV_GUARD_INSTALL) } == 0 {
                    return;
                }
                let e = Errno::last_os_error();
                log::info!(
                    "photon: madvise(MADV_GUARD_INSTALL) failed ({e}; it needs Linux 6.13+): stack guard pages \
                     are mprotect'ed instead, two memory mappings each, while vm.max_map_count allows"
                );
                MODE.store(GuardMode::Mprotect as u8, Relaxed);
            }
            GuardMode::Mprotect => {
                static BUDGET: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
                let budget = *BUDGET.get_or_init(|| max_map_count() / 4);
                // SAFETY: as above.
                if st.mprotect_guards < budget && unsafe { libc::mprotect(g.cast(), page, libc::PROT_NONE) } == 0 {
                    st.mprotect_guards += 1;
                    return;
                }
                log::warn!(
                    "photon: {} stack guard pages made with mprotect use half of vm.max_map_count ({}): new photon \
                     thread stacks get no guard page (an overflow may then corrupt memory instead of aborting with a \
                     message); raise it with `sysctl -w vm.max_map_count=N` as root, or run Linux 6.13+ \
                     (MADV_GUARD_INSTALL)",
                    st.mprotect_guards,
                    max_map_count()
                );
                MODE.store(GuardMode::None as u8, Relaxed);
            }
            GuardMode::None => return,
        }
    }
}

/// Maps a new chunk for slots of `slot_len` bytes.
fn map_chunk(st: &mut State, slot_len: usize) -> Result<*mut Chunk, Errno> {
    let nslots = (CHUNK_BYTES / slot_len).clamp(1, u32::MAX as usize);
    let len = nslots.checked_mul(slot_len).ok_or(Errno::EINVAL)?;
    // SAFETY: an anonymous private mapping at a kernel-chosen address.
    let base = unsafe {
        libc::mmap(
            ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE | libc::MAP_STACK,
            -1,
            0,
        )
    };
    if base == libc::MAP_FAILED {
        return Err(Errno::last_os_error());
    }
    // Best effort: with THP "always", one touched byte of a stack would
    // otherwise commit 2 MiB.
    // SAFETY: advice on our own fresh mapping.
    unsafe { libc::madvise(base, len, libc::MADV_NOHUGEPAGE) };
    st.chunks += 1;
    st.mapped += len;
    Ok(Box::into_raw(Box::new(Chunk {
        base: base.cast(),
        slot_len,
        nslots: nslots as u32,
        bump: 0,
        used: 0,
        free: Vec::new(),
        in_partial: false,
    })))
}

/// Unmaps an empty chunk.
///
/// # Safety
/// `c` came from [`map_chunk`], has no slot in use and is in no list.
unsafe fn unmap_chunk(st: &mut State, c: *mut Chunk) {
    // SAFETY: per the contract.
    unsafe {
        let len = (*c).nslots as usize * (*c).slot_len;
        libc::munmap((*c).base.cast(), len);
        st.chunks -= 1;
        st.mapped -= len;
        drop(Box::from_raw(c));
    }
}

/// A slot with `usable` bytes (a multiple of the page size) above its
/// guard page: `(slot base, slot length, chunk)`.
pub(crate) fn take(usable: usize) -> Result<(*mut u8, usize, *mut Chunk), Errno> {
    let page = page_size();
    let slot_len = usable.checked_add(page).ok_or(Errno::EINVAL)?;
    if slot_len > isize::MAX as usize / 2 {
        return Err(Errno::EINVAL);
    }
    let mut st = lock();
    let ci = match st.classes.iter().position(|c| c.usable == usable) {
        Some(i) => i,
        None => {
            st.classes.push(Class {
                usable,
                partial: Vec::new(),
            });
            st.classes.len() - 1
        }
    };
    let c = match st.classes[ci].partial.last() {
        Some(&c) => c,
        None => {
            let c = map_chunk(&mut st, slot_len)?;
            // SAFETY: our fresh chunk.
            unsafe { (*c).in_partial = true };
            st.classes[ci].partial.push(c);
            c
        }
    };
    // SAFETY: chunks in a partial list are live and have room.
    unsafe {
        let slot = match (*c).free.pop() {
            Some(s) => s,
            None => {
                let s = (*c).bump;
                (*c).bump += 1;
                install_guard(&mut st, (*c).base.add(s as usize * slot_len));
                s
            }
        };
        (*c).used += 1;
        if !(*c).has_room() {
            (*c).in_partial = false;
            st.classes[ci].partial.pop();
        }
        Ok(((*c).base.add(slot as usize * slot_len), slot_len, c))
    }
}

/// Gives back the slot at `base` of chunk `c` and its pages (an empty
/// chunk is unmapped).
///
/// # Safety
/// `base` was handed out by [`take`] with `c`, and nothing uses it any more.
pub(crate) unsafe fn release(c: *mut Chunk, base: *mut u8) {
    let mut st = lock();
    // SAFETY: per the contract, `c` is live (it has a slot in use).
    unsafe {
        let slot = ((base as usize - (*c).base as usize) / (*c).slot_len) as u32;
        (*c).used -= 1;
        if (*c).used == 0 {
            let usable = (*c).slot_len - page_size();
            if let Some(class) = st.classes.iter_mut().find(|k| k.usable == usable) {
                class.partial.retain(|&p| p != c);
            }
            unmap_chunk(&mut st, c);
            return;
        }
        let page = page_size();
        libc::madvise(base.add(page).cast(), (*c).slot_len - page, libc::MADV_DONTNEED);
        (*c).free.push(slot);
        if !(*c).in_partial {
            (*c).in_partial = true;
            let usable = (*c).slot_len - page_size();
            if let Some(class) = st.classes.iter_mut().find(|k| k.usable == usable) {
                class.partial.push(c);
            }
        }
    }
}

/// `(chunks mapped, bytes of address space they span, guards made with mprotect)`.
pub(crate) fn usage() -> (usize, usize, usize) {
    let st = lock();
    (st.chunks, st.mapped, st.mprotect_guards)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_share_a_chunk_and_empty_chunks_go_away() {
        let usable = 40 << 10; // a class no other test uses
        let (a, len, ca) = take(usable).unwrap();
        let (b, _, cb) = take(usable).unwrap();
        assert_eq!(ca, cb, "both from one chunk");
        assert_eq!(b as usize - a as usize, len, "adjacent slots");
        // The guard page of `b` faults; its usable part is writable.
        // SAFETY: the top byte of b's usable part is ours.
        unsafe { b.add(len - 1).write(1) };
        // SAFETY: `a` is unused; `b` keeps the chunk mapped.
        unsafe { release(ca, a) };
        let (c, _, cc) = take(usable).unwrap();
        assert_eq!((c, cc), (a, ca), "a freed slot is reused first");
        // SAFETY: both unused; the chunk is unmapped with the last.
        unsafe {
            release(cb, b);
            release(cc, c);
        }
    }
}
