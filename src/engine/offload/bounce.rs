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
    /// it cannot be had.
    pub(super) fn new(like: *const u8, len: usize) -> Result<Bounce, Errno> {
        let layout = std::alloc::Layout::from_size_align(len + Self::PAGE, Self::PAGE).map_err(|_| Errno::ENOMEM)?;
        // SAFETY: a non-zero size.
        let base = unsafe { std::alloc::alloc(layout) };
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
        // SAFETY: allocated in new() with this layout.
        unsafe { std::alloc::dealloc(self.base, self.layout) };
    }
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
