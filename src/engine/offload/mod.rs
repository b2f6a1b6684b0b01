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

mod bounce;
mod pool;

use core::ffi::c_char;
use std::collections::HashMap;
use std::ffi::CString;
use std::sync::{Arc, Mutex};

use super::{Completion, Notify, Op, OpId, Waiter};
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
