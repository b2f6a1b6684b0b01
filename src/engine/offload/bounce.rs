//! Bounce buffers: an offloaded job's own copies of the caller's buffers,
//! so the helper thread never touches a photon thread's memory.

use crate::errno::Errno;

/// A job's own copy of one buffer, placed at the same offset within a
/// 4 KiB page as the caller's, so O_DIRECT alignment rules (and their
/// EINVAL) are exactly those of the caller's buffer.
pub(super) struct Bounce {
    base: *mut u8,
    layout: std::alloc::Layout,
    start: usize,
    /// Bytes of the copy in use.
    pub(super) len: usize,
}

// SAFETY: a Bounce exclusively owns its allocation.
unsafe impl Send for Bounce {}

impl Bounce {
    const PAGE: usize = 4096;

    /// A buffer like `like` (same page offset) of `len` bytes; ENOMEM if
    /// it cannot be had. One of a big transfer's pieces gets a pooled
    /// allocation ([`POOLED`]).
    pub(super) fn new(like: *const u8, len: usize) -> Result<Bounce, Errno> {
        let size = len.checked_add(Self::PAGE).ok_or(Errno::ENOMEM)?;
        let pooled = (POOL_MIN..=POOLED).contains(&size);
        let size = if pooled { POOLED } else { size };
        let layout = std::alloc::Layout::from_size_align(size, Self::PAGE).map_err(|_| Errno::ENOMEM)?;
        let base = match pooled.then(pool_take).flatten() {
            Some(base) => base,
            // SAFETY: a non-zero size.
            None => unsafe { std::alloc::alloc(layout) },
        };
        if base.is_null() {
            return Err(Errno::ENOMEM);
        }
        Ok(Bounce {
            base,
            layout,
            start: like as usize % Self::PAGE,
            len,
        })
    }

    /// A copy of up to `len` bytes at `src`, and whether it is complete: a
    /// source shorter than `len` copies short (through the kernel) where a
    /// plain copy would crash.
    ///
    /// # Safety
    /// `src` is valid for `len` bytes of reads.
    unsafe fn copy_of(src: *const u8, len: usize) -> Result<(Bounce, bool), Errno> {
        let mut b = Bounce::new(src, len)?;
        // SAFETY: the bounce holds len bytes; the source is copied through
        // the kernel, so a buffer shorter than `len` copies short.
        let copied = unsafe { crate::sys::copy_user(b.ptr(), src.cast_mut(), len, false) };
        b.len = copied;
        Ok((b, copied == len))
    }

    pub(super) fn ptr(&self) -> *mut u8 {
        // SAFETY: start < PAGE, within the allocation.
        unsafe { self.base.add(self.start) }
    }

    pub(super) fn iovec(&self) -> libc::iovec {
        libc::iovec {
            iov_base: self.ptr().cast(),
            iov_len: self.len,
        }
    }
}

impl Drop for Bounce {
    fn drop(&mut self) {
        if self.layout.size() == POOLED && pool_put(self.base) {
            return;
        }
        // SAFETY: allocated in new() with this layout.
        unsafe { std::alloc::dealloc(self.base, self.layout) };
    }
}

/// The size of a pooled bounce allocation: one piece of a big buffered
/// transfer ([`FILE_CHUNK`](crate::sys::FILE_CHUNK)) at any page offset.
const POOLED: usize = crate::sys::FILE_CHUNK + Bounce::PAGE;
/// Bounces from this size up to [`POOLED`] take a pooled allocation. A
/// fresh one this big is a new mapping (glibc's threshold starts at 128
/// KiB): the vcpu's copy into it faults in and zeroes every page, and its
/// release unmaps them again, interrupting the other CPUs to flush their
/// TLBs. On the 2-CPU test VM that was about 1 ms of the vcpu's CPU per
/// 1 MiB piece of an epoll write, and 2.5-4 ms with the machine loaded
/// (tests/c/fs_big_transfer.c measures it).
const POOL_MIN: usize = 64 << 10;
/// At most this many pooled allocations are kept (4 MiB); more are freed.
const POOL_CAP: usize = 4;

/// A pooled allocation, owned by the pool while in it.
struct Pooled(*mut u8);
// SAFETY: the pool exclusively owns what it holds.
unsafe impl Send for Pooled {}

static POOL: std::sync::Mutex<Vec<Pooled>> = std::sync::Mutex::new(Vec::new());

fn pool_take() -> Option<*mut u8> {
    POOL.lock().unwrap_or_else(|e| e.into_inner()).pop().map(|p| p.0)
}

/// Keeps `base` (a [`POOLED`] allocation) for the next bounce; false if
/// the pool is full (the caller frees it).
fn pool_put(base: *mut u8) -> bool {
    let mut pool = POOL.lock().unwrap_or_else(|e| e.into_inner());
    if pool.len() >= POOL_CAP {
        return false;
    }
    pool.push(Pooled(base));
    true
}

/// One bounce per caller iovec (so each keeps its own alignment), the
/// total capped at [`MAX_IO`](crate::sys::MAX_IO) as the kernel caps a transfer.
///
/// # Safety
/// `iov` holds `n` valid iovecs; with `copy`, each is valid for reads.
pub(super) unsafe fn bounces(iov: *const libc::iovec, n: u32, copy: bool) -> Result<Vec<Bounce>, Errno> {
    if n as usize > crate::sys::IOV_MAX {
        return Err(Errno::EINVAL); // as preadv(2)
    }
    // SAFETY: per the contract; lengths and ranges checked as the kernel does.
    unsafe { crate::sys::iovecs_ok(iov, n as usize)? };
    // SAFETY: per the contract.
    let iovs = unsafe { core::slice::from_raw_parts(iov, n as usize) };
    let mut left = crate::sys::MAX_IO;
    let mut out = Vec::with_capacity(iovs.len());
    for v in iovs {
        let len = v.iov_len.min(left);
        left -= len;
        let base = v.iov_base.cast_const().cast::<u8>();
        if !copy {
            out.push(Bounce::new(base, len)?);
            continue;
        }
        // SAFETY: per the contract.
        let (b, complete) = unsafe { Bounce::copy_of(base, len)? };
        if b.len == 0 && out.is_empty() && len > 0 {
            return Err(Errno(libc::EFAULT)); // nothing readable, as write(2) says
        }
        out.push(b);
        if !complete {
            break; // a short buffer: write what it holds, as the kernel would
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A piece-sized bounce takes a pooled allocation and gives it back on
    /// drop, so the next one reuses it; small and huge ones never do; the
    /// pool keeps at most POOL_CAP. (The only test of this binary that
    /// makes piece-sized bounces, so the pool is this test's own.)
    #[test]
    fn piece_sized_bounces_reuse_their_memory() {
        let like = 0x1234usize as *const u8;
        let first = Bounce::new(like, 1 << 20).unwrap();
        assert_eq!(first.layout.size(), POOLED);
        assert_eq!(first.ptr() as usize % Bounce::PAGE, 0x234, "the caller's page offset");
        let base = first.base;
        drop(first);
        let again = Bounce::new(like, 256 << 10).unwrap();
        assert_eq!(again.base, base, "the freed allocation is reused");
        assert_eq!(again.len, 256 << 10);
        drop(again);

        let small = Bounce::new(like, 4096).unwrap();
        assert_eq!(
            small.layout.size(),
            4096 + Bounce::PAGE,
            "small bounces are plain allocations"
        );
        let huge = Bounce::new(like, 2 << 20).unwrap();
        assert_eq!(huge.layout.size(), (2 << 20) + Bounce::PAGE);
        drop((small, huge));

        let many: Vec<Bounce> = (0..POOL_CAP + 2).map(|_| Bounce::new(like, 1 << 20).unwrap()).collect();
        drop(many);
        assert_eq!(POOL.lock().unwrap().len(), POOL_CAP, "the pool keeps at most POOL_CAP");
    }
}
