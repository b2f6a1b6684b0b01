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
    /// it cannot be had. A small one comes from `spare` when it holds one
    /// of its class ([`Spares`]); one of a big transfer's pieces gets a
    /// pooled allocation ([`POOLED`]).
    pub(super) fn new(like: *const u8, len: usize, spare: &mut Spares) -> Result<Bounce, Errno> {
        let start = like as usize % Self::PAGE;
        if let Some(class) = Spares::class(start, len) {
            let layout = Spares::layout(class);
            let base = match spare.take(class) {
                Some(base) => base,
                // SAFETY: a non-zero size.
                None => unsafe { std::alloc::alloc(layout) },
            };
            if base.is_null() {
                return Err(Errno::ENOMEM);
            }
            return Ok(Bounce {
                base,
                layout,
                start,
                len,
            });
        }
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
            start,
            len,
        })
    }

    /// A copy of up to `len` bytes at `src`, and whether it is complete: a
    /// source shorter than `len` copies short (through the kernel) where a
    /// plain copy would crash.
    ///
    /// # Safety
    /// `src` is valid for `len` bytes of reads.
    unsafe fn copy_of(src: *const u8, len: usize, spare: &mut Spares) -> Result<(Bounce, bool), Errno> {
        let mut b = Bounce::new(src, len, spare)?;
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

/// Smallest class of [`Spares`]: 8 KiB, a 4 KiB transfer at any page offset.
const SPARE_MIN_SHIFT: u32 = 13;
/// Classes of 8, 16, 32 and 64 KiB: up to [`POOL_MIN`], where the shared
/// pool of piece-sized allocations takes over.
const SPARE_CLASSES: usize = 4;
/// Most bytes one engine keeps in spare bounces (64 of the 8 KiB class, as
/// many 4 KiB reads as 64 photon threads keep in flight); a burst beyond
/// frees what it allocated.
pub(super) const SPARE_BYTES: usize = 512 << 10;

/// One engine's spare small bounce allocations: a job's bounce comes from
/// here when there is one of its size class and goes back when the job's
/// completion has been reaped (never earlier: until then the helper thread
/// may still be writing it), up to [`SPARE_BYTES`]. A small 8 KiB bounce
/// is a `posix_memalign` and a `free` that glibc's per-thread cache does not
/// take (about 800 instructions a job); a spare one, a pop and a push.
/// Only its engine's vcpu touches it (submit and reap), so no lock.
pub(super) struct Spares {
    free: [Vec<*mut u8>; SPARE_CLASSES],
    /// Bytes held in `free`.
    bytes: usize,
}

impl Spares {
    pub(super) fn new() -> Spares {
        Spares {
            free: Default::default(),
            bytes: 0,
        }
    }

    /// The class of a bounce of `len` bytes at page offset `start`, if small.
    fn class(start: usize, len: usize) -> Option<usize> {
        let end = start.checked_add(len)?;
        if end > Self::size(SPARE_CLASSES - 1) {
            return None;
        }
        let shift = usize::BITS - (end.max(1) - 1).leading_zeros();
        Some(shift.saturating_sub(SPARE_MIN_SHIFT) as usize)
    }

    fn size(class: usize) -> usize {
        1 << (SPARE_MIN_SHIFT as usize + class)
    }

    fn layout(class: usize) -> std::alloc::Layout {
        // SAFETY: a power of two of at least a page, aligned to a page.
        unsafe { std::alloc::Layout::from_size_align_unchecked(Self::size(class), Bounce::PAGE) }
    }

    fn take(&mut self, class: usize) -> Option<*mut u8> {
        let base = self.free[class].pop()?;
        self.bytes -= Self::size(class);
        Some(base)
    }

    /// Takes back the bounces of a job whose completion was reaped: a small
    /// one is kept while there is room, anything else is freed.
    pub(super) fn put(&mut self, bufs: Bufs) {
        match bufs {
            Bufs::One(b) => self.put_one(b),
            Bufs::Many(v) => v.into_iter().for_each(|b| self.put_one(b)),
        }
    }

    fn put_one(&mut self, b: Bounce) {
        let size = b.layout.size();
        if !size.is_power_of_two() || size > Self::size(SPARE_CLASSES - 1) || self.bytes + size > SPARE_BYTES {
            return; // dropped: freed, or a piece back to its pool
        }
        let class = (size.trailing_zeros() - SPARE_MIN_SHIFT) as usize;
        let list = &mut self.free[class];
        if list.capacity() == 0 {
            list.reserve_exact(SPARE_BYTES / size); // once: a push never allocates
        }
        list.push(core::mem::ManuallyDrop::new(b).base);
        self.bytes += size;
    }

    /// How many spares are held, and their bytes.
    #[cfg(test)]
    pub(super) fn held(&self) -> (usize, usize) {
        (self.free.iter().map(Vec::len).sum(), self.bytes)
    }

    /// The spares' allocations.
    #[cfg(test)]
    pub(super) fn bases(&self) -> Vec<*mut u8> {
        self.free.iter().flatten().copied().collect()
    }
}

impl Drop for Spares {
    fn drop(&mut self) {
        for (class, list) in self.free.iter_mut().enumerate() {
            for base in list.drain(..) {
                // SAFETY: allocated by Bounce::new with this class's layout.
                unsafe { std::alloc::dealloc(base, Self::layout(class)) };
            }
        }
    }
}

/// A job's bounces: one inline (read, pread, write, pwrite, and a vector
/// call of one iovec), or one per iovec.
pub(super) enum Bufs {
    One(Bounce),
    Many(Vec<Bounce>),
}

impl Bufs {
    pub(super) fn as_slice(&self) -> &[Bounce] {
        match self {
            Bufs::One(b) => core::slice::from_ref(b),
            Bufs::Many(v) => v,
        }
    }
}

/// One bounce per caller iovec (so each keeps its own alignment), the
/// total capped at [`MAX_IO`](crate::sys::MAX_IO) as the kernel caps a transfer.
///
/// # Safety
/// `iov` holds `n` valid iovecs; with `copy`, each is valid for reads.
pub(super) unsafe fn bounces(iov: *const libc::iovec, n: u32, copy: bool, spare: &mut Spares) -> Result<Bufs, Errno> {
    if n as usize > crate::sys::IOV_MAX {
        return Err(Errno::EINVAL); // as preadv(2)
    }
    // SAFETY: per the contract; lengths and ranges checked as the kernel does.
    unsafe { crate::sys::iovecs_ok(iov, n as usize)? };
    // SAFETY: per the contract.
    let iovs = unsafe { core::slice::from_raw_parts(iov, n as usize) };
    let mut left = crate::sys::MAX_IO;
    let mut out = Vec::new();
    for v in iovs {
        let len = v.iov_len.min(left);
        left -= len;
        let base = v.iov_base.cast_const().cast::<u8>();
        let (b, last) = if copy {
            // SAFETY: per the contract.
            let (b, complete) = unsafe { Bounce::copy_of(base, len, spare)? };
            if b.len == 0 && out.is_empty() && len > 0 {
                spare.put(Bufs::One(b));
                return Err(Errno(libc::EFAULT)); // nothing readable, as write(2) says
            }
            // A short buffer: write what it holds, as the kernel would.
            (b, !complete)
        } else {
            (Bounce::new(base, len, spare)?, false)
        };
        if iovs.len() == 1 {
            return Ok(Bufs::One(b)); // the common case: no vector
        }
        if out.capacity() == 0 {
            out.reserve_exact(iovs.len());
        }
        out.push(b);
        if last {
            break;
        }
    }
    Ok(Bufs::Many(out))
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
        let mut spare = Spares::new();
        let like = 0x1234usize as *const u8;
        let first = Bounce::new(like, 1 << 20, &mut spare).unwrap();
        assert_eq!(first.layout.size(), POOLED);
        assert_eq!(first.ptr() as usize % Bounce::PAGE, 0x234, "the caller's page offset");
        let base = first.base;
        drop(first);
        let again = Bounce::new(like, 256 << 10, &mut spare).unwrap();
        assert_eq!(again.base, base, "the freed allocation is reused");
        assert_eq!(again.len, 256 << 10);
        drop(again);

        let small = Bounce::new(like, 4096, &mut spare).unwrap();
        assert_eq!(small.layout.size(), 8192, "small bounces are spares' size classes");
        let huge = Bounce::new(like, 2 << 20, &mut spare).unwrap();
        assert_eq!(huge.layout.size(), (2 << 20) + Bounce::PAGE);
        drop((small, huge));
        assert_eq!(spare.held(), (0, 0), "a dropped bounce is not a spare");

        let many: Vec<Bounce> = (0..POOL_CAP + 2)
            .map(|_| Bounce::new(like, 1 << 20, &mut spare).unwrap())
            .collect();
        spare.put(Bufs::Many(many));
        assert_eq!(spare.held(), (0, 0), "pieces are not spares");
        assert_eq!(POOL.lock().unwrap().len(), POOL_CAP, "the pool keeps at most POOL_CAP");
    }

    /// A small bounce given back is the next one of its class, at the new
    /// caller's page offset; each class keeps to its own size; a burst of
    /// jobs keeps at most SPARE_BYTES, and dropping the spares frees them.
    #[test]
    fn small_bounces_are_reused_and_capped() {
        let mut spare = Spares::new();
        for (start, len, size) in [
            (0, 4096, 8192),
            (0, 0, 8192),
            (4095, 4097, 8192),
            (4095, 4098, 16384),
            (0, 16384, 16384),
            (100, 32768, 65536),
            (0, 65536, 65536),
        ] {
            let b = Bounce::new(start as *const u8, len, &mut spare).unwrap();
            assert_eq!(b.layout.size(), size, "{start} + {len}");
            assert_eq!(b.ptr() as usize % Bounce::PAGE, start);
            assert!(start + len <= size);
        }
        let b = Bounce::new(8 as *const u8, 65536, &mut spare).unwrap();
        assert_eq!(b.layout.size(), POOLED, "beyond 64 KiB: a piece");
        drop(b);

        let a = Bounce::new(core::ptr::null(), 4096, &mut spare).unwrap();
        let base = a.base;
        spare.put(Bufs::One(a));
        assert_eq!(spare.held(), (1, 8192));
        let b = Bounce::new(0x10 as *const u8, 4000, &mut spare).unwrap();
        assert_eq!(b.base, base, "the spare is reused");
        assert_eq!(b.ptr() as usize % Bounce::PAGE, 0x10);
        assert_eq!(spare.held(), (0, 0));
        let c = Bounce::new(core::ptr::null(), 16384, &mut spare).unwrap();
        assert_ne!(c.base, base);
        spare.put(Bufs::One(b));
        let d = Bounce::new(core::ptr::null(), 16384, &mut spare).unwrap();
        assert_ne!(d.base, base, "a 16 KiB bounce is not taken from the 8 KiB class");
        spare.put(Bufs::Many(vec![c, d]));
        assert_eq!(spare.held(), (3, 8192 + 2 * 16384));
        drop(spare); // frees its three
        let mut spare = Spares::new();

        // A burst of 10,000 jobs in flight at once gives back 10,000 bounces.
        let burst: Vec<Bounce> = (0..10_000)
            .map(|_| Bounce::new(core::ptr::null(), 4096, &mut spare).unwrap())
            .collect();
        assert_eq!(spare.held(), (0, 0), "every spare was taken");
        spare.put(Bufs::Many(burst));
        let (count, bytes) = spare.held();
        assert!(bytes <= SPARE_BYTES, "{bytes} bytes kept");
        assert_eq!(count, SPARE_BYTES / 8192, "{count} kept");
        let big: Vec<Bounce> = (0..100)
            .map(|_| Bounce::new(core::ptr::null(), 65536, &mut spare).unwrap())
            .collect();
        spare.put(Bufs::Many(big));
        assert_eq!(spare.held().1, SPARE_BYTES, "full: nothing more kept");
    }
}
