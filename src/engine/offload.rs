//! The offload pool: blocking syscalls (file I/O under epoll, and ring
//! operations a kernel lacks) run on helper OS threads, and their
//! completions come back to the vcpu through its engine.
//!
//! A job owns all the memory its syscall touches (bounce buffers, the path,
//! the stat struct): the photon thread's own buffers are written only by its
//! vcpu when the completion is delivered. So an interrupted or timed-out
//! waiter can leave at once ([`Cancel::Gone`](super::Cancel::Gone)); its
//! job finishes on its own, its result is dropped, and an fd it opened is
//! closed. The pool starts threads on demand up to [`MAX_THREADS`].

use core::ffi::c_char;
use std::collections::HashMap;
use std::ffi::CString;
use std::sync::atomic::{AtomicUsize, Ordering::*};
use std::sync::{Arc, Mutex, OnceLock};

use crossbeam_channel::{Receiver, Sender};

use super::{Completion, Notify, Op, OpId, Waiter};
use crate::errno::Errno;

/// Most helper threads at once (process-wide).
pub(crate) const MAX_THREADS: usize = 64;
/// Offload op ids have this bit set (ring and epoll ids never do).
const OFFLOAD_BIT: OpId = 1 << 31;

/// A job's own copy of one buffer, placed at the same offset within a
/// 4 KiB page as the caller's, so O_DIRECT alignment rules (and their
/// EINVAL) are exactly those of the caller's buffer.
struct Bounce {
    base: *mut u8,
    layout: std::alloc::Layout,
    start: usize,
    len: usize,
}

// SAFETY: a Bounce exclusively owns its allocation.
unsafe impl Send for Bounce {}

impl Bounce {
    const PAGE: usize = 4096;

    /// A buffer like `like` (same page offset) of `len` bytes; ENOMEM if
    /// it cannot be had.
    fn new(like: *const u8, len: usize) -> Result<Bounce, Errno> {
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

    fn ptr(&self) -> *mut u8 {
        // SAFETY: start < PAGE, within the allocation.
        unsafe { self.base.add(self.start) }
    }

    fn iovec(&self) -> libc::iovec {
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
unsafe fn bounces(iov: *const libc::iovec, n: u32, copy: bool) -> Result<Vec<Bounce>, Errno> {
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

/// What a job does, with the memory it owns.
enum Work {
    Read {
        fd: i32,
        bufs: Vec<Bounce>,
        off: Option<i64>,
    },
    Write {
        fd: i32,
        bufs: Vec<Bounce>,
        off: Option<i64>,
    },
    Fsync {
        fd: i32,
        datasync: bool,
    },
    Fallocate {
        fd: i32,
        mode: i32,
        off: i64,
        len: i64,
    },
    Ftruncate {
        fd: i32,
        len: i64,
    },
    Open {
        dirfd: i32,
        path: CString,
        flags: i32,
        mode: u32,
    },
    Statx {
        dirfd: i32,
        path: CString,
        flags: i32,
        mask: u32,
    },
    Unlink {
        dirfd: i32,
        path: CString,
        flags: i32,
    },
    Rename {
        olddir: i32,
        old: CString,
        newdir: i32,
        new: CString,
    },
    Mkdir {
        dirfd: i32,
        path: CString,
        mode: u32,
    },
}

/// Data a finished job hands back for copying into the waiter's memory.
enum Output {
    None,
    Bytes(Vec<Bounce>),
    Statx(Box<libc::statx>),
}

/// What a helper thread runs: an offloaded op and the posting of its
/// completion, or a [`run_task`] call.
type Task = Box<dyn FnOnce() + Send>;

/// Where finished jobs of one engine land.
pub(crate) struct Inbox {
    done: Mutex<Vec<(OpId, i64, Output)>>,
    notify: Arc<dyn Notify>,
}

struct Pool {
    tx: Sender<Task>,
    rx: Receiver<Task>,
    /// Helper threads started and not ended: never above `max`.
    threads: AtomicUsize,
    idle: AtomicUsize,
    max: usize,
}

static POOL: OnceLock<Pool> = OnceLock::new();

fn pool() -> &'static Pool {
    POOL.get_or_init(|| Pool::new(MAX_THREADS))
}

impl Pool {
    fn new(max: usize) -> Pool {
        let (tx, rx) = crossbeam_channel::unbounded();
        Pool {
            tx,
            rx,
            threads: AtomicUsize::new(0),
            idle: AtomicUsize::new(0),
            max,
        }
    }

    fn run(&'static self, task: Task) {
        // A thread slot is reserved by one compare-and-swap, so callers at
        // the same moment cannot start more than `max` threads between them.
        let reserved = self.idle.load(Acquire) == 0
            && self
                .threads
                .fetch_update(AcqRel, Acquire, |n| (n < self.max).then_some(n + 1))
                .is_ok();
        if reserved {
            let spawned = std::thread::Builder::new()
                .name("photon-offload".into())
                .stack_size(256 << 10)
                .spawn(move || self.worker());
            if let Err(e) = spawned {
                self.threads.fetch_sub(1, AcqRel);
                log::warn!("photon: cannot start an offload thread: {e}");
            }
        }
        // The receiver lives in the pool forever: send cannot fail.
        let _ = self.tx.send(task);
    }

    fn worker(&self) {
        loop {
            self.idle.fetch_add(1, AcqRel);
            let task = self.rx.recv();
            self.idle.fetch_sub(1, AcqRel);
            let Ok(task) = task else {
                self.threads.fetch_sub(1, AcqRel);
                return;
            };
            // A panicking job must not end the thread: its slot would stay
            // counted for good, and at `max` such ends nothing would run.
            if std::panic::catch_unwind(std::panic::AssertUnwindSafe(task)).is_err() {
                log::error!("photon: an offloaded job panicked (caught; the helper thread goes on)");
            }
        }
    }
}

/// In a forked child (which has none of the parent's helper threads): the
/// pool starts over with no threads, and the parent's queued tasks are
/// dropped unrun (the parent runs them; running them here too would repeat
/// the parent's writes).
pub(crate) fn after_fork_in_child() {
    if let Some(p) = POOL.get() {
        p.threads.store(0, Relaxed);
        p.idle.store(0, Relaxed);
        while p.rx.try_recv().is_ok() {}
    }
}

/// Runs `task` on one of the pool's helper threads (plain OS threads, never
/// vcpus), started on demand up to [`MAX_THREADS`]; beyond that it queues.
pub(crate) fn run_task(task: Task) {
    pool().run(task);
}

fn ret(r: isize) -> i64 {
    if r < 0 {
        -(Errno::last_os_error().0 as i64)
    } else {
        r as i64
    }
}

/// Runs a job's syscall on a helper thread.
fn execute(work: Work) -> (i64, Output) {
    // SAFETY: every pointer below points into memory the job owns.
    unsafe {
        match work {
            Work::Read { fd, bufs, off } => {
                let iov: Vec<libc::iovec> = bufs.iter().map(Bounce::iovec).collect();
                let r = ret(match off {
                    Some(o) => crate::sys::preadv(fd, iov.as_ptr(), iov.len() as i32, o),
                    None => crate::sys::readv(fd, iov.as_ptr(), iov.len() as i32),
                });
                (r, Output::Bytes(bufs))
            }
            Work::Write { fd, bufs, off } => {
                let iov: Vec<libc::iovec> = bufs.iter().map(Bounce::iovec).collect();
                let r = match off {
                    Some(o) => crate::sys::pwritev(fd, iov.as_ptr(), iov.len() as i32, o),
                    None => crate::sys::writev(fd, iov.as_ptr(), iov.len() as i32),
                };
                (ret(r), Output::None)
            }
            Work::Fsync { fd, datasync } => {
                let r = if datasync {
                    crate::sys::fdatasync(fd)
                } else {
                    crate::sys::fsync(fd)
                };
                (ret(r as isize), Output::None)
            }
            Work::Fallocate { fd, mode, off, len } => (ret(libc::fallocate(fd, mode, off, len) as isize), Output::None),
            Work::Ftruncate { fd, len } => (ret(libc::ftruncate(fd, len) as isize), Output::None),
            Work::Open {
                dirfd,
                path,
                flags,
                mode,
            } => (
                ret(libc::openat(dirfd, path.as_ptr(), flags, mode) as isize),
                Output::None,
            ),
            Work::Statx {
                dirfd,
                path,
                flags,
                mask,
            } => {
                let mut st: Box<libc::statx> = Box::new(core::mem::zeroed());
                let r = ret(libc::statx(dirfd, path.as_ptr(), flags, mask, &mut *st) as isize);
                (r, Output::Statx(st))
            }
            Work::Unlink { dirfd, path, flags } => {
                (ret(libc::unlinkat(dirfd, path.as_ptr(), flags) as isize), Output::None)
            }
            Work::Rename {
                olddir,
                old,
                newdir,
                new,
            } => (
                ret(libc::renameat(olddir, old.as_ptr(), newdir, new.as_ptr()) as isize),
                Output::None,
            ),
            Work::Mkdir { dirfd, path, mode } => {
                (ret(libc::mkdirat(dirfd, path.as_ptr(), mode) as isize), Output::None)
            }
        }
    }
}

/// Where a finished job's output goes: the waiter's own memory.
#[derive(Clone, Copy)]
enum Dest {
    None,
    Iov(*const libc::iovec, u32),
    /// A single buffer (read/pread): the job's one bounce maps onto it.
    Buf(*mut u8),
    Statx(*mut libc::statx),
    /// An open whose waiter may leave: close the fd if it succeeded then.
    CloseIfOrphaned,
}

struct Pending {
    waiter: Waiter,
    dest: Dest,
}

/// One engine's view of its offloaded operations.
pub(crate) struct Offload {
    inbox: Arc<Inbox>,
    live: HashMap<OpId, Pending>,
    next: OpId,
}

fn cstr_copy(p: *const c_char) -> Result<CString, Errno> {
    if p.is_null() {
        return Err(Errno(libc::EFAULT));
    }
    // SAFETY: a non-NULL path from the caller is NUL-terminated.
    Ok(unsafe { core::ffi::CStr::from_ptr(p) }.to_owned())
}

fn off(o: u64) -> Option<i64> {
    (o != u64::MAX).then_some(o as i64)
}

impl Offload {
    pub(crate) fn new(notify: Arc<dyn Notify>) -> Offload {
        Offload {
            inbox: Arc::new(Inbox {
                done: Mutex::new(Vec::new()),
                notify,
            }),
            live: HashMap::new(),
            next: 0,
        }
    }

    /// True if `id` belongs to the offload pool.
    pub(crate) fn owns(id: OpId) -> bool {
        id & OFFLOAD_BIT != 0
    }

    pub(crate) fn in_flight(&self) -> usize {
        self.live.len()
    }

    /// Starts `op` on a helper thread.
    ///
    /// # Safety
    /// The destination memory in `op` stays valid until the completion is
    /// delivered or [`Offload::cancel`] is called; sources are read now.
    pub(crate) unsafe fn submit(&mut self, op: Op, waiter: Waiter) -> Result<OpId, Errno> {
        let one = |p: *const u8, len: u32| libc::iovec {
            iov_base: p.cast_mut().cast(),
            iov_len: len as usize,
        };
        // SAFETY (for the copies and slices): the caller guarantees the memory.
        let (work, dest) = unsafe {
            match op {
                Op::Read { fd, buf, len } => (
                    Work::Read {
                        fd,
                        bufs: vec![Bounce::new(buf, len as usize)?],
                        off: None,
                    },
                    Dest::Buf(buf),
                ),
                Op::Pread { fd, buf, len, off: o } => (
                    Work::Read {
                        fd,
                        bufs: vec![Bounce::new(buf, len as usize)?],
                        off: off(o),
                    },
                    Dest::Buf(buf),
                ),
                Op::Readv { fd, iov, n } => (
                    Work::Read {
                        fd,
                        bufs: bounces(iov, n, false)?,
                        off: None,
                    },
                    Dest::Iov(iov, n),
                ),
                Op::Preadv { fd, iov, n, off: o } => (
                    Work::Read {
                        fd,
                        bufs: bounces(iov, n, false)?,
                        off: off(o),
                    },
                    Dest::Iov(iov, n),
                ),
                Op::Write { fd, buf, len } => (
                    Work::Write {
                        fd,
                        bufs: bounces(&one(buf, len), 1, true)?,
                        off: None,
                    },
                    Dest::None,
                ),
                Op::Pwrite { fd, buf, len, off: o } => (
                    Work::Write {
                        fd,
                        bufs: bounces(&one(buf, len), 1, true)?,
                        off: off(o),
                    },
                    Dest::None,
                ),
                Op::Writev { fd, iov, n } => (
                    Work::Write {
                        fd,
                        bufs: bounces(iov, n, true)?,
                        off: None,
                    },
                    Dest::None,
                ),
                Op::Pwritev { fd, iov, n, off: o } => (
                    Work::Write {
                        fd,
                        bufs: bounces(iov, n, true)?,
                        off: off(o),
                    },
                    Dest::None,
                ),
                Op::Fsync { fd, datasync } => (Work::Fsync { fd, datasync }, Dest::None),
                Op::Fallocate { fd, mode, off, len } => (Work::Fallocate { fd, mode, off, len }, Dest::None),
                Op::Ftruncate { fd, len } => (Work::Ftruncate { fd, len }, Dest::None),
                Op::Open {
                    dirfd,
                    path,
                    flags,
                    mode,
                    ..
                } => (
                    Work::Open {
                        dirfd,
                        path: cstr_copy(path)?,
                        flags,
                        mode,
                    },
                    Dest::CloseIfOrphaned,
                ),
                Op::Statx {
                    dirfd,
                    path,
                    flags,
                    mask,
                    buf,
                } => (
                    Work::Statx {
                        dirfd,
                        path: cstr_copy(path)?,
                        flags,
                        mask,
                    },
                    Dest::Statx(buf),
                ),
                Op::Unlink { dirfd, path, flags } => (
                    Work::Unlink {
                        dirfd,
                        path: cstr_copy(path)?,
                        flags,
                    },
                    Dest::None,
                ),
                Op::Rename {
                    olddir,
                    old,
                    newdir,
                    new,
                } => (
                    Work::Rename {
                        olddir,
                        old: cstr_copy(old)?,
                        newdir,
                        new: cstr_copy(new)?,
                    },
                    Dest::None,
                ),
                Op::Mkdir { dirfd, path, mode } => (
                    Work::Mkdir {
                        dirfd,
                        path: cstr_copy(path)?,
                        mode,
                    },
                    Dest::None,
                ),
                _ => return Err(Errno::ENOSYS), // sockets and polls never go to the pool
            }
        };
        self.next = self.next.wrapping_add(1);
        let id = OFFLOAD_BIT | (self.next & !OFFLOAD_BIT);
        self.live.insert(id, Pending { waiter, dest });
        let inbox = self.inbox.clone();
        pool().run(Box::new(move || {
            // A panic still completes the operation, so its waiter wakes.
            let (result, out) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| execute(work)))
                .unwrap_or((-i64::from(Errno::ENOTRECOVERABLE.0), Output::None));
            inbox
                .done
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((id, result, out));
            inbox.notify.notify();
        }));
        Ok(id)
    }

    /// Abandons `id`: its result will be dropped (an opened fd closed).
    pub(crate) fn cancel(&mut self, id: OpId) {
        // An open keeps its entry, waiter-less: its completion must close the fd.
        match self.live.get_mut(&id) {
            Some(p) if matches!(p.dest, Dest::CloseIfOrphaned) => p.waiter = core::ptr::null_mut(),
            Some(_) => {
                self.live.remove(&id);
            }
            None => {}
        }
    }

    /// Moves finished jobs into `out`, copying their data into the waiters' memory.
    pub(crate) fn reap(&mut self, out: &mut Vec<Completion>) {
        let done = core::mem::take(&mut *self.inbox.done.lock().unwrap_or_else(|e| e.into_inner()));
        for (id, result, output) in done {
            let Some(p) = self.live.remove(&id) else { continue };
            if p.waiter.is_null() {
                if result >= 0 {
                    // SAFETY: an fd opened for a waiter that left; nobody else knows it.
                    unsafe { crate::sys::close(result as i32) };
                }
                continue;
            }
            // SAFETY: the waiter is parked, so its destination memory is valid.
            unsafe { copy_out(p.dest, output, result.max(0) as usize) };
            out.push(Completion {
                waiter: p.waiter,
                id,
                result,
            });
        }
    }
}

/// Copies the first `n` bytes a read produced into the waiter's buffers.
///
/// # Safety
/// `dest` points to live memory of a parked waiter, as large as it asked.
unsafe fn copy_out(dest: Dest, output: Output, mut n: usize) {
    // SAFETY: per the contract; each copy stays within the waiter's iovec.
    unsafe {
        match (dest, output) {
            (Dest::Buf(p), Output::Bytes(bufs)) => {
                if let Some(b) = bufs.first() {
                    crate::sys::copy_user(b.ptr(), p, n.min(b.len), true);
                }
            }
            (Dest::Iov(iov, count), Output::Bytes(bufs)) => {
                let iovs = core::slice::from_raw_parts(iov, count as usize);
                for (v, b) in iovs.iter().zip(&bufs) {
                    let k = n.min(b.len);
                    crate::sys::copy_user(b.ptr(), v.iov_base.cast::<u8>(), k, true);
                    n -= k;
                }
            }
            (Dest::Statx(p), Output::Statx(st)) => p.write(*st),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::sync::{Barrier, mpsc};
    use std::time::Duration;

    /// Many callers at once never start more than `max` threads, and never
    /// run more than `max` jobs at a time.
    #[test]
    fn thread_cap_holds_under_concurrent_callers() {
        const MAX: usize = 3;
        const CALLERS: usize = 16;
        let pool: &'static Pool = Box::leak(Box::new(Pool::new(MAX)));
        let running: &'static AtomicUsize = Box::leak(Box::new(AtomicUsize::new(0)));
        let most: &'static AtomicUsize = Box::leak(Box::new(AtomicUsize::new(0)));
        let start = Arc::new(Barrier::new(CALLERS));
        let (done_tx, done_rx) = mpsc::channel();
        let callers: Vec<_> = (0..CALLERS)
            .map(|_| {
                let start = start.clone();
                let done = done_tx.clone();
                std::thread::spawn(move || {
                    start.wait();
                    pool.run(Box::new(move || {
                        let now = running.fetch_add(1, AcqRel) + 1;
                        most.fetch_max(now, AcqRel);
                        std::thread::sleep(Duration::from_millis(5));
                        running.fetch_sub(1, AcqRel);
                        done.send(()).unwrap();
                    }));
                })
            })
            .collect();
        for c in callers {
            c.join().unwrap();
        }
        for _ in 0..CALLERS {
            done_rx.recv_timeout(Duration::from_secs(10)).expect("every job runs");
        }
        assert!(
            pool.threads.load(Acquire) <= MAX,
            "{} threads",
            pool.threads.load(Acquire)
        );
        assert!(most.load(Acquire) <= MAX, "{} jobs ran at once", most.load(Acquire));
    }

    /// Panicking jobs leave the thread count right, and later jobs run.
    #[test]
    fn panicking_job_keeps_the_count() {
        const MAX: usize = 2;
        let pool: &'static Pool = Box::leak(Box::new(Pool::new(MAX)));
        let (tx, rx) = mpsc::channel();
        for _ in 0..(3 * MAX) {
            let tx = tx.clone();
            pool.run(Box::new(move || {
                tx.send(()).unwrap();
                panic!("a job that panics (expected by this test)");
            }));
        }
        for _ in 0..(3 * MAX) {
            rx.recv_timeout(Duration::from_secs(10))
                .expect("the panicking jobs run");
        }
        for _ in 0..(3 * MAX) {
            let tx = tx.clone();
            pool.run(Box::new(move || tx.send(()).unwrap()));
        }
        for _ in 0..(3 * MAX) {
            rx.recv_timeout(Duration::from_secs(10))
                .expect("jobs after panicking ones still run");
        }
        // Every started thread is alive and goes back to waiting.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while pool.idle.load(Acquire) != pool.threads.load(Acquire) {
            assert!(std::time::Instant::now() < deadline, "helper threads did not go idle");
            std::thread::sleep(Duration::from_millis(1));
        }
        let threads = pool.threads.load(Acquire);
        assert!((1..=MAX).contains(&threads), "{threads} threads counted");
    }
}
