//! Coroutine stacks: address space with a guard page below, pooled per
//! vcpu.
//!
//! ```text
//!   base                  base+page                         base+len (top)
//!   | guard              | usable, read-write, committed lazily |
//! ```
//!
//! The usable part is reserved with `MAP_NORESERVE` and only the pages a
//! thread touches become resident. Huge pages are refused (`MADV_NOHUGEPAGE`)
//! so one touched byte costs one 4 KiB page, not 2 MiB. Photon thread
//! stacks are slots of large shared mappings ([`chunk`]), so a million of
//! them fit in the kernel's default mapping count; [`Stack::new`] maps a
//! stack of its own (two mappings) for the few other uses.

pub(crate) mod chunk;
mod overflow;
mod pool;
pub mod sanitize;

pub use overflow::{AltStack, install_overflow_handler};
pub(crate) use pool::StackPool;

use crate::errno::{Errno, syscall};
use core::ptr;

/// Default usable stack size: 8 MiB of address space, committed lazily.
pub const DEFAULT_STACK_SIZE: usize = 8 << 20;
/// The smallest stack handed out: room for the control block and a few frames.
pub const MIN_STACK_SIZE: usize = 16 << 10;

/// The system page size.
pub fn page_size() -> usize {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static PAGE: AtomicUsize = AtomicUsize::new(0);
    let p = PAGE.load(Ordering::Relaxed);
    if p != 0 {
        return p;
    }
    // SAFETY: sysconf has no memory-safety preconditions.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
    PAGE.store(p, Ordering::Relaxed);
    p
}

/// One coroutine stack with its guard page. Unmapped (or given back to
/// its chunk) on drop.
#[derive(Debug)]
pub struct Stack {
    base: *mut u8,
    len: usize,
    /// Valgrind's id for it (0 when not under Valgrind).
    valgrind_id: usize,
    /// The chunk it was carved from; null for a mapping of its own.
    chunk: *mut chunk::Chunk,
}

// SAFETY: a Stack owns its mapping exclusively; moving it between threads is fine.
unsafe impl Send for Stack {}

impl Stack {
    /// Maps a stack with `size` usable bytes (rounded up to whole pages,
    /// at least [`MIN_STACK_SIZE`]) above one guard page.
    pub fn new(size: usize) -> Result<Stack, Errno> {
        let page = page_size();
        let usable = round_up(size.max(MIN_STACK_SIZE), page).ok_or(Errno::EINVAL)?;
        let len = usable.checked_add(page).ok_or(Errno::EINVAL)?;
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
        let mut stack = Stack {
            base: base.cast(),
            len,
            valgrind_id: 0,
            chunk: ptr::null_mut(),
        };
        syscall!(mprotect(base, page, libc::PROT_NONE))?;
        stack.valgrind_id = sanitize::register_stack(stack.bottom(), stack.top());
        if usable >= 2 << 20 {
            // Best effort: without it, THP "always" would back a stack with 2 MiB pages.
            // SAFETY: advice on our own mapping.
            unsafe { libc::madvise(base.cast::<u8>().add(page).cast(), usable, libc::MADV_NOHUGEPAGE) };
        }
        Ok(stack)
    }

    /// A stack with `size` usable bytes (rounded up to whole pages, at
    /// least [`MIN_STACK_SIZE`]), carved from a shared chunk: it costs no
    /// mapping of its own.
    pub(crate) fn carve(size: usize) -> Result<Stack, Errno> {
        let usable = round_up(size.max(MIN_STACK_SIZE), page_size()).ok_or(Errno::EINVAL)?;
        let (base, len, chunk) = chunk::take(usable)?;
        let mut stack = Stack {
            base,
            len,
            valgrind_id: 0,
            chunk,
        };
        stack.valgrind_id = sanitize::register_stack(stack.bottom(), stack.top());
        Ok(stack)
    }

    /// The exclusive top of the usable area (page aligned).
    pub fn top(&self) -> *mut u8 {
        // SAFETY: base + len is one past the end of our mapping.
        unsafe { self.base.add(self.len) }
    }

    /// The lowest usable address (just above the guard page).
    pub fn bottom(&self) -> *mut u8 {
        // SAFETY: within our mapping.
        unsafe { self.base.add(page_size()) }
    }

    /// Usable bytes (excluding the guard page).
    pub fn size(&self) -> usize {
        self.len - page_size()
    }

    /// The guard page's address range `[start, end)`.
    pub fn guard(&self) -> (usize, usize) {
        (self.base as usize, self.base as usize + page_size())
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        sanitize::deregister_stack(self.valgrind_id);
        if self.chunk.is_null() {
            // SAFETY: we own this mapping and nothing runs on it any more.
            unsafe { libc::munmap(self.base.cast(), self.len) };
        } else {
            // SAFETY: our slot of that chunk; nothing runs on it any more.
            unsafe { chunk::release(self.chunk, self.base) };
        }
    }
}

fn round_up(n: usize, to: usize) -> Option<usize> {
    Some(n.checked_add(to - 1)? & !(to - 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_round_up_and_guard_sits_below() {
        let s = Stack::new(20_000).unwrap();
        assert_eq!(s.size() % page_size(), 0);
        assert!(s.size() >= 20_000);
        let (g0, g1) = s.guard();
        assert_eq!(g1 - g0, page_size());
        assert_eq!(s.top() as usize - g1, s.size());
        // The top is writable.
        // SAFETY: the byte below top is inside the usable area.
        unsafe { s.top().sub(1).write(7) };
        assert_eq!(Stack::new(0).unwrap().size(), MIN_STACK_SIZE);
        assert!(Stack::new(usize::MAX - 10).is_err());
        let c = Stack::carve(20_000).unwrap();
        assert_eq!(c.size(), s.size());
        // SAFETY: the byte below top is inside the usable area.
        unsafe { c.top().sub(1).write(7) };
        assert!(Stack::carve(usize::MAX - 10).is_err());
    }
}
