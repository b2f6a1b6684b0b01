//! The offload pool: blocking syscalls (file I/O under epoll, and ring
//! operations a kernel lacks) run on helper OS threads, and their
//! completions come back to the vcpu through its engine.
//!
//! A job owns all the memory its syscall touches (bounce buffers, the path,
//! the stat struct): the photon thread's own buffers are written only by its
//! vcpu when the completion is delivered. So an interrupted or timed-out
//! waiter can leave at once ([`Cancel::Gone`](super::Cancel::Gone)); its
//! job finishes on its own, its result is dropped, and an fd it opened is
//! closed. The helper threads are [`pool`]'s; the jobs' copies of the
//! caller's buffers are [`bounce`]'s.

mod aio;
mod bounce;
mod pool;

use core::ffi::c_char;
use std::collections::HashMap;
use std::ffi::CString;
use std::sync::{Arc, Mutex};

use super::{Cancel, Completion, EventFd, Notify, Op, OpId, Waiter};
use crate::errno::Errno;
use bounce::{Bounce, bounces};
use pool::pool;
pub(crate) use pool::{after_fork_in_child, run_task};
/// Offload op ids have this bit set (ring and epoll ids never do).
const OFFLOAD_BIT: OpId = 1 << 31;

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

/// Where finished jobs of one engine land.
pub(crate) struct Inbox {
    done: Mutex<Vec<(OpId, i64, Output)>>,
    notify: Arc<dyn Notify>,
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
    /// A kernel AIO read into the waiter's own memory (the op, to hand it
    /// to the pool if the kernel says EAGAIN): the waiter cannot leave
    /// before it completes.
    Aio(Op),
}

struct Pending {
    waiter: Waiter,
    dest: Dest,
}

/// One engine's view of its offloaded operations.
pub(crate) struct Offload {
    inbox: Arc<Inbox>,
    live: HashMap<OpId, Pending>,
    /// Pool operations abandoned by [`Offload::cancel`] whose results have
    /// not come back yet: with none of them and nothing live, a reap has
    /// nothing to take (the engine's every wait skips the inbox's lock).
    abandoned: usize,
    next: OpId,
    /// The engine's wake-up eventfd, which AIO completions also signal.
    resfd: i32,
    /// Kernel AIO for O_DIRECT reads, set up at the first one.
    aio: Option<aio::Aio>,
    /// False once AIO was found missing or unusable (or
    /// `PHOTON_IO_OFF=aio`): every read goes to the pool.
    aio_usable: bool,
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
    /// `notify`: the engine's wake-up eventfd (pool jobs write it, AIO
    /// completions signal it).
    pub(crate) fn new(notify: Arc<EventFd>) -> Offload {
        let resfd = notify.0;
        Offload {
            inbox: Arc::new(Inbox {
                done: Mutex::new(Vec::new()),
                notify,
            }),
            live: HashMap::new(),
            abandoned: 0,
            next: 0,
            resfd,
            aio: None,
            aio_usable: super::features::wanted(super::features::Feature::Aio),
        }
    }

    fn new_id(&mut self) -> OpId {
        self.next = self.next.wrapping_add(1);
        OFFLOAD_BIT | (self.next & !OFFLOAD_BIT)
    }

    /// Starts an O_DIRECT positioned read on kernel AIO; None: not taken.
    ///
    /// # Safety
    /// As [`Offload::submit`].
    unsafe fn submit_aio(&mut self, op: Op, waiter: Waiter) -> Option<OpId> {
        let (fd, buf, len, n, off) = match op {
            Op::Pread { fd, buf, len, off } => (fd, buf.cast_const(), len as usize, 0, off),
            Op::Preadv { fd, iov, n, off } if n > 0 => (fd, iov.cast::<u8>(), 0, n, off),
            _ => return None,
        };
        if !self.aio_usable || off == u64::MAX || off > i64::MAX as u64 || !crate::fdinfo::is_direct(fd) {
            return None;
        }
        if self.aio.is_none() {
            if crate::stack::sanitize::on_valgrind() {
                // Memcheck learns what a read wrote from the iocb, which is
                // gone by the time the completion is reaped: the caller's
                // buffer would stay "uninitialised" to it.
                log::info!(
                    "photon: under Valgrind (it cannot follow kernel AIO completions); O_DIRECT reads go to the offload pool"
                );
                self.aio_usable = false;
                return None;
            }
            match aio::Aio::new(self.resfd) {
                Ok(a) => self.aio = Some(a),
                Err(e) => {
                    log::info!("photon: no kernel AIO here ({e}); O_DIRECT reads go to the offload pool");
                    self.aio_usable = false;
                    return None;
                }
            }
        }
        let id = self.new_id();
        let a = self.aio.as_mut()?;
        // SAFETY: per the contract (the waiter cannot leave before the completion).
        match unsafe { a.read(id as u64, fd, buf, len, n, off) } {
            aio::Started::Yes => {
                self.live.insert(
                    id,
                    Pending {
                        waiter,
                        dest: Dest::Aio(op),
                    },
                );
                Some(id)
            }
            aio::Started::No => None,
            aio::Started::Never => {
                log::info!("photon: kernel AIO refuses RWF_NOWAIT reads here; O_DIRECT reads go to the offload pool");
                self.aio_usable = false;
                None
            }
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
        // SAFETY: per the contract.
        if let Some(id) = unsafe { self.submit_aio(op, waiter) } {
            return Ok(id);
        }
        let id = self.new_id();
        // SAFETY: per the contract.
        unsafe { self.submit_pool(op, waiter, id) }?;
        Ok(id)
    }

    /// Starts `op` on a helper thread as operation `id`.
    ///
    /// # Safety
    /// As [`Offload::submit`].
    unsafe fn submit_pool(&mut self, op: Op, waiter: Waiter, id: OpId) -> Result<(), Errno> {
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
        Ok(())
    }

    /// Abandons `id`: its result will be dropped (an opened fd closed);
    /// Gone. A kernel AIO read writes the waiter's memory, so it cannot be
    /// abandoned: Requested, its completion comes as usual.
    pub(crate) fn cancel(&mut self, id: OpId) -> Cancel {
        // An open keeps its entry, waiter-less: its completion must close the fd.
        match self.live.get_mut(&id) {
            Some(p) if matches!(p.dest, Dest::Aio(_)) => return Cancel::Requested,
            Some(p) if matches!(p.dest, Dest::CloseIfOrphaned) => p.waiter = core::ptr::null_mut(),
            Some(_) => {
                self.live.remove(&id);
                self.abandoned += 1;
            }
            None => {}
        }
        Cancel::Gone
    }

    /// Moves finished jobs into `out`, copying their data into the waiters' memory.
    pub(crate) fn reap(&mut self, out: &mut Vec<Completion>) {
        if self.live.is_empty() && self.abandoned == 0 {
            return; // nothing can have finished
        }
        if self.aio.as_ref().is_some_and(|a| a.in_flight() > 0) {
            self.reap_aio(out);
        }
        let done = core::mem::take(&mut *self.inbox.done.lock().unwrap_or_else(|e| e.into_inner()));
        for (id, result, output) in done {
            let Some(p) = self.live.remove(&id) else {
                self.abandoned = self.abandoned.saturating_sub(1);
                continue;
            };
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

impl Offload {
    /// Delivers finished AIO reads; one the kernel would have had to block
    /// for (EAGAIN under RWF_NOWAIT) goes to the pool under the same id.
    fn reap_aio(&mut self, out: &mut Vec<Completion>) {
        let mut finished = Vec::new();
        if let Some(a) = self.aio.as_mut() {
            a.reap(|data, res| finished.push((data as OpId, res)));
        }
        for (id, res) in finished {
            self.aio_done(id, res, out);
        }
    }

    /// AIO read `id` finished with `res`.
    fn aio_done(&mut self, id: OpId, res: i64, out: &mut Vec<Completion>) {
        let Some(p) = self.live.remove(&id) else { return };
        let Dest::Aio(op) = p.dest else { return };
        if res == -(libc::EAGAIN as i64) {
            // SAFETY: the waiter is still parked on `id` (an AIO read is
            // never abandoned), so op's memory is valid.
            match unsafe { self.submit_pool(op, p.waiter, id) } {
                Ok(()) => return,
                Err(e) => out.push(Completion {
                    waiter: p.waiter,
                    id,
                    result: -(e.0 as i64),
                }),
            }
            return;
        }
        out.push(Completion {
            waiter: p.waiter,
            id,
            result: res,
        });
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
mod aio_tests {
    use super::*;

    /// Reaps until `ids` all completed (the eventfd says when to look).
    fn complete(o: &mut Offload, efd: i32, ids: &[OpId]) -> Vec<Completion> {
        let mut out = Vec::new();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !ids.iter().all(|id| out.iter().any(|c: &Completion| c.id == *id)) {
            assert!(std::time::Instant::now() < deadline, "reads did not complete");
            let mut p = libc::pollfd {
                fd: efd,
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd.
            unsafe { libc::poll(&mut p, 1, 20) };
            o.reap(&mut out);
        }
        out
    }

    #[repr(align(4096))]
    struct Block([u8; 8192]);

    /// O_DIRECT reads go to kernel AIO (no helper thread) and land in the
    /// caller's buffers with the right data; the completion signals the
    /// engine's eventfd; a cancel cannot abandon them (Requested, and the
    /// completion still comes); a misaligned one gets the kernel's EINVAL;
    /// with AIO switched off the same reads go to the pool.
    #[test]
    fn direct_reads_on_aio() {
        let Some((fd, path)) = crate::engine::direct_test_file("aio") else {
            println!("direct_reads_on_aio: no file system with O_DIRECT here, skipped");
            return;
        };
        let efd = Arc::new(EventFd::new().unwrap());
        for use_aio in [true, false] {
            let mut o = Offload::new(efd.clone());
            o.aio_usable = use_aio;
            let mut bufs: Vec<Block> = (0..8).map(|_| Block([0xEE; 8192])).collect();
            let mut ids = Vec::new();
            for (i, b) in bufs.iter_mut().enumerate() {
                let op = Op::Pread {
                    fd,
                    buf: b.0.as_mut_ptr(),
                    len: 4096,
                    off: (i as u64 + 2) * 4096,
                };
                // SAFETY: the buffer outlives the read (completed below).
                ids.push(unsafe { o.submit(op, 1 as Waiter) }.unwrap());
            }
            // Two iovecs: blocks 12 and 13 into the two halves of one buffer.
            let mut vb = Block([0xEE; 8192]);
            let iov = [
                libc::iovec {
                    iov_base: vb.0.as_mut_ptr().cast(),
                    iov_len: 4096,
                },
                libc::iovec {
                    // SAFETY: within the 8 KiB buffer.
                    iov_base: unsafe { vb.0.as_mut_ptr().add(4096) }.cast(),
                    iov_len: 4096,
                },
            ];
            let vop = Op::Preadv {
                fd,
                iov: iov.as_ptr(),
                n: 2,
                off: 12 * 4096,
            };
            // SAFETY: buffer and iovecs outlive the read.
            let vid = unsafe { o.submit(vop, 1 as Waiter) }.unwrap();
            let aio_reads = o.aio.as_ref().map_or(0, |a| a.in_flight());
            if use_aio {
                if !o.aio_usable {
                    println!(
                        "direct_reads_on_aio: this kernel or file system has no AIO with RWF_NOWAIT; the pool was tested"
                    );
                } else {
                    // Reads finish fast, but none can finish before io_submit returns.
                    assert!(aio_reads > 0, "the reads went to AIO ({aio_reads})");
                    let first = ids[0];
                    assert_eq!(o.cancel(first), Cancel::Requested, "an AIO read is never abandoned");
                }
            } else {
                assert_eq!(aio_reads, 0, "AIO off: nothing went to AIO");
                assert!(o.aio.is_none());
            }
            let mut all = ids.clone();
            all.push(vid);
            let out = complete(&mut o, efd.0, &all);
            for (i, id) in ids.iter().enumerate() {
                let c = out.iter().find(|c| c.id == *id).unwrap();
                assert_eq!(c.result, 4096, "aio {use_aio}: read {i}");
                assert!(
                    bufs[i].0[..4096].iter().all(|&x| x == i as u8 + 2),
                    "aio {use_aio}: read {i}'s data"
                );
                assert!(
                    bufs[i].0[4096..].iter().all(|&x| x == 0xEE),
                    "aio {use_aio}: read {i} wrote past 4 KiB"
                );
            }
            let c = out.iter().find(|c| c.id == vid).unwrap();
            assert_eq!(c.result, 8192, "aio {use_aio}: preadv");
            assert!(vb.0[..4096].iter().all(|&x| x == 12) && vb.0[4096..].iter().all(|&x| x == 13));
            // Misaligned buffer: the kernel's EINVAL, either way.
            let mut mb = Block([0; 8192]);
            let op = Op::Pread {
                fd,
                // SAFETY: within the buffer.
                buf: unsafe { mb.0.as_mut_ptr().add(1) },
                len: 4096,
                off: 0,
            };
            // SAFETY: the buffer outlives the read.
            let mid = unsafe { o.submit(op, 1 as Waiter) }.unwrap();
            let out = complete(&mut o, efd.0, &[mid]);
            assert_eq!(out[0].result, -(libc::EINVAL as i64), "aio {use_aio}: misaligned read");
            assert_eq!(o.in_flight(), 0);
        }
        // SAFETY: our fd.
        unsafe { libc::close(fd) };
        let _ = std::fs::remove_file(&path);
    }

    /// A read the kernel completes with EAGAIN (RWF_NOWAIT: it would have
    /// blocked) is run again by the pool under the same id, and its waiter
    /// gets the data: the kernel's real completion is taken off the
    /// context and an EAGAIN given in its place.
    #[test]
    fn aio_eagain_goes_to_the_pool() {
        let Some((fd, path)) = crate::engine::direct_test_file("aio") else {
            println!("aio_eagain_goes_to_the_pool: no file system with O_DIRECT here, skipped");
            return;
        };
        let efd = Arc::new(EventFd::new().unwrap());
        let mut o = Offload::new(efd.clone());
        o.aio_usable = true;
        let mut b = Block([0xEE; 8192]);
        let op = Op::Pread {
            fd,
            buf: b.0.as_mut_ptr(),
            len: 4096,
            off: 5 * 4096,
        };
        // SAFETY: the buffer outlives the read.
        let id = unsafe { o.submit(op, 1 as Waiter) }.unwrap();
        if !o.aio_usable || o.aio.is_none() {
            println!("aio_eagain_goes_to_the_pool: no AIO with RWF_NOWAIT here, skipped");
        } else {
            let mut seen = Vec::new();
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while seen.is_empty() {
                assert!(std::time::Instant::now() < deadline, "the AIO read did not complete");
                o.aio.as_mut().unwrap().reap(|d, r| seen.push((d, r)));
            }
            assert_eq!(seen, vec![(id as u64, 4096)], "the kernel's own completion");
            b.0.fill(0xEE); // what the pool reads must be what the waiter sees
            let mut out = Vec::new();
            o.aio_done(id, -(libc::EAGAIN as i64), &mut out);
            assert!(out.is_empty(), "not delivered: handed to the pool");
            assert_eq!(o.in_flight(), 1, "still live under its id");
            let out = complete(&mut o, efd.0, &[id]);
            assert_eq!(out.len(), 1);
            assert_eq!(out[0].result, 4096, "the pool's read, under the same id");
            assert!(
                b.0[..4096].iter().all(|&x| x == 5),
                "the pool's read landed in the waiter's buffer"
            );
            assert!(b.0[4096..].iter().all(|&x| x == 0xEE));
        }
        // SAFETY: our fd.
        unsafe { libc::close(fd) };
        let _ = std::fs::remove_file(&path);
    }
}
