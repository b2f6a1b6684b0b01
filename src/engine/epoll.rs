//! The epoll engine, through mio: readiness (`Op::Poll`), with the I/O
//! layer doing the syscalls; file operations go to the offload pool. Each fd is registered once, edge-triggered, for
//! both directions; readiness bits are kept per fd and cleared when a
//! thread starts waiting (it waits only after its syscall said EAGAIN, with
//! no event processed in between, so no edge is missed).

use std::sync::Arc;
use std::time::Duration;

use std::os::fd::AsRawFd;

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};

use super::offload::Offload;
use super::slab::OpSlab;
use super::{Cancel, Completion, Engine, EventFd, Notify, Op, OpId, OpKind, Submitted, Waiter, ready_bits};
use crate::errno::Errno;

const WAKER: Token = Token(usize::MAX);

#[derive(Default)]
struct FdState {
    registered: bool,
    waiters: Vec<OpId>,
}

struct PollOp {
    fd: i32,
    events: u32,
    waiter: Waiter,
}

pub(crate) struct EpollEngine {
    poll: Poll,
    events: Events,
    /// Registered edge-triggered: every write is a new event, so it is
    /// never read.
    waker: Arc<EventFd>,
    fds: Vec<FdState>,
    ops: OpSlab<PollOp>,
    /// Scratch for one wait's (fd, readiness) pairs.
    ready: Vec<(i32, u32)>,
    /// Events from epoll_pwait2.
    raw: Vec<libc::epoll_event>,
    offload: Offload,
}

impl EpollEngine {
    pub(crate) fn new() -> Result<EpollEngine, Errno> {
        let poll = Poll::new()?;
        let waker = Arc::new(EventFd::new()?);
        poll.registry()
            .register(&mut SourceFd(&waker.0), WAKER, Interest::READABLE)?;
        let offload = Offload::new(waker.clone());
        Ok(EpollEngine {
            offload,
            poll,
            events: Events::with_capacity(1024),
            waker,
            fds: Vec::new(),
            ops: OpSlab::new(),
            ready: Vec::new(),
            raw: vec![libc::epoll_event { events: 0, u64: 0 }; 1024],
        })
    }

    fn state(&mut self, fd: i32) -> &mut FdState {
        let i = fd as usize;
        if self.fds.len() <= i {
            self.fds.resize_with(i + 1, FdState::default);
        }
        &mut self.fds[i]
    }

    /// Completes the waiters of `fd` that wanted any of `bits`.
    fn complete_ready(&mut self, fd: i32, bits: u32, out: &mut Vec<Completion>) {
        let Some(st) = self.fds.get_mut(fd as usize) else {
            return;
        };
        let waiters = core::mem::take(&mut st.waiters);
        let mut keep = Vec::new();
        for id in waiters {
            let wanted = self.ops.get(id).map_or(0, |op| op.events);
            if wanted & bits == 0 {
                keep.push(id);
            } else if let Some(op) = self.ops.remove(id) {
                out.push(Completion {
                    waiter: op.waiter,
                    id,
                    result: (wanted & bits) as i64,
                });
            }
        }
        self.fds[fd as usize].waiters = keep;
    }
}

/// mio's view of an epoll event back as the `poll(2)` bits it came from
/// (the values are epoll's), for [`ready_bits`].
fn revents_of(e: &mio::event::Event) -> i16 {
    let mut ev = 0;
    if e.is_readable() {
        ev |= libc::POLLIN;
    }
    if e.is_read_closed() {
        ev |= libc::POLLRDHUP;
    }
    if e.is_writable() {
        ev |= libc::POLLOUT;
    }
    if e.is_write_closed() {
        ev |= libc::POLLHUP;
    }
    if e.is_error() {
        ev |= libc::POLLERR;
    }
    ev
}

impl EpollEngine {
    /// Completes the waits `ready` names, then the offloaded operations.
    fn finish(&mut self, ready: Vec<(i32, u32)>, out: &mut Vec<Completion>) -> Result<(), Errno> {
        for &(fd, bits) in &ready {
            self.complete_ready(fd, bits, out);
        }
        self.ready = ready;
        self.offload.reap(out);
        Ok(())
    }
}

/// `epoll_pwait2` into `buf` (timeout None: forever); None when the kernel
/// lacks it (then the caller uses mio's millisecond `epoll_wait`, said once).
fn pwait2(epfd: i32, buf: &mut [libc::epoll_event], timeout: Option<Duration>) -> Option<Result<usize, Errno>> {
    use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
    static MISSING: AtomicBool = AtomicBool::new(false);
    if MISSING.load(Relaxed) {
        return None;
    }
    let ts = timeout.map(|t| libc::timespec {
        tv_sec: t.as_secs().min(i64::MAX as u64) as libc::time_t,
        tv_nsec: t.subsec_nanos() as libc::c_long,
    });
    let tsp = ts.as_ref().map_or(core::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: a live buffer of buf.len() events, a live or null timespec, no sigmask.
    let n = unsafe {
        libc::syscall(
            libc::SYS_epoll_pwait2,
            epfd,
            buf.as_mut_ptr(),
            buf.len() as libc::c_int,
            tsp,
            core::ptr::null::<libc::sigset_t>(),
            0usize,
        )
    };
    if n >= 0 {
        return Some(Ok(n as usize));
    }
    let e = Errno::last_os_error();
    if e == Errno::ENOSYS {
        MISSING.store(true, Relaxed);
        log::info!("photon: epoll_pwait2 unavailable (Linux 5.11+): epoll timers have millisecond resolution");
        return None;
    }
    Some(Err(e))
}

impl Engine for EpollEngine {
    fn name(&self) -> &'static str {
        "epoll"
    }

    fn runs(&self, kind: OpKind) -> bool {
        matches!(kind, OpKind::Poll | OpKind::File)
    }

    unsafe fn submit(&mut self, op: Op, waiter: Waiter) -> Result<Submitted, Errno> {
        let Op::Poll { fd, events } = op else {
            // SAFETY: the caller keeps op's memory valid per the engine contract.
            return unsafe { self.offload.submit(op, waiter) }.map(Submitted::Pending);
        };
        if fd < 0 {
            return Err(Errno(libc::EBADF));
        }
        if !self.state(fd).registered {
            let interest = Interest::READABLE | Interest::WRITABLE;
            match self
                .poll
                .registry()
                .register(&mut SourceFd(&fd), Token(fd as usize), interest)
            {
                Ok(()) => self.state(fd).registered = true,
                // Regular files and directories cannot be polled: always ready.
                Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
                    return Ok(Submitted::Done(events as i64));
                }
                Err(e) => return Err(e.into()),
            }
        }
        let id = self.ops.insert(PollOp { fd, events, waiter });
        self.state(fd).waiters.push(id);
        Ok(Submitted::Pending(id))
    }

    fn cancel(&mut self, id: OpId) -> Cancel {
        if Offload::owns(id) {
            self.offload.cancel(id);
            return Cancel::Gone;
        }
        if let Some(op) = self.ops.remove(id) {
            self.state(op.fd).waiters.retain(|&w| w != id);
        }
        Cancel::Gone
    }

    fn cancel_fd(&mut self, fd: i32, out: &mut Vec<Completion>) {
        if fd < 0 || fd as usize >= self.fds.len() {
            return;
        }
        for id in core::mem::take(&mut self.fds[fd as usize].waiters) {
            if let Some(op) = self.ops.remove(id) {
                out.push(Completion {
                    waiter: op.waiter,
                    id,
                    result: -(libc::ECANCELED as i64),
                });
            }
        }
        self.forget_fd(fd);
    }

    fn forget_fd(&mut self, fd: i32) {
        if let Some(st) = self.fds.get_mut(fd as usize).filter(|st| st.registered) {
            st.registered = false;
            // Fails harmlessly when the old file is already closed.
            let _ = self.poll.registry().deregister(&mut SourceFd(&fd));
        }
    }

    fn wait(&mut self, timeout: Option<Duration>, out: &mut Vec<Completion>) -> Result<(), Errno> {
        let mut ready = core::mem::take(&mut self.ready);
        ready.clear();
        // Microsecond timeouts: epoll_pwait2 (5.11+), probed; mio's
        // epoll_wait rounds a 100 us sleep up to 1 ms.
        match pwait2(self.poll.as_raw_fd(), &mut self.raw, timeout) {
            Some(Ok(n)) => {
                // epoll's event bits are poll(2)'s (EPOLLIN == POLLIN, ...).
                ready.extend(
                    self.raw[..n]
                        .iter()
                        .filter(|e| e.u64 != WAKER.0 as u64)
                        .map(|e| (e.u64 as i32, ready_bits(e.events as i16))),
                );
                return self.finish(ready, out);
            }
            Some(Err(e)) if e.0 == libc::EINTR => {
                self.ready = ready;
                return Ok(());
            }
            Some(Err(e)) => {
                self.ready = ready;
                return Err(e);
            }
            None => {}
        }
        match self.poll.poll(&mut self.events, timeout) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {
                self.ready = ready;
                return Ok(());
            }
            Err(e) => {
                self.ready = ready;
                return Err(e.into());
            }
        }
        ready.extend(
            self.events
                .iter()
                .filter(|e| e.token() != WAKER)
                .map(|e| (e.token().0 as i32, ready_bits(revents_of(e)))),
        );
        self.finish(ready, out)
    }

    fn has_pending(&self) -> bool {
        self.ops.len() > 0 || self.offload.in_flight() > 0
    }

    fn notifier(&self) -> Arc<dyn Notify> {
        self.waker.clone()
    }
}
