//! The epoll engine, through mio: readiness (`Op::Poll`), with the I/O
//! layer doing the syscalls; file operations go to the offload pool.
//!
//! Each fd is registered once, edge-triggered, for both directions, and
//! its readiness is kept ([`Engine::readiness`], as mio's users and tokio
//! do): every event sets the directions it reports; a direction is cleared
//! when a thread starts waiting there (it waits only after seeing the fd
//! drained: an EAGAIN, a short read, or the kept readiness itself, with no
//! event processed in between, so no edge is missed) or when the I/O layer
//! reports a short read ([`Engine::drained`]). A read on a socket seen
//! drained then waits for the next event instead of first calling into an
//! EAGAIN: one syscall fewer per request in a ping-pong.

use std::sync::Arc;
use std::time::Duration;

use std::os::fd::AsRawFd;

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};

use super::offload::Offload;
use super::slab::OpSlab;
use super::{
    Cancel, Completion, Engine, EventFd, Notify, Op, OpId, OpKind, READABLE, Submitted, WRITABLE, Waiter, ready_bits,
};
use crate::errno::Errno;

const WAKER: Token = Token(usize::MAX);

#[derive(Default)]
struct FdState {
    registered: bool,
    /// READABLE/WRITABLE as last known (meaningful while registered).
    ready: u32,
    /// The read side reported closed or in error (RDHUP, HUP, ERR): final,
    /// so it stays readable whatever a short read suggests (tokio keeps
    /// its closed states the same way).
    read_closed: bool,
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
    /// Events from epoll_pwait2.
    raw: Vec<libc::epoll_event>,
    offload: Offload,
    /// Readiness is kept (see the module doc; `PHOTON_IO_OFF=readiness`
    /// turns it off: every read then tries its syscall first).
    keep_readiness: bool,
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
            raw: vec![libc::epoll_event { events: 0, u64: 0 }; 1024],
            keep_readiness: super::features::wanted(super::features::Feature::Readiness),
        })
    }

    /// Registers `fd` (once) for both directions, edge-triggered. Ok(false):
    /// the fd cannot be polled (a regular file or directory: always ready).
    /// The table grows only for an fd the kernel accepted.
    #[cold]
    #[inline(never)]
    fn register(&mut self, fd: i32) -> Result<bool, Errno> {
        if self.fds.get(fd as usize).is_some_and(|st| st.registered) {
            return Ok(true);
        }
        let interest = Interest::READABLE | Interest::WRITABLE;
        match self
            .poll
            .registry()
            .register(&mut SourceFd(&fd), Token(fd as usize), interest)
        {
            Ok(()) => {
                let st = self.state(fd);
                st.registered = true;
                st.read_closed = false;
                // Unknown yet: maybe ready both ways (the registration's
                // own event reports the present state anyway).
                st.ready = READABLE | WRITABLE;
                Ok(true)
            }
            Err(e) if e.raw_os_error() == Some(libc::EPERM) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// The state of `fd` (a table indexed by fd number, grown to hold it).
    #[inline]
    fn state(&mut self, fd: i32) -> &mut FdState {
        let i = fd as usize;
        if self.fds.len() <= i {
            self.grow(i);
        }
        &mut self.fds[i]
    }

    /// Grows the table to hold index `i`, doubling (new connections take
    /// rising fd numbers: one reallocation per doubling, not per fd).
    #[cold]
    #[inline(never)]
    fn grow(&mut self, i: usize) {
        let len = (i + 1).max(self.fds.len() * 2).max(64);
        self.fds.resize_with(len, FdState::default);
    }
}

/// Notes an event for `fd` in its kept readiness and completes the
/// waiters that wanted any of its directions. The waiter list keeps its
/// allocation: no memory is allocated or freed per wait.
#[inline]
fn on_event(fds: &mut [FdState], ops: &mut OpSlab<PollOp>, fd: i32, revents: i16, out: &mut Vec<Completion>) {
    let Some(st) = fds.get_mut(fd as usize) else {
        return;
    };
    let bits = ready_bits(revents);
    st.ready |= bits;
    if revents & (libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR) != 0 {
        st.read_closed = true;
    }
    let mut i = 0;
    while i < st.waiters.len() {
        let id = st.waiters[i];
        let wanted = ops.get(id).map_or(bits, |op| op.events); // (an id without an operation is dropped)
        if wanted & bits == 0 {
            i += 1;
            continue;
        }
        if i + 1 == st.waiters.len() {
            st.waiters.pop(); // the usual case: one waiter
        } else {
            st.waiters.remove(i); // keeps the order: the first waiter is served first
        }
        if let Some(op) = ops.remove(id) {
            out.push(Completion {
                waiter: op.waiter,
                id,
                result: (wanted & bits) as i64,
            });
        }
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
        let registered = self.fds.get(fd as usize).is_some_and(|st| st.registered);
        if !registered && !self.register(fd)? {
            // Regular files and directories cannot be polled: always ready.
            return Ok(Submitted::Done(events as i64));
        }
        let id = self.ops.insert(PollOp { fd, events, waiter });
        // Registered: the table holds fd.
        let st = &mut self.fds[fd as usize];
        // The waiter saw the fd drained there: only a new event counts.
        st.ready &= !events;
        st.waiters.push(id);
        Ok(Submitted::Pending(id))
    }

    fn cancel(&mut self, id: OpId) -> Cancel {
        if Offload::owns(id) {
            return self.offload.cancel(id);
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

    fn readiness(&self, fd: i32) -> u32 {
        match self.fds.get(fd as usize) {
            Some(st) if st.registered && self.keep_readiness => st.ready | if st.read_closed { READABLE } else { 0 },
            _ => READABLE | WRITABLE,
        }
    }

    fn drained(&mut self, fd: i32, bits: u32, _n: usize) {
        if !self.keep_readiness || fd < 0 {
            return;
        }
        match self.fds.get_mut(fd as usize) {
            Some(st) if st.registered => st.ready &= !bits,
            // Registering now lets the next read wait for its event at
            // once; the registration's own event reports data already there.
            _ => {
                if matches!(self.register(fd), Ok(true)) {
                    self.state(fd).ready &= !bits;
                }
            }
        }
    }

    fn wait(&mut self, timeout: Option<Duration>, out: &mut Vec<Completion>) -> Result<(), Errno> {
        // Microsecond timeouts: epoll_pwait2 (5.11+), probed; mio's
        // epoll_wait rounds a 100 us sleep up to 1 ms.
        match pwait2(self.poll.as_raw_fd(), &mut self.raw, timeout) {
            Some(Ok(n)) => {
                for i in 0..n {
                    let e = self.raw[i];
                    if e.u64 != WAKER.0 as u64 {
                        // epoll's event bits are poll(2)'s (EPOLLIN == POLLIN, ...).
                        on_event(&mut self.fds, &mut self.ops, e.u64 as i32, e.events as i16, out);
                    }
                }
            }
            Some(Err(e)) if e.0 == libc::EINTR => return Ok(()),
            Some(Err(e)) => return Err(e),
            None => match self.poll.poll(&mut self.events, timeout) {
                Ok(()) => {
                    for e in self.events.iter().filter(|e| e.token() != WAKER) {
                        on_event(&mut self.fds, &mut self.ops, e.token().0 as i32, revents_of(e), out);
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => return Ok(()),
                Err(e) => return Err(e.into()),
            },
        }
        self.offload.reap(out);
        Ok(())
    }

    fn waits_in_flight(&self) -> usize {
        self.ops.len() + self.offload.in_flight()
    }

    fn notifier(&self) -> Arc<dyn Notify> {
        self.waker.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn socketpair() -> (i32, i32) {
        let mut fds = [0; 2];
        // SAFETY: a valid out array of two ints.
        let r = unsafe {
            libc::socketpair(
                libc::AF_UNIX,
                libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                0,
                fds.as_mut_ptr(),
            )
        };
        assert_eq!(r, 0);
        (fds[0], fds[1])
    }

    fn settle(e: &mut EpollEngine) {
        let mut out = Vec::new();
        e.wait(Some(Duration::from_millis(50)), &mut out).unwrap();
        assert!(out.is_empty(), "no operation was in flight");
    }

    /// A socket seen drained stays not-readable until an event; a peer's
    /// half-close keeps it readable for good (a short read cannot clear it).
    #[test]
    fn readiness_is_kept_per_fd() {
        let mut e = EpollEngine::new().unwrap();
        assert!(e.keep_readiness || std::env::var_os("PHOTON_IO_OFF").is_some());
        e.keep_readiness = true;
        let (a, b) = socketpair();
        assert_eq!(e.readiness(a), READABLE | WRITABLE, "unknown: maybe ready");
        e.drained(a, READABLE, 0);
        assert_eq!(e.readiness(a) & READABLE, 0, "seen drained");
        settle(&mut e);
        assert_eq!(e.readiness(a), WRITABLE, "the registration's event: writable only");
        // SAFETY: one byte from a live buffer.
        assert_eq!(unsafe { libc::write(b, b"x".as_ptr().cast(), 1) }, 1);
        settle(&mut e);
        assert_eq!(e.readiness(a) & READABLE, READABLE, "data arrived: an event said so");
        let mut buf = [0u8; 8];
        // SAFETY: a live buffer of 8 bytes.
        assert_eq!(unsafe { libc::read(a, buf.as_mut_ptr().cast(), 8) }, 1);
        e.drained(a, READABLE, 0);
        assert_eq!(e.readiness(a) & READABLE, 0);
        // SAFETY: plain calls on our fds.
        unsafe { libc::shutdown(b, libc::SHUT_WR) };
        settle(&mut e);
        e.drained(a, READABLE, 0);
        assert_eq!(e.readiness(a) & READABLE, READABLE, "end of file stays readable");
        e.forget_fd(a);
        assert_eq!(e.readiness(a), READABLE | WRITABLE, "a forgotten fd is unknown again");
        // SAFETY: our fds.
        unsafe {
            libc::close(a);
            libc::close(b);
        }
    }

    /// With the feature off (`PHOTON_IO_OFF=readiness`) every read tries.
    #[test]
    fn readiness_off_says_always_ready() {
        let mut e = EpollEngine::new().unwrap();
        e.keep_readiness = false;
        let (a, b) = socketpair();
        e.drained(a, READABLE, 0);
        settle(&mut e);
        assert_eq!(e.readiness(a), READABLE | WRITABLE);
        // SAFETY: our fds.
        unsafe {
            libc::close(a);
            libc::close(b);
        }
    }
}
