//! Multishot accept (5.19+): one ring operation on a listening socket
//! accepts connection after connection, instead of one accept submitted
//! per connection.
//!
//! The kernel keeps accepting while the operation is armed, whether or not
//! anybody calls accept: what it accepted and nobody claimed yet waits in
//! `ready`. Once [`ACCEPT_CAP`] connections wait there (per listening
//! socket and vcpu) the operation is cancelled, so the kernel's backlog
//! holds what comes next, as without multishot, and the next accept call
//! arms it again. (Each time the multishot runs the kernel accepts all the
//! backlog holds, so `ready` may pass the cap by what was in the backlog
//! then: at most the cap plus the listen backlog.)
//!
//! It is also cancelled when the vcpu goes to sleep with no accept waiting
//! on the socket, and when the last waiting accept gives up (timeout,
//! interrupt): a program that accepts once and goes on keeps the listen
//! backlog it asked for (a full backlog makes connects wait), and a
//! listening socket nobody accepts on is not kept open by the ring. An
//! accept loop (`photon_server`) is back in accept before its vcpu sleeps,
//! so its multishot stays armed. `photon_close` on the listening socket fails the
//! waiting accepts with ECANCELED and closes the connections nobody
//! claimed (as closing a listener resets its backlog's).
//!
//! Only accepts that ask for no peer address use it (the kernel writes no
//! address for a multishot accept); `PHOTON_IO_OFF=multishot_accept` turns
//! it off (one ring accept per call, as on a kernel before 5.19).

use std::collections::VecDeque;

use io_uring::{cqueue, opcode, types};

use super::{Role, UOp, UringEngine};
use crate::engine::{Completion, OpId, Submitted, Waiter};
use crate::errno::Errno;

/// Accepted connections nobody has claimed yet, per listening socket and
/// vcpu, before the multishot accept is cancelled.
pub(super) const ACCEPT_CAP: usize = 16;

/// One listening socket's multishot accept on this ring.
pub(super) struct Listener {
    fd: i32,
    /// The accept flags (SOCK_NONBLOCK...) every accepted fd gets.
    flags: i32,
    /// The armed multishot operation.
    arm: Option<OpId>,
    /// Its cancellation has been queued.
    cancelling: bool,
    /// Accepted, not yet claimed.
    ready: VecDeque<i32>,
    /// Other vcpus accept on this socket too: no multishot (see
    /// [`UringEngine::accept_multi`]).
    shared: bool,
    /// Waiting accept calls (their op ids), first come first served.
    waiters: VecDeque<OpId>,
}

fn close_quietly(fd: i32) {
    // SAFETY: an fd this engine accepted and nobody else knows.
    unsafe { libc::close(fd) };
}

impl UringEngine {
    /// An accept without a peer address on `fd`: a connection already
    /// accepted, or a wait for the next one (arming the multishot). None:
    /// a plain ring accept instead, because threads of other vcpus accept
    /// on this socket too (`photon_server_serve_on`): a multishot armed
    /// here would take connections while this vcpu is busy running a
    /// handler, which a vcpu waiting in accept should get. Its multishot is
    /// then cancelled at once (not at the turn's end, which a busy vcpu
    /// reaches late).
    pub(super) fn accept_multi(&mut self, fd: i32, flags: i32, waiter: Waiter) -> Result<Option<Submitted>, Errno> {
        let i = match self.listeners.iter().position(|l| l.fd == fd && l.flags == flags) {
            Some(i) => i,
            None => {
                self.listeners.push(Listener {
                    fd,
                    flags,
                    arm: None,
                    cancelling: false,
                    ready: VecDeque::new(),
                    shared: false,
                    waiters: VecDeque::new(),
                });
                self.listeners.len() - 1
            }
        };
        if let Some(nfd) = self.listeners[i].ready.pop_front() {
            if !self.listeners[i].shared {
                self.arm_accept(i)?;
            }
            return Ok(Some(Submitted::Done(nfd as i64)));
        }
        if !self.listeners[i].shared {
            let me = 1u64 << (crate::sched::current_id() % 64);
            if crate::fdinfo::vcpus(fd) & !me != 0 {
                self.listeners[i].shared = true;
                if self.listeners[i].arm.is_some() {
                    self.disarm_accept(i);
                    self.submit_now();
                }
            }
        }
        if self.listeners[i].shared {
            return Ok(None);
        }
        let id = self.ops.insert(UOp {
            waiter,
            fd,
            role: Role::AcceptWait,
            cancel_sent: false,
        });
        self.listeners[i].waiters.push_back(id);
        if let Err(e) = self.arm_accept(i) {
            self.listeners[i].waiters.retain(|&w| w != id);
            self.ops.remove(id);
            return Err(e);
        }
        Ok(Some(Submitted::Pending(id)))
    }

    /// Arms listener `i`'s multishot accept unless it is armed or at its cap.
    fn arm_accept(&mut self, i: usize) -> Result<(), Errno> {
        let l = &self.listeners[i];
        if l.arm.is_some() || l.shared || l.ready.len() >= ACCEPT_CAP {
            return Ok(());
        }
        let (fd, flags) = (l.fd, l.flags);
        let id = self.ops.insert(UOp {
            waiter: core::ptr::null_mut(),
            fd,
            role: Role::AcceptArm,
            cancel_sent: false,
        });
        let sqe = opcode::AcceptMulti::new(types::Fd(fd))
            .flags(flags)
            .build()
            .user_data(id as u64);
        if let Err(e) = self.push(sqe) {
            self.ops.remove(id);
            return Err(e);
        }
        let l = &mut self.listeners[i];
        l.arm = Some(id);
        l.cancelling = false;
        Ok(())
    }

    /// Before the vcpu sleeps: the multishot accepts nobody waits on are
    /// cancelled (see the module doc).
    pub(super) fn disarm_unwaited(&mut self) {
        for i in 0..self.listeners.len() {
            if self.listeners[i].waiters.is_empty() {
                self.disarm_accept(i);
            }
        }
    }

    /// Queues the cancellation of listener `i`'s multishot accept.
    fn disarm_accept(&mut self, i: usize) {
        let l = &mut self.listeners[i];
        let Some(arm) = l.arm else { return };
        if l.cancelling {
            return;
        }
        l.cancelling = true;
        self.send_cancel(arm, "a multishot accept");
    }

    /// A completion of multishot accept `id`: a new connection (`result`
    /// >= 0) or an error; without `IORING_CQE_F_MORE` the operation ended.
    pub(super) fn accept_completion(&mut self, id: OpId, result: i32, flags: u32, out: &mut Vec<Completion>) {
        let more = cqueue::more(flags);
        if !more {
            self.ops.remove(id);
        }
        let Some(i) = self.listeners.iter().position(|l| l.arm == Some(id)) else {
            // Its listener was closed or forgotten: nobody will claim this.
            if result >= 0 {
                close_quietly(result);
            }
            return;
        };
        if !more {
            self.listeners[i].arm = None;
            self.listeners[i].cancelling = false;
        }
        if result >= 0 {
            match self.listeners[i].waiters.pop_front() {
                Some(w) => self.finish_waiter(w, result as i64, out),
                None => {
                    let l = &mut self.listeners[i];
                    l.ready.push_back(result);
                    if l.ready.len() >= ACCEPT_CAP {
                        self.disarm_accept(i);
                    }
                }
            }
        } else if result != -libc::ECANCELED {
            // EMFILE, ENFILE, ENOMEM, an fd that stopped listening...: the
            // first waiting accept reports it, as its own accept would have.
            if let Some(w) = self.listeners[i].waiters.pop_front() {
                self.finish_waiter(w, result as i64, out);
            }
        }
        if !more && !self.listeners[i].waiters.is_empty() {
            if self.listeners[i].shared {
                // Cancelled for sharing: each waiter becomes a plain accept.
                while let Some(w) = self.listeners[i].waiters.pop_front() {
                    if let Err(e) = self.plain_accept(w) {
                        self.finish_waiter(w, -(e.0 as i64), out);
                    }
                }
                return;
            }
            // Ended (an error, the cap) while others still wait: again.
            if let Err(e) = self.arm_accept(i) {
                while let Some(w) = self.listeners[i].waiters.pop_front() {
                    self.finish_waiter(w, -(e.0 as i64), out);
                }
            }
        }
    }

    /// Waiting accept `id` as a ring accept of its own.
    fn plain_accept(&mut self, id: OpId) -> Result<(), Errno> {
        let Some(op) = self.ops.get_mut(id) else { return Ok(()) };
        op.role = Role::Plain;
        let fd = op.fd;
        let flags = self
            .listeners
            .iter()
            .find(|l| l.fd == fd)
            .map_or(libc::SOCK_NONBLOCK, |l| l.flags);
        let sqe = opcode::Accept::new(types::Fd(fd), core::ptr::null_mut(), core::ptr::null_mut())
            .flags(flags)
            .build()
            .user_data(id as u64);
        self.push(sqe)
    }

    fn finish_waiter(&mut self, id: OpId, result: i64, out: &mut Vec<Completion>) {
        if let Some(op) = self.ops.remove(id) {
            out.push(Completion {
                waiter: op.waiter,
                id,
                result,
            });
        }
    }

    /// A waiting accept gave up (`id` is a [`Role::AcceptWait`] op): it
    /// leaves at once; the last one to leave disarms the multishot.
    /// As a cancelled ring accept: a connection that comes in the engine's
    /// next wait (which then does not sleep) is still this accept's, as the
    /// kernel completes an accept that had its connection before the
    /// cancel; else it ends with ECANCELED ([`UringEngine::accept_cancels_done`]).
    /// A thread woken for another reason than its accept (an interrupt,
    /// a timeout, a stray wake-up) so gets a connection already there.
    pub(super) fn accept_cancel(&mut self, id: OpId) {
        if let Some(op) = self.ops.get_mut(id)
            && !op.cancel_sent
        {
            op.cancel_sent = true;
            self.accept_cancels = true;
        }
    }

    /// After a wait's completions: the cancelled accepts still waiting end
    /// with ECANCELED; a listener left with no waiter is disarmed.
    pub(super) fn accept_cancels_done(&mut self, out: &mut Vec<Completion>) {
        self.accept_cancels = false;
        for i in 0..self.listeners.len() {
            let mut k = 0;
            while k < self.listeners[i].waiters.len() {
                let w = self.listeners[i].waiters[k];
                if self.ops.get(w).is_some_and(|o| o.cancel_sent) {
                    self.listeners[i].waiters.remove(k);
                    self.finish_waiter(w, -(libc::ECANCELED as i64), out);
                } else {
                    k += 1;
                }
            }
            if self.listeners[i].waiters.is_empty() {
                self.disarm_accept(i);
            }
        }
    }

    /// `fd` is being closed (`out`: the waiting accepts, ECANCELED) or its
    /// number now names another file (`out` None: there are no waiters,
    /// they would hold the old file): the multishot is cancelled and the
    /// unclaimed connections closed.
    pub(super) fn accept_forget(&mut self, fd: i32, out: Option<&mut Vec<Completion>>) {
        let mut out = out;
        let mut i = 0;
        while i < self.listeners.len() {
            if self.listeners[i].fd != fd || (out.is_none() && !self.listeners[i].waiters.is_empty()) {
                i += 1;
                continue;
            }
            self.disarm_accept(i);
            let l = self.listeners.swap_remove(i);
            for nfd in l.ready {
                close_quietly(nfd);
            }
            if let Some(out) = out.as_deref_mut() {
                for w in l.waiters {
                    self.finish_waiter(w, -(libc::ECANCELED as i64), out);
                }
            }
        }
    }

    /// At the ring's end: the unclaimed connections are closed.
    pub(super) fn accept_drop(&mut self) {
        for l in self.listeners.drain(..) {
            for nfd in l.ready {
                close_quietly(nfd);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{Cancel, Engine, Op};
    use std::time::Duration;

    /// A listening TCP socket on 127.0.0.1 (non-blocking) and its port.
    fn listener() -> (i32, u16) {
        // SAFETY: plain socket calls on owned fds and local structs.
        unsafe {
            let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_NONBLOCK, 0);
            assert!(fd >= 0);
            let mut sa: libc::sockaddr_in = core::mem::zeroed();
            sa.sin_family = libc::AF_INET as u16;
            sa.sin_addr.s_addr = u32::from_ne_bytes([127, 0, 0, 1]);
            let len = core::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
            assert_eq!(libc::bind(fd, (&raw const sa).cast(), len), 0);
            assert_eq!(libc::listen(fd, 128), 0);
            let mut got = len;
            assert_eq!(libc::getsockname(fd, (&raw mut sa).cast(), &mut got), 0);
            (fd, u16::from_be(sa.sin_port))
        }
    }

    /// A blocking connect to 127.0.0.1:`port` (completes once the kernel
    /// queued the connection, accepted or not).
    fn connect(port: u16) -> i32 {
        // SAFETY: as above.
        unsafe {
            let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
            let mut sa: libc::sockaddr_in = core::mem::zeroed();
            sa.sin_family = libc::AF_INET as u16;
            sa.sin_port = port.to_be();
            sa.sin_addr.s_addr = u32::from_ne_bytes([127, 0, 0, 1]);
            let len = core::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
            assert_eq!(libc::connect(fd, (&raw const sa).cast(), len), 0);
            fd
        }
    }

    fn accept_op(fd: i32) -> Op {
        Op::Accept {
            fd,
            addr: core::ptr::null_mut(),
            len: core::ptr::null_mut(),
            flags: libc::SOCK_NONBLOCK,
        }
    }

    fn is_open(fd: i32) -> bool {
        // SAFETY: F_GETFD on any number.
        unsafe { libc::fcntl(fd, libc::F_GETFD) >= 0 }
    }

    /// Waits (up to 2 s) until `done` holds, polling the engine.
    fn until(
        e: &mut UringEngine,
        out: &mut Vec<Completion>,
        mut done: impl FnMut(&UringEngine, &[Completion]) -> bool,
    ) {
        for _ in 0..200 {
            if done(e, out) {
                return;
            }
            e.wait(Some(Duration::from_millis(10)), out).unwrap();
        }
        panic!("timed out");
    }

    fn engine(test: &str) -> Option<UringEngine> {
        match UringEngine::new(false) {
            Ok(e) if e.multishot_accept => Some(e),
            Ok(_) => {
                println!("{test}: no multishot accept on this kernel (its fallback runs in the C tests)");
                None
            }
            Err(_) => {
                println!("{test}: no io_uring here, skipped");
                None
            }
        }
    }

    /// One multishot accept serves a waiting accept and keeps the next
    /// connections for the next calls, which complete at once.
    #[test]
    fn serves_and_keeps() {
        let Some(mut e) = engine("serves_and_keeps") else {
            return;
        };
        let (lfd, port) = listener();
        // SAFETY: accept ops point to no memory.
        let Submitted::Pending(id) = (unsafe { e.submit(accept_op(lfd), 1 as Waiter) }).unwrap() else {
            panic!("nothing to accept yet");
        };
        let clients: Vec<i32> = (0..3).map(|_| connect(port)).collect();
        let mut out = Vec::new();
        until(&mut e, &mut out, |e, _| e.listeners[0].ready.len() == 2);
        let first = out
            .iter()
            .find(|c| c.id == id)
            .expect("the waiter got the first")
            .result;
        assert!(first >= 0 && is_open(first as i32));
        for _ in 0..2 {
            // SAFETY: as above.
            match unsafe { e.submit(accept_op(lfd), 1 as Waiter) }.unwrap() {
                Submitted::Done(fd) => assert!(fd >= 0 && is_open(fd as i32)),
                Submitted::Pending(_) => panic!("an accepted connection was waiting"),
            }
        }
        assert!(e.listeners[0].arm.is_some(), "armed again by the accepts");
        until(&mut e, &mut out, |e, _| e.listeners[0].arm.is_none());
        // Nobody waits as the engine sleeps: disarmed, a new client waits
        // in the backlog.
        let late = connect(port);
        for _ in 0..3 {
            e.wait(Some(Duration::from_millis(10)), &mut out).unwrap();
        }
        assert!(e.listeners[0].ready.is_empty(), "accepted with nobody waiting");
        // SAFETY: as above.
        let Submitted::Pending(id) = (unsafe { e.submit(accept_op(lfd), 1 as Waiter) }).unwrap() else {
            panic!("nothing was accepted ahead");
        };
        until(&mut e, &mut out, |_, out| {
            out.iter().any(|c| c.id == id && c.result >= 0)
        });
        // SAFETY: our fd.
        unsafe { libc::close(late) };
        // SAFETY: our fds.
        unsafe { libc::close(lfd) };
        for c in clients {
            // SAFETY: our fd.
            unsafe { libc::close(c) };
        }
    }

    /// With nobody claiming, the kernel's accepting stops at ACCEPT_CAP
    /// (the rest wait in the backlog) and starts again when claimed.
    #[test]
    fn cap_and_rearm() {
        let Some(mut e) = engine("cap_and_rearm") else { return };
        let (lfd, port) = listener();
        // SAFETY: accept ops point to no memory.
        let Submitted::Pending(first) = (unsafe { e.submit(accept_op(lfd), 1 as Waiter) }).unwrap() else {
            panic!("nothing to accept yet");
        };
        let total = ACCEPT_CAP + 6;
        let clients: Vec<i32> = (0..total).map(|_| connect(port)).collect();
        let mut out = Vec::new();
        until(&mut e, &mut out, |e, _| e.listeners[0].arm.is_none());
        assert!(out.iter().any(|c| c.id == first && c.result >= 0));
        // The kernel accepts all its backlog holds each time the multishot
        // runs: the cap stops it after that run, not within it.
        let held = e.listeners[0].ready.len();
        assert!((ACCEPT_CAP..total).contains(&held), "stopped at the cap ({held})");
        let more: Vec<i32> = (0..5).map(|_| connect(port)).collect();
        for _ in 0..5 {
            e.wait(Some(Duration::from_millis(10)), &mut out).unwrap();
        }
        assert_eq!(e.listeners[0].ready.len(), held, "not accepting past the cap");
        let total = total + more.len();
        let mut got = 1;
        while got < total {
            // SAFETY: as above.
            match unsafe { e.submit(accept_op(lfd), 1 as Waiter) }.unwrap() {
                Submitted::Done(fd) => assert!(fd >= 0),
                Submitted::Pending(id) => until(&mut e, &mut out, |_, out| {
                    out.iter().any(|c| c.id == id && c.result >= 0)
                }),
            }
            got += 1;
        }
        assert!(e.listeners[0].ready.is_empty());
        // SAFETY: our fds.
        unsafe { libc::close(lfd) };
        for c in clients.into_iter().chain(more) {
            // SAFETY: our fd.
            unsafe { libc::close(c) };
        }
    }

    /// The last waiting accept giving up disarms the multishot; closing the
    /// listener fails waiters with ECANCELED and closes what nobody claimed.
    #[test]
    fn cancel_and_close() {
        let Some(mut e) = engine("cancel_and_close") else {
            return;
        };
        let (lfd, port) = listener();
        // SAFETY: accept ops point to no memory.
        let Submitted::Pending(id) = (unsafe { e.submit(accept_op(lfd), 1 as Waiter) }).unwrap() else {
            panic!("nothing to accept yet");
        };
        assert!(matches!(e.cancel(id), Cancel::Requested));
        let mut out = Vec::new();
        e.wait(Some(Duration::from_secs(5)), &mut out).unwrap(); // must not sleep
        assert!(
            out.iter().any(|c| c.id == id && c.result == -(libc::ECANCELED as i64)),
            "a cancelled accept ends with ECANCELED in the next wait"
        );
        until(&mut e, &mut out, |e, _| e.listeners[0].arm.is_none());
        // Cancelled with its connection already there: it gets it.
        // SAFETY: as above.
        let Submitted::Pending(id) = (unsafe { e.submit(accept_op(lfd), 1 as Waiter) }).unwrap() else {
            panic!("nothing to accept yet");
        };
        let early = connect(port);
        assert!(matches!(e.cancel(id), Cancel::Requested));
        e.wait(Some(Duration::from_secs(5)), &mut out).unwrap();
        let got = out.iter().find(|c| c.id == id).expect("reported in that wait").result;
        assert!(got >= 0, "the connection that was there is the accept's ({got})");
        // SAFETY: our fds.
        unsafe {
            libc::close(got as i32);
            libc::close(early);
        }
        until(&mut e, &mut out, |e, _| e.listeners[0].arm.is_none());
        // Armed again; two connections come, one is claimed by the waiter.
        // SAFETY: as above.
        let Submitted::Pending(w1) = (unsafe { e.submit(accept_op(lfd), 1 as Waiter) }).unwrap() else {
            panic!("nothing to accept yet");
        };
        let clients: Vec<i32> = (0..2).map(|_| connect(port)).collect();
        until(&mut e, &mut out, |e, _| e.listeners[0].ready.len() == 1);
        assert!(out.iter().any(|c| c.id == w1 && c.result >= 0));
        let unclaimed = e.listeners[0].ready[0];
        // SAFETY: as above.
        let Submitted::Done(_) = (unsafe { e.submit(accept_op(lfd), 1 as Waiter) }).unwrap() else {
            panic!("one was ready");
        };
        // SAFETY: as above.
        let Submitted::Pending(w2) = (unsafe { e.submit(accept_op(lfd), 1 as Waiter) }).unwrap() else {
            panic!("none left");
        };
        let late = connect(port);
        until(&mut e, &mut out, |_, out| out.iter().any(|c| c.id == w2));
        assert!(out.iter().any(|c| c.id == w2 && c.result >= 0));
        let _ = unclaimed;
        // SAFETY: as above.
        let Submitted::Pending(w4) = (unsafe { e.submit(accept_op(lfd), 1 as Waiter) }).unwrap() else {
            panic!("none left");
        };
        let mut closed = Vec::new();
        e.cancel_fd(lfd, &mut closed);
        assert!(
            closed
                .iter()
                .any(|c| c.id == w4 && c.result == -(libc::ECANCELED as i64)),
            "a waiting accept fails with ECANCELED at close"
        );
        assert!(e.listeners.is_empty());
        // SAFETY: our fds.
        unsafe { libc::close(lfd) };
        until(&mut e, &mut out, |e, _| e.ops.len() == 0);
        for c in clients.into_iter().chain([late]) {
            // SAFETY: our fd.
            unsafe { libc::close(c) };
        }
    }

    /// Connections accepted but never claimed are closed when the listener
    /// is: their clients see the end of the stream.
    #[test]
    fn close_drops_unclaimed() {
        let Some(mut e) = engine("close_drops_unclaimed") else {
            return;
        };
        let (lfd, port) = listener();
        // SAFETY: accept ops point to no memory.
        let Submitted::Pending(_) = (unsafe { e.submit(accept_op(lfd), 1 as Waiter) }).unwrap() else {
            panic!("nothing to accept yet");
        };
        let clients: Vec<i32> = (0..3).map(|_| connect(port)).collect();
        let mut out = Vec::new();
        until(&mut e, &mut out, |e, _| e.listeners[0].ready.len() == 2);
        e.cancel_fd(lfd, &mut out);
        // SAFETY: our fds.
        unsafe { libc::close(lfd) };
        until(&mut e, &mut out, |e, _| e.ops.len() == 0);
        let mut eof = 0;
        for &c in &clients[1..] {
            let mut b = [0u8; 1];
            // SAFETY: a valid buffer; the client sockets block.
            if unsafe { libc::read(c, b.as_mut_ptr().cast(), 1) } <= 0 {
                eof += 1;
            }
        }
        assert_eq!(eof, 2, "the unclaimed connections' clients see them end");
        for c in clients {
            // SAFETY: our fd.
            unsafe { libc::close(c) };
        }
    }
}
