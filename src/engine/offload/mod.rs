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
//!
//! In steady state a job allocates nothing: its slot ([`Job`], which goes
//! through the pool's queue as one box) and its bounces of up to 64 KiB
//! ([`bounce::Spares`]) come back with its completion and serve the
//! engine's next jobs, up to a cap; never before the completion, since the
//! helper thread may still be writing them (an abandoned job's too).

mod aio;
mod bounce;
mod pool;

use core::ffi::c_char;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::{Cancel, Completion, EventFd, Notify, Op, OpId, Waiter};
use crate::errno::Errno;
use bounce::{Bounce, Bufs, Spares, bounces};
use pool::{Task, pool};
pub(crate) use pool::{after_fork_in_child, run_task};
/// Offload op ids have this bit set (ring and epoll ids never do).
const OFFLOAD_BIT: OpId = 1 << 31;

/// The hash of an op id: one multiply (Fibonacci hashing; the ids are our
/// own sequence numbers, so nobody can choose them to collide). The
/// default SipHash cost about 150 instructions per insert and per remove
/// of [`Offload::live`], two of them per job.
#[derive(Default)]
struct IdHasher(u64);

impl core::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(self.0.rotate_left(8) ^ u64::from(b));
        }
    }

    fn write_u32(&mut self, n: u32) {
        self.write_u64(n.into());
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

type IdMap<V> = HashMap<OpId, V, core::hash::BuildHasherDefault<IdHasher>>;

/// What a job does, with the memory it owns.
enum Work {
    Read {
        fd: i32,
        bufs: Bufs,
        off: Option<i64>,
    },
    Write {
        fd: i32,
        bufs: Bufs,
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
    // The path ops' paths are in their job slot's `path` ([`Job::path`]).
    Open {
        dirfd: i32,
        flags: i32,
        mode: u32,
    },
    Statx {
        dirfd: i32,
        flags: i32,
        mask: u32,
    },
    Unlink {
        dirfd: i32,
        flags: i32,
    },
    Rename {
        olddir: i32,
        newdir: i32,
        /// Where the new path starts in the slot's `path` (after the old).
        new: usize,
    },
    Mkdir {
        dirfd: i32,
        mode: u32,
    },
}

/// Data a finished job hands back for copying into the waiter's memory,
/// and the bounces it is done with (a write's too), for the engine's
/// [`Spares`].
enum Output {
    None,
    Bytes(Bufs),
    /// In the slot's `statx`.
    Statx,
}

/// An offloaded operation's slot: the vcpu fills in the work and sends it
/// to a helper thread (the box itself goes through the pool's queue, so a
/// queue entry stays two words), the helper runs it and posts the slot,
/// with the result and output, to its engine's inbox, and the engine
/// reuses the slot for a later job ([`Offload::jobs`]): no allocation and
/// no closure per job.
pub(super) struct Job {
    id: OpId,
    /// Taken by the helper thread.
    work: Option<Work>,
    result: i64,
    out: Output,
    /// A path op's path, NUL-terminated (a rename's old one, then its new
    /// one): the job's own copy, in a buffer the slot keeps for its next
    /// jobs (up to [`PATH_KEEP`] bytes).
    path: Vec<u8>,
    /// A statx's output.
    statx: libc::statx,
    /// Where the helper posts the slot: set at each submission and taken
    /// by the helper before it posts, so a slot in an inbox never holds
    /// that inbox (a job finishing after its engine is gone frees it).
    inbox: Option<Arc<Inbox>>,
}

impl Job {
    /// Runs the syscall and posts the slot to the engine's inbox.
    fn run(mut self: Box<Self>) {
        let work = self.work.take();
        let (path, st) = (&self.path, &mut self.statx);
        // A panic still completes the operation, so its waiter wakes.
        let (result, out) =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work.map(|w| execute(w, path, st))))
                .ok()
                .flatten()
                .unwrap_or((-i64::from(Errno::ENOTRECOVERABLE.0), Output::None));
        self.result = result;
        self.out = out;
        let Some(inbox) = self.inbox.take() else { return };
        inbox.done.lock().unwrap_or_else(|e| e.into_inner()).push(self);
        inbox.notify.notify();
    }
}

/// Most job slots an engine keeps for reuse; more in flight at once are
/// freed when they come back.
const SPARE_JOBS: usize = 64;
/// A slot keeps a path buffer of up to this capacity for its next jobs.
const PATH_KEEP: usize = 1024;

/// Where finished jobs of one engine land.
pub(crate) struct Inbox {
    #[allow(clippy::vec_box)] // each box is a job's slot, sent to a helper and back
    done: Mutex<Vec<Box<Job>>>,
    notify: Arc<dyn Notify>,
}

fn ret(r: isize) -> i64 {
    if r < 0 {
        -(Errno::last_os_error().0 as i64)
    } else {
        r as i64
    }
}

/// Up to this many iovecs of a vector job are built on the helper's stack.
const STACK_IOVS: usize = 8;

/// Calls `f` with the iovecs of `bufs` (on the stack when there are few).
fn with_iovecs<R>(bufs: &Bufs, f: impl FnOnce(&[libc::iovec]) -> R) -> R {
    let bufs = bufs.as_slice();
    if bufs.len() <= STACK_IOVS {
        let mut iov = [libc::iovec {
            iov_base: core::ptr::null_mut(),
            iov_len: 0,
        }; STACK_IOVS];
        for (v, b) in iov.iter_mut().zip(bufs) {
            *v = b.iovec();
        }
        return f(&iov[..bufs.len()]);
    }
    let iov: Vec<libc::iovec> = bufs.iter().map(Bounce::iovec).collect();
    f(&iov)
}

/// Runs a job's syscall on a helper thread; `path`: its slot's paths,
/// `st`: its slot's statx.
fn execute(work: Work, path: &[u8], st: &mut libc::statx) -> (i64, Output) {
    let at = |i: usize| path[i..].as_ptr().cast::<c_char>();
    // SAFETY: every pointer below points into memory the job owns (paths
    // NUL-terminated by path_copy).
    unsafe {
        match work {
            Work::Read { fd, bufs, off } => {
                let r = with_iovecs(&bufs, |iov| match off {
                    Some(o) => crate::sys::preadv(fd, iov.as_ptr(), iov.len() as i32, o),
                    None => crate::sys::readv(fd, iov.as_ptr(), iov.len() as i32),
                });
                (ret(r), Output::Bytes(bufs))
            }
            Work::Write { fd, bufs, off } => {
                let r = with_iovecs(&bufs, |iov| match off {
                    Some(o) => crate::sys::pwritev(fd, iov.as_ptr(), iov.len() as i32, o),
                    None => crate::sys::writev(fd, iov.as_ptr(), iov.len() as i32),
                });
                (ret(r), Output::Bytes(bufs))
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
            Work::Open { dirfd, flags, mode } => (ret(libc::openat(dirfd, at(0), flags, mode) as isize), Output::None),
            Work::Statx { dirfd, flags, mask } => {
                *st = core::mem::zeroed();
                (ret(libc::statx(dirfd, at(0), flags, mask, st) as isize), Output::Statx)
            }
            Work::Unlink { dirfd, flags } => (ret(libc::unlinkat(dirfd, at(0), flags) as isize), Output::None),
            Work::Rename { olddir, newdir, new } => (
                ret(libc::renameat(olddir, at(0), newdir, at(new)) as isize),
                Output::None,
            ),
            Work::Mkdir { dirfd, mode } => (ret(libc::mkdirat(dirfd, at(0), mode) as isize), Output::None),
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
    live: IdMap<Pending>,
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
    /// Small bounce allocations of reaped jobs, for the next ones.
    spare: Spares,
    /// The inbox's other list, swapped in at each reap so that neither
    /// side allocates once both have grown to the load.
    #[allow(clippy::vec_box)] // job slots, as in the inbox
    reaped: Vec<Box<Job>>,
    /// Job slots back from reaped jobs, for the next ones (at most
    /// [`SPARE_JOBS`]).
    #[allow(clippy::vec_box)] // job slots, as in the inbox
    jobs: Vec<Box<Job>>,
    /// AIO completions of one reap (kept for its capacity).
    aio_finished: Vec<(OpId, i64)>,
}

/// Appends a copy of the path `p` with its NUL to `to`; where it starts.
fn path_copy(to: &mut Vec<u8>, p: *const c_char) -> Result<usize, Errno> {
    if p.is_null() {
        return Err(Errno(libc::EFAULT));
    }
    // SAFETY: a non-NULL path from the caller is NUL-terminated.
    let bytes = unsafe { core::ffi::CStr::from_ptr(p) }.to_bytes_with_nul();
    let start = to.len();
    to.extend_from_slice(bytes);
    Ok(start)
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
            live: IdMap::default(),
            abandoned: 0,
            next: 0,
            resfd,
            aio: None,
            aio_usable: super::features::wanted(super::features::Feature::Aio),
            spare: Spares::new(),
            reaped: Vec::new(),
            jobs: Vec::new(),
            aio_finished: Vec::new(),
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
        let mut job = self.jobs.pop().unwrap_or_else(|| {
            Box::new(Job {
                id,
                work: None,
                result: 0,
                out: Output::None,
                path: Vec::new(),
                // SAFETY: a statx is plain data.
                statx: unsafe { core::mem::zeroed() },
                inbox: None,
            })
        });
        job.path.clear();
        // SAFETY: per the contract.
        let (work, dest) = match unsafe { self.work_of(op, &mut job.path) } {
            Ok(w) => w,
            Err(e) => {
                self.keep(job);
                return Err(e);
            }
        };
        self.live.insert(id, Pending { waiter, dest });
        job.id = id;
        job.work = Some(work);
        job.inbox = Some(self.inbox.clone());
        pool().run(Task::Job(job));
        Ok(())
    }

    /// Keeps a job slot for a later job (at most [`SPARE_JOBS`]).
    fn keep(&mut self, mut job: Box<Job>) {
        if self.jobs.len() >= SPARE_JOBS {
            return;
        }
        if job.path.capacity() > PATH_KEEP {
            job.path = Vec::new();
        }
        if self.jobs.capacity() == 0 {
            self.jobs.reserve_exact(SPARE_JOBS);
        }
        self.jobs.push(job);
    }

    /// What a job does for `op`, and where its output goes; a path op's
    /// paths are copied into `to`.
    ///
    /// # Safety
    /// As [`Offload::submit`].
    unsafe fn work_of(&mut self, op: Op, to: &mut Vec<u8>) -> Result<(Work, Dest), Errno> {
        let one = |p: *const u8, len: u32| libc::iovec {
            iov_base: p.cast_mut().cast(),
            iov_len: len as usize,
        };
        // SAFETY: the caller guarantees the memory (for the copies and slices).
        Ok(unsafe {
            match op {
                Op::Read { fd, buf, len } => (
                    Work::Read {
                        fd,
                        bufs: Bufs::One(Bounce::new(buf, len as usize, &mut self.spare)?),
                        off: None,
                    },
                    Dest::Buf(buf),
                ),
                Op::Pread { fd, buf, len, off: o } => (
                    Work::Read {
                        fd,
                        bufs: Bufs::One(Bounce::new(buf, len as usize, &mut self.spare)?),
                        off: off(o),
                    },
                    Dest::Buf(buf),
                ),
                Op::Readv { fd, iov, n } => (
                    Work::Read {
                        fd,
                        bufs: bounces(iov, n, false, &mut self.spare)?,
                        off: None,
                    },
                    Dest::Iov(iov, n),
                ),
                Op::Preadv { fd, iov, n, off: o } => (
                    Work::Read {
                        fd,
                        bufs: bounces(iov, n, false, &mut self.spare)?,
                        off: off(o),
                    },
                    Dest::Iov(iov, n),
                ),
                Op::Write { fd, buf, len } => (
                    Work::Write {
                        fd,
                        bufs: bounces(&one(buf, len), 1, true, &mut self.spare)?,
                        off: None,
                    },
                    Dest::None,
                ),
                Op::Pwrite { fd, buf, len, off: o } => (
                    Work::Write {
                        fd,
                        bufs: bounces(&one(buf, len), 1, true, &mut self.spare)?,
                        off: off(o),
                    },
                    Dest::None,
                ),
                Op::Writev { fd, iov, n } => (
                    Work::Write {
                        fd,
                        bufs: bounces(iov, n, true, &mut self.spare)?,
                        off: None,
                    },
                    Dest::None,
                ),
                Op::Pwritev { fd, iov, n, off: o } => (
                    Work::Write {
                        fd,
                        bufs: bounces(iov, n, true, &mut self.spare)?,
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
                } => {
                    path_copy(to, path)?;
                    (Work::Open { dirfd, flags, mode }, Dest::CloseIfOrphaned)
                }
                Op::Statx {
                    dirfd,
                    path,
                    flags,
                    mask,
                    buf,
                } => {
                    path_copy(to, path)?;
                    (Work::Statx { dirfd, flags, mask }, Dest::Statx(buf))
                }
                Op::Unlink { dirfd, path, flags } => {
                    path_copy(to, path)?;
                    (Work::Unlink { dirfd, flags }, Dest::None)
                }
                Op::Rename {
                    olddir,
                    old,
                    newdir,
                    new,
                } => {
                    path_copy(to, old)?;
                    let new = path_copy(to, new)?;
                    (Work::Rename { olddir, newdir, new }, Dest::None)
                }
                Op::Mkdir { dirfd, path, mode } => {
                    path_copy(to, path)?;
                    (Work::Mkdir { dirfd, mode }, Dest::None)
                }
                _ => return Err(Errno::ENOSYS), // sockets and polls never go to the pool
            }
        })
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
        let mut done = core::mem::take(&mut self.reaped);
        core::mem::swap(
            &mut done,
            &mut *self.inbox.done.lock().unwrap_or_else(|e| e.into_inner()),
        );
        for mut job in done.drain(..) {
            let (id, result) = (job.id, job.result);
            let output = core::mem::replace(&mut job.out, Output::None);
            match self.live.remove(&id) {
                None => self.abandoned = self.abandoned.saturating_sub(1),
                Some(p) if p.waiter.is_null() => {
                    if result >= 0 {
                        // SAFETY: an fd opened for a waiter that left; nobody else knows it.
                        unsafe { crate::sys::close(result as i32) };
                    }
                }
                Some(p) => {
                    // SAFETY: the waiter is parked, so its destination memory is valid.
                    unsafe { copy_out(p.dest, &output, &job.statx, result.max(0) as usize) };
                    out.push(Completion {
                        waiter: p.waiter,
                        id,
                        result,
                    });
                }
            }
            // The helper thread is done with the job's bounces and slot
            // (an abandoned job's too, now that its completion came).
            if let Output::Bytes(bufs) = output {
                self.spare.put(bufs);
            }
            self.keep(job);
        }
        self.reaped = done;
    }
}

impl Offload {
    /// Delivers finished AIO reads; one the kernel would have had to block
    /// for (EAGAIN under RWF_NOWAIT) goes to the pool under the same id.
    fn reap_aio(&mut self, out: &mut Vec<Completion>) {
        let mut finished = core::mem::take(&mut self.aio_finished);
        if let Some(a) = self.aio.as_mut() {
            a.reap(|data, res| finished.push((data as OpId, res)));
        }
        for (id, res) in finished.drain(..) {
            self.aio_done(id, res, out);
        }
        self.aio_finished = finished;
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

/// Copies the first `n` bytes a read produced into the waiter's buffers
/// (a statx's output `st` into the waiter's statx).
///
/// # Safety
/// `dest` points to live memory of a parked waiter, as large as it asked.
unsafe fn copy_out(dest: Dest, output: &Output, st: &libc::statx, mut n: usize) {
    // SAFETY: per the contract; each copy stays within the waiter's iovec.
    unsafe {
        match (dest, output) {
            (Dest::Buf(p), Output::Bytes(bufs)) => {
                if let Some(b) = bufs.as_slice().first() {
                    crate::sys::copy_user(b.ptr(), p, n.min(b.len), true);
                }
            }
            (Dest::Iov(iov, count), Output::Bytes(bufs)) => {
                let iovs = core::slice::from_raw_parts(iov, count as usize);
                for (v, b) in iovs.iter().zip(bufs.as_slice()) {
                    let k = n.min(b.len);
                    crate::sys::copy_user(b.ptr(), v.iov_base.cast::<u8>(), k, true);
                    n -= k;
                }
            }
            (Dest::Statx(p), Output::Statx) => p.write(*st),
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
            // The kernel's own completion: the data, or EAGAIN where the
            // read would have blocked after all (the file's pages written
            // back meanwhile, a busy device), which the lines below give in
            // its place anyway.
            assert!(
                seen == [(id as u64, 4096)] || seen == [(id as u64, -(libc::EAGAIN as i64))],
                "the kernel's own completion: {seen:?}"
            );
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

#[cfg(test)]
mod reuse_tests {
    use super::*;

    /// A buffered file of 16 blocks, block i filled with byte i.
    fn blocks_file(tag: &str) -> (i32, std::path::PathBuf) {
        let path = std::env::temp_dir().join(format!("photon-{tag}-{}.dat", std::process::id()));
        let data: Vec<u8> = (0..16u8).flat_map(|i| [i; 4096]).collect();
        std::fs::write(&path, data).unwrap();
        let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a NUL-terminated path.
        let fd = unsafe { libc::open(c.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
        assert!(fd >= 0);
        // The facts of an earlier file with this number go: a test running
        // beside this one may have closed an O_DIRECT file of that number
        // without telling fdinfo, and a read of a file cached as O_DIRECT
        // goes to kernel AIO, never to the pool's inbox.
        crate::fdinfo::forget(fd);
        (fd, path)
    }

    /// Waits until the inbox holds `n` finished jobs (not reaped).
    fn wait_inbox(o: &Offload, n: usize) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while o.inbox.done.lock().unwrap().len() < n {
            assert!(std::time::Instant::now() < deadline, "jobs did not finish");
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }

    fn reap_all(o: &mut Offload, n: usize) -> Vec<Completion> {
        wait_inbox(o, n);
        let mut out = Vec::new();
        o.reap(&mut out);
        out
    }

    /// Reads and writes one after the other reuse one bounce and one job
    /// slot (nothing allocated per job once they are there); a burst of
    /// 300 jobs in flight keeps at most the caps.
    #[test]
    fn offloaded_jobs_reuse_bounces_and_slots() {
        let (fd, path) = blocks_file("offload-reuse");
        let efd = Arc::new(EventFd::new().unwrap());
        let mut o = Offload::new(efd);
        let mut buf = [0u8; 4096];
        for i in 0..20u64 {
            let op = Op::Pread {
                fd,
                buf: buf.as_mut_ptr(),
                len: 4096,
                off: (i % 16) * 4096,
            };
            // SAFETY: the buffer outlives the read (completed below).
            let id = unsafe { o.submit(op, 1 as Waiter) }.unwrap();
            let out = reap_all(&mut o, 1);
            assert_eq!((out.len(), out[0].id, out[0].result), (1, id, 4096));
            assert!(buf.iter().all(|&x| x == (i % 16) as u8), "read {i}'s data");
            assert_eq!(o.spare.held(), (1, 8192), "after read {i}: its bounce is the spare");
            assert_eq!(o.jobs.len(), 1, "after read {i}: its slot is kept");
        }
        // A write's bounce comes back too (to the same class).
        let (wfd, wpath) = blocks_file("offload-reuse-w");
        // SAFETY: our fd.
        unsafe { libc::close(wfd) };
        let c = std::ffi::CString::new(wpath.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a NUL-terminated path.
        let wfd = unsafe { libc::open(c.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC) };
        crate::fdinfo::forget(wfd); // as in blocks_file
        let data = [0x77u8; 3000];
        let op = Op::Pwrite {
            fd: wfd,
            buf: data.as_ptr(),
            len: 3000,
            off: 100,
        };
        // SAFETY: the source is read at submission.
        unsafe { o.submit(op, 1 as Waiter) }.unwrap();
        assert_eq!(o.spare.held(), (0, 0), "the write took the spare");
        let out = reap_all(&mut o, 1);
        assert_eq!(out[0].result, 3000);
        assert_eq!(o.spare.held(), (1, 8192));
        let written = std::fs::read(&wpath).unwrap();
        assert!(written[100..3100].iter().all(|&x| x == 0x77));

        // A burst: 300 reads in flight at once, each its own bounce and slot.
        let mut bufs = vec![[0u8; 4096]; 300];
        for (i, b) in bufs.iter_mut().enumerate() {
            let op = Op::Pread {
                fd,
                buf: b.as_mut_ptr(),
                len: 4096,
                off: (i as u64 % 16) * 4096,
            };
            // SAFETY: the buffers outlive the reads (completed below).
            unsafe { o.submit(op, 1 as Waiter) }.unwrap();
        }
        let out = reap_all(&mut o, 300);
        assert_eq!(out.len(), 300);
        assert!(out.iter().all(|c| c.result == 4096));
        for (i, b) in bufs.iter().enumerate() {
            assert!(b.iter().all(|&x| x == (i % 16) as u8), "burst read {i}'s data");
        }
        let (count, bytes) = o.spare.held();
        assert_eq!(bytes, bounce::SPARE_BYTES, "the spares are capped ({count} kept)");
        assert_eq!(o.jobs.len(), SPARE_JOBS, "the slots are capped");
        assert_eq!(o.in_flight(), 0);
        // SAFETY: our fds.
        unsafe { (libc::close(fd), libc::close(wfd)) };
        let _ = std::fs::remove_file(&path);
        let _ = std::fs::remove_file(&wpath);
    }

    /// A read abandoned while its helper thread waits keeps its bounce
    /// until its completion comes: a read started after the cancel gets
    /// another one, and the abandoned read's late data does not land in
    /// it. Both bounces are spares afterwards, and distinct.
    #[test]
    fn abandoned_read_keeps_its_bounce_until_it_finishes() {
        let (fd, path) = blocks_file("offload-abandon");
        let mut p = [0i32; 2];
        // SAFETY: a valid array of two fds.
        assert_eq!(unsafe { libc::pipe2(p.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
        let efd = Arc::new(EventFd::new().unwrap());
        let mut o = Offload::new(efd);
        // Warm: one spare bounce and slot, which the pipe read takes.
        let mut buf = [0u8; 4096];
        let op = Op::Pread {
            fd,
            buf: buf.as_mut_ptr(),
            len: 4096,
            off: 0,
        };
        // SAFETY: the buffer outlives the read.
        unsafe { o.submit(op, 1 as Waiter) }.unwrap();
        reap_all(&mut o, 1);
        assert_eq!(o.spare.held(), (1, 8192));

        let mut gone = [0u8; 4096];
        let op = Op::Read {
            fd: p[0],
            buf: gone.as_mut_ptr(),
            len: 4096,
        };
        // SAFETY: the read is abandoned before `gone` could be written.
        let a = unsafe { o.submit(op, 1 as Waiter) }.unwrap();
        assert_eq!(o.spare.held(), (0, 0));
        std::thread::sleep(std::time::Duration::from_millis(20)); // the helper is in read(2)
        assert_eq!(o.cancel(a), Cancel::Gone);
        assert_eq!(o.spare.held(), (0, 0), "the cancel gives no bounce back");

        let op = Op::Pread {
            fd,
            buf: buf.as_mut_ptr(),
            len: 4096,
            off: 5 * 4096,
        };
        // SAFETY: the buffer outlives the read.
        let b = unsafe { o.submit(op, 1 as Waiter) }.unwrap();
        wait_inbox(&o, 1);
        // The abandoned read now gets its data, into its own bounce.
        let junk = [0xAAu8; 4096];
        // SAFETY: a valid buffer.
        assert_eq!(unsafe { libc::write(p[1], junk.as_ptr().cast(), 4096) }, 4096);
        let out = reap_all(&mut o, 2);
        assert_eq!(out.len(), 1, "only the live read completes");
        assert_eq!((out[0].id, out[0].result), (b, 4096));
        assert!(
            buf.iter().all(|&x| x == 5),
            "the live read's data, not the abandoned one's"
        );
        assert!(
            gone.iter().all(|&x| x == 0),
            "the abandoned read's buffer is never written"
        );
        assert_eq!(o.in_flight(), 0);
        let bases = o.spare.bases();
        assert_eq!(bases.len(), 2, "both bounces are spares now");
        assert_ne!(bases[0], bases[1], "and distinct");
        // SAFETY: our fds.
        unsafe { (libc::close(fd), libc::close(p[0]), libc::close(p[1])) };
        let _ = std::fs::remove_file(&path);
    }

    /// Runs one op on `o` to its completion.
    fn run1(o: &mut Offload, op: Op) -> i64 {
        // SAFETY: every op's memory outlives its completion, awaited here.
        unsafe { o.submit(op, 1 as Waiter) }.unwrap();
        reap_all(o, 1)[0].result
    }

    /// Path ops (mkdir, rename, open, statx, unlink) copy their paths
    /// into their job slot's buffer, which the slot keeps: one slot and
    /// one buffer serve them all. A NULL path is EFAULT at submission and
    /// the slot stays; a buffer grown past PATH_KEEP is not kept.
    #[test]
    fn path_ops_reuse_their_slots_path_buffer() {
        let c = |p: &std::path::Path| std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
        let base = std::env::temp_dir().join(format!("photon-offload-paths-{}", std::process::id()));
        let (dir, dir2) = (base.join("a"), base.join("b"));
        std::fs::create_dir_all(&base).unwrap();
        let (cdir, cdir2, cfile) = (c(&dir), c(&dir2), c(&dir2.join("f")));
        let efd = Arc::new(EventFd::new().unwrap());
        let mut o = Offload::new(efd);
        let mkdir = Op::Mkdir {
            dirfd: libc::AT_FDCWD,
            path: cdir.as_ptr(),
            mode: 0o700,
        };
        assert_eq!(run1(&mut o, mkdir), 0);
        assert!(dir.is_dir());
        let rename = Op::Rename {
            olddir: libc::AT_FDCWD,
            old: cdir.as_ptr(),
            newdir: libc::AT_FDCWD,
            new: cdir2.as_ptr(),
        };
        assert_eq!(run1(&mut o, rename), 0);
        assert!(dir2.is_dir() && !dir.exists());
        assert_eq!(o.jobs.len(), 1);
        let buf = o.jobs[0].path.as_ptr();
        let open = Op::Open {
            dirfd: libc::AT_FDCWD,
            path: cfile.as_ptr(),
            flags: libc::O_CREAT | libc::O_WRONLY | libc::O_CLOEXEC,
            mode: 0o600,
            blocking: false,
        };
        let fd = run1(&mut o, open);
        assert!(fd >= 0, "open: {fd}");
        // SAFETY: our fd, and a valid buffer.
        assert_eq!(unsafe { libc::write(fd as i32, b"12345".as_ptr().cast(), 5) }, 5);
        // SAFETY: our fd.
        unsafe { libc::close(fd as i32) };
        // SAFETY: a statx is plain data.
        let mut st: libc::statx = unsafe { core::mem::zeroed() };
        let statx = Op::Statx {
            dirfd: libc::AT_FDCWD,
            path: cfile.as_ptr(),
            flags: 0,
            mask: libc::STATX_SIZE,
            buf: &mut st,
        };
        assert_eq!(run1(&mut o, statx), 0);
        assert_eq!(st.stx_size, 5, "statx's output reached the waiter");
        let unlink = |path: *const c_char, flags| Op::Unlink {
            dirfd: libc::AT_FDCWD,
            path,
            flags,
        };
        assert_eq!(run1(&mut o, unlink(cfile.as_ptr(), 0)), 0);
        assert_eq!(run1(&mut o, unlink(cdir2.as_ptr(), libc::AT_REMOVEDIR)), 0);
        assert!(!dir2.exists());
        assert_eq!(o.jobs.len(), 1, "one slot served every op");
        assert_eq!(o.jobs[0].path.as_ptr(), buf, "and one path buffer");

        // SAFETY: a NULL path is refused before anything runs.
        let e = unsafe { o.submit(unlink(core::ptr::null(), 0), 1 as Waiter) };
        assert_eq!(e, Err(Errno(libc::EFAULT)));
        assert_eq!((o.in_flight(), o.jobs.len()), (0, 1), "the slot is kept");

        let long = c(&base.join("x/".repeat(PATH_KEEP)));
        assert_eq!(run1(&mut o, unlink(long.as_ptr(), 0)), -(libc::ENOENT as i64));
        assert_eq!(o.jobs.len(), 1);
        assert_eq!(o.jobs[0].path.capacity(), 0, "a long path's buffer is not kept");
        let _ = std::fs::remove_dir_all(&base);
    }

    /// A vector read and write of more iovecs than the helper builds on its
    /// stack: every piece lands in its own iovec, and every bounce comes
    /// back as a spare.
    #[test]
    fn many_iovecs_on_the_pool() {
        let (fd, path) = blocks_file("offload-iovs");
        let efd = Arc::new(EventFd::new().unwrap());
        let mut o = Offload::new(efd);
        const N: usize = STACK_IOVS + 3;
        let mut bufs = [[0u8; 4096]; N];
        let iov: Vec<libc::iovec> = bufs
            .iter_mut()
            .map(|b| libc::iovec {
                iov_base: b.as_mut_ptr().cast(),
                iov_len: 4096,
            })
            .collect();
        let op = Op::Preadv {
            fd,
            iov: iov.as_ptr(),
            n: N as u32,
            off: 4096,
        };
        assert_eq!(run1(&mut o, op), (N * 4096) as i64);
        for (i, b) in bufs.iter().enumerate() {
            assert!(b.iter().all(|&x| x == i as u8 + 1), "iovec {i}");
        }
        assert_eq!(o.spare.held(), (N, N * 8192), "each bounce is a spare");

        // SAFETY: our fd.
        unsafe { libc::close(fd) };
        let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a NUL-terminated path.
        let fd = unsafe { libc::open(c.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC) };
        crate::fdinfo::forget(fd); // as in blocks_file
        for (i, b) in bufs.iter_mut().enumerate() {
            b.fill(0xC0 + i as u8);
        }
        let op = Op::Pwritev {
            fd,
            iov: iov.as_ptr(),
            n: N as u32,
            off: 0,
        };
        assert_eq!(run1(&mut o, op), (N * 4096) as i64);
        assert_eq!(
            o.spare.held(),
            (N, N * 8192),
            "the write took the spares and gave them back"
        );
        let data = std::fs::read(&path).unwrap();
        for i in 0..N {
            assert!(
                data[i * 4096..(i + 1) * 4096].iter().all(|&x| x == 0xC0 + i as u8),
                "block {i}"
            );
        }
        // SAFETY: our fd.
        unsafe { libc::close(fd) };
        let _ = std::fs::remove_file(&path);
    }
}
